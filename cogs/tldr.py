"""/tldr: summarise the channel's recent conversation from Discord's history, with jump links."""

from __future__ import annotations

import datetime as dt

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import member_locale, reply_locale
from bot.discord_io.text import neutralize_mentions, split_message
from bot.i18n import DEFAULT_LOCALE, format_span, resolve_locale, translate
from bot.openai_api.calls import CallContext
from bot.settings import Settings
from bot.summary.digest import ChannelDigest
from bot.summary.summarizer import SourceMessage, Summary
from bot.util.durations import format_duration, parse_duration
from cogs.moderation.listener import ModerationEvents

DEFAULT_COUNT = 100
MAX_NAMED_PARTICIPANTS = 20
_CONVERSATION_TYPES = (discord.MessageType.default, discord.MessageType.reply)


def _timestamp(when: dt.datetime, style: str) -> str:
    return f"<t:{int(when.timestamp())}:{style}>"


def render_summary(
    summary: Summary,
    *,
    skipped: int,
    capped_at: int | None,
    left_out: int = 0,
    locale: str | None = None,
) -> str:
    """The posted text: a header with the span and the participants, the summary, then small notes."""
    names = [
        f"{discord.utils.escape_markdown(p.name)} ({p.messages})"
        for p in summary.participants[:MAX_NAMED_PARTICIPANTS]
    ]
    others = len(summary.participants) - MAX_NAMED_PARTICIPANTS
    if others > 0:
        names.append(translate("tldr.participants.more", locale, count=others))
    header = translate(
        "tldr.header",
        locale,
        count=summary.message_count,
        start=_timestamp(summary.first_at, "f"),
        end=_timestamp(summary.last_at, "t"),
    )
    lines = [
        header,
        translate("tldr.participants", locale, names=", ".join(names)),
        "",
        summary.text,
    ]
    notes = []
    if summary.chunk_count > 1:
        notes.append(translate("tldr.note.parts", locale, count=summary.chunk_count))
    if skipped:
        notes.append(translate("tldr.note.skipped", locale, count=skipped))
    if left_out:
        notes.append(translate("tldr.note.held_back", locale, count=left_out))
    if capped_at is not None:
        notes.append(translate("tldr.note.capped", locale, cap=capped_at))
    if summary.truncated:
        notes.append(translate("tldr.note.truncated", locale))
    if notes:
        lines.append(f"-# {translate('tldr.note.separator', locale).join(notes)}")
    return "\n".join(lines)


def window_text(window: dt.timedelta, locale: str | None) -> str:
    """The window as members of that language type it: `30m`, `1h30m`; `30분`, `1시간 30분`."""
    if resolve_locale(locale) == DEFAULT_LOCALE:
        return format_duration(window)
    return format_span(window.total_seconds(), locale)


def nothing_said(read: int, window: dt.timedelta | None, locale: str | None = None) -> str:
    if window is not None:
        return translate("tldr.nothing.window", locale, window=window_text(window, locale))
    if read == 0:
        return translate("tldr.nothing.empty", locale)
    return translate("tldr.nothing.bots_only", locale, count=read)


def is_conversation(message: discord.Message, bot_user_id: int) -> bool:
    """People's messages with text: no bots (this one included), no system or text-less messages."""
    return (
        not message.author.bot
        and message.author.id != bot_user_id
        and message.type in _CONVERSATION_TYPES
        and bool(message.content.strip())
    )


def to_record(message: discord.Message) -> SourceMessage:
    reference = message.reference
    return SourceMessage(
        id=message.id,
        author_id=message.author.id,
        author_name=message.author.display_name,
        content=message.content,
        jump_url=message.jump_url,
        created_at=message.created_at,
        reply_to_id=reference.message_id if reference is not None else None,
    )


class Tldr(commands.Cog):
    def __init__(self, bot: OpenAIBot, digest: ChannelDigest, settings: Settings) -> None:
        self.bot = bot
        self.digest = digest
        self.settings = settings

    @app_commands.command(name="tldr", description="Summarise this channel's recent conversation.")
    @app_commands.describe(
        count="How many recent messages to read (default 100, or all within `since`)",
        since="Only messages from this long ago, like 30m, 2h, 1d or 1h30m",
        private="Only you see the summary",
    )
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(view_channel=True, read_message_history=True)
    @app_commands.checks.bot_has_permissions(view_channel=True, read_message_history=True)
    async def tldr(
        self,
        interaction: discord.Interaction,
        count: app_commands.Range[int, 1] | None = None,
        since: str | None = None,
        private: bool = False,
    ) -> None:
        # Parsed before deferring: a typo gets its explanation at once, as the interaction's own reply.
        window = parse_duration(since) if since else None
        await interaction.response.defer(ephemeral=private, thinking=True)
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise errors.InvalidInput(message_id="tldr.not_text")
        cap = self.settings.tldr_max_messages
        wanted = count if count is not None else (cap if window is not None else DEFAULT_COUNT)
        limit = min(wanted, cap)
        cutoff = discord.utils.utcnow() - window if window is not None else None
        records: list[SourceMessage] = []
        originals: dict[int, discord.Message] = {}
        read = skipped = 0
        # Only messages from before the command: the reply's own placeholder must not take a slot.
        before = discord.Object(id=interaction.id)
        async for message in channel.history(limit=limit, before=before, after=cutoff, oldest_first=False):
            read += 1
            if is_conversation(message, self.bot.bot_user_id):
                records.append(to_record(message))
                originals[message.id] = message
            elif message.author.id != self.bot.bot_user_id:
                # The bot's own earlier replies are expected here; only other skips are worth a note.
                skipped += 1
        if not records:
            # Said ephemerally to this member, as every failure is: in their language.
            raise errors.NothingToSummarise(nothing_said(read, window, member_locale(interaction)))
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "tldr", admitted=True
        )

        locale = reply_locale(interaction, private=private)

        def render(summary: Summary, left_out: int) -> str:
            capped_at = cap if wanted > cap else None
            return render_summary(
                summary, skipped=skipped, capped_at=capped_at, left_out=left_out, locale=locale
            )

        async def hand_off(flagged: list[SourceMessage]) -> None:
            moderation = self.bot.get_cog(ModerationEvents.__cog_name__)
            if isinstance(moderation, ModerationEvents):
                await moderation.moderate_unseen(originals[record.id] for record in flagged)

        digest = await self.digest.summarise(records, context=context, render=render, hand_off=hand_off)
        for piece in split_message(neutralize_mentions(digest.text)):
            await interaction.followup.send(piece, ephemeral=private)


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    digest = ChannelDigest(services.summarizer, services.moderation, services.channel_moderation)
    await bot.add_cog(Tldr(bot, digest, services.settings))
