"""Channel moderation throughput: the real batching gate vs one request per message, against the fake OpenAI.

    python -m bench.moderation_throughput [--bursts 100 1000 5000] [--latency 0.05] [--spread 1.0]

Each burst's messages arrive evenly over `spread` seconds across 50 channels (the issue's "500 messages in
one second"), with unique texts so the verdict cache cannot help. "Added delay" is a message's time from
arrival to verdict minus the upstream's own latency: what the bot adds (batching window, queueing behind
the concurrency bound, HTTP and JSON work). The fake OpenAI runs in a child process, as the real endpoint
is not on the bot's CPU (`--in-process` keeps it in the bot's event loop instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bot.moderation.batcher import ModerationBatcher
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.settings import Settings
from testkit.openai import FakeOpenAI

CHANNELS = 50
Check = Callable[[str, CallContext], Awaitable[Any]]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def _burst(check: Check, size: int, spread: float, tag: str) -> tuple[list[float], float]:
    """Submit `size` messages evenly over `spread` s; returns each one's arrival-to-verdict time and the
    wall time from the first arrival to the last verdict."""
    delays: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int) -> None:
        arrived = time.perf_counter()
        context = CallContext(1, 1000 + n % CHANNELS, 5000 + n, "bench")
        await check(f"{tag} message {n} in channel {n % CHANNELS}: nothing to see here", context)
        delays.append(time.perf_counter() - arrived)

    start = time.perf_counter()
    for n in range(size):
        due = start + spread * n / size
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return delays, time.perf_counter() - start


def _row(
    mode: str, size: int, delays: list[float], wall: float, requests: int, latency: float
) -> dict[str, Any]:
    added = [max(0.0, d - latency) for d in delays]
    return {
        "mode": mode,
        "burst": size,
        "messages_per_s": size / wall if wall else 0.0,
        "requests": requests,
        "messages_per_request": size / requests if requests else 0.0,
        "p50_added_ms": statistics.median(added) * 1000 if added else 0.0,
        "p99_added_ms": percentile(added, 0.99) * 1000,
        "wall_s": wall,
    }


async def serve_fake(latency: float) -> None:
    """Child process mode: serve a fake OpenAI, print its base URL and key, stop when stdin closes."""
    async with FakeOpenAI() as fake:
        fake.moderation_latency = latency
        print(fake.base_url, fake.api_key, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.asynccontextmanager
async def fake_openai(latency: float, *, in_process: bool) -> AsyncIterator[tuple[str, str]]:
    """(base_url, api_key) of a fake OpenAI, in a child process unless `in_process`."""
    if in_process:
        async with FakeOpenAI() as fake:
            fake.moderation_latency = latency
            yield fake.base_url, fake.api_key
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.moderation_throughput",
        "--serve-fake",
        "--latency",
        str(latency),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        base_url, api_key = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
        yield base_url, api_key
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 5)
        except TimeoutError:
            child.kill()
            await child.wait()


async def run(
    burst_sizes: list[int], latency: float, *, spread: float = 1.0, in_process: bool = False
) -> list[dict[str, Any]]:
    """For each burst size: the batching gate, then the one-request-per-message baseline, same process."""
    rows: list[dict[str, Any]] = []
    async with fake_openai(latency, in_process=in_process) as (base_url, api_key):
        settings = Settings(openai_api_key=api_key, openai_base_url=base_url, openai_max_retries=0)
        gateway = OpenAIGateway.from_settings(settings)
        try:
            for size in burst_sizes:
                batcher = ModerationBatcher.from_settings(gateway, settings)
                gate = ModerationGate(gateway, batcher=batcher)

                async def gated(text: str, context: CallContext, gate: ModerationGate = gate) -> Any:
                    return await gate.check_text(text, context=context)

                delays, wall = await _burst(gated, size, spread, f"batched-{size}")
                rows.append(_row("batched", size, delays, wall, batcher.stats.requests, latency))
                await gate.close()

                async def single(text: str, context: CallContext) -> Any:
                    return await gateway.moderate([text], context=context)

                delays, wall = await _burst(single, size, spread, f"baseline-{size}")
                rows.append(_row("baseline", size, delays, wall, size, latency))
        finally:
            await gateway.close()
    return rows


def render(rows: list[dict[str, Any]], latency: float) -> str:
    lines = [
        f"Channel moderation throughput (upstream latency {latency * 1000:.0f} ms, fake OpenAI)",
        f"{'burst':>6} {'mode':>9} {'msg/s':>9} {'requests':>9} {'msg/req':>8} {'p50 added':>10} {'p99 added':>10}",
    ]
    for row in rows:
        lines.append(
            f"{row['burst']:>6} {row['mode']:>9} {row['messages_per_s']:>9.0f} {row['requests']:>9} "
            f"{row['messages_per_request']:>8.1f} {row['p50_added_ms']:>8.1f}ms {row['p99_added_ms']:>8.1f}ms"
        )
    by_key = {(r["burst"], r["mode"]): r for r in rows}
    for size in sorted({r["burst"] for r in rows}):
        batched, baseline = by_key.get((size, "batched")), by_key.get((size, "baseline"))
        if batched and baseline and baseline["requests"]:
            lines.append(
                f"burst {size}: {baseline['requests'] / max(1, batched['requests']):.0f}x fewer requests, "
                f"p99 added {batched['p99_added_ms']:.0f} ms vs {baseline['p99_added_ms']:.0f} ms baseline"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.moderation_throughput", description=__doc__)
    parser.add_argument("--bursts", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--latency", type=float, default=0.05, help="upstream moderation latency, seconds")
    parser.add_argument("--spread", type=float, default=1.0, help="seconds over which a burst arrives")
    parser.add_argument(
        "--in-process", action="store_true", help="run the fake OpenAI in the bot's event loop"
    )
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake:
        asyncio.run(serve_fake(args.latency))
        return 0
    rows = asyncio.run(run(args.bursts, args.latency, spread=args.spread, in_process=args.in_process))
    print(render(rows, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
