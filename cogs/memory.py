"""/forget and /persona: manage a channel's conversation memory and system prompt."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.personas import Personas
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import member_locale, server_locale
from bot.i18n import catalog_ids, translate
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.privacy.owner import Effect, Fate
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
        await interaction.followup.send(forget_me_reply(report, member_locale(interaction)), ephemeral=True)

    @forget.command(name="channel", description="Forget this channel's conversation (Manage Messages)")
    @app_commands.checks.has_permissions(manage_messages=True)
    async def forget_channel(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        report = await self.privacy.forget_channel(interaction.channel_id)
        forgotten = report.rows("turns", Fate.DELETED)
        await interaction.response.send_message(
            translate("forget.channel.done", server_locale(interaction), count=forgotten)
        )

    @persona.command(name="set", description="Set the persona the bot uses in this channel (Manage Channels)")
    @app_commands.describe(text="How the bot should behave here, e.g. 'You are a patient Python tutor.'")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def persona_set(self, interaction: discord.Interaction, text: str) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        text = text.strip()
        if not text:
            raise errors.InvalidInput(message_id="persona.empty")
        if len(text) > MAX_PERSONA_CHARS:
            raise errors.InvalidInput(message_id="persona.too_long", limit=MAX_PERSONA_CHARS)
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "persona", admitted=True
        )
        await self.moderation.require_clean_input(text, context=context, what="That persona")
        await self.personas.set(interaction.guild_id, interaction.channel_id, text, interaction.user.id)
        await interaction.followup.send(translate("persona.set", member_locale(interaction)), ephemeral=True)

    @persona.command(name="clear", description="Remove this channel's persona (Manage Channels)")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def persona_clear(self, interaction: discord.Interaction) -> None:
        assert interaction.channel_id is not None
        removed = await self.personas.clear(interaction.channel_id)
        await interaction.response.send_message(
            translate("persona.cleared" if removed else "persona.none", member_locale(interaction)),
            ephemeral=True,
        )


def _listed(phrases: list[str], locale: str | None) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return translate("list.and", locale, items=", ".join(phrases[:-1]), last=phrases[-1])


def _phrase(effect: Effect, locale: str | None) -> str:
    """'3 conversation turns (your messages and my answers to them)' in `locale`; a table the catalog does
    not name yet keeps its owner's English phrase rather than showing an id."""
    noun_id = f"forget.rows.{effect.table}"
    if noun_id not in catalog_ids("en"):
        return effect.phrase()
    text = translate(noun_id, locale, count=effect.rows)
    note_id = f"forget.note.{effect.table}"
    if effect.note and note_id in catalog_ids("en"):
        text += " " + translate(note_id, locale)
    elif effect.note:
        text += f" ({effect.note})"
    return text


def forget_me_reply(report: PrivacyReport, locale: str | None = None) -> str:
    """What was deleted, what lost the member's id, and what is kept for safety and for how long."""
    deleted = [_phrase(e, locale) for e in report.with_fate(Fate.DELETED)]
    if deleted:
        lines = [translate("forget.me.deleted", locale, what=_listed(deleted, locale))]
    else:
        lines = [translate("forget.me.deleted_none", locale)]
    renamed = [e for e in report.with_fate(Fate.PSEUDONYMISED) if e.rows or e.table == "usage_events"]
    if renamed:
        lines.append(
            translate(
                "forget.me.renamed", locale, what=_listed([_phrase(e, locale) for e in renamed], locale)
            )
        )
    kept = [e for e in report.with_fate(Fate.KEPT) if e.rows]
    pending = [e for e in kept if e.table == "moderation_queue"]
    safety = [e for e in kept if e.table != "moderation_queue"]
    if safety:
        days = report.retention.moderation
        what = _listed([_phrase(e, locale) for e in safety], locale)
        if days:
            lines.append(translate("forget.me.kept.days", locale, what=what, days=days))
        else:
            lines.append(translate("forget.me.kept.forever", locale, what=what))
    if pending:
        lines.append(translate("forget.me.pending", locale, count=sum(e.rows for e in pending)))
    return "\n".join(lines)


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Memory(bot, services.personas, services.moderation, services.privacy))
