"""/ask end to end: the bot's overhead over the upstream, deferral, first visible token, speculative moderation."""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from bench.harness import BenchWorld, Figure, Upstream, cpu_seconds, median, percentile
from testkit.discord import FakeInteraction
from testkit.driver import answer_text, invoke_ask
from testkit.postgres import Cluster

CURSOR = "▌"
DISCORD_DEADLINE = 3.0


@dataclass(frozen=True)
class AskSample:
    """One /ask, timed by the fakes' own clocks (time.monotonic, shared with the bot's process)."""

    deferral: float  # interaction created -> defer callback received
    first_visible: float  # interaction created -> first edit showing answer text
    first_visible_after_chat: float  # chat request received by the fake -> first edit showing text
    end_to_end: float  # interaction created -> final edit (the whole answer, no cursor)
    upstream: float  # time covered by the fake OpenAI's requests for this /ask (union of intervals)

    @property
    def overhead(self) -> float:
        return self.end_to_end - self.upstream


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    current: tuple[float, float] | None = None
    for start, end in sorted(intervals):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (start, end)
        else:
            current = (current[0], max(current[1], end))
    if current is not None:
        total += current[1] - current[0]
    return total


def _content(response: dict[str, Any]) -> str:
    return answer_text((response.get("json") or {}).get("content"))


def _finished_text(response: dict[str, Any], ident: str) -> bool:
    text = _content(response)
    return response["kind"] == "edit_original" and text.startswith(ident) and not text.endswith(CURSOR)


def _finished(fi: FakeInteraction, ident: str) -> bool:
    return any(_finished_text(r, ident) for r in fi.responses) or bool(fi.followups)  # or a failure


async def _wait_all(pending: dict[str, FakeInteraction], timeout: float) -> None:  # noqa: ASYNC109
    """One poller for every interaction: polling cost stays flat as concurrency grows (times come from
    the fake's records, so the poll interval does not affect the figures)."""
    deadline = time.monotonic() + timeout
    waiting = dict(pending)
    while waiting:
        for ident, fi in list(waiting.items()):
            if _finished(fi, ident):
                del waiting[ident]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} /ask interactions unfinished after {timeout} s")
        await asyncio.sleep(0.02)


def _asks_served(body: Any) -> set[str]:
    """The /asks a fake OpenAI request served, by their tags: the first word of each moderated text (a
    prompt, or an answer, which repeats it) or of a chat request's newest user message (older turns in
    its history name earlier /asks, which it did not serve)."""
    if not isinstance(body, dict):
        return set()
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user" and isinstance(m.get("content"), str)]
        return {users[-1]["content"].split(" ", 1)[0]} if users else set()
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs or []
    return {t.split(" ", 1)[0] for t in texts if isinstance(t, str)}


def _by_ask(world: BenchWorld) -> dict[int, set[str]]:
    return {id(r): _asks_served(r.json) for r in world.openai.requests}


def _sample(world: BenchWorld, ident: str, fi: FakeInteraction, served: dict[int, set[str]]) -> AskSample:
    callback = next(r for r in fi.responses if r["kind"] == "callback")
    # Any text in this interaction's message is answer text (the first chunk may be shorter than ident).
    edits = [r for r in fi.responses if r["kind"] == "edit_original" and _content(r).strip(CURSOR + " ")]
    final = next((r for r in edits if _finished_text(r, ident)), None)
    if final is None:
        raise RuntimeError(f"/ask {ident} failed: {fi.all_text()[:200]!r}\n{world.bot_log()[-2000:]}")
    mine = [r for r in world.openai.requests if ident in served[id(r)]]
    chat = next(r for r in mine if r.path.endswith("/chat/completions"))
    intervals = [(r.time, r.end_time) for r in mine if r.end_time is not None]
    return AskSample(
        deferral=callback["time"] - fi.created,
        first_visible=edits[0]["time"] - fi.created,
        first_visible_after_chat=edits[0]["time"] - chat.time,
        end_to_end=final["time"] - fi.created,
        upstream=_union_length(intervals),
    )


async def _invoke_ask(world: BenchWorld, ident: str, index: int) -> FakeInteraction:
    """One /ask tagged `ident` (its prompt's first word), by member and in channel number `index`."""
    return await invoke_ask(
        world.discord,
        world.seat(index),
        f"{ident} what does the benchmark want to know this time, number {index}?",
    )


