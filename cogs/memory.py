"""/forget and /persona: manage a channel's conversation memory and system prompt."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.history import History
from bot.discord_io.client import OpenAIBot
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.privacy.registry import Privacy

MAX_PERSONA_CHARS = 1500


class Memory(commands.Cog):
    forget = app_commands.Group(name="forget", description="Clear what the bot remembers", guild_only=True)
    persona = app_commands.Group(
        name="persona",
        description="Set this channel's persona (system prompt)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_channels=True),
    )

    def __init__(
        self, bot: OpenAIBot, history: History, moderation: ModerationGate, privacy: Privacy | None = None
    ) -> None:
        self.bot = bot
        self.history = history
        self.moderation = moderation
        self.privacy = privacy

    @forget.command(name="me", description="Delete what the bot stores about you in this server")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and self.privacy is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.privacy.forget_user(interaction.guild_id, interaction.user.id)
        await interaction.followup.send(
            "Done. In this server I deleted "
            f"{report.history_turns} conversation turn{'s' if report.history_turns != 1 else ''} "
            "(your messages and my answers to them) and "
            f"{report.moderation_records} moderation record{'s' if report.moderation_records != 1 else ''}, "
            f"and removed your id from {report.ledger_rows} usage record"
            f"{'s' if report.ledger_rows != 1 else ''} (their costs still count in the server's totals).",
            ephemeral=True,
        )

    @forget.command(name="channel", description="Forget this channel's conversation (Manage Messages)")
    @app_commands.checks.has_permissions(manage_messages=True)
    async def forget_channel(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        forgotten = await self.history.forget_channel(interaction.channel_id)
        await interaction.response.send_message(
            f"Forgot {forgotten} turn{'s' if forgotten != 1 else ''} of this channel's conversation."
        )

    @persona.command(name="set", description="Set the persona the bot uses in this channel (Manage Channels)")
    @app_commands.describe(text="How the bot should behave here, e.g. 'You are a patient Python tutor.'")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def persona_set(self, interaction: discord.Interaction, text: str) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        text = text.strip()
        if not text:
            raise errors.InvalidInput("The persona is empty. Describe how the bot should behave.")
        if len(text) > MAX_PERSONA_CHARS:
            raise errors.InvalidInput(f"A persona can be at most {MAX_PERSONA_CHARS} characters.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = CallContext(interaction.guild_id, interaction.channel_id, interaction.user.id, "persona")
        await self.moderation.require_clean_input(text, context=context, what="That persona")
        await self.history.set_persona(
            interaction.guild_id, interaction.channel_id, text, interaction.user.id
        )
        await interaction.followup.send(
            "Persona set for this channel. `/persona clear` removes it.", ephemeral=True
        )

    @persona.command(name="clear", description="Remove this channel's persona (Manage Channels)")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def persona_clear(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        removed = await self.history.clear_persona(interaction.channel_id)
        await interaction.response.send_message(
            "Persona cleared." if removed else "This channel had no persona.", ephemeral=True
        )


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Memory(bot, services.history, services.moderation, services.privacy))
