"""Sustained channel moderation of one bot process: gateway event to verdict, at rising rates to saturation.

Channel messages stream across many servers and channels from the fake Discord (gateway MESSAGE_CREATE
events) into the real bot in its own process: discord.py's parse, the listener, the policy, the batcher,
the moderation request and its verdict. A message's delay is from the fake sending its event to the fake
OpenAI finishing the answer that carried its text, minus the upstream's own latency. Rates rise step by
step; saturation is the highest rate whose messages were all judged at the rate they came, which then
sets the two steady runs at 50% and 80% of it. The gateway's heartbeat is shortened so that a loop too
busy to send it on time shows as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bench.harness import BenchWorld, Figure, Upstream, cpu_seconds, percentile
from testkit.openai import FakeOpenAI

HEARTBEAT_MS = 1000
LATE_HEARTBEAT = 0.25  # a heartbeat later than this beyond its interval counts as late


@dataclass(frozen=True)
class Step:
    offered: float  # messages per second asked for
    sent: float  # messages per second the fake Discord actually sent
    judged: float  # messages per second verdicts came back at
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the bot's CPU per message
    lost: int  # messages without a verdict after the grace period
    bot_cpu: float  # the bot's CPU share of one core during the step (sending and verdicts)
    bench_cpu: float  # the fake Discord's process: its CPU share of one core during the step
    heartbeat_gap_ms: float  # the longest gap between two heartbeats during the step
    openai_cpu: float = 0.0  # the fake OpenAI's process: its CPU share of one core during the step
    requests_per_s: float = 0.0  # moderation requests that arrived during the step, per second
    inputs_per_request: float = (
        0.0  # their mean size: 128 (MODERATION_BATCH_SIZE) when the slots are the limit
    )
    idle: float = 0.0  # the machine's idle CPU during the step, in cores: none left means the bot competed
    steal: float = 0.0  # CPU the virtual machine's host took for others during the step, in cores
    # The fake OpenAI's own time beyond its latency, p99 over its requests: part of every delay above, and
    # not the bot's (the fake answers after building its results, on a core it shares with the bot).
    fake_own_p99_ms: float = 0.0


class VerdictClock:
    """The fake OpenAI in a child process (its CPU off the fake Discord's core); asks it when each text's
    moderation answer was finished."""

    def __init__(self, child: asyncio.subprocess.Process, endpoint: tuple[str, str]) -> None:
        self.child = child
        self.endpoint = endpoint
        # (arrived, finished, inputs) of every moderation request answered so far
        self.requests: list[tuple[float, float, int]] = []

    async def finished(self) -> dict[str, float]:
        """Every moderated text's answer time (time.monotonic, one clock for all processes) so far."""
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(b"dump\n")
        await self.child.stdin.drain()
        report = json.loads(await self.child.stdout.readline())
        self.requests += [tuple(r) for r in report["requests"]]
        return dict(report["finished"])


@contextlib.asynccontextmanager
async def verdict_clock(latency: float) -> AsyncIterator[VerdictClock]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.capacity", str(latency),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    try:
        base_url, api_key = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
        yield VerdictClock(child, (base_url, api_key))
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 5)
        except TimeoutError:
            child.kill()
            await child.wait()


