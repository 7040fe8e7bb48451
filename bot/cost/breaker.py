"""The quota circuit breaker: after insufficient_quota, stop calling OpenAI until a probe succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from bot import errors
from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.store import Store
from bot.util.metrics import Metrics

log = logging.getLogger(__name__)

# Told once per outage and per server: (guild_id, text). The bot posts it to the server's mod-log.
Notifier = Callable[[int, str], Awaitable[object]]

NOTICE = (
    "The bot's OpenAI account has run out of credit (insufficient_quota), so OpenAI requests are paused. "
    "Whoever owns the bot's OpenAI key must add credit in the OpenAI billing settings. The bot tries again "
    "every {minutes} min by itself and resumes as soon as a request succeeds; members are told the admins know."
)


class QuotaBreaker:
    """closed -> (insufficient_quota) -> open for `cooldown` s -> half-open: one probe call -> closed or open.

    Only the first trip of an outage is announced: the owner by one WARNING log line, each server once in
    its mod-log channel (when the outage first touches that server).

    This one keeps its state in memory: right when one process owns the database (SQLite).
    `SharedQuotaBreaker` keeps it in the database for several processes (docs/cost.md).
    """

    def __init__(
        self,
        cooldown: float,
        *,
        notify: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.cooldown = cooldown
        self.metrics = metrics
        self.notify = notify
        self.clock = clock
        self.opened_at: float | None = None
        self._probing = False
        self._told_guilds: set[int] = set()
        # Servers whose mod-log took the notice: only their members hear "the admins have been told".
        self._heard_guilds: set[int] = set()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def retry_after(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - self.clock())

    async def before_call(self, guild_id: int | None) -> bool:
        """Raise QuotaPaused while open; after the cooldown let exactly one probe through (returns True)."""
        if self.opened_at is None:
            return False
        await self._tell(guild_id)
        if self.retry_after() > 0 or self._probing:
            raise errors.QuotaPaused(max(self.retry_after(), 1.0), admins_told=self.told(guild_id))
        return self._start_probe()

    def _start_probe(self) -> bool:
        """This process sends the one probe request that tells whether the account has credit again."""
        self._probing = True
        self._show("half_open")
        log.info("quota breaker: cooldown over, sending one probe request")
        return True

    async def probe_done(self) -> None:
        """A probe ended without an answer either way (another error, cancelled): allow the next one."""
        self._probing = False

    async def record_quota_error(self, guild_id: int | None) -> None:
        first = self.opened_at is None
        self.opened_at = self.clock()
        self._probing = False
        await self._opened(first, guild_id)

    async def _opened(self, first: bool, guild_id: int | None) -> None:
        """Show the breaker open; the owner hears of the outage once, and the server that met it is told."""
        self._show("open")
        if first:
            log.warning(
                "OpenAI answered insufficient_quota: the account needs credit. Pausing OpenAI calls; "
                "trying again every %.0f s.",
                self.cooldown,
            )
        else:
            log.info("quota breaker: the probe still got insufficient_quota; staying open")
        await self._tell(guild_id)

    async def record_success(self) -> None:
        if self.opened_at is not None:
            log.warning("OpenAI calls succeed again: the quota breaker is closed")
        self.opened_at = None
        self._probing = False
        self._told_guilds.clear()
        self._heard_guilds.clear()
        self._show("closed")

    def told(self, guild_id: int | None) -> bool:
        """Whether this server's admins were told the account needs credit (its mod-log took the notice)."""
        return guild_id is not None and guild_id in self._heard_guilds

    def _show(self, state: str) -> None:
        if self.metrics is not None:
            self.metrics.set_breaker(state)

    async def _tell(self, guild_id: int | None) -> None:
        if not guild_id or guild_id in self._told_guilds or self.notify is None:
            return
        self._told_guilds.add(guild_id)
        try:
            if await self.notify(guild_id, NOTICE.format(minutes=max(1, round(self.cooldown / 60)))):
                self._heard_guilds.add(guild_id)
        except Exception:
            # Telling the mod-log is a courtesy: the owner already has the WARNING line.
            log.warning("could not post the quota notice to server %s's mod-log", guild_id, exc_info=True)


# How long a process trusts its last reading of the shared breaker: a process keeps calling OpenAI for at most
# this long after another one saw insufficient_quota (each of those calls then trips the breaker itself).
BREAKER_STALENESS = 1.0
_BREAKER = "openai"


