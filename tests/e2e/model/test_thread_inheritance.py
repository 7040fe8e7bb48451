"""A thread or forum post inherits its channel's /model choice and persona, unless it has its own."""

from __future__ import annotations

import asyncio

from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

MODELS = "gpt-5-mini,gpt-5,gpt-5-nano"


async def settle(seconds: float = 0.4) -> None:
    await asyncio.sleep(seconds)


async def asked(fake_discord: FakeDiscord, fake_openai: FakeOpenAI, text: str) -> None:
    """Until the fake OpenAI was asked a chat whose last message carries `text`."""
    await fake_discord.wait_until(
        lambda: any(text in str(body["messages"][-1]["content"]) for body in chat_bodies(fake_openai)),
        timeout=15,
        what=f"a chat request with {text!r}",
    )


async def set_model(
    fake_discord: FakeDiscord, world: World, name: str, *, channel: int, scope: str = "channel"
) -> None:
    done = await run(
        fake_discord,
        world,
        "model set",
        {"name": name, "scope": scope},
        channel=channel,
        user=world.moderator_id,
    )
    assert "now answers" in done.all_text()


async def test_threads_use_their_own_then_the_channels_then_the_servers_model(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(chat_models=MODELS)
    await set_model(fake_discord, world, "gpt-5-nano", channel=world.channel_id, scope="server")
    await set_model(fake_discord, world, "gpt-5", channel=world.channel_id)

    # A thread the bot started from an answer: its intro names the channel's model, and so do its turns.
    fake_openai.queue_chat_replies("Paris.", "Capitals")
    done = await ask(fake_discord, world, "Capital of France?", thread=True)
    bot_thread = int(done.original["id"])
    # The thread comes after the answer (a title from the model, moderated), then its intro, its record and
    # its memory: a turn posted before the record would not be the bot's to answer.
    for _ in range(3000):
        if await bot.services.store.fetchone("SELECT 1 FROM turns WHERE channel_id = ?", (bot_thread,)):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("the bot's thread was never remembered")
    assert chat_bodies(fake_openai)[0]["model"] == "gpt-5"
    assert "with `gpt-5`" in fake_discord.messages_in(bot_thread)[0]["content"]
    fake_openai.queue_chat_replies("Berlin.")
    await fake_discord.post_message(bot_thread, world.member_id, "And of Germany?")
    await asked(fake_discord, fake_openai, "And of Germany?")
    assert chat_bodies(fake_openai)[-1]["messages"][-1]["content"] == "And of Germany?"
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"

    # A member's thread, by mention and by /ask, and a thread's own choice over its channel's.
    member_thread = await fake_discord.member_creates_thread(world.channel_id, world.member_id, "chat")
    fake_openai.queue_chat_replies("Hi.")
    await fake_discord.post_message(member_thread, world.member_id, "hello bot", mentions_bot=True)
    await asked(fake_discord, fake_openai, "hello bot")
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"
    await ask(fake_discord, world, "in the thread", channel=member_thread)
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"
    shown = await run(fake_discord, world, "model show", channel=member_thread)
    assert "**gpt-5** (chosen for this thread's channel)" in shown.all_text()
    korean = await run(fake_discord, world, "model show", channel=member_thread, locale="ko")
    assert "**gpt-5** 모델이 답합니다(이 스레드가 속한 채널에서 정한 모델)" in korean.all_text()
    await set_model(fake_discord, world, "gpt-5-mini", channel=member_thread)
    await ask(fake_discord, world, "its own", channel=member_thread)
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5-mini"

    # Billed at the model that answered, the channel's.
    rows = await bot.services.store.fetchall(
        "SELECT model FROM usage_events WHERE kind = 'chat' AND channel_id = ? ORDER BY id", (bot_thread,)
    )
    assert [r["model"] for r in rows] == ["gpt-5"]

    # Without a channel choice, the server's applies in the thread.
    await run(fake_discord, world, "model clear", {"scope": "channel"}, user=world.moderator_id)
    fake_openai.queue_chat_replies("Rome.")
    await fake_discord.post_message(bot_thread, world.member_id, "And of Italy?")
    await asked(fake_discord, fake_openai, "And of Italy?")
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5-nano"


async def test_a_forum_post_inherits_the_forums_model(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(chat_models=MODELS)
    forum_id = fake_discord.add_channel(world.guild_id, "help", type=15)
    await settle(0.2)
    await set_model(fake_discord, world, "gpt-5", channel=forum_id)
    post = await fake_discord.member_creates_thread(forum_id, world.member_id, "Question", starter="Hello")
    await settle(0.2)
    fake_openai.queue_chat_replies("Hi there.")
    await fake_discord.post_message(post, world.member_id, "can you help?", mentions_bot=True)
    await asked(fake_discord, fake_openai, "can you help?")
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"


async def test_a_thread_uses_its_channels_persona_unless_it_has_its_own(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot()
    done = await run(
        fake_discord, world, "persona set", {"text": "You are a pirate."}, user=world.moderator_id
    )
    assert "Persona set" in done.all_text()
    thread = await fake_discord.member_creates_thread(world.channel_id, world.member_id, "chat")
    await ask(fake_discord, world, "hello", channel=thread)
    assert "You are a pirate." in chat_bodies(fake_openai)[-1]["messages"][0]["content"]
    await run(
        fake_discord,
        world,
        "persona set",
        {"text": "You are a poet."},
        channel=thread,
        user=world.moderator_id,
    )
    await ask(fake_discord, world, "hello again", channel=thread)
    system = chat_bodies(fake_openai)[-1]["messages"][0]["content"]
    assert "You are a poet." in system and "pirate" not in system
    # The thread's own memory: the channel's conversation does not leak in (nor the other way).
    await ask(fake_discord, world, "in the channel")
    assert all(m["content"] != "hello" for m in chat_bodies(fake_openai)[-1]["messages"])
