"""discord.py's gateway socket, reading a backlog of events in slices and timing out with one timer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

# One turn of the event loop per this many seconds of reading: a backlog of 500 events (about 75 ms of
# parsing) becomes 15 slices, and each moderation reply, timer and heartbeat waits at most one slice.
DEFAULT_SLICE = 0.005

Connect = Callable[..., Awaitable[aiohttp.ClientWebSocketResponse]]


class TurnTakingSocket:
    """discord.py's gateway websocket with two changes to `receive`; everything else is the socket's own.

    - **It takes turns.** When events arrive faster than they are parsed, aiohttp hands discord.py every
      buffered frame without suspending, and discord.py parses and dispatches them all in one step of the
      event loop. At 3,000 messages a second such a step lasted up to 100 ms (bench/capacity.py), while the
      moderation replies those messages wait for, the request timers and the heartbeat sat ready behind it.
      `receive` now yields once per `slice_` seconds of reading. The order of events is unchanged.
    - **One timer for the read timeout.** discord.py passes a timeout (a silent connection is a dead one) to
      every `receive`, and aiohttp builds an `asyncio.timeout` for each: a timer scheduled and cancelled
      per event, a twentieth of a busy process's CPU. Here one timer is armed for the deadline and moved on
      lazily: when it fires early (events came meanwhile) it re-arms for the newest deadline; when it fires
      while a read has waited the whole timeout, the read raises `TimeoutError`, as aiohttp's would.
    """

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, slice_: float = DEFAULT_SLICE) -> None:
        self._socket = socket
        self._slice = slice_
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task[Any] | None = None
        self._timed_out = False

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109  # aiohttp's signature
        now = self._loop.time()
        if now - self._since >= self._slice:
            await asyncio.sleep(0)
            self._since = now = self._loop.time()
        if not timeout:
            message = await self._socket.receive()
        else:
            message = await self._receive_within(now + timeout)
        if self._loop.time() - now >= self._slice:
            self._since = self._loop.time()  # it waited for data: the loop had its turns meanwhile
        return message

    async def _receive_within(self, deadline: float) -> aiohttp.WSMessage:
        self._deadline = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)
        task = asyncio.current_task()
        self._reading, self._timed_out = task, False
        try:
            return await self._socket.receive()
        except asyncio.CancelledError:
            if self._timed_out and task is not None and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._reading = None

    def _expire(self) -> None:
        self._timer = None
        if self._reading is None:
            return  # between reads: the next read arms a new timer
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._timed_out = True
        self._reading.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


def taking_turns(connect: Connect, slice_: float = DEFAULT_SLICE) -> Connect:
    """`connect` (discord.py's `HTTPClient.ws_connect`) whose sockets are TurnTakingSockets."""

    async def ws_connect(*args: Any, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        socket = TurnTakingSocket(await connect(*args, **kwargs), slice_)
        return socket  # type: ignore[return-value]  # duck-typed: discord.py only calls its methods

    return ws_connect
