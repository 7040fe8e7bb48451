"""SHARD_COUNT in one process: a session per shard, answers on every shard, health per shard, one sync."""

from __future__ import annotations

import asyncio

from bot.discord_io.client import ShardedOpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import Seat, answer_text, ask
from testkit.openai import FakeOpenAI
from tests.e2e.ops.test_metrics import free_port, get, samples, value
from tests.support.server import BotFactory


def seats_on_both_shards(fake: FakeDiscord) -> dict[int, Seat]:
    fake.shard_count = 2
    seats = {}
    for shard in (0, 1):
        guild = fake.add_guild(f"Guild on shard {shard}", shard=shard)
        seats[shard] = Seat(guild, fake.add_channel(guild), fake.add_member(guild, name=f"member{shard}"))
    return seats


async def test_one_process_runs_every_shard_and_reports_each_shard_s_health(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    seats = seats_on_both_shards(fake_discord)
    port = free_port()
    bot = await start_bot(shard_count=2, metrics_port=port)
    assert isinstance(bot, ShardedOpenAIBot)
    assert sorted(fake_discord.sessions) == [0, 1]
    assert {s.shard for s in fake_discord.sessions.values()} == {(0, 2), (1, 2)}
    assert {g.id: g.shard_id for g in bot.guilds} == {seats[0].guild_id: 0, seats[1].guild_id: 1}
    assert fake_discord.sync_count == 1

    for shard, seat in seats.items():
        fake_openai.queue_chat_replies(f"answer on shard {shard}")
        done = await ask(fake_discord, seat, f"question on shard {shard}")
        assert done.original is not None
        assert answer_text(done.original["content"]) == f"answer on shard {shard}"
    assert await get(port, "/healthz") == (200, "ok (shards 0, 1 of 2)\n")

    fake_discord.resume_gate = asyncio.Event()  # shard 1 reconnects, but its RESUME waits
    await fake_discord.close_gateway(4000, shard=1)
    for _ in range(200):
        status, body = await get(port, "/healthz")
        if status == 503:
            break
        await asyncio.sleep(0.02)
    assert status == 503 and "shard 1 of the Discord gateway is disconnected" in body, body
    found = samples((await get(port, "/metrics"))[1])
    assert value(found, "discord_bot_shard_connected", shard="0") == 1
    assert value(found, "discord_bot_shard_connected", shard="1") == 0
    assert value(found, "discord_bot_gateway_connected") == 0

    # Shard 0 keeps answering while shard 1 is away.
    fake_openai.queue_chat_replies("still here")
    done = await ask(fake_discord, seats[0], "anyone there?")
    assert done.original is not None and answer_text(done.original["content"]) == "still here"

    fake_discord.resume_gate.set()
    for _ in range(250):
        status, body = await get(port, "/healthz")
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert (status, body) == (200, "ok (shards 0, 1 of 2)\n")
    assert fake_discord.resume_count == 1 and fake_discord.identify_count == 2
    fake_discord.resume_gate = None


async def test_a_process_without_shard_0_runs_only_its_shards_and_does_not_sync(
    start_bot: BotFactory, fake_discord: FakeDiscord
) -> None:
    seats = seats_on_both_shards(fake_discord)
    bot = await start_bot(shard_count=2, shard_ids=frozenset({1}))
    assert sorted(fake_discord.sessions) == [1] and fake_discord.session_for(1).shard == (1, 2)
    assert [g.id for g in bot.guilds] == [seats[1].guild_id]
    assert fake_discord.sync_count == 0, "only the process holding shard 0 syncs"
