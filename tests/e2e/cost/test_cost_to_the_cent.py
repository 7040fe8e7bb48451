"""Cost to the cent: cached input, token-billed media, prompt_cache_key, budget alerts and the CSV export."""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import CallContext, UsageEvent
from testkit.discord import FakeDiscord
from testkit.driver import ask, ask_settled, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

# Long enough (about 1,500 tokens by the fake's count) for OpenAI's prompt cache to take the prefix.
LONG_SYSTEM_PROMPT = "You are a helpful assistant for a book club. " * 135


async def ledger_rows(bot: OpenAIBot, kind: str) -> list[dict[str, Any]]:
    rows = await bot.services.store.fetchall("SELECT * FROM usage_events WHERE kind = ? ORDER BY id", (kind,))
    return [dict(r) for r in rows]


def files_of(interaction: Any) -> list[Any]:
    return [f for r in interaction.responses for f in r.get("files") or []]


async def test_cached_input_is_priced_at_the_cached_rate(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(system_prompt=LONG_SYSTEM_PROMPT)
    await ask(fake_discord, world, "What shall we read first?")
    await ask(fake_discord, world, "And after that?")
    first, second = await ledger_rows(bot, "chat")
    usage = fake_openai.calls("/chat/completions")[-1].stream_usage
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert first["cached_tokens"] == 0
    assert cached >= 1024 and (cached - 1024) % 128 == 0 and second["cached_tokens"] == cached
    assert second["prompt_tokens"] == usage["prompt_tokens"] and second["priced_from"] == "tokens"
    # gpt-5-mini: $0.25 per million input tokens, $0.025 per million cached, $2 per million output.
    uncached = second["prompt_tokens"] - cached
    expected = uncached * 0.25e-6 + cached * 0.025e-6 + second["completion_tokens"] * 2e-6
    assert second["cost"] == pytest.approx(expected)
    assert second["cost"] < second["prompt_tokens"] * 0.25e-6 + second["completion_tokens"] * 2e-6


async def test_reasoning_tokens_are_kept_inside_the_output_and_recorded(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    fake_openai.reasoning_tokens = 40
    await ask(fake_discord, world, "Think about it")
    [row] = await ledger_rows(bot, "chat")
    usage = fake_openai.calls("/chat/completions")[-1].stream_usage
    assert row["reasoning_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] == 40
    assert row["completion_tokens"] == usage["completion_tokens"] > 40
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * 0.25e-6 + row["completion_tokens"] * 2e-6)


async def test_prompt_cache_key_is_stable_per_channel_different_across_and_reveals_no_id(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "one")
    await ask(fake_discord, world, "two")
    await ask(fake_discord, world, "three", channel=world.other_channel_id)
    keys = [body["prompt_cache_key"] for body in chat_bodies(fake_openai)]
    assert keys[0] == keys[1] != keys[2]
    for key in keys:
        for secret in (world.channel_id, world.other_channel_id, world.guild_id, world.member_id):
            assert str(secret) not in key
    # The key survives a restart (the hash key is in the database), so the cache keeps hitting.
    assert await bot.services.ledger.cache_key(world.channel_id) == keys[0]


async def test_the_stable_prefix_comes_first(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "first question")
    await ask(fake_discord, world, "second question")
    first, second = chat_bodies(fake_openai)
    # Every message of the first request, but its last (the prompt), opens the second unchanged.
    assert second["messages"][: len(first["messages"]) - 1] == first["messages"][:-1]
    assert second["messages"][0]["role"] == "system"


@pytest.mark.parametrize("with_usage", [True, False])
async def test_media_is_priced_from_its_token_usage_or_else_the_estimate(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World, with_usage: bool
) -> None:
    bot = await start_bot(transcription_model="gpt-4o-mini-transcribe")
    fake_openai.media_usage = with_usage
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "test")
    gateway = bot.services.gateway
    await gateway.generate_image("a red fox", context=context, size="1536x1024", quality="low")
    await gateway.transcribe("voice.ogg", b"\x00" * 64000, context=context, duration_hint=30.0)
    image_answer = fake_openai.calls("/images/generations")[-1].response_json
    audio_answer = fake_openai.calls("/audio/transcriptions")[-1].response_json
    [image] = await ledger_rows(bot, "image")
    [audio] = await ledger_rows(bot, "transcription")
    if with_usage:
        usage = image_answer["usage"]
        text, output = usage["input_tokens_details"]["text_tokens"], usage["output_tokens"]
        # gpt-image-1.5: $5 per million text-input tokens, $32 per million image-output tokens.
        assert image["cost"] == pytest.approx(text * 5e-6 + output * 32e-6)
        assert (image["prompt_tokens"], image["completion_tokens"]) == (text, output)
        assert image["priced_from"] == "tokens"
        usage = audio_answer["usage"]
        details = usage["input_token_details"]
        # gpt-4o-mini-transcribe: $1.25 text in, $3 audio in, $5 text out per million tokens.
        expected = (
            details["text_tokens"] * 1.25e-6 + details["audio_tokens"] * 3e-6 + usage["output_tokens"] * 5e-6
        )
        assert audio["cost"] == pytest.approx(expected) and audio["priced_from"] == "tokens"
    else:
        assert "usage" not in image_answer and "usage" not in audio_answer
        assert image["cost"] == pytest.approx(0.013) and image["priced_from"] == "image"  # low 1536x1024
        assert audio["cost"] == pytest.approx(30 / 60 * 0.003) and audio["priced_from"] == "minute"


async def spend(bot: OpenAIBot, guild_id: int, dollars: float) -> None:
    """A metered call worth `dollars` (gpt-5-mini input at $0.25 a million), through the gateway's sink."""
    assert bot.services.gateway.usage_sink is not None
    tokens = round(dollars / 0.25e-6)
    await bot.services.gateway.usage_sink(
        UsageEvent(CallContext(guild_id, None, None, "ask"), "chat", "gpt-5-mini", prompt_tokens=tokens)
    )
    await bot.services.alerts.settle()


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if "Budget alert" in (m.get("content") or "")]


