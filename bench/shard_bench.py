"""/ask at 200 in flight: one bot process holding both shards against two processes of one shard each.

Both layouts run in the same sitting on one PostgreSQL server (each its own database), against the same
fakes: two guilds, one on each of the two shards, the /asks alternating between them. The load is a closed
loop: every answer that finishes is replaced by a new /ask at once, so exactly `in_flight` are always in
progress and the throughput is what the layout sustains. The fake Discord and fake OpenAI run in this
process: on a machine with few cores they compete with the bot processes for CPU, which caps what a
second process can add (the figures say how much CPU each process used per /ask).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from dataclasses import dataclass

from bench.ask_latency import AskSample, _by_ask, _finished, _invoke_ask, _sample, _server_cpu_seconds, ms
from bench.harness import BenchWorld, Figure, Upstream, percentile
from testkit.discord import FakeInteraction
from testkit.postgres import Cluster

STALL = 120.0  # seconds without any /ask finishing before the run is declared stuck
LAYOUTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "one process, shards 0-1": ((0, 1),),
    "two processes, one shard each": ((0,), (1,)),
}


@dataclass(frozen=True)
class LayoutRun:
    samples: list[AskSample]
    throughput: float  # /asks finished per second over the measured window
    process_cpu: list[float]  # CPU seconds of each bot process per /ask it served
    process_shards: list[tuple[int, ...]]
    server_cpu: float  # PostgreSQL's CPU seconds per /ask
    missed: int  # asks acknowledged after Discord's deadline (lost)


async def closed_loop(
    world: BenchWorld, in_flight: int, asks: int, tag: str
) -> tuple[list[AskSample], float, int]:
    """`asks` /asks with exactly `in_flight` in progress (each answer replaced by a new ask at once): the
    samples, the finished-per-second rate between the first and the last answer, and how many asks were
    lost because the bot acknowledged them after Discord's deadline (their slot is freed)."""
    pending: dict[str, FakeInteraction] = {}
    done: dict[str, FakeInteraction] = {}
    finished_at: list[float] = []
    missed = 0
    issued = 0
    lost_after = world.discord.interaction_deadline + 1.0

    async def issue() -> None:
        nonlocal issued
        ident = f"Q{tag}i{issued}"
        index = issued
        issued += 1
        pending[ident] = await _invoke_ask(world, ident, index)

    await asyncio.gather(*(issue() for _ in range(min(in_flight, asks))))
    last_progress = time.monotonic()
    while pending:
        now = time.monotonic()
        for ident, fi in list(pending.items()):
            if _finished(fi, ident):
                done[ident] = pending.pop(ident)
                finished_at.append(now)
                last_progress = now
            elif fi.callback_type is None and now - fi.created > lost_after:
                del pending[ident]  # Discord refused the late acknowledgement: the asker saw a failure
                missed += 1
                last_progress = now
        refill = min(in_flight - len(pending), asks - issued)
        if refill > 0:
            await asyncio.gather(*(issue() for _ in range(refill)))
        if now - last_progress > STALL:
            raise RuntimeError(
                f"{len(pending)} /asks made no progress for {STALL:.0f} s\n{world.bot_log()[-2000:]}"
            )
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the fake OpenAI close its records of the last answers
    served = _by_ask(world)
    # The first in_flight asks started together (a burst, not the steady state): not sampled.
    steady = [ident for ident in done if int(ident.rsplit("i", 1)[1]) >= in_flight] or list(done)
    samples = [_sample(world, ident, done[ident], served) for ident in steady]
    window = finished_at[-1] - finished_at[0] if len(finished_at) > 1 else math.nan
    return samples, (len(finished_at) - 1) / window if window else math.nan, missed


async def run_layout(
    cluster: Cluster,
    plan: tuple[tuple[int, ...], ...],
    in_flight: int,
    asks: int,
    upstream: Upstream,
    interval: float,
) -> LayoutRun:
    settings = {"stream_edit_interval": interval, "database_url": cluster.create_database()}
    assert cluster.process is not None
    async with BenchWorld(
        upstream=upstream, settings=settings, shards=2, process_shards=plan, channels=20, members=200
    ) as world:
        await closed_loop(world, 2, 4, "warm")  # first-call costs on both shards are not steady state
        before = world.process_cpu_seconds()
        server_before = _server_cpu_seconds(cluster.process.pid)
        samples, throughput, missed = await closed_loop(world, in_flight, asks, f"c{in_flight}")
        server = _server_cpu_seconds(cluster.process.pid) - server_before
        used = [after - start for after, start in zip(world.process_cpu_seconds(), before, strict=True)]
        shards = world.process_shards_started
    # Asks alternate between the two shards' guilds: a process serves its shards' share of them.
    served = [asks * len(held) / 2 for held in shards]
    per_process = [u / n for u, n in zip(used, served, strict=True)]
    return LayoutRun(samples, throughput, per_process, shards, server / asks, missed)


async def figures(in_flight: int, asks: int, upstream: Upstream, interval: float) -> list[Figure]:
    try:
        cluster = Cluster()
        cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.CalledProcessError) as exc:
        return [Figure("/ask by process layout", f"skipped: no PostgreSQL server here ({exc})", math.nan, "")]
    try:
        runs = {
            name: await run_layout(cluster, plan, in_flight, asks, upstream, interval)
            for name, plan in LAYOUTS.items()
        }
    finally:
        cluster.stop()
    one, two = runs["one process, shards 0-1"], runs["two processes, one shard each"]
    section = f"/ask, {in_flight} in flight, 2 shards on PostgreSQL ({len(two.samples)} asks sampled each)"
    out = [
        Figure(section, "throughput, two processes", two.throughput, "asks/s", one.throughput, "one process"),
        Figure(section, "asks acknowledged after Discord's 3 s (lost), two processes", two.missed, "asks",
               one.missed, "one process"),
    ]  # fmt: skip
    for q in (50, 99):
        out.append(
            Figure(section, f"overhead p{q}, two processes", ms(percentile([s.overhead for s in two.samples], q)), "ms",
                   ms(percentile([s.overhead for s in one.samples], q)), "one process")
        )  # fmt: skip
    out.append(
        Figure(section, "bot CPU per /ask, all processes", ms(sum(c * len(h) / 2 for c, h in zip(two.process_cpu, two.process_shards, strict=True))), "ms",
               ms(one.process_cpu[0]), "one process")
    )  # fmt: skip
    for cpu, held in zip(two.process_cpu, two.process_shards, strict=True):
        out.append(
            Figure(section, f"CPU per /ask it served, process of shard {','.join(map(str, held))}", ms(cpu), "ms",
                   ms(one.process_cpu[0]), "the one process's")
        )  # fmt: skip
    out.append(
        Figure(section, "PostgreSQL server CPU per /ask, two processes", ms(two.server_cpu), "ms", ms(one.server_cpu),
               "one process", note="local server, fsync off")
    )  # fmt: skip
    return out