class SharedQuotaBreaker(QuotaBreaker):
    """The quota breaker of every process on one database: its state is the `quota_breaker` row.

    Any process's insufficient_quota opens it for all; after the cooldown exactly one process wins the
    probe (a conditional UPDATE); the probe's success closes it for all. Each server's mod-log is told once
    per outage across the cluster (`quota_notices`). Each process caches the row for at most `staleness` s.
    `clock` is wall-clock time, shared by the processes (keep their clocks in sync, as NTP does).
    """

    def __init__(
        self,
        store: Store,
        cooldown: float,
        *,
        probe_lease: float,
        holder: str,
        notify: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        staleness: float = BREAKER_STALENESS,
    ) -> None:
        super().__init__(cooldown, notify=notify, clock=clock, metrics=metrics)
        self.store = store
        self.probe_lease = probe_lease
        self.holder = holder
        self.staleness = staleness
        self.outage = 0
        self._read_at = -float("inf")  # time.monotonic() of the last reading

    async def refresh(self, *, force: bool = False) -> None:
        """Read the shared state unless the last reading is younger than `staleness`."""
        if not force and time.monotonic() - self._read_at < self.staleness:
            return
        row = await self.store.fetchone(
            "SELECT opened_at, outage FROM quota_breaker WHERE name = ?", (_BREAKER,)
        )
        self._read_at = time.monotonic()
        opened_at = None if row is None or row[0] is None else float(row[0])
        outage = 0 if row is None else int(row[1])
        if outage != self.outage:
            # A new outage: this process has told and heard nothing about it yet.
            self._told_guilds.clear()
            self._heard_guilds.clear()
            self.outage = outage
        if (opened_at is None) != (self.opened_at is None):
            self._show("closed" if opened_at is None else "open")
        self.opened_at = opened_at

    async def before_call(self, guild_id: int | None) -> bool:
        await self.refresh()
        if self.opened_at is None:
            return False
        await self._tell(guild_id)
        if self.retry_after() > 0:
            raise errors.QuotaPaused(max(self.retry_after(), 1.0), admins_told=self.told(guild_id))
        now = self.clock()
        # Exactly one process gets the probe: the UPDATE that finds no live probe holder.
        claimed = await self.store.execute(
            "UPDATE quota_breaker SET probe_holder = ?, probe_until = ? WHERE name = ? "
            "AND opened_at IS NOT NULL AND opened_at <= ? "
            "AND (probe_holder IS NULL OR probe_until < ?)",
            (self.holder, now + self.probe_lease, _BREAKER, now - self.cooldown, now),
        )
        if claimed != 1:
            await self.refresh(force=True)
            if self.opened_at is None:
                return False  # another process's probe just closed it
            raise errors.QuotaPaused(max(self.retry_after(), 1.0), admins_told=self.told(guild_id))
        return self._start_probe()

    async def probe_done(self) -> None:
        self._probing = False
        await self.store.execute(
            "UPDATE quota_breaker SET probe_holder = NULL, probe_until = NULL "
            "WHERE name = ? AND probe_holder = ?",
            (_BREAKER, self.holder),
        )

    async def record_quota_error(self, guild_id: int | None) -> None:
        now = self.clock()
        async with self.store.transaction() as db:
            # Only the process that turns a closed breaker open starts an outage (and logs the WARNING).
            first = (
                await db.execute(
                    "INSERT INTO quota_breaker (name, opened_at, outage) VALUES (?, ?, 1) "
                    "ON CONFLICT (name) DO UPDATE SET opened_at = excluded.opened_at, "
                    "outage = quota_breaker.outage + 1, probe_holder = NULL, probe_until = NULL "
                    "WHERE quota_breaker.opened_at IS NULL",
                    (_BREAKER, now),
                )
            ).rowcount == 1
            if not first:
                await db.execute(
                    "UPDATE quota_breaker SET opened_at = ?, probe_holder = NULL, probe_until = NULL "
                    "WHERE name = ?",
                    (now, _BREAKER),
                )
        self._probing = False
        await self.refresh(force=True)
        await self._opened(first, guild_id)

    async def record_success(self) -> None:
        # The hot path: a write only when this process believes the breaker is open or holds the probe.
        if self.opened_at is None and not self._probing:
            return
        async with self.store.transaction() as db:
            closed = (
                await db.execute(
                    "UPDATE quota_breaker SET opened_at = NULL, probe_holder = NULL, probe_until = NULL "
                    "WHERE name = ? AND opened_at IS NOT NULL",
                    (_BREAKER,),
                )
            ).rowcount == 1
            if closed:
                await db.execute("DELETE FROM quota_notices")
        if closed:
            log.warning("OpenAI calls succeed again: the quota breaker is closed")
        self._probing = False
        await self.refresh(force=True)
        self._show("closed")

    async def _tell(self, guild_id: int | None) -> None:
        if not guild_id or guild_id in self._told_guilds or self.notify is None:
            return
        self._told_guilds.add(guild_id)
        # Whoever inserts the row tells the server; the others read whether its mod-log took the notice.
        mine = await self.store.execute(
            "INSERT INTO quota_notices (guild_id, outage, heard) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
            (guild_id, self.outage),
        )
        if mine != 1:
            row = await self.store.fetchone(
                "SELECT heard FROM quota_notices WHERE guild_id = ? AND outage = ?", (guild_id, self.outage)
            )
            if row is not None and row[0]:
                self._heard_guilds.add(guild_id)
            else:
                # The teller may still be posting: look again on a later call (it is refused anyway).
                self._told_guilds.discard(guild_id)
            return
        try:
            heard = await self.notify(guild_id, NOTICE.format(minutes=max(1, round(self.cooldown / 60))))
        except Exception:
            log.warning("could not post the quota notice to server %s's mod-log", guild_id, exc_info=True)
            return
        if heard:
            self._heard_guilds.add(guild_id)
            await self.store.execute(
                "UPDATE quota_notices SET heard = 1 WHERE guild_id = ? AND outage = ?",
                (guild_id, self.outage),
            )


class QuotaNotices(DataOwner):
    """Claims the shared breaker's tables for the privacy registry: they hold server ids, never a member's."""

    owned_tables = (
        TablePolicy(
            "quota_breaker",
            "whether OpenAI calls are paused for lack of credit",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
        TablePolicy(
            "quota_notices",
            "which servers were told of the current credit outage",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,  # cleared when the outage ends
        ),
    )
