"""OpenAI faults injected through the fake API: what the user saw, what the database holds, and that the
channel's next command works."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.discord_io.client import OpenAIBot
from bot.openai_api.http import OpenAIHTTP
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask_settled
from testkit.openai import FakeOpenAI
from tests.reliability.helpers import assert_clear_failure, assert_next_ask_works, refused_port, turns
from tests.support.server import BotFactory, World

Inject = Callable[[FakeOpenAI], None]

# (name, injection, phrases the user must read). Every one of these leaves the database untouched.
FAILURES: list[tuple[str, Inject, tuple[str, ...]]] = [
    (
        "429 that outlasts the retries",
        lambda f: f.inject("/chat/completions", 429, headers={"retry-after": "300"}, times=-1),
        ("busy", "try again in 300 s"),
    ),
    ("insufficient_quota", lambda f: f.inject_insufficient_quota("/chat/completions"), ("no credit",)),
    ("500 burst", lambda f: f.inject("/chat/completions", 500, times=-1), ("server error", "try again")),
    ("503 burst", lambda f: f.inject("/chat/completions", 503, times=-1), ("server error", "try again")),
    (
        "stream cut, body ends",
        lambda f: (
            f.queue_chat_replies("a long answer that never ends " * 4),
            f.inject_stream_cut(after_chars=12),
        ),
        ("cut off", "nothing was saved"),
    ),
    (
        "stream cut, connection reset",
        lambda f: (
            f.queue_chat_replies("a long answer that never ends " * 4),
            f.inject_stream_cut(after_chars=12, mode="reset"),
        ),
        ("cut off",),
    ),
    (
        "malformed JSON in the stream",
        lambda f: f.inject_malformed_json("/chat/completions", times=-1),
        ("cut off", "ask again"),
    ),
    (
        "malformed JSON from moderation",
        lambda f: f.inject_malformed_json("/moderations", times=-1),
        ("moderation is unavailable",),
    ),
    (
        "HTML error page from a proxy",
        lambda f: f.inject("/chat/completions", 502, body="<html>Bad Gateway</html>", times=-1),
        ("server error",),
    ),
]


@pytest.mark.parametrize(("name", "inject", "phrases"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_failure_is_explained_nothing_is_stored_and_the_channel_recovers(
    bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    name: str,
    inject: Inject,
    phrases: tuple[str, ...],
) -> None:
    inject(fake_openai)
    done = await ask_settled(fake_discord, world, "tell me something")
    assert_clear_failure(done, *phrases)
    assert await turns(bot, world.channel_id) == []
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_quota_is_not_retried(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_insufficient_quota("/chat/completions")
    await ask_settled(fake_discord, world, "hello")
    assert len(fake_openai.calls("/chat/completions")) == 1


async def test_429_with_retry_after_is_waited_out_and_answered(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_rate_limit("/chat/completions", retry_after=0.15, times=2)
    fake_openai.queue_chat_replies("answered after two waits")
    done = await ask_settled(fake_discord, world, "hello")
    assert done.original is not None and answer_text(done.original["content"]) == "answered after two waits"
    first, second, third = fake_openai.calls("/chat/completions")
    assert second.time - first.time >= 0.14 and third.time - second.time >= 0.14
    assert await turns(bot, world.channel_id) == [
        ("user", "hello"),
        ("assistant", "answered after two waits"),
    ]


@pytest.mark.parametrize("status", [500, 503])
async def test_short_5xx_burst_is_retried_invisibly(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, status: int
) -> None:
    fake_openai.inject("/chat/completions", status, times=2)
    fake_openai.inject("/moderations", status, times=1)
    fake_openai.queue_chat_replies("fine in the end")
    done = await ask_settled(fake_discord, world, "hello")
    assert done.original is not None and answer_text(done.original["content"]) == "fine in the end"
    assert len(fake_openai.calls("/chat/completions")) == 3
    assert len(await turns(bot, world.channel_id)) == 2


async def test_connection_refused_then_service_returns(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    with refused_port() as port:
        bot = await start_bot(openai_base_url=f"http://127.0.0.1:{port}/v1")
        done = await ask_settled(fake_discord, world, "hello")
    # Moderation runs first and fails closed: the user is told, no chat is attempted, nothing stored.
    assert_clear_failure(done, "unavailable", "try again")
    assert fake_openai.requests == []
    assert await turns(bot, world.channel_id) == []
    bot.services.gateway.http.base_url = fake_openai.base_url.rstrip("/")  # the network comes back
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_chat_connection_refused_after_moderation_passed(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    http = bot.services.gateway.http
    original_open_stream = http.open_stream
    with refused_port() as port:
        refused = OpenAIHTTP("sk-test", f"http://127.0.0.1:{port}/v1", 5.0)
        http.open_stream = refused.open_stream  # type: ignore[method-assign]
        done = await ask_settled(fake_discord, world, "hello")
    assert_clear_failure(done, "server error", "try again")
    assert await turns(bot, world.channel_id) == []
    http.open_stream = original_open_stream  # type: ignore[method-assign]
    await refused.close()
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_read_timeout(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(openai_timeout=0.3, openai_max_retries=1)
    fake_openai.inject_hang("/chat/completions", 1.5, times=2)
    done = await ask_settled(fake_discord, world, "hello")
    assert_clear_failure(done, "took too long")
    assert len(fake_openai.calls("/chat/completions")) == 2
    assert await turns(bot, world.channel_id) == []
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_stream_stalling_mid_answer_times_out(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(openai_timeout=0.3)
    fake_openai.queue_chat_replies("slow words " * 10)
    fake_openai.stream_chunk_delay = 1.0  # each chunk arrives after the read timeout
    done = await ask_settled(fake_discord, world, "hello")
    assert_clear_failure(done, "cut off")
    assert await turns(bot, world.channel_id) == []
    fake_openai.stream_chunk_delay = 0.0
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_slow_stream_outliving_the_interaction_token_continues_in_the_channel(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(stream_edit_interval=0.05)
    fake_discord.token_lifetime = 0.6
    answer = " ".join(f"word{i}" for i in range(60))
    fake_openai.queue_chat_replies(answer)
    fake_openai.stream_chunk_chars = 12
    fake_openai.stream_chunk_delay = 0.03  # ~1.2 s: the token dies half way
    interaction = await fake_discord.invoke(
        "ask",
        {"prompt": "talk slowly"},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    channel_messages = lambda: [  # noqa: E731
        m for m in fake_discord.messages_in(world.channel_id) if m.get("interaction_metadata") is None
    ]
    await fake_discord.wait_until(
        lambda: any(answer_text(m["content"]) == answer for m in channel_messages()), timeout=10
    )
    note, posted = channel_messages()[-2:]
    assert f"<@{world.member_id}>" in note["content"] and "15 minutes" in note["content"], note
    assert "continues here in the channel" in note["content"]
    assert answer_text(posted["content"]) == answer
    assert interaction.original is not None and answer.startswith(
        answer_text(interaction.original["content"]).removesuffix(" ▌")
    )
    assert await turns(bot, world.channel_id) == [("user", "talk slowly"), ("assistant", answer)]
    fake_discord.token_lifetime = 900.0
    fake_openai.stream_chunk_delay = 0.0
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_private_answer_outliving_the_token_goes_to_a_dm_not_the_channel(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot()
    fake_discord.token_lifetime = 0.4
    answer = " ".join(f"secret{i}" for i in range(40))
    fake_openai.queue_chat_replies(answer)
    fake_openai.stream_chunk_chars = 10
    fake_openai.stream_chunk_delay = 0.03
    await fake_discord.invoke(
        "ask",
        {"prompt": "whisper", "private": True},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    await fake_discord.wait_until(lambda: any(m["content"] == answer for m in fake_discord.dms), timeout=10)
    assert all(m["recipient_id"] == world.member_id for m in fake_discord.dms)
    assert "DM" in fake_discord.dms[0]["content"]
    assert not any("secret" in (m.get("content") or "") for m in fake_discord.messages_in(world.channel_id))


async def test_failure_after_the_token_expired_is_said_in_the_channel(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    fake_discord.token_lifetime = 0.3
    fake_openai.inject("/chat/completions", 500, times=-1, delay=0.4)
    await fake_discord.invoke(
        "ask",
        {"prompt": "hello"},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    await fake_discord.wait_until(
        lambda: any("server error" in m["content"] for m in fake_discord.messages_in(world.channel_id)),
        timeout=10,
    )
    message = fake_discord.messages_in(world.channel_id)[-1]
    assert message["content"].startswith(f"<@{world.member_id}>")
    assert await turns(bot, world.channel_id) == []
