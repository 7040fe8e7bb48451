"""`python -m bot migrate-db` copies a populated SQLite database: every row of every table arrives, the target's
ids continue after the copied ones, and a second run refuses a target that holds data unless --force."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bot.storage.store import Store, open_store
from tests.support.database import database_url

TURNS = 12_345  # more than two of migrate-db's batches


async def populate(store: Store) -> None:
    now = time.time()
    turns = [
        (
            1,
            10 + n % 3,
            100 + n % 7,
            f"user{n}",
            "user" if n % 2 == 0 else "assistant",
            f"turn {n} ✓",
            n,
            now + n,
        )
        for n in range(TURNS)
    ]
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO turns (guild_id, channel_id, author_id, author_name, role, content, tokens, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            turns,
        )
        await db.execute(
            "INSERT INTO channel_personas VALUES (?, ?, ?, ?, ?)",
            (1234567890123456789, 1, "a pirate", 3, now),
        )
        result = await db.execute(
            "INSERT INTO moderation_actions (guild_id, channel_id, message_id, author_id, source, categories, "
            "scores, action, created_at) VALUES (1, 10, 99, 100, 'message', '[\"hate\"]', '{\"hate\": 0.9}', "
            "'delete', ?) RETURNING id",
            (now,),
        )
        action = await result.fetchone()
        assert action is not None
        await db.execute(
            "INSERT INTO moderation_strikes (guild_id, user_id, action_id, created_at) VALUES (1, 100, ?, ?)",
            (action[0], now),
        )
        await db.execute(
            "INSERT INTO moderation_queue (guild_id, channel_id, message_id, subject, enqueued_at) "
            "VALUES (1, 10, 98, '{\"author_id\": 100}', ?)",
            (now,),
        )
        await db.execute("INSERT INTO moderation_policies (guild_id, updated_at) VALUES (1, ?)", (now,))
        await db.execute("INSERT INTO auto_transcribe_channels VALUES (10, 1, 100, ?)", (now,))
        await db.executemany(
            "INSERT INTO usage_events (created_at, guild_id, user_id, command, kind, model, prompt_tokens, cost) "
            "VALUES (?, 1, ?, 'ask', 'chat', 'gpt-5-mini', ?, ?)",
            [(now + n, 100 + n % 5, n, None if n % 10 == 0 else n / 1000) for n in range(500)],
        )
        await db.execute("INSERT INTO guild_budgets VALUES (1, 0.5, NULL, 3, ?)", (now,))
        await db.execute("INSERT INTO command_rules VALUES (1, 'ask', 1, 555, 3, ?)", (now,))
        await db.execute("INSERT INTO privacy_keys VALUES ('user_hash', 'k')")


async def contents(store: Store) -> dict[str, list[tuple[object, ...]]]:
    tables = [t for t in await store.tables() if t != "schema_migrations"]
    return {
        table: sorted(
            (tuple(row) for row in await store.fetchall(f"SELECT * FROM {table}")),  # noqa: S608
            key=repr,
        )
        for table in tables
    }


def migrate_db(source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "migrate-db", "--from", source, "--to", target, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )


async def test_every_row_arrives_and_a_second_run_refuses_without_force(tmp_path: Path) -> None:
    source_url = f"sqlite:///{tmp_path / 'source' / 'bot.db'}"
    source = await open_store(source_url)
    try:
        await populate(source)
        expected = await contents(source)
    finally:
        await source.close()
    target_url = database_url(tmp_path)  # this run's backend: PostgreSQL under TEST_DATABASE=postgresql

    copied = migrate_db(source_url, target_url)
    assert copied.returncode == 0, copied.stderr
    assert "turns" in copied.stderr and f"{TURNS:,} rows" in copied.stderr
    assert "every table's row count matches" in copied.stderr

    target = await open_store(target_url)
    try:
        assert await contents(target) == expected
        # The next turn gets an id after the copied ones, not a collision with them.
        async with target.transaction() as db:
            result = await db.execute(
                "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
                "VALUES (1, 10, 100, 'user', 'after the move', 1, 0) RETURNING id",
            )
            row = await result.fetchone()
        assert row is not None and row[0] == TURNS + 1
    finally:
        await target.close()

    refused = migrate_db(source_url, target_url)
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "--force" in refused.stderr and "turns" in refused.stderr

    forced = migrate_db(source_url, target_url, "--force")
    assert forced.returncode == 0, forced.stderr
    target = await open_store(target_url)
    try:
        assert await contents(target) == expected  # replaced, not doubled
    finally:
        await target.close()


async def test_a_source_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    refused = migrate_db("postgresql://nobody@127.0.0.1:1/none", f"sqlite:///{tmp_path / 'x.db'}")
    assert refused.returncode == 2
    assert "--from must be a sqlite:///" in refused.stderr