async def _serve(latency: float) -> None:
    """Child: a fake OpenAI; each "dump" line on stdin answers with the new moderated texts' end times."""
    async with FakeOpenAI() as fake:
        fake.moderation_latency = latency
        print(fake.base_url, fake.api_key, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        answered: list[tuple[float, float, list[str]]] = []
        collector = asyncio.create_task(_collect(fake, answered))
        try:
            while await reader.readline():
                finished = {text: end for _, end, texts in answered for text in texts}
                requests = [(start, end, len(texts)) for start, end, texts in answered]
                answered.clear()
                sys.stdout.write(json.dumps({"finished": finished, "requests": requests}) + "\n")
                sys.stdout.flush()
        finally:
            collector.cancel()


async def _collect(fake: FakeOpenAI, answered: list[tuple[float, float, list[str]]]) -> None:
    """Every 0.1 s, take the answered requests' texts and times and let go of their bodies. The fake keeps
    every request and answer it served (for tests' assertions): at 25 answers of 128 results a second that
    grew its heap by ~10 MB a second, and the collector's full passes over it stalled the fake for hundreds
    of milliseconds, time that the delays above would have charged to the bot."""
    collected = 0
    while True:
        await asyncio.sleep(0.1)
        requests = fake.requests
        while collected < len(requests) and (end := requests[collected].end_time) is not None:
            request = requests[collected]
            inputs = request.json.get("input") if isinstance(request.json, dict) else None
            texts = [inputs] if isinstance(inputs, str) else inputs or []
            answered.append((request.time, end, [t for t in texts if isinstance(t, str)]))
            request.json = request.response_json = None
            collected += 1


async def _stream(
    world: BenchWorld,
    clock: VerdictClock,
    rate: float,
    seconds: float,
    tag: str,
    channels: list[tuple[int, int]],
) -> Step:
    posted: dict[str, float] = {}
    beats_from = len(world.discord.heartbeat_times)
    own_before = cpu_seconds(os.getpid())
    openai_before = cpu_seconds(clock.child.pid)
    idle_before, steal_before = _idle_and_steal_seconds()
    cpu_before = world.cpu_seconds()
    started = time.monotonic()
    tick = 0.01
    n = 0
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started + tick) * rate)
        while n < due:
            channel, author = channels[n % len(channels)]
            text = f"{tag}m{n} just chatting about the weather in here, nothing to see"
            posted[text] = time.monotonic()
            await world.discord.post_message(channel, author, text)
            n += 1
        await asyncio.sleep(max(0.0, started + (n / rate) - time.monotonic()))
    sent_for = time.monotonic() - started
    own_cpu = (cpu_seconds(os.getpid()) - own_before) / sent_for
    openai_cpu = (cpu_seconds(clock.child.pid) - openai_before) / sent_for
    idle_after, steal_after = _idle_and_steal_seconds()
    idle = (idle_after - idle_before) / sent_for
    steal = (steal_after - steal_before) / sent_for
    judged_at: dict[str, float] = {}
    grace = time.monotonic() + 5.0
    while time.monotonic() < grace:
        for text, end in (await clock.finished()).items():
            if text in posted:
                judged_at[text] = end
        if len(judged_at) >= len(posted):
            break
        await asyncio.sleep(0.1)
    cpu = world.cpu_seconds() - cpu_before
    latency = world.upstream.moderation_latency
    delays = [judged_at[text] - posted[text] - latency for text in judged_at]
    last = max(judged_at.values(), default=started)
    during = [r for r in clock.requests if started <= r[0] <= last]
    return Step(
        offered=rate,
        sent=n / sent_for,
        # Verdicts come one upstream latency after their events: a process that keeps up judges the
        # step's messages within its sending time; one that falls behind takes longer.
        judged=len(judged_at) / max(sent_for, last - started - latency),
        p50_ms=percentile(delays, 50) * 1000,
        p99_ms=percentile(delays, 99) * 1000,
        cpu_us=cpu / max(1, n) * 1e6,
        lost=len(posted) - len(judged_at),
        bot_cpu=cpu / max(1e-9, max(sent_for, last - started)),
        bench_cpu=own_cpu,
        heartbeat_gap_ms=_heartbeat_worst(world.discord.heartbeat_times[beats_from:]) * 1000,
        openai_cpu=openai_cpu,
        idle=idle,
        steal=steal,
        requests_per_s=len(during) / max(sent_for, last - started),
        inputs_per_request=sum(r[2] for r in during) / max(1, len(during)),
        fake_own_p99_ms=percentile([end - start - latency for start, end, _ in during], 99) * 1000,
    )


