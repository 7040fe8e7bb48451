"""/threads: whether members talk to the bot in threads it started without mentioning it (Manage Server)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.threads import ChatThreads
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import member_locale
from bot.i18n import translate


def mode_text(every_message: bool, locale: str | None = None) -> str:
    return translate("threads.every_message" if every_message else "threads.mention_only", locale)


class Threads(commands.Cog):
    def __init__(self, bot: OpenAIBot, threads: ChatThreads) -> None:
        self.bot = bot
        self.threads = threads

    @app_commands.command(
        name="threads", description="Show or set whether I answer every message in threads I started"
    )
    @app_commands.describe(
        every_message="On: every member message in my threads is for me. Off: members mention or reply to me"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def threads_command(
        self, interaction: discord.Interaction, every_message: bool | None = None
    ) -> None:
        assert interaction.guild_id is not None
        if every_message is not None:
            await self.threads.set_every_message(interaction.guild_id, every_message, interaction.user.id)
            mode = every_message
        else:
            mode = await self.threads.every_message(interaction.guild_id)
        await interaction.response.send_message(mode_text(mode, member_locale(interaction)), ephemeral=True)


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Threads(bot, bot.services.chat_threads))
