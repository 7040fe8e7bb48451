"""Cut long text into pieces of at most N characters, at sentence ends where there are any."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (or their CJK forms) and any closing quotes/brackets, before whitespace or the end.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]»]*(?:\s+|$)")


def sentences(text: str) -> list[str]:
    """The text's sentences, each with its own trailing whitespace dropped."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        start = end
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _hard_cut(sentence: str, limit: int) -> list[str]:
    """A sentence longer than `limit`: cut at the last space (or anywhere, for a run without any)."""
    parts: list[str] = []
    rest = sentence
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return parts


def split_sentences(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, each made of whole sentences where a sentence fits."""
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    current = ""
    for sentence in sentences(text):
        for part in _hard_cut(sentence, limit) if len(sentence) > limit else [sentence]:
            joined = f"{current} {part}" if current else part
            if len(joined) <= limit:
                current = joined
            else:
                chunks.append(current)
                current = part
    if current:
        chunks.append(current)
    return chunks
