"""A prompt of invisible, format or control characters is empty: refused before any paid call."""

from __future__ import annotations

import pytest

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeOpenAI
from testkit.driver import ask, run
from tests.support.server import World

BLANKS = {
    "isolates and fillers": "\u2066\u2069\u3164\u3164",
    "zero-width": "\u200b\u200c\u200d\ufeff",
    "controls": "\u0001\u0007\u001b",
    "tags and variation selectors": "\U000e0041\U000e0042\ufe0f\u180b",
    "lone marks": "\u0301\u0302\u034f",
}


@pytest.mark.parametrize("prompt", BLANKS.values(), ids=BLANKS.keys())
async def test_invisible_only_prompts_are_refused_as_empty(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, prompt: str
) -> None:
    done = await ask(fake_discord, world, prompt)
    assert "Your prompt is empty" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []


async def test_an_invisible_only_image_prompt_is_refused_as_empty(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await run(fake_discord, world, "imagine", {"prompt": BLANKS["zero-width"]})
    assert "The prompt is empty" in done.all_text()
    assert fake_openai.calls("/images/generations") == []


async def test_korean_and_emoji_prompts_are_not_blank(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    for prompt in ("안녕하세요", "🌸"):
        assert "empty" not in (await ask(fake_discord, world, prompt)).all_text()
    assert len(fake_openai.calls("/chat/completions")) == 2
