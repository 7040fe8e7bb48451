"""Cost state shared by two real bot processes on one PostgreSQL: a budget outlives its process, one breaker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.cost.breaker import BREAKER_STALENESS
from testkit.discord import FakeInteraction
from testkit.driver import answer_text, answered
from tests.support.cluster import poll, rows, start_cluster

pytestmark = pytest.mark.postgresql_only("processes share one database only on PostgreSQL")

# Generous deadlines for a loaded 2-core machine; each poll ends as soon as its condition holds.
DEADLINE = 20.0
PAUSED = "paused OpenAI requests"


async def settled(interaction: FakeInteraction) -> FakeInteraction:
    """Until the answer (or the refusal) shows finished and the interaction is quiet."""
    await interaction.wait_for(answered, timeout=DEADLINE)
    return await interaction.wait_done(timeout=DEADLINE, settle=0.2)


# ---------------------------------------------------------------------------------------------- budgets

# Every cap is per server (a member's daily budget is per member *in a server*), and a server lives on one
# shard, so two live processes never admit calls for the same server. What crosses processes is the shard
# moving: its new process must count what the old one spent and still had in flight, or a crash (or a
# deploy) would hand every member a fresh budget. A chat is reserved at up to ~$0.0024 (1,200 output tokens)
# while it runs: one fits the $0.004 day, a second next to it does not.
BUDGET_ENV = {"USER_DAILY_BUDGET": "0.004"}


async def test_a_killed_process_spend_and_in_flight_claim_count_in_the_process_that_takes_its_shard(
    tmp_path: Path,
) -> None:
    async with start_cluster(tmp_path, env=BUDGET_ENV) as cluster:
        first, second = cluster.processes
        seat = cluster.seat(0)
        done = await cluster.ask(0, "a cheap first question")
        assert done.original is not None, first.log_tail()
        assert answer_text(done.original["content"]) == "Echo: a cheap first question"

        async def recorded() -> list[tuple[Any, ...]]:
            return await rows(
                cluster,
                "SELECT cost FROM usage_events WHERE guild_id = ? AND user_id = ? AND kind = 'chat'",
                seat.guild_id,
                seat.member_id,
            )

        async def ledger_has_it() -> bool:
            return len(await recorded()) == 1

        await poll(ledger_has_it, "the first answer's ledger row", cluster)

        # A second question is still being answered when its process is killed: its claim stays behind.
        cluster.fake_openai.chat_latency = 60.0
        await cluster.invoke_ask(0, "a slow second question")

        async def claimed() -> bool:
            live = await rows(
                cluster,
                "SELECT holder FROM cost_claims WHERE guild_id = ? AND user_id = ? AND expires_at > ?",
                seat.guild_id,
                seat.member_id,
                time.time(),
            )
            return bool(cluster.chat_requests_for("a slow second question")) and len(live) == 1

        await poll(claimed, "p0's call in flight with its claim", cluster)
        [(holder, in_flight)] = await rows(
            cluster, "SELECT holder, amount FROM cost_claims WHERE guild_id = ?", seat.guild_id
        )
        assert f":{first.pid}:" in str(holder) and float(in_flight) > 0.002
        await first.kill()
        cluster.fake_openai.chat_latency = 0.0

        # Shard 0's next process (a new pid, so a new claim holder) counts both, and refuses.
        await cluster.restart(0)
        [(spent,)] = await recorded()
        assert float(spent) > 0
        refused = await cluster.ask(0, "a third question after the takeover")
        text = refused.all_text()
        assert "daily budget" in text and "Nothing was sent to OpenAI" in text, cluster.logs()
        assert f"${float(spent) + float(in_flight):.4f} of $0.00 used" in text, text
        assert cluster.chat_requests_for("a third question after the takeover") == []
        assert refused.ephemeral or "daily budget" not in (refused.original or {}).get("content", "")

        # The member in the other process's server has a budget of their own there.
        other = await cluster.ask(1, "a question in the other server")
        assert other.original is not None
        assert answer_text(other.original["content"]) == "Echo: a question in the other server"
        assert cluster.answered_by("a question in the other server") == [second]


# ---------------------------------------------------------------------------------------------- the breaker

COOLDOWN = 3.0


async def test_insufficient_quota_in_one_process_pauses_both_and_one_probe_resumes_both(
    tmp_path: Path,
) -> None:
    async with start_cluster(tmp_path, env={"QUOTA_COOLDOWN": str(COOLDOWN)}) as cluster:
        first, second = cluster.processes
        fake = cluster.fake_openai
        fake.inject_insufficient_quota("/chat/completions")
        tripped = await cluster.ask(0, "the credit runs out")
        assert "no credit left" in tripped.all_text(), cluster.logs()
        assert cluster.chat_requests_for("the credit runs out")
        assert all(p is first for p in cluster.answered_by("the credit runs out"))
        [(opened_at,)] = await rows(cluster, "SELECT opened_at FROM quota_breaker WHERE name = 'openai'")
        assert opened_at is not None
        # The fake has credit again; only the breaker keeps the calls back now. Past the documented
        # staleness of a process's reading, the other process refuses too, without asking OpenAI.
        fake.clear_injections()
        await asyncio.sleep(BREAKER_STALENESS + 0.2)
        sent = len(fake.calls("/chat/completions"))
        paused = await cluster.ask(1, "the other server asks")
        assert PAUSED in paused.all_text(), cluster.logs()
        assert len(fake.calls("/chat/completions")) == sent, "p1 called OpenAI with the breaker open"
        again = await cluster.ask(0, "the first server asks again")
        assert PAUSED in again.all_text()
        assert len(fake.calls("/chat/completions")) == sent
        assert "insufficient_quota" in first.stderr() and "insufficient_quota" not in second.stderr()

        # After the cooldown both servers ask at once; one process wins the probe (slow, so the other
        # asks while it is out), the other is still refused, and the probe's success closes it for both.
        async def cooled() -> bool:
            return time.time() > float(opened_at) + COOLDOWN + 0.2

        await poll(cooled, "the cooldown", cluster)
        fake.chat_latency = 2.0
        racing = {
            0: await cluster.invoke_ask(0, "probe from shard 0"),
            1: await cluster.invoke_ask(1, "probe from shard 1"),
        }
        results = {shard: await settled(interaction) for shard, interaction in racing.items()}
        fake.chat_latency = 0.0
        probes = [shard for shard in (0, 1) if cluster.chat_requests_for(f"probe from shard {shard}")]
        assert len(probes) == 1, f"{len(probes)} probes went out\n{cluster.logs()}"
        assert len(fake.calls("/chat/completions")) == sent + 1
        [winner] = probes
        loser = 1 - winner
        won = results[winner].original
        assert won is not None and answer_text(won["content"]) == f"Echo: probe from shard {winner}"
        assert PAUSED in results[loser].all_text()
        assert cluster.answered_by(f"probe from shard {winner}") == [cluster.process_for(winner)]

        # Closed for both at once: the loser's cached reading is past its cooldown, so it reads the row again.
        [(closed_at,)] = await rows(cluster, "SELECT opened_at FROM quota_breaker WHERE name = 'openai'")
        assert closed_at is None
        for shard in (0, 1):
            done = await cluster.ask(shard, f"shard {shard} answers again")
            assert done.original is not None, cluster.logs()
            assert answer_text(done.original["content"]) == f"Echo: shard {shard} answers again"
            assert cluster.answered_by(f"shard {shard} answers again") == [cluster.process_for(shard)]
