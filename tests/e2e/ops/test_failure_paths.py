"""Failures outside a command's body still end in a message, and background loops outlive one failure."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot.cost.rules import LimitsStore
from bot.moderation.channel import ChannelModerator
from bot.privacy.registry import Privacy
from bot.storage.store import open_store
from testkit.discord import FakeDiscord
from testkit.openai import FakeOpenAI
from tests.support.database import database_url
from tests.support.moderation import actions, moderator
from tests.support.server import BotFactory, World


def fail_first(original: Any, failures: list[int]) -> Any:
    """`original`, except that its first call raises a database error (a full or broken disk)."""

    async def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        failures.append(1)
        if len(failures) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return await original(self, *args, **kwargs)

    return flaky


@pytest.mark.allow_error_logs  # an unexpected crash is logged at ERROR, as it should be
async def test_a_crash_while_admitting_a_command_still_answers_the_user(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_rule(self: LimitsStore, guild_id: int, command: str) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    await start_bot()
    monkeypatch.setattr(LimitsStore, "rule", broken_rule)
    interaction = await fake_discord.invoke(
        "ask",
        {"prompt": "hello"},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    done = await interaction.wait_done(timeout=5)
    assert "Something went wrong on my side" in done.all_text()
    assert done.ephemeral
    assert "disk I/O" not in done.all_text()  # no internals leak to the user
    assert fake_openai.requests == []  # refused before any call


async def test_the_moderation_queue_drainer_outlives_a_database_error(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[int] = []
    monkeypatch.setattr(ChannelModerator, "drain", fail_first(ChannelModerator.drain, failures))
    bot = await start_bot(moderation_retry_interval=0.05, openai_max_retries=0)
    fake_openai.down = True
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME while down")
    for _ in range(500):
        if await moderator(bot).queue.count() == 1:
            break
        await asyncio.sleep(0.01)
    await fake_discord.wait_until(lambda: len(failures) >= 1, timeout=5, what="a failed drain")
    fake_openai.down = False
    await fake_discord.wait_until(
        lambda: int(message["id"]) in fake_discord.deleted_message_ids,
        timeout=5,
        what="the queued message judged",
    )
    assert [r["message_id"] for r in await actions(bot)] == [int(message["id"])]
    assert await moderator(bot).queue.count() == 0


async def test_the_retention_purge_outlives_a_database_error(
    start_bot: BotFactory, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(database_url(tmp_path))
    await store.execute(
        "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
        "VALUES (?, ?, ?, 'user', 'ancient', 1, ?)",
        (world.guild_id, world.channel_id, world.member_id, time.time() - 30 * 86400),
    )
    await store.close()
    failures: list[int] = []
    monkeypatch.setattr(Privacy, "purge_expired", fail_first(Privacy.purge_expired, failures))
    bot = await start_bot(retention_days=7)
    await asyncio.sleep(0.1)  # the start-up purge has failed; restart the loop with a short period
    # load_extension imports cogs/ afresh, so the cog's class is not tests' `cogs.retention.Retention`.
    access: Any = bot.get_cog("Retention")
    assert access is not None
    await access.cog_unload()
    failures.clear()  # its next purge fails again, the one after must still run
    access.purge_every = 0.05
    await access.cog_load()
    for _ in range(250):
        row = await bot.services.store.fetchone("SELECT COUNT(*) FROM turns")
        if row is not None and row[0] == 0:
            break
        await asyncio.sleep(0.02)
    assert len(failures) >= 2  # the first purge failed and the loop went on
    row = await bot.services.store.fetchone("SELECT COUNT(*) FROM turns")
    assert row is not None and row[0] == 0
