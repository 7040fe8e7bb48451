"""At start-up, answers a crash left half-written are edited to say so (bot/discord_io/interrupted.py)."""

from __future__ import annotations

import asyncio
import logging

from discord.ext import commands

from bot.chat.inflight import InflightAnswers, Orphan
from bot.discord_io.client import OpenAIBot
from bot.discord_io.interrupted import tell_interrupted
from bot.storage.store import StoreError

log = logging.getLogger(__name__)


class InterruptedAnswers(commands.Cog):
    def __init__(self, bot: OpenAIBot, answers: InflightAnswers) -> None:
        self.bot = bot
        self.answers = answers
        self._task: asyncio.Task[int] | None = None

    async def cog_load(self) -> None:
        # Before the gateway connects, so no answer of this process is mistaken for an orphan.
        try:
            orphans = await self.answers.take_orphans()
        except StoreError:
            log.warning("interrupted answers could not be read", exc_info=True)
            return
        if orphans:
            self._task = asyncio.create_task(self._tell(orphans), name="interrupted-answers")

    async def _tell(self, orphans: list[Orphan]) -> int:
        # Once the guilds are known, so each notice is written in its server's language.
        await self.bot.wait_until_ready()
        return await tell_interrupted(self.bot, orphans)

    async def cog_unload(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(InterruptedAnswers(bot, bot.services.inflight_answers))
