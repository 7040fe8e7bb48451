"""The moderation gate: every text a command handles is checked whole (chunked) before it is used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot import errors
from bot.openai_gateway import CallContext, ModerationResult, OpenAIGateway

# The endpoint takes long inputs, but chunks keep each one well inside its context and let a long
# message be judged everywhere rather than only at its end.
CHUNK_CHARS = 8000


@dataclass(frozen=True)
class Verdict:
    """What moderation concluded for one piece of content."""

    flagged: bool
    categories: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    if len(text) <= size:
        return [text]
    chunks: list[str] = []
    position = 0
    while position < len(text):
        end = min(len(text), position + size)
        if end < len(text):
            space = text.rfind(" ", position + size // 2, end)
            end = space + 1 if space > 0 else end
        chunks.append(text[position:end])
        position = end
    return chunks


def merge_results(results: list[ModerationResult]) -> Verdict:
    """A text is flagged if any chunk is; each category keeps its highest score."""
    scores: dict[str, float] = {}
    categories: set[str] = set()
    for result in results:
        categories.update(result.flagged_categories)
        for name, score in result.scores.items():
            scores[name] = max(score, scores.get(name, 0.0))
    return Verdict(any(r.flagged for r in results), sorted(categories), scores)


class ModerationGate:
    """Checks command inputs and bot outputs. Fails closed: an outage raises ModerationUnavailable."""

    def __init__(self, gateway: OpenAIGateway) -> None:
        self.gateway = gateway

    async def check_text(self, text: str, *, context: CallContext) -> Verdict:
        if not text.strip():
            return Verdict(False)
        results = await self.gateway.moderate(chunk_text(text), context=context)
        return merge_results(results)

    async def check_image(self, image_url: str, *, context: CallContext, caption: str = "") -> Verdict:
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url}}]
        if caption.strip():
            parts.insert(0, {"type": "text", "text": caption})
        return merge_results(await self.gateway.moderate(parts, context=context))

    async def require_clean_input(
        self, text: str, *, context: CallContext, what: str = "Your message"
    ) -> None:
        verdict = await self.check_text(text, context=context)
        if verdict.flagged:
            raise errors.Flagged(verdict.categories, what=what)

    async def require_clean_output(self, text: str, *, context: CallContext) -> None:
        verdict = await self.check_text(text, context=context)
        if verdict.flagged:
            raise errors.OutputFlagged(verdict.categories)
