"""/transcribe file, /transcribe auto, the "Transcribe" message menu and the voice-message listener."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import PurePath

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.client import OpenAIBot, wants_messages
from bot.discord_io.failures import describe_failure
from bot.discord_io.locales import message_locale, server_locale
from bot.discord_io.text import neutralize_mentions, reply_to, split_message
from bot.i18n import catalog_ids, translate
from bot.i18n.time import format_elapsed
from bot.media.audio import looks_like_media
from bot.media.transcription import TARGET_LANGUAGES, AutoTranscribeChannels, Transcriber, TranscriptResult
from bot.openai_api.calls import CallContext
from bot.settings import Settings

log = logging.getLogger(__name__)
LANGUAGE_CHOICES = [app_commands.Choice(name=name, value=code) for code, name in TARGET_LANGUAGES.items()]


def pick_attachment(message: discord.Message) -> discord.Attachment | None:
    """The voice message's audio, else the first audio or video attachment of a message."""
    if message.flags.voice and message.attachments:
        return message.attachments[0]
    for attachment in message.attachments:
        if attachment.is_voice_message() or looks_like_media(attachment.filename, attachment.content_type):
            return attachment
    return None


def _duration(seconds: float | None, locale: str | None) -> str:
    return f" · {format_elapsed(round(seconds), locale)}" if seconds else ""


def _language_name(code_or_name: str | None, locale: str | None) -> str:
    """A target language by its choice's catalog name ('프랑스어'), or as the result named it."""
    name = TARGET_LANGUAGES.get(code_or_name or "", code_or_name) or "English"
    return translate("choice." + name, locale) if ("choice." + name) in catalog_ids("en") else name


def render_transcript(
    result: TranscriptResult, filename: str, max_messages: int, locale: str | None = None
) -> tuple[list[str], discord.File | None]:
    """Messages of at most 2000 characters, or past `max_messages` one message with a .txt attachment."""
    shown_name = filename.replace("`", "'")
    if result.translated:
        language = _language_name(result.language, locale)
        header = translate("transcribe.header.translation", locale, language=language, name=shown_name)
    else:
        header = translate("transcribe.header.transcript", locale, name=shown_name)
    header += _duration(result.seconds, locale)
    if result.parts > 1:
        header += " · " + translate("transcribe.parts", locale, count=result.parts)
    pieces = split_message(f"{header}\n{neutralize_mentions(result.text)}")
    if len(pieces) <= max_messages:
        return pieces, None
    stem = PurePath(filename).stem or "audio"
    attachment = discord.File(io.BytesIO(result.text.encode("utf-8")), filename=f"{stem}-transcript.txt")
    note = (
        header
        + "\n"
        + translate("transcribe.as_file", locale, characters=f"{len(result.text):,}", messages=max_messages)
    )
    return [note], attachment


class Transcribe(commands.Cog):
    # A command with subcommands cannot itself be invoked (Discord's model), so the file is transcribed by
    # `/transcribe file file:<attachment>` beside `/transcribe auto enabled:<bool>`.
    transcribe = app_commands.Group(name="transcribe", description="Speech to text for audio and video files")

    def __init__(
        self, bot: OpenAIBot, transcriber: Transcriber, auto: AutoTranscribeChannels, settings: Settings
    ) -> None:
        self.bot = bot
        self.transcriber = transcriber
        self.auto = auto
        self.settings = settings
        self.menu = app_commands.ContextMenu(name="Transcribe", callback=self.transcribe_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @transcribe.command(name="file", description="Transcribe an audio or video file")
    @app_commands.describe(
        file="The recording (flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm)",
        language="The spoken language as a code such as en, fr or ja (optional; helps accuracy)",
        translate="Translate into this language (default: keep the spoken language)",
    )
    @app_commands.choices(translate=LANGUAGE_CHOICES)
    async def transcribe_file(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment,
        language: app_commands.Range[str, 1, 16] | None = None,
        translate: app_commands.Choice[str] | None = None,
    ) -> None:
        self.transcriber.check_size(file.filename, file.size)
        await interaction.response.defer(thinking=True)
        await self._answer(interaction, file, language, translate.value if translate else None)

    @transcribe.command(
        name="auto", description="Transcribe voice messages in this channel as they arrive (Manage Channels)"
    )
    @app_commands.describe(enabled="Turn automatic transcription of voice messages on or off here")
    @app_commands.checks.has_permissions(manage_channels=True)
    async def transcribe_auto(self, interaction: discord.Interaction, enabled: bool) -> None:
        if interaction.guild_id is None or interaction.channel_id is None:
            raise app_commands.NoPrivateMessage()
        await self.auto.set(interaction.guild_id, interaction.channel_id, enabled, interaction.user.id)
        message_id = "transcribe.auto.on" if enabled else "transcribe.auto.off"
        await interaction.response.send_message(translate(message_id, server_locale(interaction)))

    async def transcribe_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        attachment = pick_attachment(message)
        if attachment is None:
            raise errors.InvalidInput(message_id="transcribe.nothing_to_transcribe")
        self.transcriber.check_size(attachment.filename, attachment.size)
        await interaction.response.defer(thinking=True)
        await self._answer(interaction, attachment, None, None)

    async def _answer(
        self,
        interaction: discord.Interaction,
        attachment: discord.Attachment,
        language: str | None,
        translate_to: str | None,
    ) -> None:
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "transcribe", admitted=True
        )
        result = await self.transcriber.transcribe(
            attachment.filename,
            attachment.content_type,
            await self.bot.attachments.read(attachment, max_bytes=self.transcriber.max_file_bytes),
            context=context,
            language=language,
            translate_to=translate_to,
        )
        pieces, text_file = render_transcript(
            result, attachment.filename, self.settings.transcript_max_messages, server_locale(interaction)
        )
        for index, piece in enumerate(pieces):
            file = text_file if index == len(pieces) - 1 else None
            await interaction.followup.send(piece, file=file or discord.utils.MISSING)

    @commands.Cog.listener()
    @wants_messages(lambda cog, message: not message.author.bot and message.flags.voice)
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or not message.flags.voice:
            return
        parent_id = getattr(message.channel, "parent_id", None) or 0
        if not await self.auto.enabled(message.channel.id, parent_id):
            return
        attachment = pick_attachment(message)
        if attachment is None:
            return
        context = CallContext(message.guild.id, message.channel.id, message.author.id, "transcribe-auto")
        try:
            self.transcriber.check_size(attachment.filename, attachment.size)
            async with message.channel.typing():
                result = await self.transcriber.transcribe(
                    attachment.filename,
                    attachment.content_type,
                    await self.bot.attachments.read(attachment, max_bytes=self.transcriber.max_file_bytes),
                    context=context,
                )
            pieces, text_file = render_transcript(
                result,
                attachment.filename,
                self.settings.transcript_max_messages,
                message_locale(self.bot, message),
            )
            for index, piece in enumerate(pieces):
                file = text_file if index == len(pieces) - 1 else None
                if index == 0:
                    await reply_to(message, piece, file=file or discord.utils.MISSING)
                else:
                    await message.channel.send(piece, file=file or discord.utils.MISSING)
        except Exception as exc:
            if not isinstance(exc, errors.BotError | discord.HTTPException):
                log.exception(
                    "auto transcription failed (guild %s, channel %s)", message.guild.id, message.channel.id
                )
            with contextlib.suppress(discord.HTTPException):
                await reply_to(message, describe_failure(exc, message_locale(self.bot, message)))


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Transcribe(bot, services.transcriber, services.auto_transcribe, services.settings))
