"""The gateway's call types as plain data: who asks, what is planned, what was metered, what came back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# Stored in usage_events.kind: the values must not change.
CallKind = Literal["chat", "moderation", "image", "transcription", "speech", "embedding"]


@dataclass(frozen=True)
class CallContext:
    """Who asked for a call: used for the usage ledger and budgets, never for logging content."""

    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    command: str = "unknown"
    # True when admission already took this request's rate token (a command, a button, a mention): its
    # calls are then not rate-limited a second time. Background work (auto-transcription) leaves it False.
    admitted: bool = False


@dataclass(frozen=True)
class MediaTokens:
    """The token usage an image, transcription or speech answer reports, by modality."""

    text_input: int = 0
    image_input: int = 0
    audio_input: int = 0
    text_output: int = 0
    image_output: int = 0
    audio_output: int = 0

    @property
    def input(self) -> int:
        return self.text_input + self.image_input + self.audio_input

    @property
    def output(self) -> int:
        return self.text_output + self.image_output + self.audio_output


@dataclass(frozen=True)
class UsageEvent:
    """One metered OpenAI call, as plain data."""

    context: CallContext
    kind: CallKind
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    characters: int = 0  # text read aloud, for speech models priced per character
    # Of prompt_tokens, those OpenAI served from its prompt cache (billed at the cached-input price).
    cached_tokens: int = 0
    # Of completion_tokens, those spent on hidden reasoning (billed as output; shown apart in /usage).
    reasoning_tokens: int = 0
    # A media answer's own token usage, when it carried one: priced per token instead of per image/minute.
    media_tokens: MediaTokens | None = None
    # False: the caller does not wait for the row's commit, because a write it awaits next (the /ask's
    # history) is queued after it and so commits it first.
    wait_for_commit: bool = True


UsageSink = Callable[[UsageEvent], Awaitable[None]]


@dataclass(frozen=True)
class PlannedCall:
    """A call about to be made, as plain data, so a guard can admit or refuse it before anything is sent."""

    context: CallContext
    kind: CallKind
    model: str
    max_output_tokens: int = 0
    messages: Sequence[dict[str, Any]] = ()
    text: str = ""
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    characters: int = 0
    # The messages' token count when the caller already knows it (stored turns carry theirs), so the
    # guard's estimate need not re-tokenise a whole history on every call.
    prompt_tokens: int | None = None


class CallGuard(Protocol):
    """Admission for every call (budgets, rate limits, quota breaker); held for the call's whole duration."""

    def admit(self, call: PlannedCall) -> AbstractAsyncContextManager[None]: ...


@dataclass
class ChatResult:
    text: str
    finish_reason: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]

    @property
    def flagged_categories(self) -> list[str]:
        return sorted(name for name, hit in self.categories.items() if hit)


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    output_format: str
    revised_prompt: str | None


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float | None = None
