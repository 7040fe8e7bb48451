"""What moderating streamed text before it is shown (STREAM_MODERATION=before) costs, beside `after`."""

from __future__ import annotations

from bench.ask_latency import AskSample, ms, run_asks
from bench.harness import BenchWorld, Figure, Upstream, median


async def figures(upstream: Upstream, asks: int, interval: float) -> list[Figure]:
    """The same sequential /asks with each shown edit moderated first (default) and with only the finished
    answer moderated (the documented trade-off); the moderation requests each /ask made, from the fake."""
    results: dict[str, list[AskSample]] = {}
    requests: dict[str, float] = {}
    for mode in ("after", "before"):
        # Every bench answer is the same text: without the verdict cache each check costs what it would live.
        settings = {
            "stream_edit_interval": interval,
            "stream_moderation": mode,
            "moderation_cache_seconds": 0,
        }
        async with BenchWorld(upstream=upstream, settings=settings) as world:
            await run_asks(world, 1, 1, "warm")
            before = len(world.openai.calls("/moderations"))
            results[mode] = await run_asks(world, 1, asks, mode)
            requests[mode] = (len(world.openai.calls("/moderations")) - before) / asks
    chat_ms = ms(upstream.chat_ttft + upstream.chunk_delay * (upstream.answer_chars / upstream.chunk_chars))
    section = (
        f"Streamed text moderated before it is shown (moderation {ms(upstream.moderation_latency):.0f} ms, "
        f"chat {chat_ms:.0f} ms, one edit per {interval:g} s)"
    )
    safe, fast = results["before"], results["after"]
    return [
        Figure(
            section,
            "first visible token p50, before (default)",
            ms(median([s.first_visible for s in safe])),
            "ms",
            ms(median([s.first_visible for s in fast])),
            "after",
            note="one moderation round trip before the first text shows",
        ),
        Figure(
            section,
            "whole answer p50, before (default)",
            ms(median([s.end_to_end for s in safe])),
            "ms",
            ms(median([s.end_to_end for s in fast])),
            "after",
        ),
        Figure(
            section,
            "moderation requests per /ask, before (default)",
            requests["before"],
            "req",
            requests["after"],
            "after",
            note="the prompt, each shown edit, the final answer (cached when it was the last check)",
        ),
    ]
