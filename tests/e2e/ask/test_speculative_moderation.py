"""SPECULATIVE_MODERATION: the prompt's moderation runs beside the chat request; a flag cancels and hides it."""

from __future__ import annotations

from pathlib import Path

from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import UsageEvent
from bot.settings import load_settings
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

SECRET = "PARTIAL-ANSWER-MARKER"


def record_usage(bot: OpenAIBot) -> list[UsageEvent]:
    """Every UsageEvent the gateway meters from now on (whatever sink the bot already has still gets it)."""
    events: list[UsageEvent] = []
    gateway = bot.services.gateway
    inner = gateway.usage_sink

    async def sink(event: UsageEvent) -> None:
        events.append(event)
        if inner is not None:
            await inner(event)

    gateway.usage_sink = sink
    return events


def shown_anywhere(fake_discord: FakeDiscord, text: str) -> bool:
    """Whether any message body or edit the bot sent to the fake Discord contained `text`."""
    return any(text in str(request.json) for request in fake_discord.requests)


def slow_long_stream(fake_openai: FakeOpenAI) -> None:
    # About 4 s of streaming: the flag (0.3 s) arrives while the answer is still coming.
    fake_openai.queue_chat_replies(f"{SECRET} " + "word " * 80)
    fake_openai.stream_chunk_chars = 5
    fake_openai.stream_chunk_delay = 0.05
    fake_openai.moderation_latency = 0.3


async def test_flagged_prompt_cancels_the_running_chat_request(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(speculative_moderation=True)
    usage = record_usage(bot)
    slow_long_stream(fake_openai)
    done = await ask(fake_discord, world, "FLAGME tell me something")
    assert "flagged" in done.all_text().lower()
    assert done.followups and done.followups[-1]["flags"] & 64
    # the chat request was made speculatively, then cut off mid-stream
    (chat,) = fake_openai.calls("/chat/completions")
    await fake_discord.wait_until(lambda: fake_openai.cancelled_streams == 1, what="the stream cancelled")
    assert chat.cancelled
    # its partial result was never shown, stored or billed
    assert not shown_anywhere(fake_discord, SECRET)
    assert await bot.services.history.count(world.channel_id) == 0
    assert [e for e in usage if e.kind == "chat"] == []


async def test_answer_finished_before_the_flag_is_still_discarded(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(speculative_moderation=True)
    usage = record_usage(bot)
    fake_openai.queue_chat_replies(f"{SECRET} short")
    fake_openai.moderation_latency = 0.3  # the whole answer is sent before moderation answers
    done = await ask(fake_discord, world, "I will kill you")
    assert "flagged" in done.all_text().lower()
    assert len(chat_bodies(fake_openai)) == 1
    assert not shown_anywhere(fake_discord, SECRET)
    assert await bot.services.history.count(world.channel_id) == 0
    assert [e for e in usage if e.kind == "chat"] == []


async def test_moderation_outage_cancels_the_chat_request(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(speculative_moderation=True)
    usage = record_usage(bot)
    slow_long_stream(fake_openai)
    fake_openai.inject("/moderations", 503, times=-1)
    done = await ask(fake_discord, world, "hello")
    assert "moderation is unavailable" in done.all_text().lower()
    assert not shown_anywhere(fake_discord, SECRET)
    assert await bot.services.history.count(world.channel_id) == 0
    assert [e for e in usage if e.kind == "chat"] == []


async def test_clean_prompt_runs_moderation_and_chat_together(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(speculative_moderation=True)
    usage = record_usage(bot)
    fake_openai.queue_chat_replies("Paris.")
    fake_openai.moderation_latency = 0.2
    done = await ask(fake_discord, world, "What is the capital of France?")
    assert done.original is not None and answer_text(done.original["content"]) == "Paris."
    prompt_check = fake_openai.calls("/moderations")[0]
    (chat,) = fake_openai.calls("/chat/completions")
    assert "What is the capital of France?" in str(prompt_check.json["input"])
    assert prompt_check.end_time is not None and chat.time < prompt_check.end_time, "they overlapped"
    assert await bot.services.history.count(world.channel_id) == 2
    assert len([e for e in usage if e.kind == "chat"]) == 1


async def test_off_by_default_a_flagged_prompt_makes_no_chat_request(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    assert bot.settings.speculative_moderation is False
    fake_openai.moderation_latency = 0.1
    done = await ask(fake_discord, world, "FLAGME tell me something")
    assert "flagged" in done.all_text().lower()
    assert fake_openai.calls("/chat/completions") == []
    assert await bot.services.history.count(world.channel_id) == 0


async def test_empty_prompt_makes_no_request_even_when_speculating(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(speculative_moderation=True)
    done = await ask(fake_discord, world, "   ")
    assert "empty" in done.all_text()
    assert fake_openai.calls("/chat/completions") == [] and fake_openai.calls("/moderations") == []


def test_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    base = {
        "DISCORD_TOKEN": "t",
        "OPENAI_API_KEY": "k",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
    }
    assert load_settings(base, env_file=None).speculative_moderation is False
    on = load_settings({**base, "SPECULATIVE_MODERATION": "true"}, env_file=None)
    assert on.speculative_moderation is True