def _idle_and_steal_seconds() -> tuple[float, float]:
    """The machine's CPU time so far, all cores together (one read of Linux /proc/stat's first line): idle
    (idle and iowait), and stolen (the hypervisor ran other guests while this machine wanted to run)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (fields[3] + fields[4]) / tick, (fields[7] if len(fields) > 7 else 0) / tick


def _heartbeat_worst(times: list[float]) -> float:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return max(gaps, default=0.0)


@contextlib.asynccontextmanager
async def _world(
    upstream: Upstream,
    clock: VerdictClock,
    servers: int,
    channels_per_server: int,
    settle: float = 1.0,
    floor: bool = False,
) -> AsyncIterator[tuple[BenchWorld, list[tuple[int, int]]]]:
    """The bot (or, with `floor`, the library floor) connected to `servers` servers of `channels_per_server`
    channels, one talker each, warmed up."""
    async with BenchWorld(
        upstream=upstream,
        channels=1,
        members=2,
        heartbeat_ms=HEARTBEAT_MS,
        openai_endpoint=clock.endpoint,
        floor="channel" if floor else False,
    ) as world:
        channels: list[tuple[int, int]] = []
        for s in range(servers):
            guild = world.discord.add_guild(f"Capacity {s}")
            member = world.discord.add_member(guild, name=f"talker{s}")
            channels += [
                (world.discord.add_channel(guild, f"c{c}"), member) for c in range(channels_per_server)
            ]
        await asyncio.sleep(settle)  # GUILD_CREATEs reach the bot
        await _stream(world, clock, 50, settle / 2, "warm", channels)
        yield world, channels


async def run(
    rates: list[float], seconds: float, servers: int = 50, channels_per_server: int = 4
) -> tuple[list[Figure], list[Step], list[Step]]:
    """The bot's figures, its steps (rising, then the steady runs), and the library floor's rising steps."""
    upstream = Upstream(moderation_latency=0.1)
    async with verdict_clock(upstream.moderation_latency) as clock:
        async with _world(upstream, clock, servers, channels_per_server, min(1.0, seconds)) as (
            world,
            channels,
        ):
            steps = await _rising(world, clock, rates, seconds, "s", channels)
        keeping_up = _keeping_up(steps)
        saturation = max((s.judged for s in steps), default=0.0)
        sustained = max((s.offered for s in keeping_up), default=rates[0])
        # The steady runs get a fresh process: the saturated step's aftermath (a heap grown by its
        # backlog, which full collections then walk) is not what a process at that rate would carry.
        at = {}
        async with _world(upstream, clock, servers, channels_per_server, min(1.0, seconds)) as (
            world,
            channels,
        ):
            for share in (0.5, 0.8):
                tag = f"p{int(share * 100)}"
                at[share] = await _stream(world, clock, share * saturation, seconds, tag, channels)
        worst_gap = max(at[0.5].heartbeat_gap_ms, at[0.8].heartbeat_gap_ms) / 1000
        # The same rising steps through discord.py and the openai SDK alone (bench/floor_bot.py).
        async with _world(upstream, clock, servers, channels_per_server, min(1.0, seconds), floor=True) as (
            world,
            channels,
        ):
            floor_steps = await _rising(world, clock, rates, seconds, "f", channels)
    section = (
        f"Sustained channel moderation, one process ({servers} servers x {channels_per_server} channels)"
    )
    cpu = [s.cpu_us for s in keeping_up] or [steps[0].cpu_us]
    sent_short = any(s.sent < 0.95 * s.offered for s in steps)
    figures = [
        Figure(section, "messages per second at saturation (verdicts returned)", saturation, "msg/s",
               sustained, "highest rate judged as fast as it came", ">= 3,000 msg/s", saturation >= 3000,
               note="the fake Discord could not send faster" if sent_short else ""),
        Figure(section, "bot CPU per message (all threads)", min(cpu), "µs", 1e6 / max(1.0, saturation),
               "one core's µs per message at saturation"),
        Figure(section, f"p99 event-to-verdict delay at 50% ({at[0.5].offered:,.0f} msg/s)", at[0.5].p99_ms,
               "ms", at[0.5].p50_ms, "p50 at the same rate"),
        Figure(section, f"p99 event-to-verdict delay at 80% ({at[0.8].offered:,.0f} msg/s)", at[0.8].p99_ms,
               "ms", at[0.8].p50_ms, "p50 at the same rate", "< 300 ms", at[0.8].p99_ms < 300),
        Figure(section, "heartbeat's worst gap (runs at 50% and 80%)", worst_gap * 1000, "ms", HEARTBEAT_MS, "its interval",
               f"< {HEARTBEAT_MS + LATE_HEARTBEAT * 1000:,.0f} ms",
               worst_gap < HEARTBEAT_MS / 1000 + LATE_HEARTBEAT),
    ]  # fmt: skip
    floor_saturation = max((s.judged for s in floor_steps), default=0.0)
    floor_keeping_up = _keeping_up(floor_steps)
    figures.append(
        Figure(
            section,
            "the library floor's messages per second at saturation (bench/floor_bot.py: "
            "discord.py and the SDK alone)",
            floor_saturation,
            "msg/s",
            saturation,
            "the bot's",
        )
    )
    # CPU per message falls as the rate rises (fixed costs spread): compare at a rate both kept up with.
    both = {s.offered for s in keeping_up} & {s.offered for s in floor_keeping_up}
    if both:
        rate = max(both)
        bot_cpu = next(s.cpu_us for s in keeping_up if s.offered == rate)
        floor_cpu = next(s.cpu_us for s in floor_keeping_up if s.offered == rate)
        figures.append(
            Figure(
                section,
                f"bot CPU per message at {rate:,.0f} msg/s",
                bot_cpu,
                "µs",
                floor_cpu,
                "the library floor's at the same rate",
            )
        )
    return figures, [*steps, at[0.5], at[0.8]], floor_steps


async def _rising(
    world: BenchWorld,
    clock: VerdictClock,
    rates: list[float],
    seconds: float,
    tag: str,
    channels: list[tuple[int, int]],
) -> list[Step]:
    steps: list[Step] = []
    for index, rate in enumerate(rates):
        step = await _stream(world, clock, rate, seconds, f"{tag}{index}", channels)
        steps.append(step)
        if step.lost or step.judged < 0.9 * step.offered or step.p99_ms > 2000:
            break  # saturated: the next step would only queue more
    return steps


def _keeping_up(steps: list[Step]) -> list[Step]:
    return [s for s in steps if not s.lost and s.judged >= 0.95 * s.offered and s.p99_ms < 1000]


def render_steps(steps: list[Step]) -> str:
    lines = ["| offered msg/s | sent msg/s | judged msg/s | p50 added | p99 added | bot CPU µs/msg | bot's CPU | lost "
             "| fake Discord's CPU | fake OpenAI's CPU | fake OpenAI's own p99 | machine idle | stolen by the host | heartbeat's worst gap | moderation requests/s "
             "| inputs per request |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in steps:
        lines.append(
            f"| {s.offered:,.0f} | {s.sent:,.0f} | {s.judged:,.0f} | {s.p50_ms:.0f} ms | {s.p99_ms:.0f} ms "
            f"| {s.cpu_us:.0f} | {s.bot_cpu:.0%} | {s.lost} | {s.bench_cpu:.0%} | {s.openai_cpu:.0%} | {s.fake_own_p99_ms:.0f} ms "
            f"| {s.idle:.0%} | {s.steal:.0%} | {s.heartbeat_gap_ms:,.0f} ms | {s.requests_per_s:,.1f} | {s.inputs_per_request:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(_serve(float(sys.argv[1])))
