"""/ask thread:true: a thread (or forum post) named by the model, its own memory, and turns without mentions."""

from __future__ import annotations

import asyncio

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


async def settle(seconds: float = 0.4) -> None:
    await asyncio.sleep(seconds)


async def start_thread(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> int:
    """Ask with thread:true and wait until the thread stands whole: created, introduced, and remembered
    (its memory is the start's last step; a fixed settle lost that race on a loaded CI machine)."""
    fake_openai.queue_chat_replies("Paris is the capital.", "Capital of France")
    done = await ask(fake_discord, world, "What is the capital of France?", thread=True)
    await done.wait_for(lambda i: int(i.original["id"]) in fake_discord.world.channels, timeout=15)
    thread_id = int(done.original["id"])  # a thread started from a message takes the message's id
    for _ in range(3000):
        remembered = await bot.services.store.fetchone(
            "SELECT 1 FROM turns WHERE channel_id = ?", (thread_id,)
        )
        if remembered and fake_discord.messages_in(thread_id):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("the thread was created but never introduced and remembered")
    await done.wait_done(settle=0.05)
    return thread_id


async def test_thread_from_the_answer_named_by_the_model_with_an_intro_and_its_own_memory(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread_id = await start_thread(bot, fake_discord, fake_openai, world)
    thread = fake_discord.world.channel(thread_id)
    assert thread.name == "Capital of France" and thread.parent_id == world.channel_id and thread.type == 11
    title_request = chat_bodies(fake_openai)[1]
    assert "title" in title_request["messages"][0]["content"]
    assert title_request["messages"][1]["content"] == "What is the capital of France?"
    intro = fake_discord.messages_in(thread_id)[0]
    assert intro["content"].startswith(f"🧵 Started by <@{world.member_id}> with `{bot.settings.chat_model}`")
    assert intro["mentions"] == []
    rows = await bot.services.store.fetchall("SELECT * FROM chat_threads")
    assert [(r["thread_id"], r["started_by"]) for r in rows] == [(thread_id, world.member_id)]
    # The thread's memory starts with the exchange that opened it; the title was moderated.
    turns = await bot.services.store.fetchall("SELECT content FROM turns WHERE channel_id = ?", (thread_id,))
    assert [r["content"] for r in turns] == ["What is the capital of France?", "Paris is the capital."]
    assert any("Capital of France" in str(c.json) for c in fake_openai.calls("/moderations"))


async def test_a_flagged_or_failed_title_falls_back_to_the_question(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    question = "Tell me about " + "very " * 30 + "long rivers"
    fake_openai.queue_chat_replies("The Nile.", "FLAGME rivers")
    done = await ask(fake_discord, world, question, thread=True)
    await done.wait_for(lambda i: int(i.original["id"]) in fake_discord.world.channels)
    thread = fake_discord.world.channel(int(done.original["id"]))
    assert thread.name.startswith("Tell me about very very") and thread.name.endswith("…")
    assert len(thread.name) <= 100 and "FLAGME" not in thread.name


async def test_forum_channel_gets_a_post(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    forum_id = fake_discord.add_channel(world.guild_id, "help", type=15)
    await settle(0.2)
    fake_openai.queue_chat_replies("Use a list comprehension.", "Python lists")
    done = await ask(fake_discord, world, "How do I filter a list?", channel=forum_id, thread=True)
    await done.wait_for(lambda i: "<#" in i.all_text())  # the private note naming the post comes last
    posts = [c for c in fake_discord.world.channels.values() if c.parent_id == forum_id]
    assert [p.name for p in posts] == ["Python lists"]
    starter = fake_discord.messages_in(posts[0].id)[0]
    assert starter["content"].startswith(f"🧵 Started by <@{world.member_id}>")
    assert "Use a list comprehension." in starter["content"]
    assert f"<#{posts[0].id}>" in done.all_text()


async def test_members_talk_in_a_bot_thread_without_mentions_but_not_in_a_member_thread(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread_id = await start_thread(bot, fake_discord, fake_openai, world)
    fake_openai.queue_chat_replies("Berlin.")
    await fake_discord.post_message(thread_id, world.moderator_id, "And of Germany?")
    await fake_discord.wait_until(
        lambda: fake_discord.messages_in(thread_id)[-1]["content"] == "Berlin.", timeout=15, what="the answer"
    )
    body = chat_bodies(fake_openai)[-1]
    assert body["messages"][-1]["content"] == "And of Germany?"
    assert any(m["content"] == "Paris is the capital." for m in body["messages"])  # the thread's memory
    assert fake_discord.messages_in(thread_id)[-1]["content"] == "Berlin."

    member_thread = await fake_discord.member_creates_thread(world.channel_id, world.member_id, "chat")
    calls = len(chat_bodies(fake_openai))
    await fake_discord.post_message(member_thread, world.member_id, "anyone here?")
    await settle()
    assert len(chat_bodies(fake_openai)) == calls
    fake_openai.queue_chat_replies("Yes.")
    await fake_discord.post_message(member_thread, world.member_id, "hello bot", mentions_bot=True)
    await fake_discord.wait_until(lambda: len(chat_bodies(fake_openai)) > calls, timeout=15, what="a chat")
    await settle()
    assert len(chat_bodies(fake_openai)) == calls + 1


async def test_the_setting_off_needs_a_mention_and_only_admins_change_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread_id = await start_thread(bot, fake_discord, fake_openai, world)
    refused = await run(fake_discord, world, "threads", {"every_message": False})
    assert refused.ephemeral and "every member message" not in refused.all_text()
    done = await run(fake_discord, world, "threads", {"every_message": False}, user=world.moderator_id)
    assert "mention me or reply to me" in done.all_text()
    calls = len(chat_bodies(fake_openai))
    await fake_discord.post_message(thread_id, world.member_id, "and Spain?")
    await settle()
    assert len(chat_bodies(fake_openai)) == calls
    fake_openai.queue_chat_replies("Madrid.")
    await fake_discord.post_message(thread_id, world.member_id, "and Spain?", mentions_bot=True)
    await fake_discord.wait_until(lambda: len(chat_bodies(fake_openai)) > calls, timeout=15, what="a chat")
    await settle()
    assert len(chat_bodies(fake_openai)) == calls + 1
    shown = await run(fake_discord, world, "threads", user=world.moderator_id)
    assert "mention me or reply to me" in shown.all_text()


async def test_bot_threads_are_remembered_across_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    thread_id = await start_thread(bot, fake_discord, fake_openai, world)
    await bot.close()
    await start_bot()
    fake_openai.queue_chat_replies("Still here.")
    await fake_discord.post_message(thread_id, world.member_id, "are you there?")
    await fake_discord.wait_until(
        lambda: any(b["messages"][-1]["content"] == "are you there?" for b in chat_bodies(fake_openai)),
        timeout=15,
        what="the turn asked after the restart",
    )
    assert chat_bodies(fake_openai)[-1]["messages"][-1]["content"] == "are you there?"


async def test_a_turn_without_mention_passes_the_same_admission_as_a_mention(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread_id = await start_thread(bot, fake_discord, fake_openai, world)
    await run(
        fake_discord, world, "limits command", {"command": "ask", "enabled": False}, user=world.moderator_id
    )
    calls = len(chat_bodies(fake_openai))
    await fake_discord.post_message(thread_id, world.member_id, "one more question")
    await fake_discord.wait_until(
        lambda: "/ask" in fake_discord.messages_in(thread_id)[-1]["content"], timeout=15, what="the refusal"
    )
    await settle()
    assert len(chat_bodies(fake_openai)) == calls
    refusal = fake_discord.messages_in(thread_id)[-1]
    assert refusal["author"]["id"] == str(fake_discord.world.bot_user_id) and "/ask" in refusal["content"]
