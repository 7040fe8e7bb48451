"""REASONING_EFFORT goes to reasoning models only (others refuse the parameter), and can be turned off."""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


@pytest.mark.parametrize(
    ("model", "effort", "sent"),
    [("gpt-5-mini", "low", "low"), ("gpt-5-mini", "off", None), ("gpt-4.1-mini", "low", None)],
)
async def test_reasoning_effort_is_sent_only_where_it_is_accepted(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    model: str,
    effort: str,
    sent: str | None,
) -> None:
    await start_bot(chat_model=model, reasoning_effort=effort)
    fake_openai.queue_chat_replies("fine")
    done = await ask(fake_discord, world, "hello")
    assert done.original is not None and answer_text(done.original["content"]) == "fine"
    assert chat_bodies(fake_openai)[0].get("reasoning_effort") == sent


def test_a_bad_reasoning_effort_names_the_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "REASONING_EFFORT": "max"}, env_file=None)
    assert any("REASONING_EFFORT" in problem for problem in caught.value.problems)
