"""`python -m bench` prints one table of every figure beside its baseline; `--smoke` is a seconds-long CI run."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import (
    admission_bench,
    ask_latency,
    cache_bench,
    capacity,
    client_cost,
    coalesce_bench,
    memory_bench,
    recall_bench,
    shard_bench,
    store_bench,
    stream_moderation,
)
from bench.harness import Figure, Upstream
from bot.ops.runtime import freeze_startup_objects, tune_garbage_collector

SECTIONS = (
    "ask",
    "client",
    "coalesce",
    "speculative",
    "stream",
    "moderation",
    "capacity",
    "cpu",
    "store",
    "backends",
    "shards",
    "memory",
    "recall",
    "cache",
    "admission",
)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def render(figures: list[Figure]) -> str:
    lines = [
        "| Section | Figure | Value | Baseline | Ratio | Target |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        baseline = f"{_fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        target = f.target + (" ✅" if f.ok else " ❌" if f.ok is False else "") if f.target else ""
        name = f"{f.name} ({f.note})" if f.note else f.name
        lines.append(f"| {f.section} | {name} | {_fmt(f.value, f.unit)} | {baseline} | {ratio} | {target} |")
    return "\n".join(lines)


def moderation_figures(rows: list[dict[str, Any]], latency: float) -> list[Figure]:
    """bench/moderation_throughput.py's rows (batched vs one request per message) as table rows."""
    by_key = {(r["burst"], r["mode"]): r for r in rows}
    figures: list[Figure] = []
    top = max((r["burst"] for r in rows), default=0)
    for size in sorted({r["burst"] for r in rows}):
        batched, single = by_key.get((size, "batched")), by_key.get((size, "baseline"))
        if batched is None or single is None:
            continue
        section = f"Channel moderation, burst of {size:,} (upstream {latency * 1000:.0f} ms)"
        per_request = batched["messages_per_request"]
        figures += [
            Figure(section, "messages per second", batched["messages_per_s"], "msg/s",
                   single["messages_per_s"], "one request per message"),
            Figure(section, "messages per upstream request", per_request, "msg/req",
                   single["messages_per_request"], "one request per message",
                   ">= 16" if size == top else "", per_request >= 16 if size == top else None),
            Figure(section, "p99 added delay (beyond upstream latency)", batched["p99_added_ms"], "ms",
                   single["p99_added_ms"], "one request per message",
                   "< 300 ms" if size == top else "", batched["p99_added_ms"] < 300 if size == top else None),
        ]  # fmt: skip
    return figures


async def moderation_section(smoke: bool) -> tuple[list[Figure], str]:
    try:
        module = importlib.import_module("bench.moderation_throughput")
    except ImportError:
        return [], "channel moderation throughput skipped: bench/moderation_throughput.py is not there yet"
    bursts, latency = ([20, 100], 0.01) if smoke else ([100, 1000, 5000], 0.1)
    # The batcher runs in this process: give it the heap a bot has, not the leftovers of the /ask sections
    # (their fakes' records made each full collection walk hundreds of thousands of objects).
    gc.collect()
    freeze_startup_objects()
    rows: list[dict[str, Any]] = await module.run(bursts, latency)
    return moderation_figures(rows, latency), ""


async def coalesce_figures(bursts: list[int], mentions: int, upstream: Upstream) -> list[Figure]:
    return await coalesce_bench.burst_figures(bursts, upstream, mentions)


async def capacity_figures(rates: list[float], seconds: float, smoke: bool) -> list[Figure]:
    figures, steps, floor_steps = await capacity.run(rates, seconds, *((5, 2) if smoke else (50, 4)))
    print("sustained channel moderation, each step:\n" + capacity.render_steps(steps), file=sys.stderr)
    print(
        "the library floor (bench/floor_bot.py), each step:\n" + capacity.render_steps(floor_steps),
        file=sys.stderr,
    )
    return figures


