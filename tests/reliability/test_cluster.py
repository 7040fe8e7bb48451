"""Two real bot processes holding disjoint shards of one PostgreSQL database (tests/support/cluster.py)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from testkit.driver import answer_text, answered
from tests.support.cluster import start_cluster
from tests.support.database import query

pytestmark = pytest.mark.postgresql_only("processes share one database only on PostgreSQL")


async def test_each_process_answers_only_its_own_shards_guilds_and_dms_go_to_shard_0(tmp_path: Path) -> None:
    # One cluster start for three checks: starting two bot processes is most of each test's time.
    async with start_cluster(tmp_path, env={"ALLOW_DMS": "true"}) as cluster:
        fake = cluster.fake_discord
        first, second = cluster.processes
        assert [first.shards, second.shards] == [(0,), (1,)]
        assert {s.shard for s in fake.sessions.values()} == {(0, 2), (1, 2)}

        # Only the holder of shard 0 synced the commands.
        await fake.wait_until(lambda: "not syncing" in second.stderr(), 5, what="p1's log")
        assert len(fake.requests_to("PUT", r"/applications/\d+/commands$")) == 1 and fake.sync_count == 1
        assert re.search(r"synced \d+ application commands", first.stderr())
        assert "synced" not in second.stderr().replace("not syncing", "")
        assert "this process runs shard 0 of 2" in first.stderr()
        assert "this process runs shard 1 of 2" in second.stderr()

        # Each guild's /ask is answered once, by the process holding the guild's shard.
        asked = {}
        for round_no in range(2):
            for shard in (0, 1):
                prompt = f"question {round_no} for the guild on shard {shard}"
                asked[prompt] = (shard, await cluster.invoke_ask(shard, prompt))
        for prompt, (shard, interaction) in asked.items():
            await interaction.wait_for(answered, timeout=15)  # finished, not paused mid-stream
            await interaction.wait_done(timeout=15, settle=0.2)
            assert interaction.original is not None
            assert answer_text(interaction.original["content"]) == f"Echo: {prompt}", cluster.logs()
            assert [r["kind"] for r in interaction.responses].count("callback") == 1
            assert cluster.answered_by(prompt) == [cluster.process_for(shard)], prompt
        stored = query(cluster.database_url, "SELECT channel_id, content FROM turns WHERE role = 'user'")
        assert sorted(stored) == sorted(
            (cluster.seats[shard].channel_id, prompt) for prompt, (shard, _) in asked.items()
        ), "both processes wrote their turns to the one database"

        # A DM (here from a member of the guild on shard 1) reaches only the process holding shard 0.
        member = cluster.seats[1].member_id
        dm = fake.dm_channel(member)
        interaction = await fake.invoke(
            "ask", {"prompt": "a private question"}, guild_id=None, channel_id=dm, user_id=member
        )
        await interaction.wait_for(answered, timeout=15)  # finished, not paused mid-stream
        await interaction.wait_done(timeout=15, settle=0.3)
        assert interaction.original is not None
        assert answer_text(interaction.original["content"]) == "Echo: a private question", cluster.logs()
        assert cluster.answered_by("a private question") == [first]
        assert [r["kind"] for r in interaction.responses].count("callback") == 1

        def saw_dm(shard: int) -> bool:
            return any(
                f["t"] == "INTERACTION_CREATE" and f["d"]["id"] == interaction.payload["id"]
                for f in fake.session_for(shard).history
            )

        assert saw_dm(0) and not saw_dm(1)


async def test_sigterm_of_one_process_leaves_the_other_answering(tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        first, second = cluster.processes
        before = await cluster.ask(1, "before the restart")
        assert before.original is not None
        assert answer_text(before.original["content"]) == "Echo: before the restart"
        assert await second.terminate() == 0, second.log_tail()
        assert first.running and not cluster.fake_discord.shard_connected(1)
        assert "shutting down on signal" in second.stderr() and "shutting down" not in first.stderr()
        for n in range(3):
            done = await cluster.ask(0, f"still answering {n}")
            assert done.original is not None
            assert answer_text(done.original["content"]) == f"Echo: still answering {n}", cluster.logs()
            assert cluster.answered_by(f"still answering {n}") == [first]
        assert cluster.fake_discord.shard_connected(0)

        # Shard 1's servers are back once its process is.
        await cluster.restart(1)
        done = await cluster.ask(1, "after the restart")
        assert (
            done.original is not None and answer_text(done.original["content"]) == "Echo: after the restart"
        )
        assert cluster.answered_by("after the restart") == [second]


async def test_kill_9_of_one_process_and_its_restart(tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        first, second = cluster.processes
        assert await first.kill() == -signal.SIGKILL
        done = await cluster.ask(1, "shard 1 does not notice")
        assert (
            done.original is not None
            and answer_text(done.original["content"]) == "Echo: shard 1 does not notice"
        )
        await cluster.restart(0)
        assert first.starts == 2
        done = await cluster.ask(0, "shard 0 is back")
        assert done.original is not None and answer_text(done.original["content"]) == "Echo: shard 0 is back"
        assert cluster.answered_by("shard 0 is back") == [first]
