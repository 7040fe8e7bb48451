"""Memory: the bot process's RSS at idle, and after many servers and messages, beside a bare discord.py client."""

from __future__ import annotations

import asyncio

from bench.ask_latency import run_asks, run_in_flight
from bench.harness import BenchWorld, Figure, Upstream, hwm_mb


async def _settle(world: BenchWorld, seconds: float) -> float:
    """RSS once the bot has been quiet for `seconds` (the highest of a few readings)."""
    readings = []
    for _ in range(4):
        await asyncio.sleep(seconds / 4)
        readings.append(world.rss_mb())
    return max(readings)


async def run(
    servers: int = 100,
    messages: int = 10_000,
    settle: float = 2.0,
    in_flight: int = 200,
    asks: int = 400,
    upstream: Upstream | None = None,
) -> list[Figure]:
    async with BenchWorld(bare=True, channels=1, members=2) as bare_world:
        bare = await _settle(bare_world, settle)
        bare_peak = hwm_mb(bare_world.pid)
    # The bot at idle, after /asks and at `in_flight` /asks in progress, before any other server.
    async with BenchWorld(upstream=upstream or Upstream(), channels=20, members=200) as world:
        idle = await _settle(world, settle)
        await run_asks(world, 1, 3, "mem")
        after_asks = await _settle(world, settle)
        loaded_task = asyncio.ensure_future(run_in_flight(world, in_flight, asks, "memload"))
        peak_during = 0.0
        while not loaded_task.done():
            peak_during = max(peak_during, world.rss_mb())
            await asyncio.sleep(0.1)
        await loaded_task
        peak = hwm_mb(world.pid)
        # Then the same process with many servers and messages (one process: each start costs seconds).
        channels: list[tuple[int, int]] = [(world.channel_ids[0], world.member_ids[0])]
        for n in range(servers - 1):
            guild = world.discord.add_guild(f"Server {n}")
            channel = world.discord.add_channel(guild, "general")
            members = [world.discord.add_member(guild, name=f"member{n}-{k}") for k in range(5)]
            channels.append((channel, members[0]))
        await asyncio.sleep(0.5)  # GUILD_CREATEs are flushed by background tasks
        for n in range(messages):
            channel, author = channels[n % len(channels)]
            await world.discord.post_message(channel, author, f"message {n}: just chatting about the weather")
        loaded = await _settle(world, settle)
        await run_asks(world, 1, 3, "mem")
        asked = await _settle(world, settle)
    section = "Memory (RSS of the bot's process)"
    return [
        Figure(
            section,
            "idle, connected to 1 server",
            idle,
            "MiB",
            bare,
            "bare discord.py client",
            "< 80 MiB",
            idle < 80,
        ),
        Figure(
            section,
            "after 3 /asks",
            after_asks,
            "MiB",
            idle,
            "the bot at idle",
            "< 130 MiB",
            after_asks < 130,
        ),
        Figure(
            section,
            f"highest RSS at {in_flight} /asks in flight",
            peak_during,
            "MiB",
            idle,
            "the bot at idle",
            "< 160 MiB",
            peak_during < 160,
        ),
        Figure(
            section,
            "VmHWM (peak RSS over the whole run)",
            peak,
            "MiB",
            bare_peak,
            "bare discord.py client's VmHWM",
        ),
        Figure(
            section,
            f"after {servers} servers and {messages:,} messages",
            loaded,
            "MiB",
            idle,
            "the bot at idle",
        ),
        Figure(
            section,
            "then after 3 /ask",
            asked,
            "MiB",
            idle,
            "the bot at idle",
        ),
    ]
