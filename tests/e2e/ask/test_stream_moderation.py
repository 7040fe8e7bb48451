"""STREAM_MODERATION=before (the default): a streamed answer's text is on screen only after it passed moderation."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.moderation import moderated_texts
from tests.support.server import BotFactory, World


def shown_anywhere(fake_discord: FakeDiscord, text: str) -> bool:
    """Whether any message body or edit the bot sent to the fake Discord contained `text`."""
    return any(text in str(request.json) for request in fake_discord.requests)


def flagged_late_stream(fake_openai: FakeOpenAI) -> None:
    # About 3 s of clean text, then the flagged word, then more: the answer turns bad mid-stream.
    fake_openai.queue_chat_replies("word " * 60 + "FLAGME " + "tail " * 20)
    fake_openai.stream_chunk_chars = 5
    fake_openai.stream_chunk_delay = 0.05


async def test_a_flagged_chunk_is_never_shown_and_the_answer_ends_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    flagged_late_stream(fake_openai)
    done = await ask(fake_discord, world, "tell me a story")
    assert "flagged" in done.all_text().lower()
    assert not shown_anywhere(fake_discord, "FLAGME")
    # Clean text was shown while it streamed: each shown edit was moderated first.
    assert shown_anywhere(fake_discord, "word word")
    checked = [text for text in moderated_texts(fake_openai) if text.startswith("word")]
    assert len(checked) >= 2
    assert await bot.services.history.count(world.channel_id) == 0
    assert len(chat_bodies(fake_openai)) == 1


async def test_a_mention_reply_never_shows_a_flagged_chunk(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    flagged_late_stream(fake_openai)
    await fake_discord.post_message(world.channel_id, world.member_id, "tell me a story", mentions_bot=True)
    await fake_discord.wait_until(
        lambda: any("flagged" in (m.get("content") or "").lower() for m in fake_discord.sent_messages()),
        timeout=15,
        what="the refusal",
    )
    assert not shown_anywhere(fake_discord, "FLAGME")


async def test_a_clean_answer_streams_and_ends_whole(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("alpha " * 40)
    fake_openai.stream_chunk_chars = 6
    fake_openai.stream_chunk_delay = 0.03
    done = await ask(fake_discord, world, "count")
    assert (
        done.original is not None and answer_text(done.original["content"]).strip() == ("alpha " * 40).strip()
    )
    assert await bot.services.history.count(world.channel_id) == 2


async def test_after_mode_moderates_only_the_whole_answer(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(stream_moderation="after")
    fake_openai.queue_chat_replies("alpha " * 40)
    fake_openai.stream_chunk_chars = 6
    fake_openai.stream_chunk_delay = 0.03
    await ask(fake_discord, world, "count")
    answers = [text for text in moderated_texts(fake_openai) if text.startswith("alpha")]
    assert answers == ["alpha " * 40]
