"""The first day in a server: one localised welcome on joining, and a daily reminder until a mod-log is set."""

from __future__ import annotations

import logging
import time

import discord
from discord.ext import commands, tasks

from bot.discord_io.client import OpenAIBot
from bot.i18n import translate

log = logging.getLogger(__name__)

REMINDER_INTERVAL = 86400.0  # once a day
REMINDER_CHECK_SECONDS = 3600.0


def welcome_text(bot_name: str, server_name: str, locale: str) -> str:
    return translate(
        "welcome.text",
        locale,
        bot=discord.utils.escape_markdown(bot_name),
        server=discord.utils.escape_markdown(server_name),
    )


def postable_system_channel(guild: discord.Guild) -> discord.TextChannel | None:
    """The server's system channel when the bot may see and post in it."""
    channel = guild.system_channel
    if channel is None:
        return None
    permissions = channel.permissions_for(guild.me)
    return channel if permissions.view_channel and permissions.send_messages else None


class Welcome(commands.Cog):
    def __init__(self, bot: OpenAIBot) -> None:
        self.bot = bot
        # When each server was last told about its missing mod-log (monotonic): a day apart at most once.
        self.reminded: dict[int, float] = {}
        self.clock = time.monotonic

    async def cog_load(self) -> None:
        self.remind_daily.start()

    async def cog_unload(self) -> None:
        self.remind_daily.cancel()

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        locale = await self.bot.modlog.locale_for(guild.id, str(guild.preferred_locale))
        name = self.bot.user.name if self.bot.user else "the bot"
        text = welcome_text(name, guild.name, locale)
        self.reminded[guild.id] = self.clock()
        channel = postable_system_channel(guild)
        if channel is not None:
            try:
                await channel.send(text)
                return
            except discord.HTTPException as exc:
                log.warning("the welcome in server %s's system channel failed: HTTP %s", guild.id, exc.status)
        intro = translate("welcome.dm_intro", locale, server=discord.utils.escape_markdown(guild.name))
        if not await self.bot.modlog.dm_owner(guild.id, f"{intro}\n\n{text}"):
            log.warning(
                "server %s got no welcome: no postable system channel and the owner's DMs are closed",
                guild.id,
            )

    async def remind_due(self) -> int:
        """Post the mod-log reminder in every server that moderates without one, once a day; returns how many."""
        now = self.clock()
        posted = 0
        for guild in list(self.bot.guilds):
            last = self.reminded.setdefault(guild.id, now)
            if now - last < REMINDER_INTERVAL:
                continue
            policy = await self.bot.services.channel_moderation.policies.get(guild.id)
            if not policy.enabled or policy.modlog_channel_id is not None:
                continue
            channel = postable_system_channel(guild)
            if channel is None:
                continue
            self.reminded[guild.id] = now
            try:
                locale = await self.bot.modlog.locale_for(guild.id, str(guild.preferred_locale))
                await channel.send(translate("modlog.reminder", locale))
                posted += 1
            except discord.HTTPException as exc:
                log.warning("the mod-log reminder in server %s failed: HTTP %s", guild.id, exc.status)
        return posted

    @tasks.loop(seconds=REMINDER_CHECK_SECONDS)
    async def remind_daily(self) -> None:
        try:
            await self.remind_due()
        except Exception:
            log.exception("the daily mod-log reminder failed")

    @remind_daily.before_loop
    async def _wait_until_ready(self) -> None:
        await self.bot.wait_until_ready()


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Welcome(bot))
