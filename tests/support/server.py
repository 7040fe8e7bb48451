"""The test server the fixtures build: permission bits, the small World, the bot's settings and log checks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.discord_io.client import OpenAIBot
from bot.settings import Settings
from testkit.discord import FakeDiscord
from testkit.openai import FakeOpenAI
from tests.support.database import database_url

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


def make_settings(tmp_path: Path, fake_openai: FakeOpenAI, **overrides: Any) -> Settings:
    base = Settings(
        discord_token=FakeDiscord.DEFAULT_TOKEN,
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
        database_url=database_url(tmp_path),  # a SQLite file, or this test's own PostgreSQL database
        stream_edit_interval=0.05,
        openai_max_retries=2,
        openai_timeout=5.0,
        # A test ending with work in flight waits at most this long at close (see bot/discord_io/inflight.py).
        shutdown_grace=1.0,
        # The quota breaker's pause: short, so a test that recovers from insufficient_quota sees the probe
        # succeed on its next request; breaker tests set their own (tests/e2e/cost/test_limits.py).
        quota_cooldown=0.05,
        # Start-up catch-up reads every channel's history in the background, racing each test's own history
        # reads and moderation requests; the catch-up tests and the child-process tests run with it on.
        moderation_catchup_messages=0,
    )
    unknown = overrides.keys() - Settings.model_fields.keys()
    assert not unknown, f"not settings: {sorted(unknown)}"
    return base.model_copy(update=overrides)


class ErrorLogWatcher(logging.Handler):
    """Collects ERROR records so a test fails when a handler crashed (discord.py only logs those)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


BotFactory = Callable[..., Awaitable[OpenAIBot]]


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
