"""Catch-up: messages posted while the bot was down, or lost across a gateway RESUME, are moderated from
history after start-up or the RESUME, and nothing already handled is moderated or acted on twice."""

from __future__ import annotations

import asyncio

import pytest

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeOpenAI
from tests.support.moderation import actions, moderated_texts, moderator, rows, settle
from tests.support.server import BotFactory, World

CATCH_UP_ON = {"moderation_catchup_messages": 1000}


async def watermark(bot: OpenAIBot, channel_id: int) -> int:
    found = await rows(bot, "SELECT message_id FROM moderation_watermarks WHERE channel_id = ?", channel_id)
    return int(found[0]["message_id"]) if found else 0


async def test_a_flagged_message_posted_while_the_bot_was_down_is_deleted_after_start_up(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(**CATCH_UP_ON)
    await fake_discord.post_message(world.channel_id, world.member_id, "hello before the restart")
    await fake_discord.wait_until(lambda: "hello before the restart" in moderated_texts(fake_openai))
    await settle()
    await bot.close()  # flushes the watermarks

    missed = await fake_discord.post_message(world.channel_id, world.member_id, "posted while down FLAGME")
    clean = await fake_discord.post_message(world.other_channel_id, world.member_id, "a quiet hello")
    bot = await start_bot(**CATCH_UP_ON)
    await fake_discord.wait_until(
        lambda: int(missed["id"]) in fake_discord.deleted_message_ids, what="the missed message deleted"
    )
    await fake_discord.wait_until(lambda: "a quiet hello" in moderated_texts(fake_openai))
    await settle()
    assert [a["message_id"] for a in await actions(bot)] == [int(missed["id"])]
    assert int(clean["id"]) not in fake_discord.deleted_message_ids
    # The message moderated before the restart is at or below the watermark: not paid for again.
    assert moderated_texts(fake_openai).count("hello before the restart") == 1
    # Within one group commit (a second), the watermark covers the caught-up message.
    await wait_for_watermark(bot, world.channel_id, int(missed["id"]))


async def wait_for_watermark(bot: OpenAIBot, channel_id: int, message_id: int) -> None:
    for _ in range(300):
        if await watermark(bot, channel_id) >= message_id:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the watermark of channel {channel_id} never reached {message_id}")


async def test_c_a_resume_catches_up_on_messages_the_gateway_lost(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(**CATCH_UP_ON)
    before = await fake_discord.post_message(world.channel_id, world.member_id, "said before the drop")
    await fake_discord.wait_until(lambda: "said before the drop" in moderated_texts(fake_openai))
    await settle()
    fake_discord.replay_missed_events = False
    fake_discord.resume_gate = asyncio.Event()
    await fake_discord.close_gateway(4000)
    gap = [
        await fake_discord.post_message(world.channel_id, world.member_id, f"in the gap {i} FLAGME")
        for i in range(2)
    ]
    gap.append(await fake_discord.post_message(world.other_channel_id, world.member_id, "gap hello"))
    assert len(fake_discord.lost_events) == 3, "the fake dropped the gap's events"
    fake_discord.resume_gate.set()
    await fake_discord.wait_until(lambda: fake_discord.resume_count == 1 and fake_discord.connected)
    for message in gap[:2]:
        await fake_discord.wait_until(
            lambda m=message: int(m["id"]) in fake_discord.deleted_message_ids, what="a gap message deleted"
        )
    await fake_discord.wait_until(lambda: "gap hello" in moderated_texts(fake_openai))
    # A live message after the RESUME is moderated once, not again by the catch-up.
    after = await fake_discord.post_message(world.channel_id, world.member_id, "after the resume FLAGME")
    await fake_discord.wait_until(lambda: int(after["id"]) in fake_discord.deleted_message_ids)
    await settle(0.3)
    acted = [a["message_id"] for a in await actions(bot)]
    assert sorted(acted) == sorted([int(m["id"]) for m in gap[:2]] + [int(after["id"])])
    texts = moderated_texts(fake_openai)
    assert texts.count("said before the drop") == 1
    assert int(before["id"]) not in fake_discord.deleted_message_ids
    fake_discord.resume_gate = None


@pytest.mark.parametrize("catch_up", [True, False], ids=["catch-up on", "catch-up off"])
async def test_a_message_whose_check_a_shutdown_cut_short_is_moderated_after_the_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, catch_up: bool
) -> None:
    options = CATCH_UP_ON if catch_up else {}
    bot = await start_bot(**options, shutdown_grace=0.3)
    await fake_discord.post_message(world.channel_id, world.member_id, "hello before the hang")
    await fake_discord.wait_until(lambda: "hello before the hang" in moderated_texts(fake_openai))
    await settle()
    fake_openai.inject_hang("/moderations", 30, times=-1)
    cut = await fake_discord.post_message(world.channel_id, world.member_id, "cut short by the stop FLAGME")
    await fake_discord.wait_until(
        lambda: any("cut short" in str(r.json) for r in fake_openai.calls("/moderations")), what="its request"
    )
    await bot.close()  # the grace runs out with the check still waiting: the listener is cancelled
    fake_openai.clear_injections()
    bot = await start_bot(**options)
    await fake_discord.wait_until(
        lambda: int(cut["id"]) in fake_discord.deleted_message_ids, what="the cut-short message deleted"
    )
    await settle()
    # Judged once after the restart (the queue's copy; catch-up skips a message waiting there), acted on once.
    assert [a["message_id"] for a in await actions(bot)] == [int(cut["id"])]
    assert [a["source"] for a in await actions(bot)] == ["queue"]
    assert await moderator(bot).queue.count() == 0
