"""Which servers the bot serves: it leaves any server not in ALLOWED_GUILD_IDS."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.cost.admission import guild_allowed
from bot.discord_io.client import OpenAIBot
from bot.settings import Settings

log = logging.getLogger(__name__)


class Access(commands.Cog):
    def __init__(self, bot: OpenAIBot, settings: Settings) -> None:
        self.bot = bot
        self.settings = settings

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
    await bot.add_cog(Access(bot, bot.services.settings))
