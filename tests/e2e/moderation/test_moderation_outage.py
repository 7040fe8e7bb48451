"""Outages lose nothing: the durable queue, its drain after recovery and restarts, quota reports, fail-closed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bot.discord_io.client import OpenAIBot
from bot.storage.base import Store
from bot.storage.leases import Leases
from bot.storage.store import open_store
from cogs.moderation.listener import DRAIN_LEASE
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask_settled
from testkit.openai import FakeOpenAI
from tests.support.database import database_url
from tests.support.moderation import actions, bot_posts, moderator, set_policy, settle
from tests.support.server import BotFactory, World

FAST = {"moderation_retry_interval": 0.1, "openai_max_retries": 0}
MESSAGES = ["FLAGME first", "a calm remark", "I will kill you", "another calm one", "FLAGME last"]
FLAGGED = {0, 2, 4}


async def post_all(fake: FakeDiscord, world: World) -> list[int]:
    ids = []
    for n, text in enumerate(MESSAGES):
        channel = world.channel_id if n % 2 == 0 else world.other_channel_id
        ids.append(int((await fake.post_message(channel, world.member_id, text))["id"]))
    return ids


async def queued(bot: OpenAIBot) -> int:
    return await moderator(bot).queue.count()


async def wait_queued(fake: FakeDiscord, bot: OpenAIBot, n: int) -> None:
    for _ in range(500):
        if await queued(bot) == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{await queued(bot)} queued, expected {n}")


async def queue_all_then_stop(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> list[int]:
    """Every message queued during an outage, then the bot stopped: the ids posted."""
    bot = await start_bot(**FAST)
    fake_openai.down = True
    ids = await post_all(fake_discord, world)
    await wait_queued(fake_discord, bot, len(MESSAGES))
    await bot.close()
    return ids


async def assert_all_moderated(fake: FakeDiscord, fake_openai: FakeOpenAI, ids: list[int]) -> None:
    flagged = {ids[i] for i in FLAGGED}
    await fake.wait_until(lambda: flagged <= fake.deleted_message_ids, timeout=5, what="flagged deleted")
    assert not (set(ids) - flagged) & fake.deleted_message_ids
    answered: list[str] = []
    for request in fake_openai.calls("/moderations"):
        if request.status == 200 and isinstance(request.json["input"], list):
            answered += request.json["input"]
    for text in MESSAGES:
        assert text in answered, text  # every message was judged by a successful request


async def test_outage_queue_drains_after_recovery(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    bot = await start_bot(**FAST)
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    fake_openai.down = True
    ids = await post_all(fake_discord, world)
    await wait_queued(fake_discord, bot, len(MESSAGES))
    assert not fake_discord.deleted_message_ids

    def outage_reports() -> list[dict[str, object]]:
        return [p for p in bot_posts(fake_discord, modlog_id) if "queue" in p["content"]]

    # The report follows the first queued message's write, so it may land just after the queue filled.
    await fake_discord.wait_until(lambda: outage_reports(), timeout=5, what="the outage report")
    await settle(0.2)
    assert len(outage_reports()) == 1  # once per outage, not per message
    fake_openai.down = False
    await assert_all_moderated(fake_discord, fake_openai, ids)
    await fake_discord.wait_until(
        lambda: len([p for p in bot_posts(fake_discord, modlog_id) if p["embeds"]]) == 3
    )
    assert await queued(bot) == 0
    records = await actions(bot)
    assert sorted(r["message_id"] for r in records) == sorted(ids[i] for i in FLAGGED)
    assert {r["source"] for r in records} == {"queue"}
    assert moderator(bot).outage is None


async def test_queue_survives_a_restart_during_an_outage(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    ids = await queue_all_then_stop(start_bot, fake_discord, fake_openai, world)
    fake_openai.down = False
    restarted = await start_bot(**FAST)
    await assert_all_moderated(fake_discord, fake_openai, ids)
    assert await queued(restarted) == 0
    assert len(await actions(restarted)) == len(FLAGGED)


async def claimers(store: Store) -> list[str | None]:
    return [r[0] for r in await store.fetchall("SELECT claimed_by FROM moderation_queue ORDER BY id")]


async def test_a_shutdown_in_the_middle_of_a_drain_gives_its_claims_back(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    bot = await start_bot(**FAST)
    fake_openai.down = True
    await post_all(fake_discord, world)
    await wait_queued(fake_discord, bot, len(MESSAGES))
    fake_openai.down = False
    fake_openai.inject_hang("/moderations", 30, times=-1)  # the drainer claims its batch and waits on it
    store = moderator(bot).queue.store
    for _ in range(500):
        if None not in await claimers(store):
            break
        await asyncio.sleep(0.01)
    assert None not in await claimers(store), "the drainer claimed the queue"
    await bot.close()
    fake_openai.clear_injections()
    reopened = await open_store(database_url(tmp_path))
    try:
        assert await claimers(reopened) == [None] * len(MESSAGES), "given back, still queued"
    finally:
        await reopened.close()


async def test_messages_claimed_by_a_process_that_died_are_drained_at_once_after_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    ids = await queue_all_then_stop(start_bot, fake_discord, fake_openai, world)
    # As a process killed mid-drain leaves them: claimed for minutes by a holder with no liveness lease.
    reopened = await open_store(database_url(tmp_path))
    try:
        await reopened.execute(
            "UPDATE moderation_queue SET claimed_by = ?, claimed_until = ?",
            ("another-host:4242:0badc0de", time.time() + 300),
        )
    finally:
        await reopened.close()
    fake_openai.down = False
    restarted = await start_bot(**FAST)
    await assert_all_moderated(fake_discord, fake_openai, ids)
    assert await queued(restarted) == 0


async def test_insufficient_quota_is_reported_once(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    bot = await start_bot(**FAST, quota_cooldown=0.1)
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    fake_openai.inject_insufficient_quota("/moderations")
    ids = await post_all(fake_discord, world)
    await wait_queued(fake_discord, bot, len(MESSAGES))
    await fake_discord.wait_until(lambda: len(fake_openai.calls("/moderations")) >= 3, what="drainer probes")
    await fake_discord.wait_until(lambda: bool(bot_posts(fake_discord, modlog_id)), what="a quota report")
    reports = [p for p in bot_posts(fake_discord, modlog_id) if "insufficient_quota" in p["content"]]
    assert len(reports) == 1
    assert moderator(bot).outage == "quota"
    fake_openai.clear_injections()
    await assert_all_moderated(fake_discord, fake_openai, ids)
    reports = [p for p in bot_posts(fake_discord, modlog_id) if "insufficient_quota" in p["content"]]
    assert len(reports) == 1


async def test_command_input_fails_closed_unless_the_server_fails_open(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(**FAST)
    fake_openai.inject("/moderations", 503, times=-1)
    refused = await ask_settled(fake_discord, world, "is this safe?")
    assert "Moderation is unavailable" in refused.all_text()
    assert fake_openai.calls("/chat/completions") == []
    await set_policy(bot, world.guild_id, fail_open=True)
    fake_openai.queue_chat_replies("Yes, it is.")
    answered = await ask_settled(fake_discord, world, "is this safe now?")
    assert answered.original is not None and answer_text(answered.original["content"]) == "Yes, it is."


async def test_only_the_process_holding_the_drain_lease_drains_and_the_others_probe_live(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    """Another process (here, a lease row) drains the queue: this bot leaves it alone, yet moderates its
    own new messages live once the endpoint is back; it drains when the lease comes to it."""
    bot = await start_bot(**FAST)
    events: Any = bot.get_cog("ModerationEvents")
    keeper = events.drain_lease
    await keeper.stop()  # this process gives the lease up, and another takes it
    other = Leases(bot.services.store, holder="another-host:1:other")
    assert await other.acquire(DRAIN_LEASE, 60)
    assert not await keeper.try_hold()
    fake_openai.down = True
    ids = await post_all(fake_discord, world)
    await wait_queued(fake_discord, bot, len(MESSAGES))
    fake_openai.down = False
    await settle(0.5)
    assert await queued(bot) == len(MESSAGES), "the lease holder drains, not this process"
    assert not fake_discord.deleted_message_ids
    # Its own outage ended after the retry interval: a new message is judged live, not queued.
    live = int((await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME live"))["id"])
    await fake_discord.wait_until(lambda: live in fake_discord.deleted_message_ids, timeout=5, what="live")
    assert await queued(bot) == len(MESSAGES)
    # The other process stops (a clean shutdown releases its lease): this one takes over and drains.
    assert await other.release(DRAIN_LEASE)
    assert await keeper.try_hold()
    await assert_all_moderated(fake_discord, fake_openai, ids)
    for _ in range(200):
        if await queued(bot) == 0:
            break
        await asyncio.sleep(0.02)
    assert await queued(bot) == 0
