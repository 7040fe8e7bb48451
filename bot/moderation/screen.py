"""A growing text (a streamed answer) passed on for display only after moderation cleared it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from bot import errors
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.util.pacing import StreamPacer

Show = Callable[[str], Awaitable[None]]


class ScreenedText:
    """Stands between a stream and the screen: each text shown was checked whole by the moderation gate.

    One check runs at a time, on the newest text, at most once per `interval` (the pace at which Discord
    edits are shown anyway), so a fast stream costs about one moderation request per edit. A flagged text
    is never shown: the next update raises `errors.OutputFlagged`, which ends the stream, and so does
    `finish` when the stream had already ended.
    """

    def __init__(
        self,
        gate: ModerationGate,
        context: CallContext,
        show: Show,
        *,
        interval: float,
        pacer: StreamPacer | None = None,
    ) -> None:
        self.gate = gate
        self.context = context
        self.show = show
        # Text checked faster than the screen is edited would never be shown: the same pace as the edits.
        self.pacer = pacer or StreamPacer.fixed(interval)
        self.checks = 0
        self._latest = ""
        self._cleared = ""
        self._last_check = 0.0
        self._failure: errors.BotError | None = None
        self._checker: asyncio.Task[None] | None = None

    async def update(self, text: str) -> None:
        if self._failure is not None:
            raise self._failure
        self._latest = text
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check_newest(), name="screened-text")

    async def _check_newest(self) -> None:
        while self._latest != self._cleared and self._failure is None:
            wait = self._last_check + self.pacer.interval() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            candidate = self._latest
            self._last_check = time.monotonic()
            self.checks += 1
            try:
                await self.gate.require_clean_output(candidate, context=self.context)
            except errors.BotError as exc:
                self._failure = exc
                return
            self._cleared = candidate
            await self.show(candidate)

    async def finish(self) -> None:
        """The stream ended: stop checking (the caller moderates the final text whole), and raise the
        failure of a check that already ran, so a flagged part ends the answer even after the last chunk."""
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._failure is not None:
            raise self._failure
