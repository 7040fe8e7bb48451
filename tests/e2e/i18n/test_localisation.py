"""Korean and English through the fakes: the synced command payload, replies by the member's locale."""

from __future__ import annotations

import time
from typing import Any

from bot.cost.ledger import next_day_start
from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

LOCALISED = ("en-US", "en-GB", "ko")


def _walk(command: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    items = [(path, command)]
    for option in command.get("options") or []:
        items += _walk(option, f"{path} {option['name']}")
        items += [(f"{path} {option['name']} = {c['name']}", c) for c in option.get("choices") or []]
    return items


async def test_every_command_option_and_choice_is_localised_in_the_synced_payload(
    bot: OpenAIBot, fake_discord: FakeDiscord
) -> None:
    commands = fake_discord.application.synced_commands["global"]
    assert commands
    for command in commands:
        for path, item in _walk(command, command["name"]):
            names = item.get("name_localizations") or {}
            assert all(names.get(locale) for locale in LOCALISED), f"{path}: name {names}"
            if command.get("type", 1) == 1 and "value" not in item:
                descriptions = item.get("description_localizations") or {}
                assert all(descriptions.get(locale) for locale in LOCALISED), f"{path}: {descriptions}"
    by_name = {c["name"]: c for c in commands}
    assert by_name["tldr"]["name_localizations"]["ko"] == "요약"
    assert by_name["tldr"]["name_localizations"]["en-GB"] == "tldr"
    assert by_name["tldr"]["description_localizations"]["ko"] == "이 채널의 최근 대화를 요약합니다."
    threshold = next(o for o in by_name["moderation"]["options"] if o["name"] == "threshold")
    category = next(o for o in threshold["options"] if o["name"] == "category")
    choice = next(c for c in category["choices"] if c["value"] == "self-harm/intent")
    assert choice["name"] == "Self-harm: intent"
    assert choice["name_localizations"]["ko"] == "자해: 의도"
    assert all(o["description"] != "…" for o in _options(by_name["moderation"]))


def _options(command: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for option in command.get("options") or []:
        out.append(option)
        out += _options(option)
    return out


async def test_a_korean_member_is_answered_in_korean_and_an_english_one_in_english(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    korean = await run(fake_discord, world, "tldr", {"since": "어제"}, locale="ko")
    assert korean.ephemeral
    assert "`어제`은(는) 알 수 없는 기간입니다" in korean.all_text()
    assert "30분" in korean.all_text()
    english = await run(fake_discord, world, "tldr", {"since": "어제"}, locale="en-GB")
    assert "`어제` is not a duration I understand" in english.all_text()
    assert not fake_openai.calls("/chat/completions")


async def test_korean_durations_are_accepted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "회의는 3시"}])
    fake_openai.queue_chat_replies("요약: 회의는 3시")
    done = await run(fake_discord, world, "tldr", {"since": "1시간 30분"}, locale="ko")
    assert "알 수 없는 기간" not in done.all_text()
    assert fake_openai.calls("/chat/completions"), done.all_text()


async def test_budget_resets_are_discord_timestamps_in_the_members_language(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.50)
    await bot.services.store.execute(
        "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, cost) "
        "VALUES (?, ?, ?, ?, 'ask', 'chat', 'gpt-5-mini', ?)",
        (time.time(), world.guild_id, world.channel_id, world.member_id, 0.499),
    )
    done = await run(fake_discord, world, "tldr", {}, locale="ko")
    midnight = int(next_day_start(time.time()))
    text = done.all_text()
    assert f"<t:{midnight}:f>" in text and f"<t:{midnight}:R>" in text
    assert "하루 예산" in text and "UTC" not in text
    assert fake_openai.requests == []


async def test_no_raw_codes_or_setting_names_reach_a_member(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_insufficient_quota("/chat/completions")
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "hello there"}])
    done = await run(fake_discord, world, "tldr", {}, locale="ko")
    text = done.all_text()
    assert "크레딧" in text
    for raw in ("insufficient_quota", "OPENAI_API_KEY", "You exceeded your current quota"):
        assert raw not in text
