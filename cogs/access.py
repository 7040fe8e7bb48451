"""Which servers the bot serves (ALLOWED_GUILD_IDS), and the periodic retention purge (RETENTION_DAYS)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import discord
from discord.ext import commands

from bot.cost.admission import guild_allowed
from bot.discord_io.client import OpenAIBot
from bot.privacy.registry import Privacy
from bot.settings import Settings
from bot.storage.store import StoreError

log = logging.getLogger(__name__)

PURGE_EVERY = 3600.0


class Access(commands.Cog):
    def __init__(self, bot: OpenAIBot, settings: Settings, privacy: Privacy) -> None:
        self.bot = bot
        self.settings = settings
        self.privacy = privacy
        self.purge_every = PURGE_EVERY
        self._purger: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        if self.settings.retention_days > 0 or self.settings.moderation_retention_days > 0:
            self._purger = asyncio.create_task(self._purge_loop(), name="retention-purge")

    async def cog_unload(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.privacy.purge_expired()
            except (StoreError, sqlite3.Error):
                log.warning("the retention purge could not write to the database; retrying later")
            except Exception:
                # One failed purge must not end the loop: history would then be kept past RETENTION_DAYS.
                log.exception("the retention purge failed; retrying later")
            await asyncio.sleep(self.purge_every)

    async def _leave_if_not_allowed(self, guild: discord.Guild) -> None:
        if guild_allowed(self.settings, guild.id):
            return
        log.info("leaving server %s: it is not in ALLOWED_GUILD_IDS", guild.id)
        try:
            await guild.leave()
        except discord.HTTPException:
            # Interactions from it are refused anyway (GuardedTree.interaction_check).
            log.warning("could not leave server %s; ignoring it instead", guild.id)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_if_not_allowed(guild)

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        # A GUILD_CREATE that says unavailable=false after READY arrives as "available", not "join".
        await self._leave_if_not_allowed(guild)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        for guild in list(self.bot.guilds):
            await self._leave_if_not_allowed(guild)


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Access(bot, bot.services.settings, bot.services.privacy))
