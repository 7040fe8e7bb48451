"""An answer shows its question, and carries Stop, Regenerate and Continue buttons (the last two survive restarts)."""

from __future__ import annotations

from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import CURSOR, answer_text, ask, chat_bodies, invoke_ask
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World
from tests.support.waits import turns, turns_when, until


def custom_ids(message: dict[str, Any] | None) -> list[str]:
    assert message is not None
    return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]


def shows_final_buttons(message: dict[str, Any] | None) -> bool:
    """The answer's last edit landed: its Stop button gave way to Regenerate (and Continue)."""
    ids = custom_ids(message) if message is not None else []
    return bool(ids) and not any(i.startswith("ask:stop:") for i in ids)


async def test_public_answer_quotes_the_question_and_its_asker_without_pinging(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Paris.")
    done = await ask(fake_discord, world, "What is the capital\nof France? @everyone")
    assert done.original is not None
    content = done.original["content"]
    first_line, answer = content.split("\n", 1)
    assert first_line.startswith("> What is the capital of France?")
    assert first_line.endswith(f" — <@{world.member_id}>")
    assert answer == "Paris."
    stored = fake_discord.world.message_index[int(done.original["id"])]
    assert stored["mentions"] == [] and not stored["mention_everyone"]
    assert custom_ids(done.original) == [f"ask:regen:{done.id}"]


async def test_private_answer_has_no_quote(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Only for you.")
    done = await ask(fake_discord, world, "secret question", private=True)
    assert done.original is not None and done.original["content"] == "Only for you."


async def test_stop_keeps_the_partial_answer_cancels_the_stream_and_remembers_nothing(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies(" ".join(f"word{i}" for i in range(400)))
    fake_openai.stream_chunk_chars = 4
    fake_openai.stream_chunk_delay = 0.02
    asked = await invoke_ask(fake_discord, world, "a long story")
    await asked.wait_for(
        lambda i: i.original is not None and (i.original.get("content") or "").endswith(CURSOR), timeout=10
    )
    assert custom_ids(asked.original) == [f"ask:stop:{asked.id}"]

    # Somebody else without Manage Messages may not stop it.
    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (
        await fake_discord.click(int(asked.original["id"]), f"ask:stop:{asked.id}", user_id=other)
    ).wait_done()
    assert "Only the person who asked" in refused.all_text() and refused.ephemeral
    assert fake_openai.cancelled_streams == 0

    stop = await fake_discord.click(
        int(asked.original["id"]), f"ask:stop:{asked.id}", user_id=world.member_id
    )
    await stop.wait_done()
    await asked.wait_for(lambda i: "stopped by" in (i.original or {}).get("content", ""), timeout=10)
    # Regenerate comes with the stopped answer's last edit, and the cancelled stream is seen by the fake
    # OpenAI when its connection drops: wait for both, then for a quiet moment before "nothing remembered".
    await asked.wait_for(lambda i: shows_final_buttons(i.original))
    await until(lambda: fake_openai.cancelled_streams > 0)
    await asked.wait_done(settle=0.2)
    content = asked.original["content"]
    assert content.endswith(f"-# (stopped by <@{world.member_id}> before the end)")
    partial = answer_text(content).rsplit("\n", 1)[0]
    # What had streamed when the click landed: some of the story from its start, never the whole of it.
    story = " ".join(f"word{i}" for i in range(400))
    assert partial.startswith("word0") and story.startswith(partial) and "word399" not in partial
    assert fake_openai.cancelled_streams == 1
    assert await turns(bot, world.channel_id) == []
    assert custom_ids(asked.original) == [f"ask:regen:{asked.id}"]


async def test_a_moderator_may_stop_an_answer(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies(" ".join(f"word{i}" for i in range(400)))
    fake_openai.stream_chunk_chars = 4
    fake_openai.stream_chunk_delay = 0.02
    asked = await invoke_ask(fake_discord, world, "a long story")
    await asked.wait_for(lambda i: i.original is not None and CURSOR in i.original.get("content", ""))
    await fake_discord.click(int(asked.original["id"]), f"ask:stop:{asked.id}", user_id=world.moderator_id)
    await asked.wait_for(lambda i: "stopped by" in (i.original or {}).get("content", ""), timeout=10)
    assert f"<@{world.moderator_id}>" in asked.original["content"]
    assert fake_openai.cancelled_streams == 1


async def test_regenerate_replaces_the_answer_and_memory_keeps_only_the_final_one(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("first try", "second try")
    done = await ask(fake_discord, world, "tell me a joke")
    message_id = int(done.original["id"])

    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (await fake_discord.click(message_id, f"ask:regen:{done.id}", user_id=other)).wait_done()
    assert "Only the person who asked can regenerate" in refused.all_text()
    assert len(chat_bodies(fake_openai)) == 1

    click = await fake_discord.click(message_id, f"ask:regen:{done.id}", user_id=world.member_id)
    await click.wait_done()
    # The rewritten answer's Regenerate (keyed by the click) comes with its final edit: wait for that.
    await until(lambda: custom_ids(fake_discord.world.message_index[message_id]) == [f"ask:regen:{click.id}"])
    message = fake_discord.world.message_index[message_id]
    assert answer_text(message["content"]) == "second try"
    assert custom_ids(message) == [f"ask:regen:{click.id}"]
    # The regenerated request did not see the answer it replaces; memory holds only the final one.
    bodies = chat_bodies(fake_openai)
    assert len(bodies) == 2
    assert all(m["content"] != "first try" for m in bodies[1]["messages"])
    assert bodies[1]["messages"][-1]["content"] == "tell me a joke"
    expected = [("user", "tell me a joke"), ("assistant", "second try")]
    assert await turns_when(bot, world.channel_id, lambda stored: stored == expected) == expected
    # Moderated and billed like any answer.
    moderated = [str(c.json) for c in fake_openai.calls("/moderations")]
    assert any("second try" in m for m in moderated)
    rows = await bot.services.store.fetchall("SELECT command FROM usage_events WHERE kind = 'chat'")
    assert len(rows) == 2


async def test_continue_appears_when_cut_at_the_token_limit_and_appends(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=16)
    fake_openai.queue_chat_replies("alpha " * 40, "and the rest.")
    done = await ask(fake_discord, world, "a long list")
    assert custom_ids(done.original) == [f"ask:regen:{done.id}", f"ask:more:{done.id}"]

    other = fake_discord.add_member(world.guild_id, name="bystander")
    refused = await (
        await fake_discord.click(int(done.original["id"]), f"ask:more:{done.id}", user_id=other)
    ).wait_done()
    assert "Only the person who asked can continue" in refused.all_text()

    click = await fake_discord.click(int(done.original["id"]), f"ask:more:{done.id}", user_id=world.member_id)
    await click.wait_done()
    await click.wait_for(lambda i: shows_final_buttons(i.original))
    assert click.original is not None and answer_text(click.original["content"]) == "and the rest."
    assert click.original["content"].startswith("> (continued) a long list")
    assert click.original["id"] != done.original["id"]  # a new message under the first
    stored = await turns_when(bot, world.channel_id, lambda stored: len(stored) >= 4)
    assert len(stored) == 4 and stored[-1] == ("assistant", "and the rest.")


async def test_regenerate_and_continue_work_after_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=16)
    fake_openai.queue_chat_replies("alpha " * 40)
    done = await ask(fake_discord, world, "before the restart")
    await bot.close()

    restarted = await start_bot(max_answer_tokens=16)
    fake_openai.queue_chat_replies("continued", "regenerated")
    more = await fake_discord.click(int(done.original["id"]), f"ask:more:{done.id}", user_id=world.member_id)
    await more.wait_done()
    await more.wait_for(lambda i: shows_final_buttons(i.original))
    assert more.original is not None and answer_text(more.original["content"]) == "continued"
    click = await fake_discord.click(
        int(done.original["id"]), f"ask:regen:{done.id}", user_id=world.member_id
    )
    await click.wait_done()
    message_id = int(done.original["id"])
    # The rewritten answer's Regenerate (keyed by the click) comes with its final edit: wait for that.
    await until(lambda: f"ask:regen:{click.id}" in custom_ids(fake_discord.world.message_index[message_id]))
    message = fake_discord.world.message_index[message_id]
    assert answer_text(message["content"]) == "regenerated"
    stored = await turns_when(
        restarted, world.channel_id, lambda stored: ("assistant", "regenerated") in stored
    )
    assert stored[:2] == [("user", "before the restart"), ("assistant", "regenerated")]
    assert stored[3] == ("assistant", "continued") and len(stored) == 4


async def test_buttons_pass_admission_like_ask(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("an answer")
    done = await ask(fake_discord, world, "question")
    rules = await fake_discord.invoke(
        "limits command",
        {"command": "ask", "enabled": False},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.moderator_id,
    )
    await rules.wait_done()
    click = await fake_discord.click(
        int(done.original["id"]), f"ask:regen:{done.id}", user_id=world.member_id
    )
    await click.wait_done()
    assert click.ephemeral and len(chat_bodies(fake_openai)) == 1


async def test_a_failed_regenerate_keeps_the_old_answer(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("first try", "FLAGME second try")
    done = await ask(fake_discord, world, "tell me a joke")
    message_id = int(done.original["id"])
    click = await fake_discord.click(message_id, f"ask:regen:{done.id}", user_id=world.member_id)
    # The refusal is sent last, after the old answer is put back: wait for it, then for a quiet moment
    # before checking that nothing else changed.
    await click.wait_for(lambda i: bool(i.followups))
    await click.wait_done(settle=0.3)
    message = fake_discord.world.message_index[message_id]
    assert answer_text(message["content"]) == "first try"
    assert custom_ids(message) == [f"ask:regen:{done.id}"]
    assert click.followups and click.followups[-1].get("flags", 0) & 64
    assert await turns(bot, world.channel_id) == [("user", "tell me a joke"), ("assistant", "first try")]
