"""Runs the bot until SIGINT or SIGTERM, then closes it so every committed write stays committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import discord

from bot.discord_io.client import OpenAIBot, create_bot
from bot.ops.runtime import freeze_startup_objects
from bot.ops.runtime import run as run_on_runtime
from bot.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, **client_options: object) -> int:
    bot = create_bot(settings, **client_options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with bot:
        runner = asyncio.create_task(bot.start(settings.discord_token), name="discord-client")
        settle = asyncio.create_task(_freeze_when_ready(bot), name="freeze-startup-objects")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("shutting down on signal")
            await bot.close()
        stopper.cancel()
        settle.cancel()
        try:
            await runner
        except discord.LoginFailure:
            log.error(
                "Discord rejected DISCORD_TOKEN. Reset the token in the developer portal and update .env."
            )
            return 1
        except discord.PrivilegedIntentsRequired:
            log.error(
                "The Message Content intent is not enabled. Developer portal -> Bot -> Privileged Gateway "
                "Intents -> enable MESSAGE CONTENT INTENT, then restart."
            )
            return 1
    return 0


async def _freeze_when_ready(bot: OpenAIBot) -> None:
    await bot.wait_until_ready()
    freeze_startup_objects()


def run_bot(settings: Settings) -> int:
    try:
        return run_on_runtime(serve(settings), settings.event_loop)
    except KeyboardInterrupt:
        return 0