async def run_asks(world: BenchWorld, concurrency: int, rounds: int, tag: str) -> list[AskSample]:
    """`rounds` bursts of `concurrency` simultaneous /ask interactions, each in its own channel slot."""
    samples: list[AskSample] = []
    for round_no in range(rounds):

        async def invoke(index: int, round_no: int = round_no) -> tuple[str, FakeInteraction]:
            ident = f"Q{tag}r{round_no}i{index}"
            return ident, await _invoke_ask(world, ident, index)

        pending = dict(await asyncio.gather(*(invoke(i) for i in range(concurrency))))
        await _wait_all(pending, timeout=120)
        await asyncio.sleep(0.05)  # let the fake OpenAI close its records of the last answers
        served = _by_ask(world)
        samples += [_sample(world, ident, fi, served) for ident, fi in pending.items()]
    return samples


async def run_in_flight(world: BenchWorld, in_flight: int, asks: int, tag: str) -> list[AskSample]:
    """About `in_flight` /asks always in progress: arrivals at random (Poisson) times at the rate that
    keeps that many in flight (Little's law: rate = in_flight / one /ask's upstream time), as a busy bot
    sees them. Arrivals do not wait for earlier answers, so a slow bot cannot slow its own load down
    (no coordinated omission). Asks that arrived during the first round trip (the ramp) are not sampled.
    """
    rng = random.Random(in_flight)
    rate = in_flight / world.upstream.round_trip
    asked: dict[str, FakeInteraction] = {}
    sampled: list[str] = []
    started = time.monotonic()

    async def invoke(index: int) -> None:
        ident = f"Q{tag}i{index}"
        if time.monotonic() - started >= world.upstream.round_trip:
            sampled.append(ident)
        asked[ident] = await _invoke_ask(world, ident, index)

    invocations = []
    due = started
    for index in range(asks):
        due += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        invocations.append(asyncio.create_task(invoke(index)))
    await asyncio.gather(*invocations)
    await _wait_all(asked, timeout=120)
    await asyncio.sleep(0.05)  # let the fake OpenAI close its records of the last answers
    served = _by_ask(world)
    return [_sample(world, ident, asked[ident], served) for ident in sampled]


def ms(seconds: float) -> float:
    return seconds * 1000


def _level_figures(
    section: str, samples: list[AskSample], overhead_targets: bool, deferral_target: bool, note: str = ""
) -> list[Figure]:
    overheads = [s.overhead for s in samples]
    upstream_median = median([s.upstream for s in samples])
    figures = []
    for q, limit in ((50, 5.0), (99, 50.0)):
        value = percentile(overheads, q)
        figures.append(
            Figure(
                section,
                f"bot overhead p{q} (end to end minus upstream)",
                ms(value),
                "ms",
                ms(upstream_median),
                "upstream time p50",
                f"< {limit:g} ms" if overhead_targets else "",
                value * 1000 < limit if overhead_targets else None,
                note=note,
            )
        )
    figures.append(
        Figure(
            section,
            "end to end p50",
            ms(median([s.end_to_end for s in samples])),
            "ms",
            ms(upstream_median),
            "upstream time p50",
        )
    )
    deferral = percentile([s.deferral for s in samples], 99)
    figures.append(
        Figure(
            section,
            "time to deferral p99",
            ms(deferral),
            "ms",
            ms(DISCORD_DEADLINE),
            "Discord's deadline",
            "< 500 ms" if deferral_target else "",
            deferral < 0.5 if deferral_target else None,
        )
    )
    return figures


