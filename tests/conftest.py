"""Shared fixtures: the fake Discord and fake OpenAI on 127.0.0.1, and the real bot started against them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot, create_bot
from testkit.discord import FakeDiscord, running_bot
from testkit.openai import FakeOpenAI
from tests.support.database import BACKENDS, backend, stop_cluster
from tests.support.server import (
    ADMINISTRATOR,
    LOADING,
    MANAGE_CHANNELS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MODERATE_MEMBERS,
    VIEW_AND_SEND,
    BotFactory,
    ErrorLogWatcher,
    World,
    assert_no_mentions_parsed,
    make_settings,
)

# Test modules also import these from the conftest.
__all__ = [
    "ADMINISTRATOR",
    "LOADING",
    "MANAGE_MESSAGES",
    "VIEW_AND_SEND",
    "BotFactory",
    "World",
    "assert_no_mentions_parsed",
    "make_settings",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=BACKENDS,
        default=None,
        help="the backend every test's bot uses (default: TEST_DATABASE, else sqlite)",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--database")
    if chosen:
        os.environ["TEST_DATABASE"] = chosen  # xdist workers and tests/support/database.py read it
    backend()  # a misspelt TEST_DATABASE stops the run here, not in every test


def pytest_report_header() -> str:
    return f"database backend: {backend()} (TEST_DATABASE)"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Tests that only make sense on one backend say so, and why: @pytest.mark.sqlite_only("reason").
    for name in ("sqlite_only", "postgresql_only"):
        marker = item.get_closest_marker(name)
        if marker is not None and backend() != name.removesuffix("_only"):
            reason = marker.args[0] if marker.args else ""
            pytest.skip(f"{name.removesuffix('_only')} only: {reason}")


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_cluster()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
def world(fake_discord: FakeDiscord) -> World:
    guild_id = fake_discord.add_guild("Test Guild")
    channel_id = fake_discord.add_channel(guild_id, "general")
    other_channel_id = fake_discord.add_channel(guild_id, "random")
    moderator_role_id = fake_discord.add_role(
        guild_id,
        "Moderators",
        permissions=MANAGE_MESSAGES | MANAGE_CHANNELS | MANAGE_GUILD | MODERATE_MEMBERS | VIEW_AND_SEND,
    )
    member_id = fake_discord.add_member(guild_id, name="alice")
    moderator_id = fake_discord.add_member(guild_id, name="mod", roles=[moderator_role_id])
    return World(guild_id, channel_id, other_channel_id, member_id, moderator_id, moderator_role_id)


@pytest.fixture
def error_logs(request: pytest.FixtureRequest) -> Iterator[ErrorLogWatcher]:
    watcher = ErrorLogWatcher()
    root = logging.getLogger()
    root.addHandler(watcher)
    try:
        yield watcher
    finally:
        root.removeHandler(watcher)
    if request.node.get_closest_marker("allow_error_logs") is None and watcher.records:
        details = "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in watcher.records[:5])
        pytest.fail(f"the bot logged {len(watcher.records)} error(s):\n{details}")


@pytest.fixture
async def start_bot(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Path, error_logs: ErrorLogWatcher
) -> AsyncIterator[BotFactory]:
    """Start the real bot against the fakes; call again after `stop_bot` to test restarts."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> OpenAIBot:
        settings = make_settings(tmp_path, fake_openai, **overrides)
        # SHARD_COUNT in the overrides gives the sharded bot, as `python -m bot` would.
        bot = create_bot(settings, guild_ready_timeout=0.05)
        await stack.enter_async_context(running_bot(fake_discord, bot))
        # Keep the real retry policy but with short back-off, so failure tests stay fast.
        bot.services.gateway.retry.base_delay = 0.01
        return bot

    async with stack:
        yield start
    assert_no_mentions_parsed(fake_discord)


@pytest.fixture
async def bot(start_bot: BotFactory, world: World) -> OpenAIBot:
    return await start_bot()


@pytest.fixture
def modlog_id(fake_discord: FakeDiscord, world: World) -> int:
    """A mod-log channel in the world's server (the moderation tests point the policy at it)."""
    return fake_discord.add_channel(world.guild_id, "mod-log")


@pytest.fixture
async def mod_bot(start_bot: BotFactory, world: World, modlog_id: int) -> OpenAIBot:
    """The bot started with defaults, its moderation policy reporting to `modlog_id`."""
    from tests.support.moderation import set_policy

    bot = await start_bot()
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    return bot
