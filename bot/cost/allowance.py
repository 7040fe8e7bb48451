"""Rate tokens, budget reservations and job slots: per process (one owner of the database) or shared by many."""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from bot import errors
from bot.cost.ledger import UsageLedger, day_start, month_start
from bot.cost.rules import Budgets
from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store

log = logging.getLogger(__name__)

# How long a job may wait for one of its server's slots before it is told to slow down.
QUEUE_WAIT = 120.0
# A shared claim (reservation or slot) lives this long unless its holder renews it: a crashed process's
# claims stop counting within this time. Holders renew every CLAIM_RENEW seconds while they hold any.
CLAIM_LEASE = 60.0
CLAIM_RENEW = 15.0
# Shared rate rows and expired claims are deleted at most this often per process (they no longer count anyway).
PRUNE_EVERY = 300.0
# A ledger row is committed within this long after its created_at (the group commit's statement timeout is
# 60 s; process clocks differ by far less): older rows are summed once per process, not on every admission.
SETTLED_AFTER = 300.0
# A waiter for a shared slot looks again after this long at first, doubling up to the most.
SLOT_POLL_FIRST, SLOT_POLL_MOST = 0.02, 0.5

# Raises a domain error when (the user's spend today, the server's spend this month), in-flight
# reservations included, leave no room for the call.
Judge = Callable[[float, float], None]


@dataclass
class Claim:
    """One admitted call's reservation (`amount` USD) and, once `running`, its server job slot."""

    guild_id: int
    user_id: int | None
    amount: float
    id: int | None = None  # the shared row, when shared
    running: bool = False


def process_name() -> str:
    """Who holds a shared claim: unique per process start, readable in the table."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Allowance(ABC):
    """What Limits asks of the state behind rate limits, budgets and job slots."""

    @abstractmethod
    async def take_token(self, guild_id: int, user_id: int) -> float:
        """0 when the member's request allowance had a token (now taken); else seconds until one refills."""

    @abstractmethod
    async def spending(self, budgets: Budgets, guild_id: int, user_id: int | None) -> tuple[float, float]:
        """(the member's spend today, the server's this month): recorded plus in flight, capped ones only."""

    @abstractmethod
    async def reserve(
        self, budgets: Budgets, guild_id: int, user_id: int | None, amount: float, judge: Judge
    ) -> Claim:
        """Judge the spending and reserve `amount` in one atomic step, so concurrent calls cannot all fit."""

    @abstractmethod
    def running(self, claim: Claim) -> AbstractAsyncContextManager[None]:
        """Hold one of the server's job slots for the claim's call, waiting for one if all are taken."""

    @abstractmethod
    async def release(self, claim: Claim) -> None:
        """The call is over: its reservation and slot no longer count (its cost is in the ledger)."""


