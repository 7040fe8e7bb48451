"""Answers longer than one Discord message: Regenerate, Stop and Continue act on every part, after a restart too."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies, invoke_ask
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World
from tests.support.waits import turns, turns_when, until

LONG = 4000  # max_answer_tokens: room for answers of four messages


def words(count: int, tag: str) -> str:
    """`count` words of 6 characters (a space included), each naming where it sits (`tag` and its number)."""
    return " ".join(f"{tag}{i:04d}" for i in range(count))


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]


async def stored_ids(bot: OpenAIBot, fake_discord: FakeDiscord, key: int, timeout: float = 10) -> list[int]:  # noqa: ASYNC109
    """The messages stored for answer `key`, once the answer has settled: its buttons on the first, every
    part still there, none still streaming, and the same ids twice in a row."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    previous: list[int] | None = None
    while True:
        row = await bot.services.store.fetchone(
            "SELECT message_ids FROM chat_answers WHERE answer_key = ?", (key,)
        )
        ids = [int(i) for i in str(row[0]).split(",") if i] if row is not None else []
        index = fake_discord.world.message_index
        settled = (
            bool(ids)
            and all(i in index and not gone(fake_discord, i) for i in ids)
            and f"ask:regen:{key}" in custom_ids(index[ids[0]])
            and not any(index[i]["content"].endswith(("▌", "…")) for i in ids)
        )
        if settled and ids == previous:
            return ids
        if loop.time() > deadline:
            raise AssertionError(f"answer {key} did not settle: {ids}")
        previous = ids if settled else None
        await asyncio.sleep(0.2)


def contents(fake_discord: FakeDiscord, ids: list[int]) -> list[str]:
    return [fake_discord.world.message_index[i]["content"] for i in ids]


def gone(fake_discord: FakeDiscord, message_id: int) -> bool:
    return message_id in fake_discord.world.deleted_message_ids


def discord_bodies(fake_discord: FakeDiscord) -> str:
    """Every message body the bot sent or edited, as one text."""
    sent = fake_discord.requests_to("POST", r"/(messages|webhooks/)") + fake_discord.requests_to(
        "PATCH", r"/messages/"
    )
    return "\n".join(str(r.json) for r in sent)


async def regenerate(fake_discord: FakeDiscord, message_id: int, key: int, user: int) -> Any:
    click = await fake_discord.click(message_id, f"ask:regen:{key}", user_id=user)
    return await click.wait_done(settle=0.4)


async def test_regenerate_rewrites_every_part_deletes_the_extra_and_adds_the_missing(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=LONG)
    fake_openai.stream_chunk_chars = 400
    first, shorter, longer = words(750, "a"), words(500, "b"), words(1100, "c")
    fake_openai.queue_chat_replies(first, shorter, longer)
    done = await ask(fake_discord, world, "a long essay")
    await done.wait_done(settle=0.3)
    ids = await stored_ids(bot, fake_discord, done.id)
    assert len(ids) == 3 and ids[0] == int(done.original["id"])
    assert [int(f["id"]) for f in done.followups] == ids[1:]
    header = f"> a long essay — <@{world.member_id}>\n"
    assert "".join(contents(fake_discord, ids)) == header + first

    # Fewer parts: the first two are edited in place, the third deleted; the buttons stay on the first.
    click = await regenerate(fake_discord, ids[0], done.id, world.member_id)
    assert await stored_ids(bot, fake_discord, click.id) == ids[:2]
    assert "".join(contents(fake_discord, ids[:2])) == header + shorter
    assert gone(fake_discord, ids[2]) and not gone(fake_discord, ids[1])
    assert custom_ids(fake_discord.world.message_index[ids[0]]) == [f"ask:regen:{click.id}"]
    assert custom_ids(fake_discord.world.message_index[ids[1]]) == []

    # More parts: both are edited, then the missing ones follow in order.
    again = await regenerate(fake_discord, ids[0], click.id, world.member_id)
    longer_ids = await stored_ids(bot, fake_discord, again.id)
    assert len(longer_ids) == 4 and longer_ids[:2] == ids[:2] and longer_ids[2] < longer_ids[3]
    assert [int(f["id"]) for f in again.followups] == longer_ids[2:]
    assert "".join(contents(fake_discord, longer_ids)) == header + longer
    assert all(not (f.get("flags", 0) & 64) for f in again.followups)

    # Memory keeps only the final answer; every version was billed.
    assert await turns(bot, world.channel_id) == [("user", "a long essay"), ("assistant", longer)]
    rows = await bot.services.store.fetchall("SELECT id FROM usage_events WHERE kind = 'chat'")
    assert len(rows) == 3


