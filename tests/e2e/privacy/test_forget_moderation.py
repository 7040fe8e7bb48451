"""/forget me does not undo moderation: queued messages are still judged, strikes still escalate."""

from __future__ import annotations

import time

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeOpenAI
from testkit.driver import run
from tests.e2e.moderation.test_moderation_outage import FAST, wait_queued
from tests.support.moderation import actions, moderator, rows, set_policy, strikes
from tests.support.server import BotFactory, World


async def test_a_message_queued_before_forget_me_is_still_moderated(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    bot = await start_bot(**FAST)
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    fake_openai.down = True
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME while it is down")
    mid = int(message["id"])
    await wait_queued(fake_discord, bot, 1)

    done = await run(fake_discord, world, "forget me")
    assert "1 message of yours posted while moderation was unavailable is still waiting" in done.all_text()
    assert await moderator(bot).queue.count() == 1

    fake_openai.down = False
    await fake_discord.wait_until(lambda: mid in fake_discord.deleted_message_ids, timeout=5, what="deleted")
    [record] = await actions(bot)
    assert record["message_id"] == mid and record["author_id"] == world.member_id
    assert record["source"] == "queue" and record["action"] == "warn"
    [strike] = await strikes(bot)
    assert strike["user_id"] == world.member_id
    # Judged, the stored copy of the message is gone.
    assert await rows(bot, "SELECT * FROM moderation_queue") == []


async def test_strikes_survive_forget_me_and_the_next_flag_escalates(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    await set_policy(mod_bot, world.guild_id, strikes_to_timeout=2, strike_window=3600, timeout_seconds=300)
    first = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME one")
    await fake_discord.wait_until(
        lambda: int(first["id"]) in fake_discord.deleted_message_ids, what="deleted"
    )
    await fake_discord.wait_until(lambda: bool(fake_discord.dms), what="the warning")
    assert len(await strikes(mod_bot)) == 1

    done = await run(fake_discord, world, "forget me")
    text = done.all_text()
    assert "1 moderation record and 1 strike about you, for 90 days" in text
    assert len(await strikes(mod_bot)) == 1 and len(await actions(mod_bot)) == 1

    await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME two")
    await fake_discord.wait_until(lambda: bool(fake_discord.timeouts), what="a timeout")
    [timeout] = fake_discord.timeouts
    assert timeout["user_id"] == world.member_id and timeout["communication_disabled_until"]
    assert [s["user_id"] for s in await strikes(mod_bot)] == [world.member_id, world.member_id]


async def test_moderation_records_expire_after_their_own_retention(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    bot = await start_bot(retention_days=0, moderation_retention_days=30)
    store = bot.services.store
    for age_days, message_id in ((40, 1), (5, 2)):
        async with store.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO moderation_actions (guild_id, channel_id, message_id, author_id, source, "
                "categories, scores, action, created_at) "
                "VALUES (?, ?, ?, ?, 'message', '[]', '{}', 'warn', ?) RETURNING id",
                (
                    world.guild_id,
                    world.channel_id,
                    message_id,
                    world.member_id,
                    time.time() - age_days * 86400,
                ),
            )
            action = await cursor.fetchone()
            await db.execute(
                "INSERT INTO moderation_strikes (guild_id, user_id, action_id, created_at) VALUES (?, ?, ?, ?)",
                (world.guild_id, world.member_id, action[0], time.time() - age_days * 86400),
            )
    privacy = bot.services.privacy
    assert privacy is not None
    await privacy.purge_expired()
    assert [r["message_id"] for r in await actions(bot)] == [2]
    assert len(await strikes(bot)) == 1
