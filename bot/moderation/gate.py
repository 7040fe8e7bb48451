"""The moderation gate: every text a command handles is checked whole (chunked) before it is used."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from bot import errors
from bot.moderation.batcher import ModerationBatcher
from bot.moderation.normalize import moderation_inputs, warm_up
from bot.moderation.policy import PolicyRepo
from bot.openai_api.calls import CallContext, ModerationResult
from bot.openai_api.gateway import OpenAIGateway

log = logging.getLogger(__name__)

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
    if len(results) == 1:  # the common case, on the hot path of channel moderation
        only = results[0]
        if True not in only.categories.values():
            return Verdict(only.flagged, [], only.scores)  # shared, never written to
        hits = [name for name, hit in only.categories.items() if hit]
        if len(hits) > 1:
            hits.sort()
        return Verdict(only.flagged, hits, only.scores)
    scores: dict[str, float] = {}
    categories: set[str] = set()
    for result in results:
        categories.update(result.flagged_categories)
        for name, score in result.scores.items():
            scores[name] = max(score, scores.get(name, 0.0))
    return Verdict(any(r.flagged for r in results), sorted(categories), scores)


class ModerationGate:
    """Checks command inputs, bot outputs and channel messages. Texts go through the batcher (coalesced
    with everything else being moderated, cached); outputs and `check_*` fail closed with
    ModerationUnavailable, command inputs too unless the server chose to fail open."""

    def __init__(
        self,
        gateway: OpenAIGateway,
        *,
        batcher: ModerationBatcher | None = None,
        policies: PolicyRepo | None = None,
    ) -> None:
        self.gateway = gateway
        self.batcher = batcher
        self.policies = policies
        warm_up()

    async def check_text(self, text: str, *, context: CallContext, urgent: bool = False) -> Verdict:
        """`urgent`: a user is waiting on this one check (a command's input or output), so it goes
        as soon as a request slot is free instead of waiting out the batching window."""
        if not text.strip():
            return Verdict(False)
        # The text as written and as a hidden word reads (normalize.py), in one request: flagged if either is.
        chunks = [chunk for variant in moderation_inputs(text) for chunk in chunk_text(variant)]
        if self.batcher is not None:
            return merge_results(await self.batcher.texts(chunks, context=context, urgent=urgent))
        return merge_results(await self.gateway.moderate(chunks, context=context))

    def text_check_soon(self, text: str, *, context: CallContext) -> asyncio.Future[ModerationResult] | None:
        """`check_text`'s request for a text that is one moderation input (it reads the same normalised, and
        it is one chunk), as the batcher's future: a caller can attach a callback instead of keeping a task.
        None when the text needs `check_text` (several inputs, or no batcher); `verdict_of` reads the result."""
        if self.batcher is None or not text.strip() or len(text) > CHUNK_CHARS:
            return None
        inputs = moderation_inputs(text)
        if len(inputs) != 1:
            return None
        return self.batcher.submit(inputs[0], context=context)

    @staticmethod
    def verdict_of(check: asyncio.Future[ModerationResult]) -> Verdict:
        """The verdict of a `text_check_soon` future that is done (its error raised, as `check_text` would)."""
        return merge_results([check.result()])

    async def check_image(self, image_url: str, *, context: CallContext, caption: str = "") -> Verdict:
        if self.batcher is not None and not caption.strip():
            return merge_results([await self.batcher.image(image_url, context=context)])
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url}}]
        if caption.strip():
            parts.insert(0, {"type": "text", "text": caption})
        return merge_results(await self.gateway.moderate(parts, context=context))

    async def fails_open(self, context: CallContext) -> bool:
        if self.policies is None or not context.guild_id:
            return False
        return (await self.policies.get(context.guild_id)).fail_open

    async def _verdict_or_fail_open(
        self, check: Awaitable[Verdict], context: CallContext, what: str
    ) -> Verdict | None:
        """The verdict, or None when moderation is down and the server chose to fail open."""
        try:
            return await check
        except errors.ModerationUnavailable:
            if not await self.fails_open(context):
                raise
            log.warning(
                "moderation unavailable: /%s %s let through (server %s fails open)",
                context.command,
                what,
                context.guild_id,
            )
            return None

    async def require_clean_input(
        self, text: str, *, context: CallContext, what: str = "Your message"
    ) -> None:
        verdict = await self._verdict_or_fail_open(
            self.check_text(text, context=context, urgent=True), context, "input"
        )
        if verdict is not None and verdict.flagged:
            raise errors.Flagged(verdict.categories, what=what)

    async def require_clean_image(
        self, image_url: str, *, context: CallContext, what: str = "Your image"
    ) -> None:
        """An image a user handed to a command; honours the server's fail-open setting like text."""
        verdict = await self._verdict_or_fail_open(
            self.check_image(image_url, context=context), context, "image"
        )
        if verdict is not None and verdict.flagged:
            raise errors.Flagged(verdict.categories, what=what)

    async def require_clean_output(self, text: str, *, context: CallContext) -> None:
        # A server that fails open for inputs wants its commands to work during an outage.
        verdict = await self._verdict_or_fail_open(
            self.check_text(text, context=context, urgent=True), context, "output"
        )
        if verdict is not None and verdict.flagged:
            raise errors.OutputFlagged(verdict.categories)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
