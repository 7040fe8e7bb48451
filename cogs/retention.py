"""The hourly retention purge: what RETENTION_DAYS and MODERATION_RETENTION_DAYS let expire, deleted.

Several processes share the database: only the one holding the "retention-purge" lease purges; another takes
over, and purges at once, when the holder stops renewing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from discord.ext import commands

from bot.discord_io.client import OpenAIBot
from bot.privacy.registry import Privacy
from bot.settings import Settings
from bot.storage.leases import LeaseKeeper, Leases
from bot.storage.store import StoreError

log = logging.getLogger(__name__)

PURGE_EVERY = 3600.0
PURGE_LEASE = "retention-purge"


class Retention(commands.Cog):
    def __init__(self, settings: Settings, privacy: Privacy, leases: Leases) -> None:
        self.settings = settings
        self.privacy = privacy
        self.leases = leases
        self.purge_every = PURGE_EVERY
        self._lease: LeaseKeeper | None = None
        self._purger: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        if self.settings.retention_days > 0 or self.settings.moderation_retention_days > 0:
            self._lease = self.leases.keeper(PURGE_LEASE)
            self._purger = asyncio.create_task(
                self._lease.run_every(self.purge_every, self._purge_once), name="retention-purge"
            )

    async def cog_unload(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._lease is not None:
            await self._lease.stop()
            self._lease = None

    async def _purge_once(self) -> None:
        try:
            await self.privacy.purge_expired()
        except (StoreError, sqlite3.Error):
            log.warning("the retention purge could not write to the database; retrying later")
        except Exception:
            # One failed purge must not end the loop: history would then be kept past RETENTION_DAYS.
            log.exception("the retention purge failed; retrying later")


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Retention(bot.services.settings, bot.services.privacy, bot.services.leases))