async def overhead_figures(
    levels: list[tuple[int, int]], burst: tuple[int, int], upstream: Upstream, interval: float
) -> list[Figure]:
    """Overhead and deferral with N /asks always in flight, then with a burst arriving in one instant;
    the bot's CPU per /ask at the highest level; the first visible token at 1."""
    figures: list[Figure] = []
    async with BenchWorld(upstream=upstream, settings={"stream_edit_interval": interval}) as world:
        await run_asks(world, 1, 2, "warm")  # first-call costs (imports, connections) are not steady state
        by_level: dict[int, list[AskSample]] = {}
        cpu_per_ask = 0.0
        for concurrency, asks in levels:
            cpu_before = world.cpu_seconds()
            if concurrency == 1:  # one after another: exactly one in flight
                by_level[1] = await run_asks(world, 1, asks, "c1")
            else:
                by_level[concurrency] = await run_in_flight(world, concurrency, asks, f"c{concurrency}")
            # The ramp's asks are not sampled but are in the CPU time, so every ask is counted.
            cpu_per_ask = (world.cpu_seconds() - cpu_before) / asks
        burst_size, burst_rounds = burst
        bursts = await run_asks(world, burst_size, burst_rounds, f"b{burst_size}")
    top, top_asks = max(levels)
    floor_samples, floor_cpu = await _floor_run(top, top_asks, upstream, interval)
    for concurrency, samples in by_level.items():
        section = f"/ask, {concurrency} in flight ({len(samples)} asks)"
        figures += _level_figures(section, samples, concurrency == top, False)
        if concurrency == top:
            figures.append(
                Figure(
                    section,
                    "bot CPU time per /ask (all threads)",
                    ms(cpu_per_ask),
                    "ms",
                    ms(floor_cpu),
                    "the library floor's",
                )
            )
            floor_section = (
                f"/ask, {top} in flight: the library floor, bench/floor_bot.py ({len(floor_samples)} asks)"
            )
            for q in (50, 99):
                figures.append(
                    Figure(
                        floor_section,
                        f"floor overhead p{q}",
                        ms(percentile([s.overhead for s in floor_samples], q)),
                        "ms",
                        ms(percentile([s.overhead for s in samples], q)),
                        "the bot's",
                        note="discord.py and the openai SDK alone, same calls",
                    )
                )
    figures += _level_figures(
        f"/ask, burst of {burst_size} at the same instant ({len(bursts)} asks)",
        bursts,
        False,
        True,
        note="arrivals queue for one event loop",
    )
    single = by_level[min(by_level)]
    figures.append(
        Figure(
            "Streaming (1 in flight)",
            "first visible token after the chat request started, p50",
            ms(median([s.first_visible_after_chat for s in single])),
            "ms",
            ms(upstream.first_token),
            "upstream's own time to first token",
        )
    )
    figures.append(
        Figure(
            "Streaming (1 in flight)",
            "first visible token after the command, p50",
            ms(median([s.first_visible for s in single])),
            "ms",
            ms(upstream.first_token + upstream.moderation_latency),
            "upstream TTFT + prompt moderation",
        )
    )
    return figures


async def _floor_run(
    in_flight: int, asks: int, upstream: Upstream, interval: float
) -> tuple[list[AskSample], float]:
    """The same load on bench/floor_bot.py: its samples and its CPU time per /ask."""
    async with BenchWorld(
        upstream=upstream, floor=True, settings={"stream_edit_interval": interval}
    ) as world:
        await run_asks(world, 1, 2, "warm")
        cpu_before = world.cpu_seconds()
        samples = await run_in_flight(world, in_flight, asks, f"f{in_flight}")
        return samples, (world.cpu_seconds() - cpu_before) / asks


async def speculative_figures(upstream: Upstream, asks: int, interval: float) -> list[Figure]:
    """The same /asks with moderation before the chat (default) and beside it (SPECULATIVE_MODERATION)."""
    results: dict[bool, list[AskSample]] = {}
    for on in (False, True):
        settings = {"stream_edit_interval": interval, "speculative_moderation": on}
        async with BenchWorld(upstream=upstream, settings=settings) as world:
            await run_asks(world, 1, 1, "warm")
            results[on] = await run_asks(world, 1, asks, "spec" if on else "seq")
    section = (
        f"Speculative moderation (moderation {ms(upstream.moderation_latency):.0f} ms, "
        f"chat {ms(upstream.chat_ttft + upstream.chunk_delay * (upstream.answer_chars / upstream.chunk_chars)):.0f} ms)"
    )
    sequential, speculative = results[False], results[True]
    first_ratio = median([s.first_visible for s in speculative]) / median(
        [s.first_visible for s in sequential]
    )
    return [
        Figure(
            section,
            "first visible token p50, speculative",
            ms(median([s.first_visible for s in speculative])),
            "ms",
            ms(median([s.first_visible for s in sequential])),
            "sequential (default)",
            ">= 20% faster",
            first_ratio <= 0.8,
        ),
        Figure(
            section,
            "whole answer p50, speculative",
            ms(median([s.end_to_end for s in speculative])),
            "ms",
            ms(median([s.end_to_end for s in sequential])),
            "sequential (default)",
            note="includes the answer's own moderation, which cannot overlap",
        ),
    ]


