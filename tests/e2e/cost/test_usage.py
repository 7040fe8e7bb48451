"""The usage ledger against the fake's own usage figures, prices, restarts, `check`, and /usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cost.pricing import PriceTable
from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import CallContext
from bot.ops.doctor import check_prices
from testkit.discord import FakeDiscord
from testkit.driver import ask
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World, make_settings


async def ledger_rows(bot: OpenAIBot, kind: str | None = None) -> list[dict[str, Any]]:
    rows = await bot.services.store.fetchall("SELECT * FROM usage_events ORDER BY id")
    return [dict(r) for r in rows if kind is None or r["kind"] == kind]


def uploaded_files(interaction: Any) -> list[Any]:
    return [f for r in interaction.responses for f in r.get("files") or []]


async def test_streamed_chat_is_recorded_with_the_fakes_exact_usage(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Paris is the capital of France, and it is lovely in spring.")
    await ask(fake_discord, world, "What is the capital of France?")
    [request] = fake_openai.calls("/chat/completions")
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}
    usage = request.stream_usage
    [row] = await ledger_rows(bot, "chat")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert (row["guild_id"], row["channel_id"], row["user_id"]) == (
        world.guild_id,
        world.channel_id,
        world.member_id,
    )
    assert (row["command"], row["model"]) == ("ask", bot.settings.chat_model)
    prices = PriceTable.load()
    expected = prices.cost(
        "chat",
        bot.settings.chat_model,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    assert expected is not None and row["cost"] == pytest.approx(expected)
    # gpt-5-mini: $0.25 in, $2 out per million tokens.
    assert row["cost"] == pytest.approx(usage["prompt_tokens"] * 0.25e-6 + usage["completion_tokens"] * 2e-6)
    moderation = await ledger_rows(bot, "moderation")
    assert moderation and all(r["cost"] == 0 for r in moderation)


async def test_images_audio_and_plain_chat_are_recorded_as_the_fake_reports(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(transcription_model="whisper-1")
    gateway = bot.services.gateway
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "test")
    await gateway.generate_image("a red fox", context=context, size="1536x1024", quality="low")
    await gateway.transcribe("voice.ogg", b"\x00" * 64000, context=context, duration_hint=3.0)
    await gateway.complete_chat([{"role": "user", "content": "hi"}], context=context)

    image_call = fake_openai.calls("/images/generations")[-1].response_json
    [image] = await ledger_rows(bot, "image")
    assert (image["images"], image["image_size"], image["image_quality"]) == (1, image_call["size"], "low")
    # Priced from the answer's token usage (gpt-image-1.5: $5 per million text-input tokens, $32 per
    # million image-output tokens), not the per-image estimate ($0.013 for low 1536x1024), since it has one.
    usage = image_call["usage"]
    assert usage["output_tokens"] == 400
    expected = usage["input_tokens_details"]["text_tokens"] * 5e-6 + usage["output_tokens"] * 32e-6
    assert image["cost"] == pytest.approx(expected)
    assert image["priced_from"] == "tokens"

    audio_usage = fake_openai.calls("/audio/transcriptions")[-1].response_json["usage"]
    [audio] = await ledger_rows(bot, "transcription")
    assert audio["audio_seconds"] == audio_usage["seconds"]
    assert audio["cost"] == pytest.approx(audio_usage["seconds"] / 60 * 0.006)  # whisper-1 per minute
    assert audio["priced_from"] == "minute"

    chat_usage = fake_openai.calls("/chat/completions")[-1].response_json["usage"]
    [chat] = await ledger_rows(bot, "chat")
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (
        chat_usage["prompt_tokens"],
        chat_usage["completion_tokens"],
    )


async def test_unknown_models_get_a_null_cost_and_a_check_warning(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    bot = await start_bot(chat_model="gpt-5.4-mini")
    await bot.services.gateway.complete_chat(
        [{"role": "user", "content": "hi"}], context=CallContext(world.guild_id, None, world.member_id, "t")
    )
    [row] = await ledger_rows(bot, "chat")
    assert row["cost"] is None and row["prompt_tokens"] > 0
    [warning] = await check_prices(make_settings(tmp_path, fake_openai, chat_model="gpt-5.4-mini"))
    assert (
        warning.ok
        and warning.warning
        and "gpt-5.4-mini" in warning.line()
        and "PRICES_FILE" in warning.line()
    )
    [fine] = await check_prices(make_settings(tmp_path, fake_openai))
    assert fine.ok and not fine.warning


async def test_prices_file_overrides_the_shipped_table(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps({"models": {"gpt-5-mini": {"input_per_million": 1000, "output_per_million": 0}}})
    )
    bot = await start_bot(prices_file=str(override))
    await ask(fake_discord, world, "hello")
    [row] = await ledger_rows(bot, "chat")
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * 1000 / 1_000_000)


async def test_the_ledger_survives_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    await ask(fake_discord, world, "remember the cost")
    before = await bot.services.ledger.totals(world.guild_id, since=0)  # type: ignore[union-attr]
    await bot.close()
    bot = await start_bot()
    after = await bot.services.ledger.totals(world.guild_id, since=0)  # type: ignore[union-attr]
    assert after == before and after.calls >= 2


async def test_usage_shows_own_usage_with_a_chart(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "something to pay for")
    done = await (
        await fake_discord.invoke(
            "usage", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.member_id
        )
    ).wait_done()
    text = done.all_text()
    assert done.ephemeral and "You, today" in text and "You, this month" in text
    assert "By command" not in text
    [chart] = uploaded_files(done)
    assert chart.filename == "usage.png" and chart.data.startswith(b"\x89PNG")


async def test_server_usage_needs_manage_server_and_breaks_down(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "something to pay for")
    refused = await (
        await fake_discord.invoke(
            "usage",
            {"scope": "server"},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.member_id,
        )
    ).wait_done()
    assert "Manage Server" in refused.all_text() and not uploaded_files(refused)
    done = await (
        await fake_discord.invoke(
            "usage",
            {"scope": "server"},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.moderator_id,
        )
    ).wait_done()
    text = done.all_text()
    assert "Server, this month" in text and "By command" in text and "ask" in text
    assert bot.settings.chat_model in text and f"<@{world.member_id}>" in text
    assert uploaded_files(done)[0].data.startswith(b"\x89PNG")


def test_price_table_lookups_and_image_estimates() -> None:
    prices = PriceTable.load()
    assert prices.lookup("gpt-4o-mini-2024-07-18") == prices.lookup("gpt-4o-mini")
    assert prices.cost("chat", "no-such-model", prompt_tokens=10) is None
    assert prices.cost("moderation", "omni-moderation-latest") == 0.0
    made = prices.cost("image", "gpt-image-1.5", images=1, image_size="1024x1024", image_quality="medium")
    worst = prices.cost(
        "image", "gpt-image-1.5", images=1, image_size="auto", image_quality="auto", worst_case=True
    )
    assert made == pytest.approx(0.034) and worst == pytest.approx(0.2)
    assert prices.cost("transcription", "gpt-4o-mini-transcribe", audio_seconds=120) == pytest.approx(0.006)