class TokenBucket:
    """`burst` requests at once, refilled at `rate` per second, per key."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._state: dict[object, tuple[float, float]] = {}

    def take(self, key: object) -> float:
        """0 when a token was taken; otherwise the seconds until one is available."""
        now = self.clock()
        if len(self._state) > 10_000:
            # Forget members whose allowance has refilled: they would start full anyway.
            full = now - self.burst / self.rate
            self._state = {k: v for k, v in self._state.items() if v[1] > full}
        tokens, last = self._state.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / self.rate


class ServerJobs:
    """At most `limit` jobs run per server; at most `queue_size` wait; anyone beyond is told to slow down."""

    def __init__(self, limit: int, queue_size: int) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._waiting: dict[int, int] = defaultdict(int)

    @asynccontextmanager
    async def slot(self, guild_id: int) -> AsyncIterator[None]:
        semaphore = self._slots.get(guild_id)
        if semaphore is None:
            semaphore = self._slots[guild_id] = asyncio.Semaphore(self.limit)
        if semaphore.locked():
            if self._waiting[guild_id] >= self.queue_size:
                raise errors.SlowDown(10.0, "server")
            self._waiting[guild_id] += 1
            try:
                await asyncio.wait_for(semaphore.acquire(), QUEUE_WAIT)
            except TimeoutError:
                raise errors.SlowDown(30.0, "server") from None
            finally:
                self._waiting[guild_id] -= 1
        else:
            await semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()


class LocalAllowance(Allowance):
    """In this process's memory: exact when it is the only process on the database (SQLite), and free."""

    def __init__(self, ledger: UsageLedger, rate: float, burst: int, limit: int, queue_size: int) -> None:
        self.ledger = ledger
        self.bucket = TokenBucket(rate, burst)
        self.jobs = ServerJobs(limit, queue_size)
        self._reserved_user: dict[tuple[int, int], float] = defaultdict(float)
        self._reserved_guild: dict[int, float] = defaultdict(float)
        self._budget_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def take_token(self, guild_id: int, user_id: int) -> float:
        return self.bucket.take((guild_id, user_id))

    async def _recorded(self, budgets: Budgets, guild_id: int, user_id: int | None) -> tuple[float, float]:
        user_spent = guild_spent = 0.0
        if budgets.user_daily_cap > 0 and user_id is not None:
            user_spent = await self.ledger.day_spent(guild_id, user_id)
        if budgets.server_monthly_cap > 0:
            guild_spent = await self.ledger.month_spent(guild_id)
        return user_spent, guild_spent

    def _with_reserved(
        self, recorded: tuple[float, float], guild_id: int, user_id: int | None
    ) -> tuple[float, float]:
        user_spent, guild_spent = recorded
        if user_id is not None:
            user_spent += self._reserved_user[(guild_id, user_id)]
        return user_spent, guild_spent + self._reserved_guild[guild_id]

    async def spending(self, budgets: Budgets, guild_id: int, user_id: int | None) -> tuple[float, float]:
        return self._with_reserved(await self._recorded(budgets, guild_id, user_id), guild_id, user_id)

    async def reserve(
        self, budgets: Budgets, guild_id: int, user_id: int | None, amount: float, judge: Judge
    ) -> Claim:
        # The ledger is read first, outside the lock, so a busy server's requests do not queue behind each
        # other's reads. Checking the in-flight reservations and taking ours stays atomic (no await).
        recorded = await self._recorded(budgets, guild_id, user_id)
        async with self._budget_locks[guild_id]:
            judge(*self._with_reserved(recorded, guild_id, user_id))
            if user_id is not None:
                self._reserved_user[(guild_id, user_id)] += amount
            self._reserved_guild[guild_id] += amount
        return Claim(guild_id, user_id, amount)

    def running(self, claim: Claim) -> AbstractAsyncContextManager[None]:
        return self.jobs.slot(claim.guild_id)

    async def release(self, claim: Claim) -> None:
        if claim.user_id is not None:
            key = (claim.guild_id, claim.user_id)
            self._reserved_user[key] = max(0.0, self._reserved_user[key] - claim.amount)
        self._reserved_guild[claim.guild_id] = max(0.0, self._reserved_guild[claim.guild_id] - claim.amount)


def _refilled(column: str, elapsed: str) -> str:
    """SQL for a bucket's tokens after `elapsed` seconds, at most the burst (params: rate, burst, burst, rate)."""
    return f"CASE WHEN {column} + {elapsed} * ? >= ? THEN ? ELSE {column} + {elapsed} * ? END"


# The whole token bucket in one atomic upsert: concurrent takes from any process serialise on the row
# (PostgreSQL's ON CONFLICT DO UPDATE locks it and re-reads it; SQLite has one writer). `excluded.updated_at`
# is now; a clock behind the row's (another process's) refills nothing rather than draining it.
_ELAPSED = (
    "(CASE WHEN excluded.updated_at > rate_buckets.updated_at "
    "THEN excluded.updated_at - rate_buckets.updated_at ELSE 0 END)"
)
_REFILLED = _refilled("rate_buckets.tokens", _ELAPSED)
_TAKE_TOKEN = (
    "INSERT INTO rate_buckets (guild_id, user_id, tokens, updated_at, taken) VALUES (?, ?, ?, ?, 1) "  # noqa: S608
    "ON CONFLICT (guild_id, user_id) DO UPDATE SET "
    f"tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END, "
    f"taken = CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
    "updated_at = CASE WHEN excluded.updated_at > rate_buckets.updated_at "
    "THEN excluded.updated_at ELSE rate_buckets.updated_at END "
    "RETURNING tokens, taken"
)


