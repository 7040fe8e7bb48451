"""Budget alerts: a server's admins hear once a month at 50%, 80% and 100% of its monthly budget."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.cost.ledger import UsageLedger, month_start, next_month_start
from bot.cost.rules import LimitsStore
from bot.i18n.catalogs import Message
from bot.openai_api.calls import UsageEvent
from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.store import Store

log = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)  # percent of the monthly budget
# A month's first hours say little about its rate: the projection assumes at least a day has passed.
MIN_ELAPSED = 86400.0

# Tells a server's admins: its mod-log channel, or its owner by DM; False when neither took the text.
AdminNotice = Callable[[int, Message], Awaitable[bool]]


def month_label(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m")


def month_end_projection(spent: float, now: float) -> float:
    """What the month will cost if it goes on at the rate it has so far (UTC calendar month)."""
    start, end = month_start(now), next_month_start(now)
    return spent * (end - start) / max(now - start, MIN_ELAPSED)


@dataclass(frozen=True)
class BudgetStatus:
    """A server's month: what it spent, its cap (0: none) and where it is heading."""

    spent: float
    cap: float
    projection: float
    resets_at: float

    @property
    def percent(self) -> float:
        return 100 * self.spent / self.cap if self.cap > 0 else 0.0


def _money(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def alert_text(threshold: int, status: BudgetStatus) -> Message:
    """The alert in the catalog's words, rendered in the server's language where it is posted; the reset is
    a Discord timestamp, so each admin reads it in their own time zone."""
    params = {
        "spent": _money(status.spent),
        "cap": _money(status.cap),
        "percent": f"{status.percent:.0f}",
        "resets": f"<t:{int(status.resets_at)}:f>",
        "projection": _money(status.projection),
    }
    return Message("cost.alert.exhausted" if threshold >= 100 else "cost.alert.threshold", params)


class BudgetAlerts(DataOwner):
    """Watches each metered call's server against its monthly cap; each alert is sent once per month,
    remembered in `budget_alerts` so a restart does not send it again."""

    owned_tables = (
        TablePolicy(
            "budget_alerts",
            "which monthly budget alerts each server was sent",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

    def __init__(
        self,
        store: Store,
        ledger: UsageLedger,
        budgets: LimitsStore,
        notify_admins: AdminNotice,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.budgets = budgets
        self.notify_admins = notify_admins
        self.clock = clock or ledger.clock
        self._sent: dict[tuple[int, str], set[int]] = {}
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[list[int]]] = set()

    async def status(self, guild_id: int) -> BudgetStatus:
        now = self.clock()
        spent = await self.ledger.month_spent(guild_id)
        cap = (await self.budgets.budgets(guild_id)).server_monthly_cap
        return BudgetStatus(spent, cap, month_end_projection(spent, now), next_month_start(now))

    def observe(self, event: UsageEvent) -> None:
        """After a metered call: check its server in the background, so no answer waits for an alert."""
        guild_id = event.context.guild_id
        if not guild_id or event.kind == "moderation":
            return
        task = asyncio.get_running_loop().create_task(self._check_logged(guild_id), name="budget-alerts")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_logged(self, guild_id: int) -> list[int]:
        try:
            return await self.check(guild_id)
        except Exception:
            log.warning("checking the budget alerts of server %s failed", guild_id, exc_info=True)
            return []

    async def settle(self) -> None:
        """Wait for the checks in flight (tests, and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.settle()

    async def check(self, guild_id: int) -> list[int]:
        """Send the alert of the highest threshold newly crossed this month; returns the thresholds marked."""
        status = await self.status(guild_id)
        if status.cap <= 0:
            return []
        reached = [t for t in THRESHOLDS if status.spent >= status.cap * t / 100]
        if not reached:
            return []
        month = month_label(self.clock())
        async with self._locks[guild_id]:
            sent = await self._sent_in(guild_id, month)
            new = [t for t in reached if t not in sent]
            if not new:
                return []
            # Marked before sending: a crash in between loses an alert rather than sending it twice.
            # A jump over several thresholds sends one alert, the highest.
            now = self.clock()
            await self.store.insert(
                "INSERT INTO budget_alerts (guild_id, month, threshold, sent_at, delivered) "
                "VALUES (?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
                [(guild_id, month, t, now) for t in new],
            )
            sent.update(new)
            top = max(new)
            delivered = await self.notify_admins(guild_id, alert_text(top, status))
            if delivered:
                await self.store.execute(
                    "UPDATE budget_alerts SET delivered = 1 WHERE guild_id = ? AND month = ? AND threshold = ?",
                    (guild_id, month, top),
                )
            else:
                log.warning(
                    "server %s crossed %s%% of its monthly budget but neither a mod-log channel nor its "
                    "owner's DMs took the alert",
                    guild_id,
                    top,
                )
        return new

    async def _sent_in(self, guild_id: int, month: str) -> set[int]:
        key = (guild_id, month)
        if key not in self._sent:
            rows = await self.store.fetchall(
                "SELECT threshold FROM budget_alerts WHERE guild_id = ? AND month = ?", (guild_id, month)
            )
            for old in [k for k in self._sent if k[0] == guild_id]:
                del self._sent[old]
            self._sent[key] = {int(r[0]) for r in rows}
        return self._sent[key]
