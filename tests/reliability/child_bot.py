"""Test-only entry point: the real `bot.ops.runner.serve` in a child process, pointed at a fake Discord.

`python -m tests.reliability.child_bot` with FAKE_DISCORD_PORT set, plus the bot's usual environment
(DISCORD_TOKEN, OPENAI_API_KEY, OPENAI_BASE_URL, DATABASE_URL...). discord.py reads its REST base and
gateway URL from two class attributes, so pointing them at 127.0.0.1 is all it takes; nothing in bot/
knows about the fakes.
"""

from __future__ import annotations

import asyncio
import os
import sys

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.__main__ import configure_logging
from bot.ops.runner import serve
from bot.settings import SettingsError, load_settings


async def _no_identify_wait(self: discord.Client, shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py waits 5 s before each IDENTIFY after the first (Discord's identify rate limit, which the
    fake does not have): a process holding several shards would start seconds slower."""


def main() -> int:
    port = int(os.environ["FAKE_DISCORD_PORT"])
    discord.Client.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
    Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")
    try:
        settings = load_settings(env_file=None)
    except SettingsError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # A small guild_ready_timeout: the fake sends every GUILD_CREATE at once.
    return asyncio.run(serve(settings, guild_ready_timeout=0.05))


if __name__ == "__main__":
    sys.exit(main())
