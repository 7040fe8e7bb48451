"""Process-wide runtime choices for a long-running bot: the event loop and the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# A young collection every 50,000 net allocations instead of 700: a busy bot allocates thousands of
# short-lived objects per /ask, and each young collection also walks everything that survived it. Every
# message being moderated holds ~40 tracked objects until its verdict (~150 ms); at 10,000 a young
# collection came every ~125 ms at 2,000 msg/s and walked and promoted nearly all of them. 50,000 cut CPU
# per message and per /ask by ~3% for +0.8 MiB of peak RSS (docs/performance.md).
YOUNG_THRESHOLD = 50_000


def event_loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The EVENT_LOOP setting: uvloop when it is installed (not on Windows) for `auto`; None means
    asyncio's own loop.

    uvloop runs the sockets, timers and callbacks in C: the same /ask costs less CPU, which is what
    decides how many run at once without queueing (docs/performance.md).
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError(
                "EVENT_LOOP=uvloop, but uvloop is not installed (it has no Windows build)"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], event_loop: str = "auto") -> T:
    """Run the process's main coroutine on the chosen event loop, with the collector tuned first."""
    tune_garbage_collector()
    with asyncio.Runner(loop_factory=event_loop_factory(event_loop)) as runner:
        return runner.run(main)


def tune_garbage_collector() -> None:
    """Fewer young collections; called once at start-up, before the client exists."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_startup_objects() -> None:
    """Move everything alive once the bot is connected (modules, commands, the guild cache) out of the
    collector's sight. A full collection walked all of it: a 70 ms pause every few thousand /asks.

    Only for the process that runs the bot: objects frozen here are never collected if they later
    become cyclic garbage, which is harmless for start-up state but would leak in a test process.
    """
    gc.freeze()
    log.debug("froze %d start-up objects", gc.get_freeze_count())
