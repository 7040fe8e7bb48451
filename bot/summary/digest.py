"""/tldr's rules: history passes moderation before a model reads it, and the summary before anyone does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot import errors
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.summary.summarizer import SourceMessage, Summarizer, Summary

log = logging.getLogger(__name__)


class StoredVerdicts(Protocol):
    """Verdicts already paid for: {message_id: flagged} for the messages moderated before (live)."""

    async def stored_verdicts(self, channel_id: int, message_ids: Sequence[int]) -> dict[int, bool]: ...


@dataclass(frozen=True)
class Digest:
    """The summary's text as it may be posted, and how many flagged messages it left out."""

    text: str
    summary: Summary
    left_out: int


Render = Callable[[Summary, int], str]
# Takes flagged messages no moderation had seen before, for channel moderation to act on by server policy.
HandOff = Callable[[list[SourceMessage]], Awaitable[object]]


class ChannelDigest:
    """Summarises a channel's history under moderation. Plain records in, a `Digest` out."""

    def __init__(
        self, summarizer: Summarizer, gate: ModerationGate, verdicts: StoredVerdicts | None = None
    ) -> None:
        self.summarizer = summarizer
        self.gate = gate
        self.verdicts = verdicts

    async def screen(
        self, records: Sequence[SourceMessage], *, context: CallContext
    ) -> tuple[list[SourceMessage], list[SourceMessage], int]:
        """(messages a model may read, flagged ones no moderation had seen, how many were left out).

        A message moderated live keeps its stored verdict; the others go through the gate, whose batcher
        coalesces them into few requests and whose cache channel moderation then reuses."""
        stored: dict[int, bool] = {}
        if self.verdicts is not None and context.channel_id:
            stored = await self.verdicts.stored_verdicts(context.channel_id, [r.id for r in records])
        unjudged = [r for r in records if r.id not in stored]
        try:
            verdicts = await asyncio.gather(
                *(self.gate.check_text(r.content, context=context, urgent=True) for r in unjudged)
            )
            flagged = {r.id for r, v in zip(unjudged, verdicts, strict=True) if v.flagged}
        except errors.ModerationUnavailable:
            if not await self.gate.fails_open(context):
                raise
            log.warning(
                "moderation unavailable: /tldr read history unchecked (server %s fails open)",
                context.guild_id,
            )
            flagged = set()
        flagged |= {message_id for message_id, was_flagged in stored.items() if was_flagged}
        kept = [r for r in records if r.id not in flagged]
        unseen = [r for r in unjudged if r.id in flagged]
        return kept, unseen, len(records) - len(kept)

    async def summarise(
        self,
        records: Sequence[SourceMessage],
        *,
        context: CallContext,
        render: Render,
        hand_off: HandOff | None = None,
    ) -> Digest:
        """Screen (flagged messages never moderated go to `hand_off`), summarise what is left, render it
        (`render(summary, left_out)`), then moderate the rendered text. Raises NothingToSummarise when
        moderation left nothing, OutputFlagged and the summarizer's errors."""
        kept, unseen, left_out = await self.screen(records, context=context)
        if unseen and hand_off is not None:
            await hand_off(unseen)
        if not kept:
            plural = "s" if left_out != 1 else ""
            raise errors.NothingToSummarise(
                f"the {left_out} recent message{plural} here were held back by moderation."
            )
        summary = await self.summarizer.summarise(kept, context=context)
        text = render(summary, left_out)
        await self.gate.require_clean_output(text, context=context)
        return Digest(text, summary, left_out)
