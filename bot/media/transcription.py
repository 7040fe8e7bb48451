"""Transcription: file in, moderated transcript out (split uploads in order), and per-channel auto mode."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot import errors
from bot.media.audio import API_LIMIT_BYTES, MAX_PART_SECONDS, AudioPart, CorruptAudio, prepare_upload
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store
from bot.util.sentences import split_sentences

# The API reads a prompt as the text before the audio: the previous part's tail keeps a split file
# flowing (names, spelling) without paying for the whole transcript again.
PROMPT_TAIL_CHARS = 600
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
# Reading an attachment holds it in memory: refuse absurd sizes before downloading.
MAX_FILE_BYTES = 500 * 1024 * 1024
# The languages /transcribe translates into (Discord shows at most 25 choices). English comes from
# whisper-1's translation endpoint; the others from a chat model translating the transcript.
TARGET_LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "sv": "Swedish",
    "cs": "Czech",
    "ro": "Romanian",
    "el": "Greek",
    "ru": "Russian",
    "uk": "Ukrainian",
    "tr": "Turkish",
    "ar": "Arabic",
    "he": "Hebrew",
    "hi": "Hindi",
    "id": "Indonesian",
    "vi": "Vietnamese",
    "th": "Thai",
    "ja": "Japanese",
    "ko": "Korean",
    "zh-Hans": "Chinese (Simplified)",
    "zh-Hant": "Chinese (Traditional)",
}
# Characters of transcript per translation request, and the answer room each gets (reasoning included).
TRANSLATION_CHUNK_CHARS = 3000
TRANSLATION_MAX_TOKENS = 4096
TRANSLATION_PROMPT = (
    "Translate the transcript the user sends into {language}. Keep its meaning, tone and names; do not "
    "summarise, answer or add anything. Reply with the translation only."
)


class TranscriptFlagged(errors.OutputFlagged):
    message_id = "error.transcript_flagged"


class NoSpeech(errors.BotError):
    message_id = "error.no_speech"


@dataclass(frozen=True)
class TranscriptResult:
    """A finished, moderated transcript."""

    text: str
    parts: int
    seconds: float | None
    translated: bool
    language: str | None = None  # the language it was translated into, by name


def normalise_language(language: str | None) -> str | None:
    """An ISO-639-1 code for the API, or InvalidInput naming the expected form."""
    if language is None or not language.strip():
        return None
    code = language.strip().lower()
    if not LANGUAGE_CODE.fullmatch(code):
        raise errors.InvalidInput(message_id="input.transcription.language_code", language=language[:40])
    return code


def normalise_target(language: str | None) -> str | None:
    """The code of a language /transcribe translates into (given as a code or a name), or InvalidInput."""
    if language is None or not language.strip():
        return None
    wanted = language.strip().lower()
    for code, name in TARGET_LANGUAGES.items():
        if wanted in (code.lower(), name.lower()):
            return code
    raise errors.InvalidInput(
        message_id="input.transcription.target",
        language=language[:40],
        languages=", ".join(f"`{code}`" for code in TARGET_LANGUAGES),
    )


class Transcriber:
    """Checks a file, uploads it (in parts when it is too big), joins and moderates the transcript."""

    def __init__(
        self,
        gateway: OpenAIGateway,
        moderation: ModerationGate,
        *,
        limit_bytes: int = API_LIMIT_BYTES,
        max_part_seconds: float = MAX_PART_SECONDS,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_seconds: float = float("inf"),
        translation_model: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.translation_model = translation_model
        self.moderation = moderation
        self.limit_bytes = limit_bytes
        self.max_part_seconds = max_part_seconds
        self.max_file_bytes = max_file_bytes
        self.max_seconds = max_seconds

    def check_size(self, filename: str, size: int) -> None:
        """Refuse before downloading a file too big to hold in memory."""
        if size > self.max_file_bytes:
            raise errors.InvalidInput(
                message_id="input.transcription.too_large",
                name=filename,
                mib=f"{size / 1024 / 1024:.0f}",
                max_mib=f"{self.max_file_bytes / 1024 / 1024:.0f}",
                part_mib=f"{self.limit_bytes / 1024 / 1024:.0f}",
            )

    async def prepare(self, filename: str, content_type: str | None, data: bytes) -> list[AudioPart]:
        self.check_size(filename, len(data))
        return await asyncio.to_thread(
            prepare_upload,
            filename,
            content_type,
            data,
            limit_bytes=self.limit_bytes,
            max_part_seconds=self.max_part_seconds,
            max_seconds=self.max_seconds,
        )

    async def transcribe(
        self,
        filename: str,
        content_type: str | None,
        data: bytes,
        *,
        context: CallContext,
        language: str | None = None,
        translate_to: str | None = None,
    ) -> TranscriptResult:
        code = normalise_language(language)
        target = normalise_target(translate_to)
        translate = target == "en"
        parts = await self.prepare(filename, content_type, data)
        texts: list[str] = []
        for part in parts:  # in order: each part's prompt is the text before it
            prompt = " ".join(texts)[-PROMPT_TAIL_CHARS:] or None
            try:
                transcript = await self.gateway.transcribe(
                    part.filename,
                    part.data,
                    context=context,
                    language=code,
                    translate=translate,
                    duration_hint=part.seconds,
                    prompt=prompt,
                )
            except errors.BadRequest as exc:
                if "corrupt" in exc.detail.lower() or "unsupported" in exc.detail.lower():
                    raise CorruptAudio(message_id="input.audio.undecodable", name=filename) from exc
                raise
            texts.append(transcript.text.strip())
        # Parts are cut at fixed lengths, usually mid-sentence: join them as one running text.
        text = " ".join(t for t in texts if t)
        if not text.strip():
            raise NoSpeech()
        verdict = await self.moderation.check_text(text, context=context)
        if verdict.flagged:
            raise TranscriptFlagged(verdict.categories)
        if target is not None and not translate:
            # A flagged transcript never reaches the chat model; its translation is checked like any output.
            text = await self.translate_text(text, TARGET_LANGUAGES[target], context=context)
            verdict = await self.moderation.check_text(text, context=context)
            if verdict.flagged:
                raise TranscriptFlagged(verdict.categories)
        seconds = sum(p.seconds for p in parts if p.seconds) or None
        name = TARGET_LANGUAGES[target] if target else None
        return TranscriptResult(text, len(parts), seconds, target is not None, name)

    async def translate_text(self, text: str, language: str, *, context: CallContext) -> str:
        """The transcript in `language`, translated by the chat model in sentence-cut chunks, in order."""
        translated: list[str] = []
        for chunk in split_sentences(text, TRANSLATION_CHUNK_CHARS):
            result = await self.gateway.complete_chat(
                [
                    {"role": "system", "content": TRANSLATION_PROMPT.format(language=language)},
                    {"role": "user", "content": chunk},
                ],
                context=context,
                model=self.translation_model,
                max_tokens=TRANSLATION_MAX_TOKENS,
            )
            if result.truncated or not result.text.strip():
                raise errors.IncompleteAnswer()
            translated.append(result.text.strip())
        return " ".join(translated)


class AutoTranscribeChannels(DataOwner):
    """Channels whose voice messages are transcribed as they arrive (table auto_transcribe_channels)."""

    owned_tables = (
        TablePolicy(
            "auto_transcribe_channels",
            "channels with automatic transcription and who turned it on",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    async def set(self, guild_id: int, channel_id: int, enabled: bool, user_id: int) -> None:
        async with self.store.transaction() as db:
            if enabled:
                await db.execute(
                    "INSERT INTO auto_transcribe_channels (channel_id, guild_id, enabled_by, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
                    "enabled_by = excluded.enabled_by, updated_at = excluded.updated_at",
                    (channel_id, guild_id, user_id, time.time()),
                )
            else:
                await db.execute("DELETE FROM auto_transcribe_channels WHERE channel_id = ?", (channel_id,))

    async def enabled(self, *channel_ids: int) -> bool:
        """True when any of the ids (a thread and its parent channel) has auto transcription on."""
        ids = [c for c in channel_ids if c]
        if not ids:
            return False
        marks = ", ".join("?" for _ in ids)
        row = await self.store.fetchone(
            f"SELECT 1 FROM auto_transcribe_channels WHERE channel_id IN ({marks}) LIMIT 1",  # noqa: S608
            ids,
        )
        return row is not None

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The channel setting stays; who turned it on is no longer this member."""
        where, params = guild_clause(guild_id)
        changed = await self.store.execute(
            f"UPDATE auto_transcribe_channels SET enabled_by = 0 WHERE {where} AND enabled_by = ?",  # noqa: S608
            (*params, user_id),
        )
        return (
            Effect("auto_transcribe_channels", Fate.PSEUDONYMISED, changed, "channel setting you changed"),
        )
