"""Token counts without a resident encoder: a conservative estimate, calibrated against OpenAI's encodings in tests.

An exact encoder (bpe-openai) held about 135 MB resident for the life of the process once the first `/ask`
loaded it. The budgets only need a number that is never below the real count for the text people send, so
this module estimates it from the text's shape instead, in a few µs and no memory:

- a run of ASCII letters (with its leading space) that reads like a word is one token, plus one per 3
  letters past 3; any other run is one plus 0.6 per letter, plus 0.7 per capital after the first
  (camelCase and random identifiers split at case changes);
- digits go in groups of three (both encodings split numbers so);
- each space or newline run, and each ASCII punctuation mark, is one token;
- any other character costs by its UTF-8 length: 1 (2 bytes: Cyrillic, Greek, Arabic, accents),
  2 (3 bytes: CJK, Hangul, kana) or 3 (4 bytes: emoji).

Error bound (tests/unit/openai_api/test_tokens.py measures it against o200k_base and cl100k_base over
English, code, Korean, Chinese, Japanese, Russian, Arabic, emoji, URLs, numbers, whitespace and
punctuation): the estimate is never below the real count, and at most about 2.5 times it. Text built to
be unlike any language (random syllables, random astral symbols) can tokenise worse than 2 tokens per
CJK character: the test bounds that case at 2.5 times under, which at the default history budget still
leaves the request far inside every model's context. Stored turns keep the estimate they were stored
with, and the `context_length_exceeded` retry (bot/chat/conversation.py) stays as the net.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

# Tokens the chat format adds around each message and to prime the reply (OpenAI's cookbook figures).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
# What an image part costs at "low" detail; higher detail is billed more, so budgets stay conservative.
TOKENS_PER_IMAGE = 85

_PIECES = re.compile(r" ?[A-Za-z]+| ?[0-9]+|[ \t]+|[\r\n]+|[!-/:-@\[-`{-~]|[^\x00-\x7f]|[\x00-\x1f\x7f]")
# Letters that read like a word: vowels, and never four consonants in a row (hex, base64 and random
# letters rarely do; they tokenise at up to 0.7 tokens per letter).
_PRONOUNCEABLE = re.compile(
    r"[A-Za-z](?=[a-z]*[aeiouy])(?:[a-z]*?[aeiouy][b-df-hj-np-tv-xz]{0,3})*[a-z]{0,3}"
)
_ASCII_PIECES = re.compile(r" ?[A-Za-z]+| ?[0-9]+|[ \t]+|[\r\n]+|[!-/:-@\[-`{-~]|[\x00-\x1f\x7f]")
_JOINED_LETTERS = re.compile(r"(?<=[^\x00-\x7f])[A-Za-z]+")
_TWO_BYTES = re.compile("[\u0080-\u07ff]")
_THREE_BYTES = re.compile("[\u0800-\uffff]")
_FOUR_BYTES = re.compile("[\U00010000-\U0010ffff]")
_WIDE_CHAR_COST = {2: 1.0, 3: 2.0, 4: 3.0}


def _piece_cost(piece: str, joined: bool = False) -> float:
    first = piece[0]
    if first == " " and len(piece) > 1 and piece[1] != " ":
        body = piece[1:]
        first = body[0]
    else:
        body = piece
    if first.isascii() and first.isalpha():
        capitals = sum(1 for char in body[1:] if char.isupper())
        # `joined`: the letters continue a word begun with a non-ASCII letter ("Überall"), not a word alone.
        if not capitals and not joined and _PRONOUNCEABLE.fullmatch(body):
            return 1 + max(0, len(body) - 3) / 3  # a word: common ones up to ~10 letters are one token
        return 1 + len(body) * 0.6 + capitals * 0.7
    if first.isdigit():
        return math.ceil(len(body) / 3) + (len(piece) - len(body))
    if first.isascii():
        return 1.0
    return _WIDE_CHAR_COST.get(len(first.encode("utf-8", "surrogatepass")), 3.0)


def estimate_tokens(text: str) -> int:
    """A count of `text`'s tokens that is never below the real one for the text people write (module doc)."""
    if not text:
        return 0
    if text.isascii():
        if len(text) <= 16:
            return len(text)  # a short piece: at most one token per character, the exact worst case
        # Every piece stands alone in ASCII text; words repeat, so their costs come from a cache.
        return math.ceil(sum(map(_ascii_piece_cost, _PIECES.findall(text))))
    # Other characters cost by their UTF-8 length; the ASCII pieces between them as above, except letters
    # that continue a word begun with a non-ASCII letter ("Überall"), which get no word discount.
    joined = _JOINED_LETTERS.findall(text)
    return math.ceil(
        sum(map(_ascii_piece_cost, _ASCII_PIECES.findall(text)))
        - sum(map(_ascii_piece_cost, joined))
        + sum(_piece_cost(run, joined=True) for run in joined)
        + len(_TWO_BYTES.findall(text)) * _WIDE_CHAR_COST[2]
        + len(_THREE_BYTES.findall(text)) * _WIDE_CHAR_COST[3]
        + len(_FOUR_BYTES.findall(text)) * _WIDE_CHAR_COST[4]
    )


@lru_cache(maxsize=1 << 16)
def _ascii_piece_cost(piece: str) -> float:
    return _piece_cost(piece)


def _pieces(text: str) -> Iterator[tuple[str, bool, int]]:
    """Each piece, whether it follows a non-ASCII character directly, and where it ends."""
    for match in _PIECES.finditer(text):
        start = match.start()
        yield match.group(), start > 0 and not text[start - 1].isascii(), match.end()


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest start of `text` whose estimate fits `max_tokens` (whole pieces, so never over it)."""
    if estimate_tokens(text) <= max_tokens:
        return text
    used = 0.0
    end = 0
    for piece, joined, piece_end in _pieces(text):
        cost = _piece_cost(piece, joined)
        if math.ceil(used + cost) > max_tokens:
            break
        used += cost
        end = piece_end
    while end and estimate_tokens(text[:end]) > max_tokens:
        end -= 1  # a short cut is counted one token per character (estimate_tokens)
    return text[:end]


class TokenCounter:
    """Counts tokens for one model's messages: conservative estimates (module doc), no encoder loaded."""

    def __init__(self, model: str) -> None:
        self.model = model

    def count(self, text: str) -> int:
        return estimate_tokens(text)

    def count_message(self, content: str | list[dict[str, Any]]) -> int:
        if isinstance(content, str):
            return TOKENS_PER_MESSAGE + self.count(content)
        total = TOKENS_PER_MESSAGE
        for part in content:
            total += self.count(part.get("text", "")) if part.get("type") == "text" else TOKENS_PER_IMAGE
        return total

    def truncate(self, text: str, max_tokens: int) -> str:
        return truncate_to_tokens(text, max_tokens)
