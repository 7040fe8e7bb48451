"""The quota circuit breaker: after insufficient_quota, stop calling OpenAI until a probe succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from bot import errors
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
        self._probing = True
        self._show("half_open")
        log.info("quota breaker: cooldown over, sending one probe request")
        return True

    def probe_done(self) -> None:
        """A probe ended without an answer either way (another error, cancelled): allow the next one."""
        self._probing = False

    async def record_quota_error(self, guild_id: int | None) -> None:
        first = self.opened_at is None
        self.opened_at = self.clock()
        self._probing = False
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

    def record_success(self) -> None:
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
