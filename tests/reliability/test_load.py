"""A bounded load test on loopback: 500 concurrent interactions (50 with image attachments) and 2000 channel
messages at once. Every interaction gets its final answer, every message is moderated, nothing leaks."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter
from typing import Any

import pytest

from bot.moderation.normalize import normalize
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import answer_text, answered
from testkit.openai import FakeOpenAI
from tests.reliability.corpus import png_bytes
from tests.reliability.helpers import moderated_texts
from tests.support.server import BotFactory, World

INTERACTIONS = 500
WITH_IMAGES = 50
MESSAGES = 2000
FLAGGED_EVERY = 100  # 20 of the messages break the rules


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# The fakes' servers run one task per keep-alive connection the bot's HTTP pools hold open: not the bot's.
FAKE_SERVER_TASKS = {"RequestHandler.start"}


def task_names(*, bot_only: bool = False) -> Counter[str]:
    current = asyncio.current_task()
    names = Counter(
        getattr(t.get_coro(), "__qualname__", t.get_name()) for t in asyncio.all_tasks() if t is not current
    )
    if bot_only:
        for name in FAKE_SERVER_TASKS:
            names.pop(name, None)
    return names


async def settle_to(
    baseline_tasks: Counter[str],
    baseline_fds: int,
    *,
    bot_only: bool = False,
    timeout: float = 10,  # noqa: ASYNC109
) -> tuple[Counter[str], int]:
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        extra_tasks = task_names(bot_only=bot_only) - baseline_tasks
        fds = open_fds()
        if (not extra_tasks and fds <= baseline_fds) or time.monotonic() > deadline:
            return extra_tasks, fds
        await asyncio.sleep(0.1)


@pytest.mark.load
@pytest.mark.timeout(120)
async def test_500_interactions_2000_messages_50_attachments(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    members = [fake_discord.add_member(world.guild_id, name=f"user{i}") for i in range(20)]
    channels = [world.channel_id, world.other_channel_id] + [
        fake_discord.add_channel(world.guild_id, f"busy-{i}") for i in range(3)
    ]
    # Correctness under load is asserted here; latency is bench/'s job. A starved CI core must not turn
    # a slow defer into "Unknown interaction".
    fake_discord.interaction_deadline = 30.0
    fake_openai.stream_chunk_chars = 64  # streaming itself is covered elsewhere; keep the CPU for volume
    baseline_tasks, baseline_fds = task_names(), open_fds()

    bot = await start_bot(
        user_burst=100000,
        user_requests_per_minute=100000.0,
        server_max_concurrent_jobs=64,
        server_queue_size=100000,
        user_daily_budget=0.0,
        server_monthly_budget=0.0,
        stream_edit_interval=0.2,
    )
    # Warm up, so lazily started long-lived tasks (the moderation batcher's dispatcher) are in the baseline.
    warm = await fake_discord.invoke(
        "ask", {"prompt": "warm-up"}, guild_id=world.guild_id, channel_id=world.channel_id, user_id=members[0]
    )
    await warm.wait_for(answered, timeout=10)  # finished, so its own tasks are not taken for the idle bot's
    await warm.wait_done(timeout=10, settle=0.2)
    running_tasks = task_names()

    image = png_bytes()
    invoked: list[FakeInteraction] = []
    for i in range(INTERACTIONS):
        options: dict[str, Any] = {"prompt": f"load question {i}"}
        if i < WITH_IMAGES:
            options["file"] = fake_discord.add_attachment(f"pic{i}.png", image, "image/png")
        invoked.append(
            await fake_discord.invoke(
                "ask",
                options,
                guild_id=world.guild_id,
                channel_id=channels[i % len(channels)],
                user_id=members[i % len(members)],
            )
        )
    posted = []
    for i in range(MESSAGES):
        text = f"load message {i}" + (" FLAGME" if i % FLAGGED_EVERY == 0 else "")
        posted.append(
            await fake_discord.post_message(channels[i % len(channels)], members[i % len(members)], text)
        )

    started = time.monotonic()

    waiting = dict(enumerate(invoked))
    while waiting and time.monotonic() - started < 90:
        # One slow poll for all of them: 500 fast polling loops would be the load test's main cost.
        await asyncio.sleep(0.05)
        for i, fi in list(waiting.items()):
            if (
                fi.original is not None
                and answer_text(fi.original.get("content")) == f"Echo: load question {i}"
            ):
                del waiting[i]
    assert not waiting, [fi.describe() for fi in list(waiting.values())[:3]]
    print(f"{INTERACTIONS} final answers {time.monotonic() - started:.1f} s after the last event was sent")
    await fake_discord.wait_until(lambda: len(bot.in_flight) == 0, timeout=60, what="message handlers")

    moderated = set(moderated_texts(fake_openai))
    missing = [m["content"] for m in posted if normalize(m["content"]) not in moderated]
    assert not missing, f"{len(missing)} messages were never moderated, e.g. {missing[:3]}"
    acted = await bot.services.store.fetchall("SELECT message_id FROM moderation_actions")
    assert {int(r[0]) for r in acted} == {int(m["id"]) for m in posted if "FLAGME" in m["content"]}
    stored = await bot.services.store.fetchone("SELECT COUNT(*) FROM turns")
    assert stored is not None and stored[0] == 2 * INTERACTIONS + 2  # and the warm-up
    assert fake_discord.fake_errors == [] and fake_openai.handler_errors == []

    # No task leaks while running: back to the idle bot's tasks once the burst is over.
    leaked, _ = await settle_to(running_tasks, open_fds() + 1000, bot_only=True)
    assert not leaked, f"tasks left behind by the burst: {leaked}"
    # And closing releases every task and file descriptor the bot opened.
    await bot.close()
    leaked, fds = await settle_to(baseline_tasks, baseline_fds)
    assert not leaked, f"tasks left after close: {leaked}"
    assert fds <= baseline_fds, f"{fds - baseline_fds} file descriptors left open after close"
