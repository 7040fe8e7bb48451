"""Shared steps of the reliability tests: run a command, read the database, prove the channel still works."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import answer_text, ask_settled
from testkit.openai import FakeOpenAI
from tests.support.database import integrity_ok
from tests.support.server import World
from tests.support.waits import turns

EPHEMERAL = 1 << 6


def assert_clear_failure(done: FakeInteraction, *phrases: str) -> None:
    """The interaction ended in one ephemeral, readable error message containing `phrases`."""
    text = done.all_text()
    for phrase in phrases:
        assert phrase.lower() in text.lower(), text
    assert "Traceback" not in text and "Exception" not in text, text
    assert done.followups and done.followups[-1]["flags"] & EPHEMERAL, done.describe()
    assert done.original is None or "▌" not in (done.original.get("content") or ""), done.describe()


async def assert_next_ask_works(
    bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    *,
    channel: int | None = None,
) -> None:
    """After a fault the same channel answers the next /ask, and the exchange is remembered."""
    channel = channel or world.channel_id
    fake_openai.clear_injections()
    fake_openai.queue_chat_replies("back to normal")
    before = await turns(bot, channel)
    done = await ask_settled(fake_discord, world, "are you there?", channel=channel)
    assert done.original is not None and answer_text(done.original["content"]) == "back to normal", (
        done.describe()
    )
    after = await turns(bot, channel)
    assert after == [*before, ("user", "are you there?"), ("assistant", "back to normal")], after


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound but never listening, so no other process (other
    test runs share the machine) can take it over while the test uses it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def integrity_check(url: str) -> str:
    return "ok" if integrity_ok(url) else "failed"


def moderation_inputs(body: Any) -> list[str]:
    """The texts one /moderations request carried (a string, a list of strings, or multimodal parts)."""
    value = body.get("input") if isinstance(body, dict) else None
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    for item in value or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("type") == "text":
            out.append(str(item.get("text")))
    return out


def moderated_texts(fake_openai: FakeOpenAI) -> list[str]:
    return [text for r in fake_openai.calls("/moderations") for text in moderation_inputs(r.json)]
