"""Self-test of the fake Discord's shards: IDENTIFY's shard, routing by guild, DMs on shard 0, per-shard RESUME."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from testkit.discord import FakeDiscord, running_bot

INTENTS = int(discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True).value)


class RawShard:
    """A bare websocket client speaking the gateway protocol for one shard (what discord.py does, unhidden)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("op") == 0:
                    self.events.append(frame)
        self.close_code = self.ws.close_code

    def names(self, event: str) -> list[dict[str, Any]]:
        return [frame["d"] for frame in self.events if frame["t"] == event]

    async def closed(self) -> int | None:
        await asyncio.wait_for(self._reader, 5)
        return self.close_code


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def identify(
    fd: FakeDiscord, http: aiohttp.ClientSession, shard: list[int] | None, *, token: str | None = None
) -> RawShard:
    ws = await http.ws_connect(f"ws://127.0.0.1:{fd.port}/gateway?v=10&encoding=json")
    hello = await ws.receive_json()
    assert hello["op"] == 10
    payload: dict[str, Any] = {"token": token or fd.token, "intents": INTENTS, "properties": {}}
    if shard is not None:
        payload["shard"] = shard
    await ws.send_json({"op": 2, "d": payload})
    return RawShard(ws)


async def test_each_shard_gets_only_its_own_guilds_and_dms_go_to_shard_0(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeDiscord(shard_count=2) as fd:
        guilds = {shard: fd.add_guild(f"on {shard}", shard=shard) for shard in (0, 1)}
        channels = {shard: fd.add_channel(guilds[shard]) for shard in (0, 1)}
        users = {shard: fd.add_member(guilds[shard], name=f"member{shard}") for shard in (0, 1)}
        assert {shard: (gid >> 22) % 2 for shard, gid in guilds.items()} == {0: 0, 1: 1}

        shards = {shard: await identify(fd, http, [shard, 2]) for shard in (0, 1)}
        for shard in (0, 1):
            await fd.wait_ready(shard=shard)
        await fd.wait_until(lambda: all(len(s.names("GUILD_CREATE")) == 1 for s in shards.values()))
        for shard, raw in shards.items():
            (ready,) = raw.names("READY")
            assert ready["shard"] == [shard, 2]
            assert [g["id"] for g in ready["guilds"]] == [str(guilds[shard])]
            assert [g["id"] for g in raw.names("GUILD_CREATE")] == [str(guilds[shard])]
        assert fd.connected_shards == [0, 1] and fd.connected

        for shard in (0, 1):
            await fd.post_message(channels[shard], users[shard], f"hello on {shard}")
        dm = await fd.post_message(fd.dm_channel(users[1]), users[1], "a DM")
        await fd.wait_until(lambda: len(shards[0].names("MESSAGE_CREATE")) == 2)
        await fd.wait_until(lambda: len(shards[1].names("MESSAGE_CREATE")) == 1)
        await asyncio.sleep(0.05)  # nothing more arrives
        assert [m["content"] for m in shards[0].names("MESSAGE_CREATE")] == ["hello on 0", "a DM"]
        assert [m["content"] for m in shards[1].names("MESSAGE_CREATE")] == ["hello on 1"]
        assert "guild_id" not in dm

        # A guild added while connected is announced on its own shard only.
        late = fd.add_guild("late", shard=1)
        await fd.wait_until(lambda: len(shards[1].names("GUILD_CREATE")) == 2)
        assert shards[1].names("GUILD_CREATE")[-1]["id"] == str(late)
        assert len(shards[0].names("GUILD_CREATE")) == 1
        # Sequence numbers are per session.
        assert [f["s"] for f in shards[1].events] == list(range(1, len(shards[1].events) + 1))


async def test_identify_without_shard_is_shard_0_of_1_and_gets_everything(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeDiscord(shard_count=3) as fd:
        guilds = [fd.add_guild(f"g{shard}", shard=shard) for shard in range(3)]
        raw = await identify(fd, http, None)
        await fd.wait_until(lambda: len(raw.names("GUILD_CREATE")) == 3)
        assert sorted(int(g["id"]) for g in raw.names("GUILD_CREATE")) == sorted(guilds)
        assert fd.session is not None and fd.session.shard == (0, 1)


@pytest.mark.parametrize(
    ("required", "shard", "code"),
    [
        (None, [2, 2], 4010),  # id beyond the count
        (None, [-1, 2], 4010),
        (None, [0, 0], 4010),
        (2, [0, 1], 4011),  # Discord requires 2 shards
        (2, None, 4011),  # no shard at all is [0, 1]
        (2, [0, 3], 4011),
    ],
)
async def test_invalid_or_unwanted_shards_are_refused(
    http: aiohttp.ClientSession, required: int | None, shard: list[int] | None, code: int
) -> None:
    async with FakeDiscord(shard_count=2, required_shard_count=required) as fd:
        fd.add_guild()
        raw = await identify(fd, http, shard)
        assert await raw.closed() == code
        assert fd.sessions == {} and fd.identify_count == 0


async def test_gateway_bot_recommends_the_configured_shard_count(http: aiohttp.ClientSession) -> None:
    async with FakeDiscord(shard_count=4) as fd:
        async with http.get(
            f"{fd.base_url}/api/v10/gateway/bot", headers={"Authorization": f"Bot {fd.token}"}
        ) as response:
            body = await response.json()
        assert body["shards"] == 4 and body["url"].startswith("ws://127.0.0.1:")


def test_guild_ids_land_on_the_chosen_shard_and_stay_increasing() -> None:
    fd = FakeDiscord(shard_count=5)
    ids = [fd.add_guild(f"g{i}", shard=i % 5) for i in range(20)]
    assert [(gid >> 22) % 5 for gid in ids] == [i % 5 for i in range(20)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    channel = fd.add_channel(ids[-1])
    assert channel > ids[-1], "later snowflakes stay greater"
    with pytest.raises(AssertionError, match="shard 5"):
        fd.add_guild(shard=5)


class Recorder(discord.AutoShardedClient):
    """A real discord.py sharded client recording which shard each message's guild arrived on."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True)
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.received: list[tuple[str, int | None]] = []

    async def on_message(self, message: discord.Message) -> None:
        self.received.append((message.content, message.guild.shard_id if message.guild else None))


async def test_discord_py_autosharded_client_resumes_one_shard_alone() -> None:
    async with FakeDiscord(shard_count=2, required_shard_count=2) as fd:
        guilds = {shard: fd.add_guild(f"on {shard}", shard=shard) for shard in (0, 1)}
        channels = {shard: fd.add_channel(guilds[shard]) for shard in (0, 1)}
        member = fd.add_member(guilds[1], name="member")
        client = Recorder(shard_count=2)
        async with running_bot(fd, client):
            assert {g.id: g.shard_id for g in client.guilds} == {guilds[0]: 0, guilds[1]: 1}
            assert sorted(fd.sessions) == [0, 1] and fd.identify_count == 2
            shard_0 = fd.session_for(0)

            gate = asyncio.Event()
            fd.resume_gate = gate
            await fd.close_gateway(4000, shard=1)
            assert fd.connected_shards == [0]
            sent = await fd.post_message(channels[1], member, "said during shard 1's gap")
            gate.set()
            await fd.wait_until(lambda: fd.resume_count == 1 and fd.shard_connected(1), 5)
            await fd.wait_until(lambda: ("said during shard 1's gap", 1) in client.received, 5)
            assert fd.session_for(0) is shard_0 and fd.identify_count == 2
            await asyncio.sleep(0.05)
            assert client.received.count((sent["content"], 1)) == 1

            await fd.invalidate_session(shard=0)
            await fd.wait_until(lambda: fd.identify_count == 3 and fd.shard_connected(0), 5)
            assert fd.session_for(0) is not shard_0 and fd.session_for(0).shard == (0, 2)


async def test_two_clients_one_shard_each_split_the_guilds() -> None:
    async with FakeDiscord(shard_count=2) as fd:
        guilds = {shard: fd.add_guild(f"on {shard}", shard=shard) for shard in (0, 1)}
        channels = {shard: fd.add_channel(guilds[shard]) for shard in (0, 1)}
        members = {shard: fd.add_member(guilds[shard], name=f"m{shard}") for shard in (0, 1)}
        clients = {shard: Recorder(shard_count=2, shard_ids=[shard]) for shard in (0, 1)}
        async with running_bot(fd, clients[0]), running_bot(fd, clients[1]):
            for shard in (0, 1):
                assert [g.id for g in clients[shard].guilds] == [guilds[shard]]
                await fd.post_message(channels[shard], members[shard], f"to {shard}")
            await fd.post_message(fd.dm_channel(members[1]), members[1], "a DM")
            await fd.wait_until(lambda: len(clients[0].received) == 2 and len(clients[1].received) == 1, 5)
            assert clients[0].received == [("to 0", 0), ("a DM", None)]
            assert clients[1].received == [("to 1", 1)]
