"""Waiting for what a test checks (a condition, the channel's stored memory) instead of a quiet moment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.discord_io.client import OpenAIBot

Turns = list[tuple[str, str]]


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:  # noqa: ASYNC109
    """Poll `condition` until it holds; AssertionError after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def turns(bot: OpenAIBot, channel_id: int) -> Turns:
    """The channel's stored conversation, oldest first, as (role, content)."""
    rows = await bot.services.store.fetchall(
        "SELECT role, content FROM turns WHERE channel_id = ? ORDER BY id", (channel_id,)
    )
    return [(r["role"], r["content"]) for r in rows]


async def turns_when(
    bot: OpenAIBot,
    channel_id: int,
    ready: Callable[[Turns], bool],
    timeout: float = 10,  # noqa: ASYNC109
) -> Turns:
    """The channel's stored turns once `ready` says so, or as they stand after `timeout`: the memory is
    written after the answer shows, and a loaded machine stretches the gap."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stored = await turns(bot, channel_id)
        if ready(stored) or asyncio.get_running_loop().time() > deadline:
            return stored
        await asyncio.sleep(0.02)
