"""Child process: the real bot (or a bare discord.py client, the memory baseline) against the fake Discord.

Run by the harness as `python -m bench.botproc '<json config>'`; prints READY once connected, stops on SIGTERM.
Running the bot in its own process keeps the fakes' CPU time out of its figures and gives it its own RSS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import discord
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.ops.runtime import freeze_startup_objects
from bot.ops.runtime import run as run_on_runtime


async def _no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py sleeps 5 s before re-identifying; the fake has no identify rate limit."""


def build_client(config: dict[str, Any]) -> discord.Client:
    if config.get("floor") == "channel":
        from bench.floor_bot import ChannelFloorBot

        client: discord.Client = ChannelFloorBot(config, guild_ready_timeout=0.05)
    elif config.get("floor"):
        from bench.floor_bot import FloorBot

        client = FloorBot(config, guild_ready_timeout=0.05)
    elif config.get("bare"):
        client = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
    else:
        from bot.discord_io.client import create_bot
        from bot.settings import Settings

        known = set(Settings.model_fields)
        # Limits the bench lifts (per-server concurrency, budgets) may not exist in every version.
        values = {k: v for k, v in config["settings"].items() if k in known}
        if "shard_ids" in values:
            values["shard_ids"] = frozenset(values["shard_ids"])
        settings = Settings().model_copy(update=values)
        client = create_bot(settings, guild_ready_timeout=0.05)
    client.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
    return client


def apply_tweak(client: discord.Client, path: str, value: Any) -> None:
    """Set an attribute below the bot's services (e.g. "moderation.batcher.window"), for before/after runs."""
    *parents, name = path.split(".")
    target: Any = getattr(client, "services", client)
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


async def serve(config: dict[str, Any]) -> None:
    Route.BASE = f"{config['discord_url']}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config["gateway_url"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    client = build_client(config)
    async with client:
        runner = asyncio.create_task(client.start(config["token"]), name="bot")
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()  # the start failed: raise its error
            return
        for path, value in config.get("tweaks", {}).items():
            apply_tweak(client, path, value)
        freeze_startup_objects()  # as bot/runner.py does once the bot is connected
        print("READY", flush=True)
        await stop.wait()
        await client.close()
        await asyncio.wait({runner}, timeout=5)


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(level=config.get("log_level", "WARNING"), stream=sys.stderr)
    # The runtime `python -m bot` uses (bot/runner.py): the figures are the product's, not a bench's.
    profile_to = os.environ.get("BENCH_PROFILE")  # a file for cProfile's stats of the bot's process
    if not profile_to:
        run_on_runtime(serve(config), config["settings"].get("event_loop", "auto"))
        return
    import cProfile

    with cProfile.Profile() as profiler:
        run_on_runtime(serve(config), config["settings"].get("event_loop", "auto"))
    profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
