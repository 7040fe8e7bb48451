"""Discord text helpers: splitting at 2000 characters with balanced code fences, and mention neutralising."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import discord

MESSAGE_LIMIT = 2000
_FENCE_LINE = re.compile(r"^[ \t]*```([\w+#.\-]{0,20})")
_CLOSER = "```"
_MASS_MENTION = re.compile(r"@(everyone|here)")
_ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class Piece:
    """One message of a split: `raw` is a slice of the original text; `opener`/`closer` re-balance fences."""

    opener: str
    raw: str
    closer: str

    @property
    def text(self) -> str:
        return self.opener + self.raw + self.closer


def _fence_state_after(text: str, open_language: str | None) -> str | None:
    """The language of the code fence still open after `text` (``""`` for a bare fence), or None."""
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        open_language = match.group(1) if open_language is None else None
    return open_language


def _break_point(window: str, is_last_window: bool) -> int:
    """Where to cut `window`: after a blank line, a line, a sentence or a word, else hard."""
    if is_last_window:
        return len(window)
    floor = len(window) // 2
    for separator in ("\n\n", "\n", ". ", "! ", "? ", " "):
        index = window.rfind(separator)
        if index >= floor or (separator == " " and index > 0):
            return index + len(separator)
    return len(window)


def plan_split(text: str, limit: int = MESSAGE_LIMIT) -> list[Piece]:
    """Split `text` into pieces of at most `limit` characters whose raw parts concatenate to `text`."""
    if limit < 64:
        raise ValueError("limit too small to keep code fences balanced")
    pieces: list[Piece] = []
    position = 0
    open_language: str | None = None
    while position < len(text) or not pieces:
        opener = f"{_CLOSER}{open_language}\n" if open_language is not None else ""
        # Room for a closing fence (and the newline before it) if the piece ends inside a block.
        budget = limit - len(opener) - len(_CLOSER) - 1
        rest = text[position:]
        fits_whole = len(opener) + len(rest) + len(_CLOSER) + 1 <= limit
        window = rest if fits_whole else rest[:budget]
        cut = _break_point(window, fits_whole)
        raw = window[:cut]
        still_open = _fence_state_after(raw, open_language)
        closer = ""
        if still_open is not None:
            closer = ("" if raw.endswith("\n") else "\n") + _CLOSER
        pieces.append(Piece(opener, raw, closer))
        position += len(raw)
        open_language = still_open
        if not rest:
            break
    return pieces


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Messages ready to send: none longer than `limit`, none empty, fences closed and reopened."""
    return [piece.text for piece in plan_split(text, limit) if piece.text.strip()]


def neutralize_mentions(text: str) -> str:
    """Defuse @everyone/@here in text shown to users (allowed_mentions already prevents the ping)."""
    return _MASS_MENTION.sub(lambda m: f"@{_ZERO_WIDTH_SPACE}{m.group(1)}", text)


def preview(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut + "…"


def message_text(message: discord.Message) -> str:
    """Every text a member can show with a message: its content, file names, embeds and poll."""
    parts = [message.content or ""]
    parts += [attachment.filename for attachment in message.attachments]
    for embed in message.embeds:
        parts += [
            embed.title or "",
            embed.description or "",
            embed.author.name or "",
            embed.footer.text or "",
        ]
        parts += [f"{field.name}\n{field.value}" for field in embed.fields]
    if message.poll is not None:
        parts.append(message.poll.question or "")
        parts += [answer.text or "" for answer in message.poll.answers]
    return "\n".join(part for part in parts if part)


async def reply_to(
    message: discord.Message | discord.PartialMessage, content: str, **kwargs: Any
) -> discord.Message:
    """A reply that still arrives when its message is gone (moderation may delete it meanwhile): Discord
    then posts it as a plain message instead of refusing it. Nobody is pinged, the author included."""
    return await message.channel.send(
        content,
        reference=message.to_reference(fail_if_not_exists=False),
        mention_author=False,
        **kwargs,
    )