async def test_budget_alerts_go_to_the_modlog_once_each_even_across_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World, modlog_id: int
) -> None:
    bot = await start_bot(server_monthly_budget=10.0)
    await bot.services.store.execute(
        "INSERT INTO moderation_policies (guild_id, modlog_channel_id, updated_at) VALUES (?, ?, ?)",
        (world.guild_id, modlog_id, time.time()),
    )
    await spend(bot, world.guild_id, 4.0)
    assert texts(fake_discord.messages_in(modlog_id)) == []
    await spend(bot, world.guild_id, 1.5)  # 55%
    await spend(bot, world.guild_id, 0.5)  # 60%: the 50% alert is not sent again
    [fifty] = texts(fake_discord.messages_in(modlog_id))
    assert "55%" in fifty and "$5.50 of $10.00" in fifty and "month's end" in fifty
    await spend(bot, world.guild_id, 2.5)  # 85%
    assert len(texts(fake_discord.messages_in(modlog_id))) == 2
    await bot.close()
    bot = await start_bot(server_monthly_budget=10.0)
    await spend(bot, world.guild_id, 0.2)  # 87%, after a restart: nothing new
    assert len(texts(fake_discord.messages_in(modlog_id))) == 2
    await spend(bot, world.guild_id, 1.3)  # 100%
    await spend(bot, world.guild_id, 0.1)
    sent = texts(fake_discord.messages_in(modlog_id))
    assert len(sent) == 3 and "whole monthly OpenAI budget" in sent[2]
    rows = await bot.services.store.fetchall(
        "SELECT threshold, delivered FROM budget_alerts ORDER BY threshold"
    )
    assert [tuple(r) for r in rows] == [(50, 1), (80, 1), (100, 1)]
    assert fake_discord.dms == []


async def test_a_korean_server_reads_its_budget_alert_in_korean_with_a_discord_timestamp(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World, modlog_id: int
) -> None:
    fake_discord.world.guild(world.guild_id).locale = "ko"
    bot = await start_bot(server_monthly_budget=10.0)
    await bot.services.store.execute(
        "INSERT INTO moderation_policies (guild_id, modlog_channel_id, updated_at) VALUES (?, ?, ?)",
        (world.guild_id, modlog_id, time.time()),
    )
    await spend(bot, world.guild_id, 5.5)
    [alert] = [
        m["content"] for m in fake_discord.messages_in(modlog_id) if "예산 알림" in (m["content"] or "")
    ]
    assert "55%" in alert and "$10.00 중 $5.50" in alert
    assert re.search(r"<t:\d+:f>", alert), "the reset is a Discord timestamp, in each admin's time zone"
    assert "Budget" not in alert and "UTC" not in alert


async def test_without_a_modlog_the_owner_gets_the_alert_by_dm(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    owner_id = 424242424242424242
    guild_id = fake_discord.add_guild("Book club", owner_id=owner_id)
    fake_discord.add_channel(guild_id, "general")
    bot = await start_bot(server_monthly_budget=1.0)
    await spend(bot, guild_id, 0.9)  # past 50% and 80% at once: one alert, the higher
    [dm] = fake_discord.dms
    assert dm["recipient_id"] == owner_id and "90%" in dm["content"] and "month's end" in dm["content"]
    await spend(bot, guild_id, 0.05)
    assert len(fake_discord.dms) == 1


async def test_usage_server_shows_cache_share_and_projection(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    await start_bot(system_prompt=LONG_SYSTEM_PROMPT, server_monthly_budget=50.0)
    await ask(fake_discord, world, "one")
    await ask(fake_discord, world, "two")
    done = await run(fake_discord, world, "usage", {"scope": "server"}, user=world.moderator_id)
    text = done.all_text()
    assert "prompt cache" in text and "%)" in text
    assert "Monthly budget" in text and "of $50.00" in text and "by the month's end" in text


async def test_usage_export_is_a_csv_of_the_month_without_content_or_forgotten_ids(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    await ask_settled(fake_discord, world, "the secret plan is pancakes", user=world.member_id)
    await ask_settled(fake_discord, world, "hello there", user=world.moderator_id)
    await bot.services.ledger.forget_user(world.guild_id, world.moderator_id)
    refused = await run(fake_discord, world, "usage", {"scope": "export"}, user=world.member_id)
    assert "Manage Server" in refused.all_text() and not files_of(refused)
    done = await run(fake_discord, world, "usage", {"scope": "export"}, user=world.moderator_id)
    [attached] = files_of(done)
    assert attached.filename.startswith("usage-") and attached.filename.endswith(".csv")
    content = attached.data.decode()
    assert "pancakes" not in content and "hello there" not in content
    rows = list(csv.DictReader(io.StringIO(content)))
    assert {"time_utc", "member", "command", "model", "input_tokens", "output_tokens", "cost_usd"} <= set(
        rows[0]
    )
    members = {r["member"] for r in rows}
    assert str(world.member_id) in members and str(world.moderator_id) not in members
    assert "forgotten member" in members
    chat = [r for r in rows if r["kind"] == "chat"]
    assert len(chat) == 2 and all(float(r["cost_usd"]) > 0 and int(r["input_tokens"]) > 0 for r in chat)
    assert sum(float(r["cost_usd"] or 0) for r in rows) == pytest.approx(
        (await bot.services.ledger.totals(world.guild_id, since=0)).cost
    )
