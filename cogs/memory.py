"""/forget and /persona: manage a channel's conversation memory and system prompt."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.personas import Personas
from bot.discord_io.client import OpenAIBot
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.privacy.owner import Fate
from bot.privacy.registry import Privacy, PrivacyReport

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
        self, bot: OpenAIBot, personas: Personas, moderation: ModerationGate, privacy: Privacy
    ) -> None:
        self.bot = bot
        self.personas = personas
        self.moderation = moderation
        self.privacy = privacy

    @forget.command(name="me", description="Delete what the bot stores about you in this server")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and self.privacy is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.privacy.forget_user(interaction.guild_id, interaction.user.id)
        await interaction.followup.send(forget_me_reply(report), ephemeral=True)

    @forget.command(name="channel", description="Forget this channel's conversation (Manage Messages)")
    @app_commands.checks.has_permissions(manage_messages=True)
    async def forget_channel(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        report = await self.privacy.forget_channel(interaction.channel_id)
        forgotten = report.rows("turns", Fate.DELETED)
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
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "persona", admitted=True
        )
        await self.moderation.require_clean_input(text, context=context, what="That persona")
        await self.personas.set(interaction.guild_id, interaction.channel_id, text, interaction.user.id)
        await interaction.followup.send(
            "Persona set for this channel. `/persona clear` removes it.", ephemeral=True
        )

    @persona.command(name="clear", description="Remove this channel's persona (Manage Channels)")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def persona_clear(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        removed = await self.personas.clear(interaction.channel_id)
        await interaction.response.send_message(
            "Persona cleared." if removed else "This channel had no persona.", ephemeral=True
        )


def _listed(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def forget_me_reply(report: PrivacyReport) -> str:
    """What was deleted, what lost the member's id, and what is kept for safety and for how long."""
    deleted = [e.phrase() for e in report.with_fate(Fate.DELETED)]
    lines = [f"Done. In this server I deleted {_listed(deleted) if deleted else 'nothing'}."]
    renamed = [e for e in report.with_fate(Fate.PSEUDONYMISED) if e.rows or e.table == "usage_events"]
    if renamed:
        lines.append(f"I removed your id from {_listed([e.phrase() for e in renamed])}.")
    kept = [e for e in report.with_fate(Fate.KEPT) if e.rows]
    pending = [e for e in kept if e.table == "moderation_queue"]
    safety = [e for e in kept if e.table != "moderation_queue"]
    if safety:
        days = report.retention.moderation
        how_long = f"for {days} days after each one was made" if days else "without a time limit"
        lines.append(
            f"Kept for the server's safety: {_listed([e.phrase() for e in safety])} about you, "
            f"{how_long}, so moderation keeps working as your server's moderators set it up."
        )
    if pending:
        count = sum(e.rows for e in pending)
        lines.append(
            f"{count} message{'s' if count != 1 else ''} of yours posted while moderation was unavailable "
            f"{'is' if count == 1 else 'are'} still waiting to be checked; the stored copy is deleted once "
            "it has been checked."
        )
    return "\n".join(lines)


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Memory(bot, services.personas, services.moderation, services.privacy))
