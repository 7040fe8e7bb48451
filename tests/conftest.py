"""Shared fixtures: the fake Discord and fake OpenAI on 127.0.0.1, and the real bot started against them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from bot.settings import Settings
from testkit.fake_discord import FakeDiscord, running_bot
from testkit.fake_openai import FakeOpenAI

ADMINISTRATOR = 1 << 3
MANAGE_MESSAGES = 1 << 13
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
LOADING = 1 << 7
MODERATE_MEMBERS = 1 << 40
VIEW_AND_SEND = (1 << 10) | (1 << 11) | (1 << 16)  # view channel, send messages, read history


@dataclass
class World:
    """A small server: one guild with a text channel, a second channel, a member and a moderator."""

    guild_id: int
    channel_id: int
    other_channel_id: int
    member_id: int
    moderator_id: int
    moderator_role_id: int


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


def make_settings(tmp_path: Path, fake_openai: FakeOpenAI, **overrides: Any) -> Settings:
    base = Settings(
        discord_token=FakeDiscord.DEFAULT_TOKEN,
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
        database_url=f"sqlite:///{tmp_path / 'bot.db'}",
        stream_edit_interval=0.05,
        openai_max_retries=2,
        openai_timeout=5.0,
        # A test ending with work in flight waits at most this long at close (see bot/drain.py).
        shutdown_grace=1.0,
        # The quota breaker's pause: short, so a test that recovers from insufficient_quota sees the probe
        # succeed on its next request; breaker tests set their own (tests/test_limits.py).
        quota_cooldown=0.05,
        # Start-up catch-up reads every channel's history in the background, racing each test's own history
        # reads and moderation requests; tests/test_moderation_catchup.py and the child-process tests
        # run with it on.
        moderation_catchup_messages=0,
    )
    return replace(base, **overrides)


class ErrorLogWatcher(logging.Handler):
    """Collects ERROR records so a test fails when a handler crashed (discord.py only logs those)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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


BotFactory = Callable[..., Awaitable[OpenAIBot]]


@pytest.fixture
async def start_bot(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Path, error_logs: ErrorLogWatcher
) -> AsyncIterator[BotFactory]:
    """Start the real bot against the fakes; call again after `stop_bot` to test restarts."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> OpenAIBot:
        settings = make_settings(tmp_path, fake_openai, **overrides)
        bot = OpenAIBot(settings, guild_ready_timeout=0.05)
        await stack.enter_async_context(running_bot(fake_discord, bot))
        # Keep the real retry policy but with short back-off, so failure tests stay fast.
        bot.services.gateway.retry.base_delay = 0.01
        return bot

    async with stack:
        yield start
    assert_no_mentions_parsed(fake_discord)


def assert_no_mentions_parsed(fake: FakeDiscord) -> None:
    """Every message the bot sent carried allowed_mentions with nothing to parse, so nobody was pinged."""
    for message in fake.sent_messages():
        if message.get("flags", 0) & LOADING and not message.get("content"):
            continue  # a deferral's "thinking…" placeholder carries no text
        allowed = message.get("allowed_mentions")
        assert allowed is not None, f"message sent without allowed_mentions: {message.get('kind')}"
        assert allowed.get("parse") == [], allowed
        assert not allowed.get("roles") and not allowed.get("users") and not allowed.get("replied_user"), (
            allowed
        )
        assert not message.get("mention_everyone") and not message.get("mention_roles")


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
    from tests.moderation_support import set_policy

    bot = await start_bot()
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    return bot
