"""Commands' moderation under a burst (coalesced against one request per check), and @mentions' moderation."""

from __future__ import annotations

import asyncio
import time

from bench.ask_latency import AskSample, ms, run_asks
from bench.harness import BenchWorld, Figure, Upstream, percentile

PROMPT_MARK = "what does the benchmark want to know"  # in every bench prompt (bench/ask_latency.py)


def _prompt_requests(world: BenchWorld, tag: str) -> int:
    """Moderation requests that carried at least one of this run's prompts."""
    count = 0
    for request in world.openai.calls("/moderations"):
        inputs = request.json.get("input") if isinstance(request.json, dict) else None
        texts = [inputs] if isinstance(inputs, str) else inputs or []
        if any(isinstance(t, str) and t.startswith(f"Q{tag}") and PROMPT_MARK in t for t in texts):
            count += 1
    return count


async def _bursts(
    sizes: list[int], upstream: Upstream, coalescing: bool, mentions: int = 0
) -> tuple[dict[int, tuple[list[AskSample], float]], list[Figure]]:
    """Per size, two bursts of `size` /asks at the same instant: samples, and moderation requests per
    burst for the prompts; then `mentions` @mentions in the same process."""
    tweaks = {} if coalescing else {"moderation.batcher.urgent_coalescing": False}
    results: dict[int, tuple[list[AskSample], float]] = {}
    async with BenchWorld(upstream=upstream, settings={"stream_edit_interval": 1.0}, tweaks=tweaks) as world:
        await run_asks(world, 1, 2, "warm")
        rounds = 2
        for size in sizes:
            samples = await run_asks(world, size, rounds, f"b{size}")
            results[size] = samples, _prompt_requests(world, f"b{size}") / rounds
        mention_rows = await _mentions(world, mentions, upstream) if mentions else []
    return results, mention_rows


async def _floor_bursts(sizes: list[int], upstream: Upstream) -> dict[int, list[AskSample]]:
    """The same bursts on bench/floor_bot.py: what discord.py and the SDK alone take for the same calls."""
    results: dict[int, list[AskSample]] = {}
    async with BenchWorld(upstream=upstream, floor=True, settings={"stream_edit_interval": 1.0}) as world:
        await run_asks(world, 1, 2, "warm")
        for size in sizes:
            results[size] = await run_asks(world, size, 2, f"f{size}")
    return results


async def burst_figures(sizes: list[int], upstream: Upstream, mentions: int) -> list[Figure]:
    figures: list[Figure] = []
    targets = {50: (60.0, 6), 200: (150.0, None)}
    coalesced, mention_rows = await _bursts(sizes, upstream, True, mentions)
    separate, _ = await _bursts(sizes, upstream, False)
    floor = await _floor_bursts(sizes, upstream)
    for size in sizes:
        after, after_requests = coalesced[size]
        before, before_requests = separate[size]
        section = f"Command moderation, {size} /asks at once (coalesced vs one request per check)"
        p99_limit, request_limit = targets.get(size, (None, None))
        p99 = ms(percentile([s.overhead for s in after], 99))
        figures += [
            Figure(section, "bot overhead p50", ms(percentile([s.overhead for s in after], 50)), "ms",
                   ms(percentile([s.overhead for s in before], 50)), "one request per check"),
            Figure(section, "bot overhead p99", p99, "ms",
                   ms(percentile([s.overhead for s in before], 99)), "one request per check",
                   f"< {p99_limit:g} ms" if p99_limit else "", p99 < p99_limit if p99_limit else None),
            Figure(section, "the library floor's overhead p99 (bench/floor_bot.py: discord.py and the SDK alone)",
                   ms(percentile([s.overhead for s in floor[size]], 99)), "ms", p99, "the bot's"),
            Figure(section, f"moderation requests carrying the {size} prompts", after_requests, "req",
                   before_requests, "one request per check",
                   f"<= {request_limit}" if request_limit else "",
                   after_requests <= request_limit if request_limit else None),
        ]  # fmt: skip
    return figures + mention_rows


async def _mentions(world: BenchWorld, mentions: int, upstream: Upstream) -> list[Figure]:
    """Moderation requests and ledger rows per @mention, beside the same per /ask, in one world."""
    before_ask = len(world.openai.calls("/moderations"))
    await run_asks(world, 1, mentions, "ma")
    per_ask = (len(world.openai.calls("/moderations")) - before_ask) / mentions
    bot_id = world.discord.bot_user_id
    started = len(world.openai.calls("/moderations"))
    for n in range(mentions):
        channel = world.channel_ids[n % len(world.channel_ids)]
        await world.discord.post_message(
            channel, world.member_ids[n], f"<@{bot_id}> Qmn{n} {PROMPT_MARK}?", mentions_bot=True
        )
        await _wait_answered(world, channel, f"Qmn{n}")
    await asyncio.sleep(upstream.moderation_latency * 3)  # a separate channel check would be done now
    per_mention = (len(world.openai.calls("/moderations")) - started) / mentions
    section = f"@mention moderation ({mentions} mentions, channel moderation on)"
    return [
        Figure(section, "moderation requests (and ledger rows) per @mention", per_mention, "req",
               per_ask, "per /ask", "<= per /ask", per_mention <= per_ask),
    ]  # fmt: skip


async def _wait_answered(world: BenchWorld, channel: int, tag: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for sent in world.discord.messages_in(channel):
            content = sent.get("content") or ""
            if sent.get("message_reference") and content.startswith(tag) and not content.endswith("▌"):
                return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no answer to mention {tag}:\n{world.bot_log()[-2000:]}")
