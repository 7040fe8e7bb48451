"""Every OpenAI failure /ask can meet ends in its own clear, ephemeral message; nothing half-done is stored."""

from __future__ import annotations

import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


async def assert_refused(done, *phrases: str) -> None:  # type: ignore[no-untyped-def]
    text = done.all_text()
    for phrase in phrases:
        assert phrase.lower() in text.lower(), text
    assert "Traceback" not in text
    assert done.followups and done.followups[-1]["flags"] & 64, "the failure is ephemeral"


async def test_flagged_prompt_is_refused_without_a_chat_call(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await ask(fake_discord, world, "I will kill you")
    await assert_refused(done, "flagged", "violence")
    assert chat_bodies(fake_openai) == []
    assert await bot.services.history.count(world.channel_id) == 0


async def test_moderation_outage_fails_closed(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject("/moderations", 503, times=-1)
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, "moderation is unavailable", "try again")
    assert chat_bodies(fake_openai) == []


async def test_insufficient_quota_is_explained_and_not_retried(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_insufficient_quota("/chat/completions")
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, "no credit", "admin must add credit")
    assert len(fake_openai.calls("/chat/completions")) == 1


async def test_rate_limit_is_retried_honouring_retry_after(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_rate_limit("/chat/completions", retry_after=0.2, times=1)
    fake_openai.queue_chat_replies("after the wait")
    done = await ask(fake_discord, world, "hello")
    assert answer_text(done.original["content"]) == "after the wait"
    first, second = fake_openai.calls("/chat/completions")
    assert second.time - first.time >= 0.18


async def test_persistent_rate_limit_says_when_to_retry(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_rate_limit("/chat/completions", retry_after=2.0, times=-1)
    fake_openai.inject(
        "/chat/completions", 429, code="rate_limit_exceeded", headers={"retry-after": "200"}, times=-1
    )
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, "busy", "try again in 200 s")


@pytest.mark.parametrize(
    ("status", "code", "phrases"),
    [
        (500, None, ["server error", "try again"]),
        (503, None, ["server error", "try again"]),
        # Members hear that an admin must fix the settings; the setting's name is for admins (below).
        (401, "invalid_api_key", ["not set up correctly", "admin"]),
        (404, "model_not_found", ["not set up correctly", "admin"]),
    ],
)
async def test_each_failure_has_its_own_message(
    bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    status: int,
    code: str | None,
    phrases: list[str],
) -> None:
    fake_openai.inject(
        "/chat/completions",
        status,
        code=code,
        times=-1,
        message="The model `gpt-5-mini` does not exist" if code == "model_not_found" else None,
    )
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, *phrases)
    assert await bot.services.history.count(world.channel_id) == 0


@pytest.mark.parametrize(
    ("code", "member_never_sees", "admin_phrases"),
    [
        (
            "invalid_api_key",
            ["OPENAI_API_KEY", "invalid_api_key"],
            ["api key was rejected", "OPENAI_API_KEY"],
        ),
        ("model_not_found", ["CHAT_MODEL", "gpt-5-mini"], ["does not exist", "CHAT_MODEL"]),
    ],
)
async def test_setting_names_reach_admins_never_members(
    bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    code: str,
    member_never_sees: list[str],
    admin_phrases: list[str],
) -> None:
    status = 401 if code == "invalid_api_key" else 404
    message = "The model `gpt-5-mini` does not exist" if code == "model_not_found" else None
    fake_openai.inject("/chat/completions", status, code=code, times=-1, message=message)
    member = await ask(fake_discord, world, "hello")
    for hidden in member_never_sees:
        assert hidden not in member.all_text()
    admin = await run(fake_discord, world, "ask", {"prompt": "hello"}, user=world.moderator_id)
    await assert_refused(admin, *admin_phrases)


async def test_timeout_is_explained(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(openai_timeout=0.3, openai_max_retries=0)
    fake_openai.inject_hang("/chat/completions", 2.0)
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, "took too long")


async def test_cut_stream_is_an_error_not_an_answer(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("This answer will never finish because the stream is cut")
    fake_openai.inject_stream_cut(after_chars=10)
    done = await ask(fake_discord, world, "hello")
    await assert_refused(done, "cut off")
    assert await bot.services.history.count(world.channel_id) == 0


async def test_conversation_keeps_working_after_a_failure(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject("/chat/completions", 500, times=-1)
    await ask(fake_discord, world, "first try")
    fake_openai.clear_injections()
    fake_openai.queue_chat_replies("works again")
    done = await ask(fake_discord, world, "second try")
    assert answer_text(done.original["content"]) == "works again"
    assert await bot.services.history.count(world.channel_id) == 2
    contents = [m["content"] for m in chat_bodies(fake_openai)[-1]["messages"]]
    assert "first try" not in contents


async def test_flagged_answer_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("FLAGME this is a nasty answer")
    done = await ask(fake_discord, world, "say something")
    await assert_refused(done, "answer was flagged")
    assert "nasty" not in done.all_text()
    assert await bot.services.history.count(world.channel_id) == 0


@pytest.mark.allow_error_logs  # a refused deferral is logged as an error: the operator must hear of it
async def test_a_refused_deferral_stops_the_answer_before_any_chat(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    """The answer's work starts beside the deferral: when Discord refuses the deferral, it stops there."""
    fake_openai.moderation_latency = 0.3  # still moderating when the refusal arrives
    fake_discord.fail_next(
        "POST",
        r"/interactions/\d+/[^/]+/callback",
        404,
        body={"message": "Unknown interaction", "code": 10062},
    )
    interaction = await fake_discord.invoke(
        "ask",
        {"prompt": "hello?"},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    done = await interaction.wait_done(timeout=10, settle=0.5)
    assert chat_bodies(fake_openai) == []
    assert await bot.services.history.count(world.channel_id) == 0
    assert "hello?" not in done.all_text()
