"""Answers a crash left half-written are edited to say so (bot/discord_io/interrupted.py): at start-up, those of
any process that is gone; and while running, by the one process holding the "interrupted-answers" lease, those
of another process that died (kill -9, a lost host) and has not restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from discord.ext import commands

from bot.chat.inflight import InflightAnswers, Orphan
from bot.discord_io.client import OpenAIBot
from bot.discord_io.interrupted import tell_interrupted
from bot.storage.leases import LeaseKeeper, Leases
from bot.storage.store import StoreError

log = logging.getLogger(__name__)

ORPHANS_LEASE = "interrupted-answers"
# An interaction token lives 15 minutes: a dead process's askers hear within about a minute of its lease.
ORPHANS_EVERY = 60.0


class InterruptedAnswers(commands.Cog):
    def __init__(self, bot: OpenAIBot, answers: InflightAnswers, leases: Leases) -> None:
        self.bot = bot
        self.answers = answers
        self.leases = leases
        self.every = ORPHANS_EVERY
        self._task: asyncio.Task[int] | None = None
        self._lease: LeaseKeeper | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        # Before the gateway connects, so no answer of this process is mistaken for an orphan.
        try:
            orphans = await self.answers.take_orphans()
        except StoreError:
            log.warning("interrupted answers could not be read", exc_info=True)
            return
        if orphans:
            self._task = asyncio.create_task(self._tell(orphans), name="interrupted-answers")
        self._lease = self.leases.keeper(ORPHANS_LEASE)
        self._watcher = asyncio.create_task(
            self._lease.run_every(self.every, self._tell_dead_processes), name="interrupted-answers-watch"
        )

    async def _tell(self, orphans: list[Orphan]) -> int:
        # Once the guilds are known, so each notice is written in its server's language.
        await self.bot.wait_until_ready()
        return await tell_interrupted(self.bot, orphans)

    async def _tell_dead_processes(self) -> None:
        try:
            orphans = await self.answers.take_orphans()
            if orphans:
                await tell_interrupted(self.bot, orphans)
        except StoreError:
            log.warning("interrupted answers could not be read; retrying later")
        except Exception:
            log.exception("telling interrupted answers failed; retrying later")

    async def cog_unload(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._lease is not None:
            await self._lease.stop()
            self._lease = None


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(InterruptedAnswers(bot, bot.services.inflight_answers, bot.services.leases))
