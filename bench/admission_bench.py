"""Admission: what a metered call's rate check, budget reservation and release cost, per process or shared."""

from __future__ import annotations

import asyncio
import math
import subprocess
import tempfile
import time

from bench.harness import Figure, median, percentile
from bot.cost.allowance import Allowance, LocalAllowance, SharedAllowance
from bot.cost.breaker import QuotaBreaker, SharedQuotaBreaker
from bot.cost.ledger import UsageLedger, day_start
from bot.cost.limits import Limits
from bot.cost.pricing import PriceTable
from bot.cost.rules import LimitsStore
from bot.openai_api.calls import CallContext, PlannedCall
from bot.settings import Settings
from bot.storage.store import Store, open_store
from testkit.postgres import Cluster

GUILD, CHANNEL = 1, 10
PRICES = PriceTable({"m": {"input_per_million": 1.0, "output_per_million": 1.0}})
SECTION = "Admission (rate + budget reservation + job slot + release)"


async def _seed(store: Store, rows: int) -> None:
    """A busy server's day in the ledger, spread over today so far (UTC), as the budgets read it."""
    now = time.time()
    step = (now - day_start(now)) / rows
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, cost) "
            "VALUES (?, ?, ?, ?, 'ask', 'chat', 'm', ?)",
            [(now - n * step, GUILD, CHANNEL, 100 + n % 50, 0.0001) for n in range(rows)],
        )


def _limits(store: Store, settings: Settings, *, shared: bool) -> Limits:
    ledger = UsageLedger(store, PRICES)
    rate, burst = 1e6, 1_000_000  # never the limit here: the figure is the work, not a refusal
    limit, queue = settings.server_max_concurrent_jobs, settings.server_queue_size
    breaker: QuotaBreaker
    allowance: Allowance
    if shared:
        breaker = SharedQuotaBreaker(store, 60, probe_lease=60, holder="bench")
        allowance = SharedAllowance(store, ledger, rate, burst, limit, queue, holder="bench")
    else:
        breaker = QuotaBreaker(60)
        allowance = LocalAllowance(ledger, rate, burst, limit, queue)
    return Limits(LimitsStore(store, settings), ledger, PRICES, settings, breaker, allowance=allowance)


async def _admit_once(limits: Limits, user: int) -> None:
    """What an /ask asks of Limits: the slash command's pre-check, then the gateway's admission around the call."""
    planned = PlannedCall(
        CallContext(GUILD, CHANNEL, user, "ask", admitted=True), "chat", "m", 1200, prompt_tokens=200
    )
    await limits.admit_request(GUILD, user, planned)
    async with limits.admit(planned):
        pass


async def _measure(limits: Limits, calls: int, in_flight: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, admissions per second) with `in_flight` admissions at once on one server."""
    for n in range(20):  # warm the caches and prepared statements
        await _admit_once(limits, 100 + n % 50)
    timings: list[float] = []

    async def worker(offset: int) -> None:
        for n in range(offset, calls, in_flight):
            started = time.perf_counter()
            await _admit_once(limits, 100 + n % 50)
            timings.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(in_flight)))
    elapsed = time.perf_counter() - started
    return median(timings) * 1000, percentile(timings, 99) * 1000, calls / elapsed


async def run(calls: int = 2000, ledger_rows: int = 10_000) -> list[Figure]:
    """In memory against shared, on SQLite and on PostgreSQL, side by side in one run.

    PostgreSQL is a throwaway local server (testkit/postgres.py, fsync off, over a Unix socket): the figures
    compare round trips and SQL on one machine, not a networked production server, where each of the shared
    admission's round trips adds the network's latency.
    """
    try:
        cluster = Cluster()
        cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.CalledProcessError) as exc:
        return [Figure(SECTION, f"skipped: no PostgreSQL server here ({exc})", math.nan, "")]
    figures: list[Figure] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
            settings = Settings(
                openai_api_key="unused",
                user_daily_budget=1e6,
                server_monthly_budget=1e6,
                server_max_concurrent_jobs=64,
            )
            for name, url in (
                ("SQLite", f"sqlite:///{tmp}/bot.db"),
                ("PostgreSQL", cluster.create_database()),
            ):
                store = await open_store(url)
                try:
                    await _seed(store, ledger_rows)
                    for in_flight in (1, 20):
                        local = await _measure(_limits(store, settings, shared=False), calls, in_flight)
                        shared = await _measure(_limits(store, settings, shared=True), calls, in_flight)
                        label = f"{name}, {in_flight} in flight, {ledger_rows:,} ledger rows today"
                        figures += [
                            Figure(SECTION, f"p50 per admission, shared ({label})", shared[0], "ms",
                                   local[0], "in memory, same run"),
                            Figure(SECTION, f"p99 per admission, shared ({label})", shared[1], "ms",
                                   local[1], "in memory, same run"),
                            Figure(SECTION, f"admissions per second, shared ({label})", shared[2], "/s",
                                   local[2], "in memory, same run"),
                        ]  # fmt: skip
                finally:
                    await store.close()
    finally:
        cluster.stop()
    return figures
