"""Offline, exact token counting for OpenAI models with the bundled encodings of bpe-openai."""

from __future__ import annotations

import asyncio
import threading
from functools import lru_cache
from typing import Any

# Tokens the chat format adds around each message and to prime the reply (OpenAI's cookbook figures).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
# What an image part costs at "low" detail; higher detail is billed more, so budgets stay conservative.
TOKENS_PER_IMAGE = 85


def encoding_name_for(model: str) -> str:
    """cl100k_base for the GPT-4/3.5 generation, o200k_base for everything newer (and for unknown models)."""
    lowered = model.lower()
    if lowered.startswith(("gpt-4-", "gpt-3.5")) or lowered == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


_BUILD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    # Imported and built on first use: the library and one encoding hold ~135 MB, which a bot that
    # only moderates channels (or has not been asked anything yet) does not need (README, "Performance").
    with _BUILD_LOCK:
        import bpe_openai

        return bpe_openai.get_encoding(name)


_BUILT: set[str] = set()


async def load_encoding(model: str) -> None:
    """Build `model`'s encoding in a worker thread, so the first count never stalls the event loop."""
    name = encoding_name_for(model)
    if name in _BUILT:
        # Already built: a trip to a worker thread per call cost every /ask a wait for a turn of the
        # event loop, three times over, and the GIL hand-offs slowed everything else (README, "Performance").
        return
    await asyncio.to_thread(_encoding, name)
    _BUILT.add(name)


class TokenCounter:
    """Counts tokens for one model. Exact for OpenAI encodings; an estimate for local models."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._encoding_name = encoding_name_for(model)

    @property
    def _encoding(self) -> Any:
        return _encoding(self._encoding_name)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._encoding.encode(text, disallowed_special=()))

    def count_message(self, content: str | list[dict[str, Any]]) -> int:
        if isinstance(content, str):
            return TOKENS_PER_MESSAGE + self.count(content)
        total = TOKENS_PER_MESSAGE
        for part in content:
            total += self.count(part.get("text", "")) if part.get("type") == "text" else TOKENS_PER_IMAGE
        return total

    def truncate(self, text: str, max_tokens: int) -> str:
        tokens = self._encoding.encode(text, disallowed_special=())
        if len(tokens) <= max_tokens:
            return text
        return str(self._encoding.decode(tokens[:max_tokens]))
