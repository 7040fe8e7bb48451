"""Budgets, rate limits, job slots and the quota breaker shared by two processes on one database.

Each "process" is its own Store (its own connections or pool), ledger, allowance, breaker and Limits on the
same database, as two bot processes have; nothing in memory is shared between them. On SQLite the two
stores share one file (BEGIN IMMEDIATE serialises them, as it would two processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot import errors
from bot.cost.allowance import CostClaims, SharedAllowance
from bot.cost.breaker import SharedQuotaBreaker
from bot.cost.ledger import UsageLedger, day_start, next_day_start
from bot.cost.limits import Limits
from bot.cost.pricing import PriceTable
from bot.cost.rules import LimitsStore
from bot.openai_api.calls import CallContext, PlannedCall, UsageEvent
from bot.settings import Settings
from bot.storage.store import Store, open_store
from tests.support.database import database_url

GUILD, CHANNEL, ALICE, BOB = 1, 10, 100, 200
# One prompt token of "m" costs $1 and it has no output price: every call below is estimated and billed $1.
PRICES = PriceTable({"m": {"input_per_million": 1_000_000, "output_per_million": 0}})


class Clock:
    """Wall-clock time both processes read, which a test can move forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def skip(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Process:
    store: Store
    ledger: UsageLedger
    allowance: SharedAllowance
    breaker: SharedQuotaBreaker
    limits: Limits
    notices: list[int]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts processes on this test's database; all share one movable clock (`cluster.clock`)."""
    url = database_url(tmp_path)
    clock = Clock()
    started: list[Process] = []

    async def start(
        name: str, *, lease: float = 60.0, renew_every: float = 15.0, **overrides: Any
    ) -> Process:
        settings = Settings(
            discord_token="x",
            openai_api_key="sk-test",
            database_url=url,
            **{
                "user_burst": 100,
                "server_max_concurrent_jobs": 50,
                "user_daily_budget": 0.0,
                "server_monthly_budget": 0.0,
                **overrides,
            },
        )
        store = await open_store(url)
        ledger = UsageLedger(store, PRICES, clock=clock)
        allowance = SharedAllowance(
            store,
            ledger,
            settings.user_requests_per_minute / 60,
            settings.user_burst,
            settings.server_max_concurrent_jobs,
            settings.server_queue_size,
            holder=name,
            clock=clock,
            lease=lease,
            renew_every=renew_every,
            queue_wait=5.0,
        )
        notices: list[int] = []

        async def notify(guild_id: int, text: str) -> bool:
            notices.append(guild_id)
            return True

        breaker = SharedQuotaBreaker(
            store, 60, probe_lease=30, holder=name, notify=notify, clock=clock, staleness=0
        )
        limits = Limits(
            LimitsStore(store, settings), ledger, PRICES, settings, breaker, allowance=allowance, clock=clock
        )
        process = Process(store, ledger, allowance, breaker, limits, notices)
        started.append(process)
        return process

    start.clock = clock  # type: ignore[attr-defined]
    yield start
    for process in started:
        await process.store.close()


def call(user: int = ALICE, guild: int = GUILD) -> PlannedCall:
    return PlannedCall(CallContext(guild, CHANNEL, user, "ask"), "chat", "m", 0, prompt_tokens=1)


async def billed_call(process: Process, user: int = ALICE) -> None:
    """One admitted call, billed $1 while it holds its admission, as the gateway meters a call."""
    planned = call(user)
    async with process.limits.admit(planned):
        await process.ledger.record(UsageEvent(planned.context, "chat", "m", prompt_tokens=1))


async def live_claims(process: Process) -> int:
    row = await process.store.fetchone("SELECT COUNT(*) FROM cost_claims")
    assert row is not None
    return int(row[0])


async def test_a_daily_budget_cannot_be_exceeded_by_alternating_processes(cluster: Any) -> None:
    a = await cluster("a", user_daily_budget=3.0)
    b = await cluster("b", user_daily_budget=3.0)
    for process in (a, b, a):
        await billed_call(process)
    for process in (b, a):
        with pytest.raises(errors.BudgetExceeded) as refused:
            await billed_call(process)
        assert refused.value.spent == pytest.approx(3.0)
    # The slash-command pre-check of either process reads the same total.
    with pytest.raises(errors.BudgetExceeded):
        await b.limits.admit_request(GUILD, ALICE, call())
    await billed_call(b, user=BOB)  # another member's budget is their own
    row = await a.store.fetchone("SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM usage_events")
    assert row is not None and (float(row[0]), int(row[1])) == (4.0, 4)
    assert await live_claims(a) == 0, "every reservation was released"


async def test_concurrent_reservations_from_both_processes_cannot_overshoot_the_cap(cluster: Any) -> None:
    a = await cluster("a", server_monthly_budget=5.0)
    b = await cluster("b", server_monthly_budget=5.0)
    holding, settled = asyncio.Event(), asyncio.Event()
    admitted: list[str] = []
    refused: list[str] = []

    def count(names: list[str], name: str) -> None:
        names.append(name)
        if len(admitted) + len(refused) == 20:
            settled.set()

    async def hold(process: Process, name: str, user: int) -> str:
        try:
            async with process.limits.admit(call(user)):
                count(admitted, name)
                await holding.wait()
        except errors.BudgetExceeded:
            count(refused, name)
            return "refused"
        return "ran"

    tasks = [
        asyncio.create_task(hold(process, name, 1000 + k))
        for k in range(10)
        for process, name in ((a, "a"), (b, "b"))
    ]
    await asyncio.wait_for(settled.wait(), 10)
    assert len(admitted) == 5, "five $1 reservations fill the $5 month, whichever process took them"
    assert await live_claims(b) == 5
    holding.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("ran") == 5 and outcomes.count("refused") == 15
    assert await live_claims(a) == 0


async def test_the_rate_limit_is_one_bucket_across_processes(cluster: Any) -> None:
    a = await cluster("a", user_burst=3, user_requests_per_minute=6)
    b = await cluster("b", user_burst=3, user_requests_per_minute=6)
    for process in (a, b, a):
        await process.limits.check_rate(GUILD, ALICE)
    with pytest.raises(errors.SlowDown) as slow:
        await b.limits.check_rate(GUILD, ALICE)
    assert 9 < slow.value.retry_after <= 10, "one request every 10 s refills"
    await a.limits.check_rate(GUILD, BOB)  # another member has their own allowance
    cluster.clock.skip(10)
    await b.limits.check_rate(GUILD, ALICE)
    with pytest.raises(errors.SlowDown):
        await a.limits.check_rate(GUILD, ALICE)


async def test_concurrent_takes_from_both_processes_give_exactly_the_burst(cluster: Any) -> None:
    a = await cluster("a", user_burst=5, user_requests_per_minute=0.001)
    b = await cluster("b", user_burst=5, user_requests_per_minute=0.001)

    async def take(process: Process) -> bool:
        try:
            await process.limits.check_rate(GUILD, ALICE)
        except errors.SlowDown:
            return False
        return True

    taken = await asyncio.gather(*(take(p) for _ in range(8) for p in (a, b)))
    assert taken.count(True) == 5


async def test_job_slots_are_shared_and_a_waiter_runs_when_the_other_process_frees_one(cluster: Any) -> None:
    a = await cluster("a", server_max_concurrent_jobs=1, server_queue_size=1)
    b = await cluster("b", server_max_concurrent_jobs=1, server_queue_size=1)
    release_a, a_runs = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def job(process: Process, name: str, until: asyncio.Event | None = None) -> None:
        async with process.limits.admit(call()):
            order.append(f"{name} runs")
            a_runs.set()
            if until is not None:
                await until.wait()
        order.append(f"{name} done")

    first = asyncio.create_task(job(a, "a", release_a))
    await asyncio.wait_for(a_runs.wait(), 5)
    waiting = asyncio.create_task(job(b, "b"))
    await asyncio.sleep(0.3)
    assert order == ["a runs"], "b waits: a's process holds the server's only slot"
    # Beyond b's one waiting place, a third job in the same process is told to slow down.
    with pytest.raises(errors.SlowDown) as slow:
        async with b.limits.admit(call(BOB)):
            pass
    assert slow.value.reason == "server"
    release_a.set()
    await asyncio.wait_for(asyncio.gather(first, waiting), 5)
    assert order == ["a runs", "a done", "b runs", "b done"]
    assert await live_claims(a) == 0


async def test_a_dead_holders_reservation_and_slot_expire(cluster: Any) -> None:
    # Process a stops renewing (it died): its claim stops counting once its lease runs out.
    a = await cluster("a", lease=30, renew_every=3600, user_daily_budget=1.5, server_max_concurrent_jobs=1)
    b = await cluster("b", lease=30, user_daily_budget=1.5, server_max_concurrent_jobs=1)
    await a.limits.allowance.reserve(
        await a.limits.store.budgets(GUILD), GUILD, ALICE, 1.0, lambda user, guild: None
    )
    with pytest.raises(errors.BudgetExceeded):
        await billed_call(b)
    cluster.clock.skip(31)
    await asyncio.wait_for(billed_call(b), 5)  # the budget and the only slot are free again
    assert await live_claims(b) == 1, "only the dead process's expired row is left"


async def test_a_live_holder_renews_its_claims_past_the_lease(cluster: Any) -> None:
    a = await cluster("a", lease=0.5, renew_every=0.1, user_daily_budget=1.5)
    b = await cluster("b", lease=0.5, user_daily_budget=1.5)
    holding = asyncio.Event()
    running = asyncio.create_task(billed_call_held(a, holding))
    await asyncio.sleep(1.2)  # more than two leases
    with pytest.raises(errors.BudgetExceeded):
        await billed_call(b)
    holding.set()
    await running


async def billed_call_held(process: Process, until: asyncio.Event) -> None:
    async with process.limits.admit(call()):
        await until.wait()


async def test_insufficient_quota_in_one_process_pauses_the_other(cluster: Any) -> None:
    a = await cluster("a")
    b = await cluster("b")
    assert not await b.breaker.before_call(GUILD)
    await a.breaker.record_quota_error(GUILD)
    with pytest.raises(errors.QuotaPaused):
        await b.breaker.before_call(GUILD)
    with pytest.raises(errors.QuotaPaused):
        async with b.limits.admit(call()):
            pytest.fail("b must not call OpenAI while the breaker is open")
    assert b.breaker.is_open
    # The server's mod-log is told once for the outage, by whichever process got there first.
    assert a.notices + b.notices == [GUILD]
    assert b.breaker.told(GUILD)


async def test_a_process_sees_the_breaker_open_within_its_staleness(cluster: Any) -> None:
    a = await cluster("a")
    b = await cluster("b")
    b.breaker.staleness = 0.2
    assert not await b.breaker.before_call(GUILD)  # read now: closed
    await a.breaker.record_quota_error(GUILD)
    await asyncio.sleep(0.25)
    with pytest.raises(errors.QuotaPaused):
        await b.breaker.before_call(GUILD)


async def test_exactly_one_probe_across_processes_and_its_success_closes_both(cluster: Any) -> None:
    a = await cluster("a")
    b = await cluster("b")
    await a.breaker.record_quota_error(GUILD)
    cluster.clock.skip(61)

    async def probe(process: Process) -> bool:
        try:
            return await process.breaker.before_call(GUILD)
        except errors.QuotaPaused:
            return False

    probes = await asyncio.gather(*(probe(p) for _ in range(5) for p in (a, b)))
    assert probes.count(True) == 1
    winner = a if a.breaker._probing else b
    loser = b if winner is a else a
    await winner.breaker.record_success()
    assert not await loser.breaker.before_call(GUILD)
    assert not loser.breaker.is_open and not winner.breaker.is_open
    row = await a.store.fetchone("SELECT COUNT(*) FROM quota_notices")
    assert row is not None and row[0] == 0


async def test_a_failed_probe_keeps_both_paused_and_an_abandoned_probe_frees_the_next(cluster: Any) -> None:
    a = await cluster("a")
    b = await cluster("b")
    await a.breaker.record_quota_error(GUILD)
    cluster.clock.skip(61)
    assert await a.breaker.before_call(GUILD)
    await a.breaker.probe_done()  # the probe ended without an answer (a timeout): the next may probe
    assert await b.breaker.before_call(GUILD)
    await b.breaker.record_quota_error(GUILD)  # still no credit: another cooldown for everyone
    for process in (a, b):
        with pytest.raises(errors.QuotaPaused):
            await process.breaker.before_call(GUILD)
    assert a.notices + b.notices == [GUILD], "still the same outage: told once"


async def test_forget_me_deletes_a_members_rate_rows(cluster: Any) -> None:
    a = await cluster("a")
    await a.limits.check_rate(GUILD, ALICE)
    await a.limits.check_rate(GUILD, BOB)
    effects = await CostClaims(a.store).forget_user_data(GUILD, ALICE)
    assert [(e.table, e.rows) for e in effects] == [("rate_buckets", 1), ("cost_claims", 0)]
    rows = await a.store.fetchall("SELECT user_id FROM rate_buckets")
    assert [int(r[0]) for r in rows] == [BOB]


async def test_spend_from_earlier_today_counts_once_as_it_settles(cluster: Any) -> None:
    a = await cluster("a", user_daily_budget=5.0)
    b = await cluster("b", user_daily_budget=5.0)
    now = cluster.clock()
    earlier = max(day_start(now), now - 3 * 3600)  # still today (UTC)
    await a.store.execute(
        "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, cost) "
        "VALUES (?, ?, ?, ?, 'ask', 'chat', 'm', 2.0)",
        (earlier, GUILD, CHANNEL, ALICE),
    )
    budgets = await a.limits.store.budgets(GUILD)
    assert await b.allowance.spending(budgets, GUILD, ALICE) == (2.0, 0.0)
    await billed_call(a)
    await billed_call(b)
    # Minutes later the calls just made are old enough to be summed once and remembered: still counted once.
    cluster.clock.skip(min(700.0, next_day_start(now) - now - 1))
    for process in (a, b):
        assert await process.allowance.spending(budgets, GUILD, ALICE) == (4.0, 0.0)
    await billed_call(b)
    with pytest.raises(errors.BudgetExceeded):
        await billed_call(a)
