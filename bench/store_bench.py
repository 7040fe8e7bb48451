"""Store: turns appended per second, context assembly at 100,000 turns, database size per 100,000 turns."""

from __future__ import annotations

import asyncio
import io
import math
import random
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import Figure, median, percentile
from bot.chat.conversation import AskRequest, Conversations
from bot.chat.history import Exchange, History
from bot.chat.personas import Personas
from bot.moderation.gate import ModerationGate
from bot.openai_api.gateway import OpenAIGateway
from bot.ops.migrate_db import copy_database
from bot.settings import Settings
from bot.storage.store import SqliteStore, Store, open_store
from testkit.postgres import Cluster

GUILD = 1
LONG_CHANNEL = 10
SHORT_CHANNEL = 11
_WORDS = "the bot answers questions about python sqlite discord servers moderation tokens budgets".split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _exchange(rng: random.Random, channel: int, n: int, counter: Conversations) -> Exchange:
    question = f"question {n}: " + _text(rng, 25)
    answer = f"answer {n}: " + _text(rng, 90)
    return Exchange(
        GUILD,
        channel,
        100 + n % 50,
        f"user{n % 50}",
        question,
        counter.counter.count(question),
        1000,
        answer,
        counter.counter.count(answer),
    )


async def _fill(
    store: Store, rng: random.Random, channel: int, turns: int, conversations: Conversations
) -> None:
    """Bulk-load `turns` turns in large transactions (the figure under test is reading, not loading)."""
    question = "question: " + _text(rng, 25)
    answer = "answer: " + _text(rng, 90)
    q_tokens, a_tokens = conversations.counter.count(question), conversations.counter.count(answer)
    now = time.time()
    batch = 5000
    for start in range(0, turns, batch):
        rows = []
        for n in range(start, min(turns, start + batch)):
            user = n % 2 == 0
            rows.append(
                (
                    GUILD,
                    channel,
                    100 if user else 1000,
                    "user" if user else "",
                    "user" if user else "assistant",
                    f"{n} {question if user else answer}",
                    q_tokens if user else a_tokens,
                    now,
                )
            )
        async with store.transaction() as db:
            await db.executemany(
                "INSERT INTO turns (guild_id, channel_id, author_id, author_name, role, content, tokens, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


def _raw_insert_rate(path: Path, exchanges: int) -> float:
    """Baseline: plain sqlite3, one transaction per exchange (2 rows), same schema and pragmas."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY, guild_id INTEGER, channel_id INTEGER, author_id INTEGER, "
        "author_name TEXT, role TEXT, content TEXT, tokens INTEGER, created_at REAL)"
    )
    db.execute("CREATE INDEX turns_by_channel ON turns (channel_id, id)")
    row = (1, 1, 1, "u", "user", "question " * 20, 40, time.time())
    started = time.perf_counter()
    for _ in range(exchanges):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO turns (guild_id, channel_id, author_id, author_name, role, content, tokens, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [row, row],
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return 2 * exchanges / elapsed


async def _assembly_times(
    conversations: Conversations, channel: int, runs: int, *, cached: bool = False
) -> list[float]:
    """`cached`: the channel's window is in memory (a channel asked in recently); otherwise every run
    reads it from SQLite, as the first /ask after a start or after the window was dropped does."""
    request = AskRequest(GUILD, channel, 100, "user", "what did we say about budgets?")
    budget = conversations.settings.history_token_budget
    times = []
    for _ in range(runs):
        if not cached:
            conversations.history.forget_windows()
        started = time.perf_counter()
        await conversations.build_context(request, budget)
        times.append(time.perf_counter() - started)
    return times


async def run(turns: int = 100_000, appends: int = 2000, runs: int = 200) -> list[Figure]:
    rng = random.Random(6)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        settings = Settings(openai_api_key="unused", database_url=f"sqlite:///{tmp}/bot.db")
        store = await open_store(settings.database_url)
        gateway = OpenAIGateway.from_settings(settings)
        history = History(store, window_tokens=settings.history_token_budget)  # as the bot builds it
        conversations = Conversations(
            history, Personas(store), gateway, ModerationGate(gateway), settings, bot_user_id=lambda: 1
        )
        try:
            exchanges = [_exchange(rng, SHORT_CHANNEL + 1, n, conversations) for n in range(appends)]
            started = time.perf_counter()
            for exchange in exchanges:
                await history.append(exchange)
            rate = 2 * appends / (time.perf_counter() - started)
            raw = _raw_insert_rate(Path(tmp) / "raw.db", appends)
            figures.append(
                Figure(
                    "Store",
                    "turns appended per second (History.append)",
                    rate,
                    "turns/s",
                    raw,
                    "plain sqlite3, same transactions",
                )
            )

            await _fill(store, rng, SHORT_CHANNEL, 1000, conversations)
            await _fill(store, rng, LONG_CHANNEL, turns, conversations)
            short = await _assembly_times(conversations, SHORT_CHANNEL, runs)
            long = await _assembly_times(conversations, LONG_CHANNEL, runs)
            warm = await _assembly_times(conversations, LONG_CHANNEL, runs, cached=True)
            label = f"{turns:,}"
            figures.append(
                Figure(
                    "Store",
                    f"context assembly p50, channel of {label} turns, window cached",
                    median(warm) * 1000,
                    "ms",
                    median(long) * 1000,
                    "read from SQLite",
                )
            )
            for q in (50, 99):
                figures.append(
                    Figure(
                        "Store",
                        f"context assembly p{q}, channel of {label} turns, read from SQLite",
                        percentile(long, q) * 1000,
                        "ms",
                        percentile(short, q) * 1000,
                        "channel of 1,000 turns",
                        "< 5 ms" if q == 50 else "",
                        median(long) * 1000 < 5 if q == 50 else None,
                    )
                )

            await store.execute("DELETE FROM turns WHERE channel_id != ?", (LONG_CHANNEL,))
        finally:
            await gateway.close()
            await store.close()
        vacuumed = Path(tmp) / "vacuumed.db"
        db = sqlite3.connect(settings.database_path)
        db.execute("VACUUM INTO ?", (str(vacuumed),))
        db.close()
        size = vacuumed.stat().st_size / 1024 / 1024 * (100_000 / turns)
        text_bytes = sum(len(e.question) + len(e.answer) for e in exchanges) / (2 * len(exchanges))
        figures.append(
            Figure(
                "Store",
                "database size per 100,000 turns",
                size,
                "MiB",
                text_bytes * 100_000 / 1024 / 1024,
                "the turns' text alone",
                note=f"~{text_bytes:.0f} characters per turn",
            )
        )
    return figures


async def _append_rate(store: Store, appends: int, in_flight: int, conversations: Conversations) -> float:
    """Turns per second History.append commits with `in_flight` exchanges appending at once."""
    history = History(store, window_tokens=conversations.settings.history_token_budget)
    rng = random.Random(7)
    exchanges = [_exchange(rng, SHORT_CHANNEL + 2 + n % 20, n, conversations) for n in range(appends)]
    pending = iter(exchanges)

    async def appender() -> None:
        for exchange in pending:
            await history.append(exchange)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(in_flight)))
    return 2 * appends / (time.perf_counter() - started)


async def backend_figures(appends: int = 2000, migrate_turns: int = 100_000) -> list[Figure]:
    """The same History.append on SQLite and on PostgreSQL, side by side in one run; migrate-db's copy rate.

    PostgreSQL is a throwaway local server (testkit/postgres.py, fsync off, as in the tests): the figures
    compare the drivers' own cost on one machine, not a networked, durable production server.
    """
    try:
        cluster = Cluster()
        cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.CalledProcessError) as exc:
        return [Figure("Store backends", f"skipped: no PostgreSQL server here ({exc})", math.nan, "")]
    figures: list[Figure] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
            settings = Settings(openai_api_key="unused", database_url=f"sqlite:///{tmp}/bot.db")
            gateway = OpenAIGateway.from_settings(settings)
            sqlite_store = await open_store(settings.database_url)
            pg_store = await open_store(cluster.create_database())
            try:
                history = History(sqlite_store, window_tokens=settings.history_token_budget)
                conversations = Conversations(
                    history,
                    Personas(sqlite_store),
                    gateway,
                    ModerationGate(gateway),
                    settings,
                    bot_user_id=lambda: 1,
                )
                for in_flight in (1, 50):
                    rates = {
                        name: await _append_rate(store, appends, in_flight, conversations)
                        for name, store in (("sqlite", sqlite_store), ("postgresql", pg_store))
                    }
                    figures.append(
                        Figure(
                            "Store backends",
                            f"turns appended per second, {in_flight} in flight, PostgreSQL (local, fsync off)",
                            rates["postgresql"],
                            "turns/s",
                            rates["sqlite"],
                            "SQLite, same run",
                        )
                    )
                rng = random.Random(8)
                await _fill(sqlite_store, rng, LONG_CHANNEL, migrate_turns, conversations)
            finally:
                await sqlite_store.close()
                await pg_store.close()
                await gateway.close()
            source = await open_store(settings.database_url)
            target = await open_store(cluster.create_database(), pool_size=2)
            try:
                assert isinstance(source, SqliteStore)
                report = await copy_database(source, target, out=io.StringIO())
            finally:
                await source.close()
                await target.close()
            figures.append(
                Figure(
                    "Store backends",
                    f"migrate-db rows per second, {report.rows:,} rows ({migrate_turns:,} turns) SQLite -> PostgreSQL",
                    report.rows / report.seconds,
                    "rows/s",
                    note=f"{report.seconds:.1f} s, counts verified: {not report.mismatched}",
                )
            )
    finally:
        cluster.stop()
    return figures
