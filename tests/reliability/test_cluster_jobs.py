"""The jobs one process runs for all (queue drain, retention purge) across two real bot processes, and a kill -9."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from bot.storage.leases import LEASE_SECONDS, PROCESS_PREFIX
from bot.storage.store import open_store
from cogs.interrupted import ORPHANS_LEASE
from cogs.moderation.listener import DRAIN_LEASE
from cogs.retention import PURGE_LEASE
from testkit.driver import answer_text, answered
from tests.support.cluster import BotProcess, Cluster, poll, rows, start_cluster

pytestmark = pytest.mark.postgresql_only("processes share one database only on PostgreSQL")

# Generous deadlines for a loaded 2-core machine; each poll ends as soon as its condition holds.
DEADLINE = 20.0
JOB_LEASES = (DRAIN_LEASE, PURGE_LEASE, ORPHANS_LEASE)


async def lease_holders(cluster: Cluster) -> dict[str, BotProcess | None]:
    """Each unexpired job lease and the running (or killed) process of the cluster holding it, by pid."""
    found = await rows(cluster, "SELECT name, holder FROM leases WHERE expires_at > ?", time.time())
    by_pid = {str(p.pid): p for p in cluster.processes if p.proc is not None}
    return {
        str(name): by_pid.get(str(holder).split(":")[1])
        for name, holder in found
        if not str(name).startswith(PROCESS_PREFIX)
    }


# ---------------------------------------------------------------------------------------------- the queue

FLAGGED_MARK = "FLAGME"


async def test_the_outage_queue_of_both_shards_is_drained_once(tmp_path: Path) -> None:
    fast = {"MODERATION_RETRY_INTERVAL": "0.2", "OPENAI_MAX_RETRIES": "0", "MODERATION_CACHE_SECONDS": "0"}
    async with start_cluster(tmp_path, env=fast) as cluster:
        fake, fake_openai = cluster.fake_discord, cluster.fake_openai
        await poll(
            lambda: _holds_all(cluster, (DRAIN_LEASE,)),
            "the drain lease to be taken",
            cluster,
            within=DEADLINE,
        )
        fake_openai.down = True
        posted: dict[int, tuple[int, str]] = {}  # message id -> (shard, text)
        for n in range(4):
            for shard in (0, 1):
                seat = cluster.seats[shard]
                text = (
                    f"{FLAGGED_MARK} number {n} on shard {shard}" if n == 1 else f"calm {n} on shard {shard}"
                )
                message = await fake.post_message(seat.channel_id, seat.member_id, text)
                posted[int(message["id"])] = (shard, text)

        async def all_queued() -> bool:
            queued = await rows(cluster, "SELECT message_id FROM moderation_queue")
            return {int(r[0]) for r in queued} == set(posted)

        await poll(all_queued, "every message of both shards in the queue", cluster)
        guilds = await rows(cluster, "SELECT DISTINCT guild_id FROM moderation_queue")
        assert {int(g[0]) for g in guilds} == {cluster.seats[0].guild_id, cluster.seats[1].guild_id}
        assert not fake.deleted_message_ids
        recovered_at = len(fake_openai.requests)
        fake_openai.down = False

        async def queue_empty() -> bool:
            return await rows(cluster, "SELECT COUNT(*) FROM moderation_queue") == [(0,)]

        await poll(queue_empty, "the queue to drain", cluster)
        flagged = {mid for mid, (_, text) in posted.items() if text.startswith(FLAGGED_MARK)}
        await fake.wait_until(lambda: flagged <= fake.deleted_message_ids, DEADLINE, what="flagged deleted")

        # Each message was judged by exactly one successful request after recovery (no cache to hide a second).
        judged: list[str] = []
        for request in fake_openai.requests[recovered_at:]:
            if request.path.endswith("/moderations") and request.status == 200:
                judged += _texts(request.json)
        for _, text in posted.values():
            assert judged.count(text) == 1, (text, judged)

        # Acted on once each, from the queue, and each flagged message deleted by one request.
        actions = await rows(cluster, "SELECT message_id, source FROM moderation_actions")
        assert sorted(int(r[0]) for r in actions) == sorted(flagged)
        assert {r[1] for r in actions} == {"queue"}
        for mid in flagged:
            assert len(fake.requests_to("DELETE", rf"/channels/\d+/messages/{mid}$")) == 1, mid
        assert not (set(posted) - flagged) & fake.deleted_message_ids


def _texts(body: Any) -> list[str]:
    value = (body or {}).get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v.get("text")) for v in value if isinstance(v, (str, dict))]
    return []


async def _holds_all(cluster: Cluster, names: tuple[str, ...], by: BotProcess | None = None) -> bool:
    holders = await lease_holders(cluster)
    return all(
        name in holders and (holders[name] is by if by else holders[name] is not None) for name in names
    )


# ---------------------------------------------------------------------------------------------- the purge

PURGED = re.compile(r"retention: .*turns deleted (\d+)")


async def test_the_retention_purge_runs_in_one_process_and_moves_when_it_stops(tmp_path: Path) -> None:
    async with start_cluster(tmp_path, start=False) as cluster:
        first, second = cluster.processes
        long_ago = time.time() - 200 * 86400
        channel = cluster.seats[0].channel_id

        async def add_old_turns(label: str, count: int) -> None:
            store = await open_store(cluster.database_url)  # migrated, so the bot's tables are there
            try:
                for n in range(count):
                    await store.execute(
                        "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
                        "VALUES (?, ?, ?, 'user', ?, 1, ?)",
                        (cluster.seats[0].guild_id, channel, 1, f"{label} {n}", long_ago),
                    )
            finally:
                await store.close()

        async def old_turns(label: str) -> int:
            return int(
                (await rows(cluster, "SELECT COUNT(*) FROM turns WHERE content LIKE ?", f"{label}%"))[0][0]
            )

        def purges(process: BotProcess) -> list[int]:
            return [int(n) for n in PURGED.findall(process.stderr())]

        # The first process takes the lease and purges at start; the second, started beside it, does not.
        await add_old_turns("first batch", 3)
        await cluster.start(first)
        await poll(lambda: _holds_all(cluster, (PURGE_LEASE,), first), "p0 to hold the purge lease", cluster)
        await poll(lambda: _is_zero(old_turns("first batch")), "the first purge", cluster)
        await add_old_turns("second batch", 2)
        await cluster.start(second)
        done = await cluster.ask(1, "the second process is up")  # its start-up, jobs included, has run
        assert done.original is not None and answer_text(done.original["content"]).startswith("Echo:")
        assert await old_turns("second batch") == 2, (
            "purged again within the hour, by the process without the lease"
        )
        assert (await lease_holders(cluster))[PURGE_LEASE] is first
        assert purges(first) == [3] and purges(second) == [], cluster.logs()

        # The holder stops (releasing its leases): the other takes the purge over, and purges at once.
        assert await first.terminate() == 0, first.log_tail()
        await poll(
            lambda: _holds_all(cluster, (PURGE_LEASE,), second),
            "p1 to take the purge lease over",
            cluster,
            within=LEASE_SECONDS,
        )
        await poll(lambda: _is_zero(old_turns("second batch")), "the purge by p1", cluster)
        await second.signal(signal.SIGTERM)  # its log is complete once it has exited
        assert await second.wait() == 0, second.log_tail()
        assert purges(first) == [3] and purges(second) == [2], cluster.logs()
        assert "now holds lease retention-purge" in second.stderr()


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


# ---------------------------------------------------------------------------------------------- kill -9


async def test_kill_9_loses_no_acknowledged_turn_and_its_leases_are_taken_over(tmp_path: Path) -> None:
    async with start_cluster(tmp_path, start=False) as cluster:
        # Started one after the other, so the first takes every job lease; it is the one killed.
        first, second = cluster.processes
        await cluster.start(first)
        await poll(lambda: _holds_all(cluster, JOB_LEASES, first), "p0 to hold the job leases", cluster)
        await cluster.start(second)

        prompts = {f"remember {n} on shard {shard}": shard for n in range(3) for shard in (0, 1)}
        asked = {prompt: await cluster.invoke_ask(shard, prompt) for prompt, shard in prompts.items()}
        for interaction in asked.values():
            await interaction.wait_for(answered, timeout=DEADLINE)
        # Acknowledged: each member sees the whole answer. The holder of the leases dies at once.
        for prompt, interaction in asked.items():
            assert interaction.original is not None
            assert answer_text(interaction.original["content"]) == f"Echo: {prompt}", cluster.logs()
        assert await first.kill() == -signal.SIGKILL

        turns = await rows(cluster, "SELECT channel_id, role, content FROM turns")
        for prompt, shard in prompts.items():
            channel = cluster.seats[shard].channel_id
            assert (channel, "user", prompt) in turns, (prompt, turns)
            assert (channel, "assistant", f"Echo: {prompt}") in turns, (prompt, turns)

        # The survivor sees the holder is gone (its pid on this host) and takes every job lease over.
        await poll(
            lambda: _holds_all(cluster, JOB_LEASES, second),
            "p1 to take the leases over",
            cluster,
            within=LEASE_SECONDS + 5,
        )
        assert "took over lease" in second.stderr()
        done = await cluster.ask(1, "still here after the kill")
        assert (
            done.original is not None
            and answer_text(done.original["content"]) == "Echo: still here after the kill"
        )

        # Restarted, the killed process answers its guild again, and leaves the leases where they are.
        await cluster.restart(0)
        done = await cluster.ask(0, "back after the kill")
        assert (
            done.original is not None and answer_text(done.original["content"]) == "Echo: back after the kill"
        )
        assert cluster.answered_by("back after the kill") == [first]
        assert await _holds_all(cluster, JOB_LEASES, second)
