"""Work in progress (commands, mention replies), so a shutdown can let it finish within a grace period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Notify = Callable[[], Awaitable[None]]
# How long telling a cut-short user may take, so a hung Discord cannot hold the shutdown forever.
NOTIFY_TIMEOUT = 5.0


class InFlight:
    """Tracks the tasks doing user-visible work. `drain` waits for them, then cancels and notifies the rest."""

    def __init__(self) -> None:
        # Tasks, and futures whose done callback does the rest of the work (channel moderation's checks).
        self._tasks: dict[asyncio.Future[Any], Notify | None] = {}
        self.accepting = True

    def __len__(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    def track(self, notify: Notify | None = None) -> None:
        """Track the current task; `notify` tells its user when the shutdown has to cut it short."""
        task = asyncio.current_task()
        if task is not None:
            self.add(task, notify)

    def add(self, task: asyncio.Future[Any], notify: Notify | None = None) -> None:
        """Track a task or future; `notify` runs after the shutdown cancelled it (tells its user, or queues
        its message)."""
        if task in self._tasks:
            if notify is not None:
                self._tasks[task] = notify
            return
        self._tasks[task] = notify
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._tasks.pop(task, None)

    async def drain(self, grace: float) -> int:
        """Refuse new work, give running work `grace` seconds, then cancel it and notify; returns how many were cut."""
        self.accepting = False
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        logged = False
        while True:
            # Re-read each round: events still arriving during the drain start tracked work too.
            late = [task for task in self._tasks if task is not current and not task.done()]
            remaining = deadline - loop.time()
            if not late or remaining <= 0:
                break
            if not logged:
                log.info("waiting up to %.0f s for %d request(s) in progress", grace, len(late))
                logged = True
            await asyncio.wait(late, timeout=remaining)
        if not late:
            return 0
        notifies = [self._tasks.get(task) for task in late]
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=NOTIFY_TIMEOUT)
        for notify in notifies:
            if notify is None:
                continue
            try:
                await asyncio.wait_for(notify(), NOTIFY_TIMEOUT)
            except Exception:  # one user we could not tell must not stop the shutdown
                log.warning("could not tell a user their request was cut short", exc_info=True)
        log.warning("shutdown cut %d request(s) short after the %.0f s grace period", len(late), grace)
        return len(late)
