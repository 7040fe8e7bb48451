"""discord.py starts a task per listener per event: only listeners whose test wants the message get one."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask
from testkit.openai import FakeOpenAI
from tests.e2e.moderation.test_moderation_channel import wait_moderated
from tests.support.moderation import moderated_texts, set_policy
from tests.support.server import World


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(event, listener) of every task discord.py was asked to start, seen at the library's own method, and
    ("dispatched", event) of every event it dispatched."""
    seen: list[tuple[str, str]] = []
    schedule = discord.Client._schedule_event
    dispatch = discord.Client.dispatch

    def spy_schedule(self: discord.Client, coro: Any, event_name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((event_name, coro.__qualname__))
        return schedule(self, coro, event_name, *args, **kwargs)

    def spy_dispatch(self: discord.Client, event: str, /, *args: Any, **kwargs: Any) -> None:
        seen.append(("dispatched", event))
        dispatch(self, event, *args, **kwargs)

    monkeypatch.setattr(discord.Client, "_schedule_event", spy_schedule)
    monkeypatch.setattr(discord.Client, "dispatch", spy_dispatch)
    return seen


def listeners(seen: list[tuple[str, str]], event: str) -> list[str]:
    return [name for event_name, name in seen if event_name == event]


async def test_a_member_message_and_its_edit_start_moderation_alone(
    mod_bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    scheduled: list[tuple[str, str]],
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "just chatting here")
    await wait_moderated(fake_openai, "just chatting here")
    # Moderation took the message without a task: its check's callback concludes a clean verdict.
    assert listeners(scheduled, "on_message") == []

    # Its verdict went to recall, which read that recall is off in this server ...
    await fake_discord.wait_until(
        lambda: listeners(scheduled, "on_message_moderated"), what="the verdict handed to recall"
    )
    assert listeners(scheduled, "on_message_moderated") == ["RecallCommands.on_message_moderated"]

    scheduled.clear()
    await fake_discord.edit_message(world.channel_id, int(message["id"]), "just chatting here, edited")
    await wait_moderated(fake_openai, "just chatting here, edited")
    assert listeners(scheduled, "on_raw_message_edit") == ["ModerationEvents.on_raw_message_edit"]
    # ... so the next verdicts in this server start no recall task.
    await fake_discord.wait_until(
        lambda: "message_moderated" in listeners(scheduled, "dispatched"), what="the edit's verdict"
    )
    assert listeners(scheduled, "on_message_moderated") == []


async def test_the_bots_own_answer_starts_no_moderation_task(
    mod_bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    scheduled: list[tuple[str, str]],
) -> None:
    fake_openai.queue_chat_replies("The answer, in a message the bot posts and edits.")
    await ask(fake_discord, world, "a question")
    own = listeners(scheduled, "on_message") + listeners(scheduled, "on_raw_message_edit")
    # The answer's gateway echoes reached the bot (recall indexes its own answers where it is on) ...
    assert any(name.startswith("RecallCommands.") for name in own), scheduled
    # ... and moderation, which never judges the bot's own messages, got no task for them.
    assert not any(name.startswith("ModerationEvents.") for name in own), own

    # Recall is off in this server, and the first answer's check read that: the next answer's echoes
    # reach the bot and start no task at all.
    scheduled.clear()
    fake_openai.queue_chat_replies("A second answer.")
    await ask(fake_discord, world, "another question")
    assert "raw_message_edit" in listeners(scheduled, "dispatched")
    assert listeners(scheduled, "on_message") + listeners(scheduled, "on_raw_message_edit") == []


async def test_a_server_whose_policy_exempts_a_role_has_its_messages_moderated_in_a_task(
    mod_bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    scheduled: list[tuple[str, str]],
) -> None:
    """The author's roles are read only where they matter, in on_message's task; the verdict still acts."""
    await set_policy(mod_bot, world.guild_id, exempt_roles=frozenset({world.moderator_role_id}))
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME in a task")
    await fake_discord.wait_until(
        lambda: int(message["id"]) in fake_discord.deleted_message_ids, what="the flagged message deleted"
    )
    assert listeners(scheduled, "on_message") == ["ModerationEvents.on_message"]
    by_mod = await fake_discord.post_message(world.channel_id, world.moderator_id, "FLAGME from a mod")
    await fake_discord.wait_until(
        lambda: listeners(scheduled, "on_message") == ["ModerationEvents.on_message"] * 2, what="a task"
    )
    await asyncio.sleep(0.3)
    assert int(by_mod["id"]) not in fake_discord.deleted_message_ids
    assert "FLAGME from a mod" not in moderated_texts(fake_openai)


async def test_a_message_moderation_cannot_take_without_a_task_is_still_judged_whole(
    mod_bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    scheduled: list[tuple[str, str]],
) -> None:
    """A hidden word (judged as written and normalised) goes the long way, in a task: still deleted."""
    warm = await fake_discord.post_message(world.channel_id, world.member_id, "the policy is in memory now")
    await wait_moderated(fake_openai, "the policy is in memory now")
    hidden = await fake_discord.post_message(world.channel_id, world.member_id, "you FL__AG__ME idiot")
    await fake_discord.wait_until(
        lambda: int(hidden["id"]) in fake_discord.deleted_message_ids,
        what="the hidden word's message deleted",
    )
    texts = moderated_texts(fake_openai)
    assert "you FL__AG__ME idiot" in texts and any("FLAGME" in t for t in texts)
    assert int(warm["id"]) not in fake_discord.deleted_message_ids
    assert listeners(scheduled, "on_message") == []  # taken, then continued in a task of its own