def _server_cpu_seconds(postmaster_pid: int) -> float:
    """CPU the PostgreSQL server spent: the postmaster and every backend it forked (Linux /proc)."""
    total = cpu_seconds(postmaster_pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == postmaster_pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def backend_figures(levels: list[tuple[int, int]], upstream: Upstream, interval: float) -> list[Figure]:
    """/ask overhead p50/p99 and CPU per /ask with DATABASE_URL on PostgreSQL against SQLite, same run."""
    try:
        cluster = Cluster()
        cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.CalledProcessError) as exc:
        return [Figure("/ask by backend", f"skipped: no PostgreSQL server here ({exc})", math.nan, "")]
    results: dict[str, dict[int, tuple[list[AskSample], float, float]]] = {}
    try:
        assert cluster.process is not None
        for name in ("sqlite", "postgresql"):
            settings: dict[str, Any] = {"stream_edit_interval": interval}
            if name == "postgresql":
                settings["database_url"] = cluster.create_database()
            async with BenchWorld(upstream=upstream, settings=settings) as world:
                await run_asks(world, 1, 2, "warm")
                results[name] = {}
                for concurrency, asks in levels:
                    bot_before, server_before = world.cpu_seconds(), _server_cpu_seconds(cluster.process.pid)
                    if concurrency == 1:
                        samples = await run_asks(world, 1, asks, "c1")
                    else:
                        samples = await run_in_flight(world, concurrency, asks, f"c{concurrency}")
                    server = _server_cpu_seconds(cluster.process.pid) - server_before
                    results[name][concurrency] = (
                        samples,
                        (world.cpu_seconds() - bot_before) / asks,
                        server / asks if name == "postgresql" else 0.0,
                    )
    finally:
        cluster.stop()
    figures: list[Figure] = []
    for concurrency, _ in levels:
        pg_samples, pg_cpu, pg_server = results["postgresql"][concurrency]
        lite_samples, lite_cpu, _ = results["sqlite"][concurrency]
        section = f"/ask by backend, {concurrency} in flight ({len(pg_samples)} asks each)"
        for q in (50, 99):
            figures.append(
                Figure(
                    section,
                    f"overhead p{q}, PostgreSQL",
                    ms(percentile([s.overhead for s in pg_samples], q)),
                    "ms",
                    ms(percentile([s.overhead for s in lite_samples], q)),
                    "SQLite",
                )
            )
        figures.append(
            Figure(section, "bot CPU per /ask, PostgreSQL", ms(pg_cpu), "ms", ms(lite_cpu), "SQLite")
        )
        figures.append(
            Figure(
                section,
                "PostgreSQL server CPU per /ask (local, fsync off)",
                ms(pg_server),
                "ms",
                note="outside the bot's process; SQLite's work is inside it",
            )
        )
    return figures


async def _cpu_per_ask(floor: bool, in_flight: int, asks: int, upstream: Upstream, interval: float) -> float:
    async with BenchWorld(
        upstream=upstream, floor=floor, settings={"stream_edit_interval": interval}
    ) as world:
        await run_asks(world, 1, 2, "warm")
        cpu_before = world.cpu_seconds()
        await run_in_flight(world, in_flight, asks, "cpu")
        return (world.cpu_seconds() - cpu_before) / asks


async def cpu_rotation_figures(
    rounds: int, in_flight: int, asks: int, upstream: Upstream, interval: float
) -> list[Figure]:
    """CPU per /ask of the bot and of the library floor, alternated `rounds` times: this VM's speed drifts
    by a fifth within minutes, so one pair of runs says little; the median of the pairs' ratios is the figure."""
    pairs: list[tuple[float, float]] = []
    for _ in range(rounds):
        bot = await _cpu_per_ask(False, in_flight, asks, upstream, interval)
        floor = await _cpu_per_ask(True, in_flight, asks, upstream, interval)
        pairs.append((bot, floor))
    ratios = sorted(bot / floor for bot, floor in pairs)
    section = f"CPU per /ask, {in_flight} in flight, bot and library floor alternated ({rounds} pairs of {asks} asks)"
    spread = ", ".join(f"{r:.2f}" for r in ratios)
    return [
        Figure(section, "bot CPU per /ask, median", ms(median([b for b, _ in pairs])), "ms",
               ms(median([f for _, f in pairs])), "the library floor's median"),
        Figure(section, "bot / floor, median of the pairs", median(ratios), "x", 1.0, "the floor",
               "<= 0.8 x", median(ratios) <= 0.8, note=f"pairs: {spread}"),
    ]  # fmt: skip
