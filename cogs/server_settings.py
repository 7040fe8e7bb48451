"""/settings: this server's own settings for the bot (Manage Server), starting with its public posts' language."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot.discord_io.client import OpenAIBot
from bot.i18n import resolve_locale, translate

AUTOMATIC = "auto"
# Named by their English choice names; the translator shows each member their own language's.
LANGUAGE_CHOICES = [
    Choice(name="Automatic (the server's language)", value=AUTOMATIC),
    Choice(name="English", value="en"),
    Choice(name="Korean", value="ko"),
]
LANGUAGE_NAMES = {"en": "choice.English", "ko": "choice.Korean"}


class ServerSettings(commands.Cog):
    settings = app_commands.Group(
        name="settings",
        description="This server's settings for the bot (Manage Server)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: OpenAIBot) -> None:
        self.bot = bot

    @settings.command(name="language", description="The language of the bot's public posts here")
    @app_commands.describe(
        language="English, Korean, or automatic (the server's own language); leave out to see the current one"
    )
    @app_commands.choices(language=LANGUAGE_CHOICES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def language(self, interaction: discord.Interaction[Any], language: str | None = None) -> None:
        assert interaction.guild_id is not None
        languages = self.bot.services.server_languages
        locale = str(interaction.locale)
        if language is not None:
            forced = None if language == AUTOMATIC else language
            await languages.set(interaction.guild_id, forced, interaction.user.id)
        forced = await languages.get(interaction.guild_id)
        if forced is None:
            own = resolve_locale(str(interaction.guild_locale or "en"))
            text = translate(
                "settings.language.automatic", locale, language=translate(LANGUAGE_NAMES[own], locale)
            )
        else:
            text = translate(
                "settings.language.forced", locale, language=translate(LANGUAGE_NAMES[forced], locale)
            )
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(ServerSettings(bot))