async def run(smoke: bool, only: set[str]) -> list[Figure]:
    figures: list[Figure] = []
    notes: list[str] = []
    if smoke:
        upstream = Upstream(moderation_latency=0.01, chat_ttft=0.02, chunk_delay=0.005, answer_chars=80)
        speculative = Upstream(moderation_latency=0.03, chat_ttft=0.05, chunk_delay=0.005, answer_chars=80)
        levels, burst, asks, interval = [(1, 3), (5, 10)], (5, 1), 2, 0.05
        coalesce_upstream, bursts, mentions = upstream, [5], 2
        capacity_rates, capacity_seconds = [200.0], 0.3
    else:
        upstream = Upstream()
        # moderation 300 ms; chat 1 s = 500 ms to the first token + 25 chunks 20 ms apart
        speculative = Upstream(moderation_latency=0.3, chat_ttft=0.5, chunk_delay=0.02, answer_chars=200)
        levels, burst, asks, interval = [(1, 25), (50, 300), (200, 1000)], (200, 2), 8, 1.0
        # Issue 17's workload: moderation 100 ms, chat 300 ms to the first token then 20 chunks 20 ms apart.
        coalesce_upstream = Upstream(
            moderation_latency=0.1, chat_ttft=0.3, chunk_delay=0.02, answer_chars=160
        )
        bursts, mentions = [50, 200], 10
        capacity_rates, capacity_seconds = [500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0], 4.0
    steps: list[tuple[str, Callable[[], Awaitable[list[Figure]]]]] = [
        ("ask", lambda: ask_latency.overhead_figures(levels, burst, upstream, interval)),
        ("client", lambda: client_cost.figures(200 if smoke else 2000)),
        (
            "cpu",
            lambda: ask_latency.cpu_rotation_figures(
                *((1, 5, 20) if smoke else (5, 200, 800)), upstream, interval
            ),
        ),
        ("coalesce", lambda: coalesce_figures(bursts, mentions, coalesce_upstream)),
        ("speculative", lambda: ask_latency.speculative_figures(speculative, asks, interval)),
        ("stream", lambda: stream_moderation.figures(speculative, asks, interval)),
        ("capacity", lambda: capacity_figures(capacity_rates, capacity_seconds, smoke)),
        ("store", lambda: store_bench.run(*((2000, 200, 20) if smoke else (100_000, 2000, 200)))),
        ("backends", lambda: store_bench.backend_figures(*((200, 2000) if smoke else (2000, 100_000)))),
        ("backends", lambda: ask_latency.backend_figures([levels[0], levels[1]], upstream, interval)),
        ("shards", lambda: shard_bench.figures(*((4, 12) if smoke else (200, 2000)), upstream, interval)),
        (
            "memory",
            lambda: memory_bench.run(
                *((3, 100, 0.2, 5, 10) if smoke else (100, 10_000, 2.0, 200, 400)), upstream
            ),
        ),
        ("recall", lambda: recall_bench.run(smoke)),
        ("cache", lambda: cache_bench.run(smoke)),
        ("admission", lambda: admission_bench.run(*((100, 500) if smoke else (2000, 10_000)))),
    ]
    for name, step in steps:
        if name in only:
            started = time.monotonic()
            figures += await step()
            print(f"  {name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        if name == "speculative" and "moderation" in only:
            started = time.monotonic()
            more, note = await moderation_section(smoke)
            figures += more
            notes += [note] if note else []
            print(f"  moderation: {time.monotonic() - started:.1f} s", file=sys.stderr)
    if smoke:
        # Tiny sizes and latencies only prove the harness runs: judging targets on them would mislead.
        for figure in figures:
            figure.target, figure.ok = "", None
    for note in notes:
        print(f"note: {note}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and latencies: seconds, for CI")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    started = time.monotonic()
    tune_garbage_collector()  # as bot/runner.py does: the moderation section runs the batcher in this process
    figures = asyncio.run(run(args.smoke, set(args.only)))
    print(
        f"\n`python -m bench{' --smoke' if args.smoke else ''}` on {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {time.monotonic() - started:.0f} s:\n"
    )
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