class SharedAllowance(Allowance):
    """In the database, for several processes on one PostgreSQL: nobody exceeds a limit by spreading calls.

    - the rate: one `rate_buckets` row per member and server, updated by one atomic upsert;
    - budgets and slots: `cost_claims` rows (a reservation, and a job slot once `running`), taken in one
      transaction serialised per server (`store.transaction(lock_key=...)`), after summing the ledger and
      the live claims. A holder renews its claims while it lives; a crashed holder's expire after
      CLAIM_LEASE s, so a crash never blocks a budget or a slot for longer.
    """

    def __init__(
        self,
        store: Store,
        ledger: UsageLedger,
        rate: float,
        burst: int,
        limit: int,
        queue_size: int,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        lease: float = CLAIM_LEASE,
        renew_every: float = CLAIM_RENEW,
        queue_wait: float = QUEUE_WAIT,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.rate = rate
        self.burst = burst
        self.limit = limit
        self.queue_size = queue_size
        self.holder = holder or process_name()
        self.clock = clock
        self.lease = lease
        self.renew_every = renew_every
        self.queue_wait = queue_wait
        self._held: set[int] = set()
        self._renewer: asyncio.Task[None] | None = None
        # This process's claims waiting for a slot, per server, in the order they queued (their ids).
        self._waiters: dict[int, list[Claim]] = defaultdict(list)
        self._local_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Set when a claim of this process ends or stops waiting, so its waiters look again at once.
        self._changed = asyncio.Event()
        self._pruned_at = time.monotonic()
        self._settled_sums: dict[tuple[int, int | None, float], tuple[float, float]] = {}

    # -- the rate ---------------------------------------------------------------------------------

    async def take_token(self, guild_id: int, user_id: int) -> float:
        now = self.clock()
        rate, burst = self.rate, float(self.burst)
        async with self.store.transaction() as db:
            taken = await db.execute(
                _TAKE_TOKEN, (guild_id, user_id, burst - 1, now, *([rate, burst, burst, rate] * 4))
            )
        row = await taken.fetchone()
        await self._prune_now_and_then()
        if row is None or row[1]:
            return 0.0
        return max(0.0, (1 - float(row[0])) / rate)

    async def _prune_now_and_then(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        now = self.clock()
        # A bucket untouched for burst/rate seconds is full: the same as no row.
        await self.store.execute(
            "DELETE FROM rate_buckets WHERE updated_at < ?", (now - self.burst / self.rate,)
        )
        await self.store.execute("DELETE FROM cost_claims WHERE expires_at < ?", (now,))

    # -- budgets ----------------------------------------------------------------------------------

    async def _settled(
        self, guild_id: int, user_id: int | None, since: float, now: float
    ) -> tuple[float, float]:
        """(upto, the window's spend recorded before `upto`): ledger rows old enough to be committed for sure.

        Summing a busy server's whole month on every admission would cost a scan of its month; rows older
        than SETTLED_AFTER never change in what they add up to, so each process sums them once and then only
        the recent ones. Advanced when the recent part grows past 2 x SETTLED_AFTER.
        """
        key = (guild_id, user_id, since)
        upto, closed = self._settled_sums.get(key, (since, 0.0))
        if now - upto <= 2 * SETTLED_AFTER:
            return upto, closed
        until = now - SETTLED_AFTER
        where, params = await self._ledger_where(guild_id, user_id)
        row = await self.store.fetchone(
            f"SELECT COALESCE(SUM(cost), 0) FROM usage_events WHERE {where} "  # noqa: S608
            "AND created_at >= ? AND created_at < ?",
            (*params, upto, until),
        )
        if len(self._settled_sums) > 50_000:
            self._settled_sums.clear()  # ended windows and quiet members: summed again when needed
        self._settled_sums[key] = (until, closed + (float(row[0]) if row else 0.0))
        return self._settled_sums[key]

    async def _ledger_where(self, guild_id: int, user_id: int | None) -> tuple[str, list[object]]:
        if user_id is None:
            return "guild_id = ?", [guild_id]
        # A forgotten member's rows (their id replaced by its hash) still count today (bot/cost/ledger.py).
        return "guild_id = ? AND (user_id = ? OR user_hash = ?)", [
            guild_id,
            user_id,
            await self.ledger.user_hash(guild_id, user_id),
        ]

    async def _window_sql(
        self, guild_id: int, user_id: int | None, since: float, now: float, alias: str
    ) -> tuple[str, list[object]]:
        """SQL for a window's spend: the settled part (a parameter), the recent ledger rows, the live claims."""
        upto, closed = await self._settled(guild_id, user_id, since, now)
        where, params = await self._ledger_where(guild_id, user_id)
        claims = "guild_id = ?" if user_id is None else "guild_id = ? AND user_id = ?"
        claim_params: list[object] = [guild_id] if user_id is None else [guild_id, user_id]
        sql = (
            f"CAST(? AS DOUBLE PRECISION) + (SELECT COALESCE(SUM(cost), 0) FROM usage_events WHERE {where} "  # noqa: S608
            f"AND created_at >= ?) + (SELECT COALESCE(SUM(amount), 0) FROM cost_claims WHERE {claims} "
            f"AND expires_at > ?) AS {alias}"
        )
        return sql, [closed, *params, upto, *claim_params, now]

    async def _spending_query(
        self, budgets: Budgets, guild_id: int, user_id: int | None, *, slots: bool
    ) -> tuple[str, list[object]]:
        """One SELECT: the capped spends (ledger plus live claims) and, with `slots`, the slots in use."""
        now = self.clock()
        parts: list[str] = []
        params: list[object] = []
        if budgets.user_daily_cap > 0 and user_id is not None:
            sql, more = await self._window_sql(guild_id, user_id, day_start(now), now, "user_spent")
            parts.append(sql)
            params += more
        else:
            parts.append("0 AS user_spent")
        if budgets.server_monthly_cap > 0:
            sql, more = await self._window_sql(guild_id, None, month_start(now), now, "guild_spent")
            parts.append(sql)
            params += more
        else:
            parts.append("0 AS guild_spent")
        if slots:
            parts.append("(SELECT COUNT(*) FROM cost_claims WHERE guild_id = ? AND expires_at > ?) AS claims")
            params += [guild_id, now]
        return "SELECT " + ", ".join(parts), params

    async def spending(self, budgets: Budgets, guild_id: int, user_id: int | None) -> tuple[float, float]:
        if budgets.server_monthly_cap <= 0 and (budgets.user_daily_cap <= 0 or user_id is None):
            return 0.0, 0.0  # no cap to judge: nothing to read
        sql, params = await self._spending_query(budgets, guild_id, user_id, slots=False)
        row = await self.store.fetchone(sql, params)
        assert row is not None
        return float(row[0]), float(row[1])

    async def reserve(
        self, budgets: Budgets, guild_id: int, user_id: int | None, amount: float, judge: Judge
    ) -> Claim:
        sums, sum_params = await self._spending_query(budgets, guild_id, user_id, slots=True)
        # The budgets are judged in the INSERT itself (the same comparisons as `judge`), so an admitted call
        # costs one statement under the lock; only a refusal reads the sums again, for its message.
        fits: list[str] = []
        fit_params: list[object] = []
        if budgets.user_daily_cap > 0 and user_id is not None:
            fits.append("s.user_spent < ? AND s.user_spent + ? <= ?")
            fit_params += [budgets.user_daily_cap, amount, budgets.user_daily_cap]
        if budgets.server_monthly_cap > 0:
            fits.append("s.guild_spent < ? AND s.guild_spent + ? <= ?")
            fit_params += [budgets.server_monthly_cap, amount, budgets.server_monthly_cap]
        insert = (
            "INSERT INTO cost_claims (guild_id, user_id, amount, running, holder, expires_at) "  # noqa: S608
            "SELECT CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS DOUBLE PRECISION), "
            # First come, first served: a new call runs at once only when no live claim is ahead of it.
            "CASE WHEN s.claims < ? THEN 1 ELSE 0 END, CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION) "
            f"FROM ({sums}) AS s WHERE {' AND '.join(fits) or '1 = 1'} RETURNING id, running"
        )
        params: list[object] = [guild_id, user_id, amount, self.limit, self.holder, self.clock() + self.lease]
        # One transaction per server at a time from this process: the others wait here, not holding one of
        # the pool's connections while they wait for the database's lock.
        async with self._local_locks[guild_id], self.store.transaction(lock_key=f"cost:{guild_id}") as db:
            inserted = await (await db.execute(insert, [*params, *sum_params, *fit_params])).fetchone()
            if inserted is None:
                # Refused: read the sums for the message. A release (which takes no lock) may have landed
                # since the INSERT's snapshot; then the fresher reading admits the call after all.
                row = await (await db.execute(sums, sum_params)).fetchone()
                assert row is not None
                judge(float(row[0]), float(row[1]))
                inserted = await (
                    await db.execute(
                        "INSERT INTO cost_claims (guild_id, user_id, amount, running, holder, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id, running",
                        (guild_id, user_id, amount, 1 if int(row[2]) < self.limit else 0, *params[4:]),
                    )
                ).fetchone()
                assert inserted is not None
        claim = Claim(guild_id, user_id, amount, int(inserted[0]), bool(inserted[1]))
        self._hold(claim)
        return claim

    # -- job slots --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _slot(self, claim: Claim) -> AsyncIterator[None]:
        if not claim.running:
            waiters = self._waiters[claim.guild_id]
            if len(waiters) >= self.queue_size:
                raise errors.SlowDown(10.0, "server")
            bisect.insort(waiters, claim, key=lambda c: c.id or 0)
            try:
                await self._wait_for_slot(claim, waiters)
            finally:
                waiters.remove(claim)
                self._wake()
        yield

    def running(self, claim: Claim) -> AbstractAsyncContextManager[None]:
        return self._slot(claim)

    async def _wait_for_slot(self, claim: Claim, waiters: list[Claim]) -> None:
        """Look again, with a growing pause, until the running claims and those ahead leave a slot free.

        Only this process's first waiter looks, with a read, and takes the lock only to start; when it
        starts the next one looks at once. So a long queue costs the database one poller per server and
        process, whatever its length.
        """
        deadline = time.monotonic() + self.queue_wait
        pause = SLOT_POLL_FIRST
        while True:
            # Claims start in id order, so while this process's first waiter cannot start, no later one
            # of its can: only that one looks.
            if waiters[0] is claim and await self._try_start(claim):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.SlowDown(30.0, "server")
            # A release or start in this process wakes its waiters at once; other processes' are polled.
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(pause, left))
            except TimeoutError:
                pause = min(pause * 2, SLOT_POLL_MOST)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _try_start(self, claim: Claim) -> bool:
        count = "SELECT COUNT(*) FROM cost_claims WHERE guild_id = ? AND expires_at > ? AND (running = 1 OR id < ?)"
        ahead = await self.store.fetchone(count, (claim.guild_id, self.clock(), claim.id))
        if ahead is None or int(ahead[0]) >= self.limit:
            return False
        now = self.clock()
        async with (
            self._local_locks[claim.guild_id],
            self.store.transaction(lock_key=f"cost:{claim.guild_id}") as db,
        ):
            row = await (await db.execute(count, (claim.guild_id, now, claim.id))).fetchone()
            if row is None or int(row[0]) >= self.limit:
                return False
            started = await db.execute(
                "UPDATE cost_claims SET running = 1, expires_at = ? WHERE id = ?",
                (now + self.lease, claim.id),
            )
        if started.rowcount != 1:
            # Our claim expired while waiting (this process stalled past the lease): it counts no more.
            raise errors.SlowDown(30.0, "server")
        claim.running = True
        return True

    # -- release and renewal ----------------------------------------------------------------------

    async def release(self, claim: Claim) -> None:
        if claim.id is None:
            return
        self._held.discard(claim.id)
        if not self._held and self._renewer is not None:
            self._renewer.cancel()  # nothing left to renew; the next claim starts it again
            self._renewer = None
        # Through the group-commit queue, after the call's ledger row (queued while the call ran): the
        # reservation disappears in the same or a later commit than the cost it stood for, never before.
        deleted = self.store.insert_soon("DELETE FROM cost_claims WHERE id = ?", [(claim.id,)])
        try:
            # Shielded: a cancelled caller must not take the queued delete with it.
            await asyncio.shield(deleted)
        except errors.StorageUnavailable:
            log.warning("releasing a cost claim failed; it expires within %.0f s", self.lease)
        finally:
            self._wake()

    def _hold(self, claim: Claim) -> None:
        assert claim.id is not None
        self._held.add(claim.id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="cost-claims-renewal")

    async def _renew(self) -> None:
        """While this process holds claims, push their expiry out; cancelled when it holds none."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.store.execute(
                    "UPDATE cost_claims SET expires_at = ? WHERE holder = ?",
                    (self.clock() + self.lease, self.holder),
                )
            except errors.StorageUnavailable:
                log.warning("renewing this process's cost claims failed; retrying")


class CostClaims(DataOwner):
    """The shared admission state's tables (claims and rate buckets): short-lived, per member and server."""

    owned_tables = (
        TablePolicy(
            "cost_claims",
            "a member's calls in progress and what they may cost (gone when each call ends)",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
        TablePolicy(
            "rate_buckets",
            "how many requests a member made lately (gone once their allowance refills)",
            Fate.DELETED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        rates = await self.store.execute(
            f"DELETE FROM rate_buckets WHERE {where} AND user_id = ?",  # noqa: S608
            (*params, user_id),
        )
        # A call in progress still counts against the server's budget and slots, no longer as the member's.
        claims = await self.store.execute(
            f"UPDATE cost_claims SET user_id = NULL WHERE {where} AND user_id = ?",  # noqa: S608
            (*params, user_id),
        )
        return (
            Effect("rate_buckets", Fate.DELETED, rates, "rate limit record"),
            Effect("cost_claims", Fate.PSEUDONYMISED, claims, "call in progress"),
        )

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        return ()