async def test_a_part_deleted_meanwhile_is_sent_anew_with_the_parts_after_it_in_order(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=LONG)
    fake_openai.stream_chunk_chars = 400
    fake_openai.queue_chat_replies(words(750, "a"), words(800, "b"))
    done = await ask(fake_discord, world, "a long essay")
    ids = await stored_ids(bot, fake_discord, done.id)
    assert len(ids) == 3
    await fake_discord.delete_message_event(world.channel_id, ids[1])  # a moderator removes the middle part

    click = await regenerate(fake_discord, ids[0], done.id, world.member_id)
    new_ids = await stored_ids(bot, fake_discord, click.id)
    assert new_ids[0] == ids[0] and len(new_ids) == 3 and not set(new_ids[1:]) & set(ids)
    assert new_ids[1] < new_ids[2] and gone(fake_discord, ids[2])
    header = f"> a long essay — <@{world.member_id}>\n"
    assert "".join(contents(fake_discord, new_ids)) == header + words(800, "b")


async def test_a_flagged_regeneration_shows_nothing_of_it_and_restores_every_part(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=LONG)
    fake_openai.stream_chunk_chars = 400
    first = words(750, "a")
    fake_openai.queue_chat_replies(first, words(700, "b") + " FLAGME at the very end.")
    done = await ask(fake_discord, world, "a long essay")
    await done.wait_done(settle=0.3)
    ids = await stored_ids(bot, fake_discord, done.id)
    before = contents(fake_discord, ids)

    click = await fake_discord.click(ids[0], f"ask:regen:{done.id}", user_id=world.member_id)
    # The refusal is sent last, after every part is put back: wait for it, then for a quiet moment before
    # checking that nothing of the flagged answer was shown.
    await click.wait_for(lambda i: bool(i.followups) and bool(i.followups[-1].get("flags", 0) & 64))
    await click.wait_done(settle=0.4)
    assert "FLAGME" not in discord_bodies(fake_discord)
    assert contents(fake_discord, ids) == before and not any(gone(fake_discord, i) for i in ids)
    assert custom_ids(fake_discord.world.message_index[ids[0]]) == [f"ask:regen:{done.id}"]
    assert click.followups and click.followups[-1].get("flags", 0) & 64  # the refusal, to the asker only
    public = [f for f in click.followups if not f.get("flags", 0) & 64]
    assert all(gone(fake_discord, int(f["id"])) for f in public)  # parts the rewrite had added
    assert await turns(bot, world.channel_id) == [("user", "a long essay"), ("assistant", first)]


