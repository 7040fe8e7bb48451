"""Replies to @mentions carry the same Stop / Regenerate / Continue buttons as /ask answers, with the same rules."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import CURSOR, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World
from tests.support.waits import turns, turns_when, until


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]


def replies(fake_discord: FakeDiscord, channel_id: int, question_id: int) -> list[dict[str, Any]]:
    """The bot's messages replying to the member's message `question_id`, oldest first."""
    return [
        m
        for m in fake_discord.messages_in(channel_id)
        if m["author"]["id"] == str(fake_discord.world.bot_user_id)
        and str((m.get("message_reference") or {}).get("message_id")) == str(question_id)
    ]


def finished(fake_discord: FakeDiscord, channel_id: int, question_id: int) -> bool:
    found = replies(fake_discord, channel_id, question_id)
    return bool(found) and not found[-1]["content"].endswith(CURSOR) and bool(custom_ids(found[0]))


async def mention(fake_discord: FakeDiscord, world: World, text: str) -> int:
    question = await fake_discord.post_message(world.channel_id, world.member_id, text, mentions_bot=True)
    return int(question["id"])


async def test_a_mention_reply_gets_regenerate_for_its_asker_only(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("first try", "second try")
    question = await mention(fake_discord, world, "tell me a joke")
    await until(lambda: finished(fake_discord, world.channel_id, question))
    [reply] = replies(fake_discord, world.channel_id, question)
    assert reply["content"] == "first try" and custom_ids(reply) == [f"ask:regen:{question}"]

    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (
        await fake_discord.click(int(reply["id"]), f"ask:regen:{question}", user_id=other)
    ).wait_done()
    assert "Only the person who asked can regenerate" in refused.all_text() and refused.ephemeral
    assert len(chat_bodies(fake_openai)) == 1

    click = await fake_discord.click(int(reply["id"]), f"ask:regen:{question}", user_id=world.member_id)
    await click.wait_done()
    # The rewritten reply's buttons come with its final edit: wait for that, not for a quiet moment.
    await until(
        lambda: (
            [custom_ids(r) for r in replies(fake_discord, world.channel_id, question)]
            == [[f"ask:regen:{click.id}"]]
        )
    )
    [rewritten] = replies(fake_discord, world.channel_id, question)
    assert rewritten["id"] == reply["id"] and rewritten["content"] == "second try"
    expected = [("user", "tell me a joke"), ("assistant", "second try")]
    assert await turns_when(bot, world.channel_id, lambda stored: stored == expected) == expected
    assert chat_bodies(fake_openai)[1]["messages"][-1]["content"] == "tell me a joke"
    assert any("second try" in str(c.json) for c in fake_openai.calls("/moderations"))
    rows = await bot.services.store.fetchall("SELECT command FROM usage_events WHERE kind = 'chat'")
    assert [r["command"] for r in rows] == ["mention", "mention"]


async def test_stop_on_a_mention_reply_for_the_asker_or_a_moderator(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies(" ".join(f"word{i}" for i in range(400)))
    fake_openai.stream_chunk_chars = 4
    fake_openai.stream_chunk_delay = 0.02
    question = await mention(fake_discord, world, "a long story")
    await until(
        lambda: any(
            m["content"].endswith(CURSOR) and "word5 " in m["content"]
            for m in replies(fake_discord, world.channel_id, question)
        )
    )
    [reply] = replies(fake_discord, world.channel_id, question)
    assert custom_ids(reply) == [f"ask:stop:{question}"]

    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (
        await fake_discord.click(int(reply["id"]), f"ask:stop:{question}", user_id=other)
    ).wait_done()
    assert "Only the person who asked" in refused.all_text() and refused.ephemeral
    assert fake_openai.cancelled_streams == 0

    stop = await fake_discord.click(int(reply["id"]), f"ask:stop:{question}", user_id=world.moderator_id)
    await stop.wait_done()
    await until(lambda: "stopped by" in fake_discord.world.message_index[int(reply["id"])]["content"])
    await asyncio.sleep(0.3)
    stopped = fake_discord.world.message_index[int(reply["id"])]
    # What had streamed when the click landed: some of the story from its start, never the whole of it.
    shown = stopped["content"].rsplit("\n", 1)[0]
    story = " ".join(f"word{i}" for i in range(400))
    assert shown.startswith("word0") and story.startswith(shown) and "word399" not in shown
    assert stopped["content"].endswith(f"-# (stopped by <@{world.moderator_id}> before the end)")
    assert custom_ids(stopped) == [f"ask:regen:{question}"]
    assert fake_openai.cancelled_streams == 1
    assert await turns(bot, world.channel_id) == []


async def test_mention_buttons_that_spend_pass_the_same_admission(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("an answer")
    question = await mention(fake_discord, world, "question")
    await until(lambda: finished(fake_discord, world.channel_id, question))
    [reply] = replies(fake_discord, world.channel_id, question)
    await run(
        fake_discord, world, "limits command", {"command": "ask", "enabled": False}, user=world.moderator_id
    )
    click = await fake_discord.click(int(reply["id"]), f"ask:regen:{question}", user_id=world.member_id)
    await click.wait_done()
    assert click.ephemeral and "/ask" in click.all_text()
    assert len(chat_bodies(fake_openai)) == 1
    assert fake_discord.world.message_index[int(reply["id"])]["content"] == "an answer"


async def test_a_long_mention_reply_is_regenerated_whole_as_replies_after_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=4000)
    fake_openai.stream_chunk_chars = 400
    first = " ".join(f"a{i:04d}" for i in range(750))  # three messages
    longer = " ".join(f"c{i:04d}" for i in range(1100))  # four messages
    fake_openai.queue_chat_replies(first)
    question = await mention(fake_discord, world, "a long essay")
    await until(lambda: finished(fake_discord, world.channel_id, question))
    await asyncio.sleep(0.3)
    parts = replies(fake_discord, world.channel_id, question)
    assert len(parts) == 3 and "".join(p["content"] for p in parts) == first
    assert custom_ids(parts[0]) == [f"ask:regen:{question}"] and not custom_ids(parts[2])
    await bot.close()

    restarted = await start_bot(max_answer_tokens=4000)
    fake_openai.queue_chat_replies(longer)
    click = await fake_discord.click(int(parts[0]["id"]), f"ask:regen:{question}", user_id=world.member_id)
    await click.wait_done()
    # The parts after the first go through the channel, not the button's interaction: wait for them, and
    # for the first part's new buttons.
    await until(
        lambda: (
            "".join(p["content"] for p in replies(fake_discord, world.channel_id, question)) == longer
            and custom_ids(replies(fake_discord, world.channel_id, question)[0]) == [f"ask:regen:{click.id}"]
        )
    )
    rewritten = replies(fake_discord, world.channel_id, question)
    assert [p["id"] for p in rewritten[:3]] == [p["id"] for p in parts] and len(rewritten) == 4
    assert "".join(p["content"] for p in rewritten) == longer  # the fourth part replies to the question too
    expected = [("user", "a long essay"), ("assistant", longer)]
    assert await turns_when(restarted, world.channel_id, lambda stored: stored == expected) == expected


async def test_continue_on_a_mention_reply_cut_at_the_token_limit(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=16)
    fake_openai.queue_chat_replies("alpha " * 40, "and the rest.")
    question = await mention(fake_discord, world, "a long list")
    await until(lambda: finished(fake_discord, world.channel_id, question))
    [reply] = replies(fake_discord, world.channel_id, question)
    assert custom_ids(reply) == [f"ask:regen:{question}", f"ask:more:{question}"]
    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (
        await fake_discord.click(int(reply["id"]), f"ask:more:{question}", user_id=other)
    ).wait_done()
    assert "Only the person who asked can continue" in refused.all_text()

    more = await fake_discord.click(int(reply["id"]), f"ask:more:{question}", user_id=world.member_id)
    await more.wait_for(
        lambda i: i.original is not None and i.original["content"].endswith("and the rest.") and not i.loading
    )
    assert more.original is not None and more.original["content"].startswith("> (continued) a long list")
    stored = await turns_when(bot, world.channel_id, lambda stored: len(stored) >= 4)
    assert len(stored) == 4 and stored[-1] == ("assistant", "and the rest.")
