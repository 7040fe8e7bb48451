"""The gateway socket wrapper over a real local websocket: turns taken in a backlog, order kept, one-timer
read timeout that fires only after a whole silent timeout and never on an outside cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from bot.discord_io.gateway_turns import TurnTakingSocket, taking_turns

Script = Callable[[web.WebSocketResponse], Awaitable[None]]


@contextlib.asynccontextmanager
async def gateway(script: Script) -> AsyncIterator[TurnTakingSocket]:
    """A websocket server on 127.0.0.1 running `script` for its one client, and that client's socket
    wrapped the way the bot wraps discord.py's (through `taking_turns`)."""
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws)
        await done.wait()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        connect = taking_turns(session.ws_connect)
        socket = await connect(f"http://127.0.0.1:{port}/", autoclose=False)
        try:
            yield socket  # type: ignore[misc]  # taking_turns returns the wrapper, typed as discord.py sees it
        finally:
            done.set()
            await socket.close()
            await runner.cleanup()


async def test_a_backlog_is_read_in_order_with_turns_for_the_loop() -> None:
    frames = [f"event {n}" for n in range(2_000)]
    sent = asyncio.Event()

    async def burst(ws: web.WebSocketResponse) -> None:
        for frame in frames:
            await ws.send_str(frame)
        sent.set()

    async with gateway(burst) as socket:
        socket._slice = (
            0.0  # a turn before every read: the count below does not depend on the machine's speed
        )
        await sent.wait()
        await asyncio.sleep(0.1)  # the backlog reaches the client
        turns = 0
        reading = True

        def tick() -> None:
            nonlocal turns
            turns += 1
            if reading:
                asyncio.get_running_loop().call_soon(tick)

        asyncio.get_running_loop().call_soon(tick)
        received = [(await socket.receive(timeout=30)).data for _ in frames]
        reading = False
    assert received == frames
    # aiohttp alone reads a buffered backlog without a single turn of the loop.
    assert turns >= len(frames)


async def test_a_silent_connection_times_out_like_aiohttps_own_timeout() -> None:
    async def silence(ws: web.WebSocketResponse) -> None:
        return None

    async with gateway(silence) as socket:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.receive(timeout=0.2), 10)
        assert socket.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE


async def test_events_that_keep_coming_move_the_deadline_on() -> None:
    async def steady_then_silent(ws: web.WebSocketResponse) -> None:
        for n in range(30):
            await ws.send_str(f"beat {n}")
            await asyncio.sleep(0.02)

    async with gateway(steady_then_silent) as socket:
        # 30 events over about 0.6 s, each read with a 0.4 s timeout: the first timer fires while events are
        # still coming and must move on instead of ending the read in progress.
        received = [(await socket.receive(timeout=0.4)).data for _ in range(30)]
        assert received == [f"beat {n}" for n in range(30)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.receive(timeout=0.4), 10)


async def test_a_cancelled_read_stays_a_cancellation() -> None:
    async def silence(ws: web.WebSocketResponse) -> None:
        return None

    async with gateway(silence) as socket:
        read = asyncio.create_task(socket.receive(timeout=30))
        await asyncio.sleep(0.05)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert read.cancelled()


async def test_everything_else_is_the_sockets_own() -> None:
    async def echo(ws: web.WebSocketResponse) -> None:
        message = await ws.receive()
        await ws.send_str(f"echo {message.data}")

    async with gateway(echo) as socket:
        await socket.send_str("hello")
        reply = await socket.receive(timeout=10)
        assert reply.data == "echo hello"
        assert not socket.closed