async def test_stop_during_a_long_regeneration_keeps_what_was_shown_across_the_parts(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=LONG)
    fake_openai.stream_chunk_chars = 400
    fake_openai.queue_chat_replies(words(750, "a"), words(1100, "c"))
    done = await ask(fake_discord, world, "a long essay")
    await done.wait_done(settle=0.3)
    ids = await stored_ids(bot, fake_discord, done.id)

    fake_openai.stream_chunk_chars = 40
    fake_openai.stream_chunk_delay = 0.02
    click = await fake_discord.click(ids[0], f"ask:regen:{done.id}", user_id=world.member_id)
    await until(lambda: "c0400" in fake_discord.world.message_index[ids[1]]["content"])
    assert custom_ids(fake_discord.world.message_index[ids[0]]) == [f"ask:stop:{click.id}"]
    stop = await fake_discord.click(ids[0], f"ask:stop:{click.id}", user_id=world.member_id)
    await stop.wait_done()
    await click.wait_done(settle=0.4)
    kept = await stored_ids(bot, fake_discord, click.id)
    text = "".join(contents(fake_discord, kept))
    assert text.endswith(f"-# (stopped by <@{world.member_id}> before the end)")
    assert "c0400" in text and "c1099" not in text and "a0" not in text
    assert kept[0] == ids[0] and all(gone(fake_discord, i) for i in ids if i not in kept)
    assert custom_ids(fake_discord.world.message_index[ids[0]]) == [f"ask:regen:{click.id}"]


async def test_a_private_long_answer_is_regenerated_into_its_first_message_and_new_parts(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=LONG)
    fake_openai.stream_chunk_chars = 400
    fake_openai.queue_chat_replies(words(750, "a"), words(500, "b"))
    done = await invoke_ask(fake_discord, world, "a secret essay", private=True)
    await done.wait_for(lambda i: len(i.followups) == 2, timeout=10)
    await done.wait_done(settle=0.3)
    ids = await stored_ids(bot, fake_discord, done.id)
    assert len(ids) == 3
    click = await regenerate(fake_discord, ids[0], done.id, world.member_id)
    # Discord lets only the token that sent an ephemeral message touch it: the first (the button's message)
    # is rewritten, the rest of the new answer follows, still private.
    new_ids = await stored_ids(bot, fake_discord, click.id)
    assert new_ids[0] == ids[0] and len(new_ids) == 2 and new_ids[1] not in ids
    assert "".join(contents(fake_discord, new_ids)) == words(500, "b")
    assert all(f.get("flags", 0) & 64 for f in click.followups)


async def test_regenerate_and_continue_on_a_long_answer_after_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(max_answer_tokens=1100)
    fake_openai.stream_chunk_chars = 400
    fake_openai.queue_chat_replies(words(750, "a"))  # cut at the token limit: Continue is offered
    done = await ask(fake_discord, world, "before the restart")
    await done.wait_done(settle=0.3)
    ids = await stored_ids(bot, fake_discord, done.id)
    assert len(ids) == 3
    assert custom_ids(fake_discord.world.message_index[ids[0]]) == [
        f"ask:regen:{done.id}",
        f"ask:more:{done.id}",
    ]
    await bot.close()

    restarted = await start_bot(max_answer_tokens=1100)
    fake_openai.queue_chat_replies(words(300, "m"), words(500, "b"))
    more = await fake_discord.click(ids[0], f"ask:more:{done.id}", user_id=world.member_id)
    await more.wait_done()
    # The continuation's last edit swaps its Stop button for Regenerate: wait for it to finish before
    # regenerating the first answer (its memory is stored before that edit).
    await more.wait_for(
        lambda i: (
            i.original is not None
            and bool(custom_ids(i.original))
            and not any(c.startswith("ask:stop:") for c in custom_ids(i.original))
        )
    )
    assert more.original is not None and more.original["content"].startswith(
        "> (continued) before the restart"
    )
    click = await regenerate(fake_discord, ids[0], done.id, world.member_id)
    new_ids = await stored_ids(restarted, fake_discord, click.id)
    assert new_ids == ids[:2] and gone(fake_discord, ids[2])
    header = f"> before the restart — <@{world.member_id}>\n"
    assert "".join(contents(fake_discord, new_ids)) == header + words(500, "b")
    stored = await turns_when(
        restarted, world.channel_id, lambda t: len(t) >= 4 and ("assistant", words(500, "b")) in t
    )
    assert stored[1] == ("assistant", words(500, "b")) and stored[3] == ("assistant", words(300, "m"))
    assert chat_bodies(fake_openai)[-1]["messages"][-1]["content"] == "before the restart"
