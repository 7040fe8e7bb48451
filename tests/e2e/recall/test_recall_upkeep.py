"""/recall's index kept true: deleted channels and threads leave it, failed embedding batches are retried."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import run
from testkit.openai import FakeOpenAI
from tests.e2e.recall.test_recall import embedding_inputs, enable, vectors, wait_for_vectors
from tests.support.server import BotFactory, World


async def parked(bot: OpenAIBot) -> list[dict[str, Any]]:
    rows = await bot.services.store.fetchall(
        "SELECT message_id, channel_id, text, attempts, next_attempt_at FROM recall_pending ORDER BY message_id"
    )
    return [dict(r) for r in rows]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def embedded_texts(fake_openai: FakeOpenAI) -> list[str]:
    """Every input of every embeddings request OpenAI answered with vectors."""
    return [
        text
        for request, inputs in zip(
            fake_openai.calls("/embeddings"), embedding_inputs(fake_openai), strict=True
        )
        if request.status == 200
        for text in inputs
    ]


# -- deleted channels and threads ----------------------------------------------------------------------


async def test_deleting_a_channel_removes_its_vectors_and_its_threads(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0)
    await enable(fake_discord, world)
    doomed = await fake_discord.post_message(
        world.channel_id, world.member_id, "the lighthouse key is under the mat"
    )
    thread_id = await fake_discord.member_creates_thread(
        world.channel_id, world.member_id, "lighthouse", starter="the lighthouse opens at dawn"
    )
    kept = await fake_discord.post_message(
        world.other_channel_id, world.member_id, "the lighthouse tour is sold out"
    )
    rows = await wait_for_vectors(bot, 3)
    assert {r["channel_id"] for r in rows} == {world.channel_id, thread_id, world.other_channel_id}

    await fake_discord.delete_channel(world.channel_id)
    await eventually(lambda: _vector_count_is(bot, 1), "the deleted channel's vectors to go")
    assert [r["message_id"] for r in await vectors(bot)] == [int(kept["id"])]

    done = await run(
        fake_discord, world, "recall search", {"query": "lighthouse key mat"}, channel=world.other_channel_id
    )
    text = done.all_text()
    assert str(kept["id"]) in text
    assert str(doomed["id"]) not in text and f"/{thread_id}/" not in text


async def test_deleting_a_thread_removes_only_its_vectors(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0)
    await enable(fake_discord, world)
    thread_id = await fake_discord.member_creates_thread(
        world.channel_id, world.member_id, "plans", starter="the picnic moved to the park"
    )
    kept = await fake_discord.post_message(
        world.channel_id, world.member_id, "picnic blankets are in the van"
    )
    await wait_for_vectors(bot, 2)

    await fake_discord.delete_channel(thread_id)
    await eventually(lambda: _vector_count_is(bot, 1), "the deleted thread's vectors to go")
    assert [r["message_id"] for r in await vectors(bot)] == [int(kept["id"])]
    assert fake_discord.world.channels.get(world.channel_id) is not None


async def _vector_count_is(bot: OpenAIBot, count: int) -> bool:
    return len(await vectors(bot)) == count


# -- failed embedding batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["server error", "rate limit", "quota"])
async def test_a_failed_batch_waits_in_the_database_and_is_indexed_once_openai_recovers(
    failure: str, start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0, recall_retry_seconds=0.3)
    await enable(fake_discord, world)
    if failure == "server error":
        fake_openai.inject("/embeddings", 503, times=-1)
    elif failure == "rate limit":
        fake_openai.inject_rate_limit("/embeddings", retry_after=0.05, times=-1)
    else:  # the quota breaker opens; its probes keep failing until credit is added
        fake_openai.inject_insufficient_quota("/embeddings")
    first = await fake_discord.post_message(
        world.channel_id, world.member_id, "the choir rehearses on tuesday"
    )
    second = await fake_discord.post_message(world.channel_id, world.moderator_id, "bring the sheet music")
    await eventually(lambda: _parked_count_is(bot, 2), "the failed batch to be parked")
    waiting = await parked(bot)
    assert {r["message_id"] for r in waiting} == {int(first["id"]), int(second["id"])}
    assert all(r["attempts"] >= 1 for r in waiting)
    assert await vectors(bot) == []
    # Tried again after its back-off, and again, while OpenAI keeps failing: the rows stay, counting.
    await eventually(
        lambda: _attempts_at_least(bot, 2), "a second failed attempt (the batch is retried, not dropped)"
    )

    fake_openai.clear_injections()
    rows = await wait_for_vectors(bot, 2)
    assert {r["message_id"] for r in rows} == {int(first["id"]), int(second["id"])}
    assert await parked(bot) == []
    # Indexed once: each text was embedded successfully exactly once.
    texts = embedded_texts(fake_openai)
    assert texts.count("the choir rehearses on tuesday") == 1
    assert texts.count("bring the sheet music") == 1

    done = await run(fake_discord, world, "recall search", {"query": "choir rehearses tuesday"})
    assert f"/{world.channel_id}/{first['id']}" in done.all_text()


async def test_parked_messages_survive_a_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0, recall_retry_seconds=0.3)
    await enable(fake_discord, world)
    fake_openai.inject("/embeddings", 500, times=-1)
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "the boiler is serviced in may"
    )
    await eventually(lambda: _parked_count_is(bot, 1), "the failed batch to be parked")
    await bot.close()

    fake_openai.clear_injections()
    restarted = await start_bot(recall_backfill_days=0, recall_retry_seconds=0.3)
    rows = await wait_for_vectors(restarted, 1)
    assert [r["message_id"] for r in rows] == [int(message["id"])]
    assert await parked(restarted) == []


async def test_parked_messages_of_a_deleted_message_or_channel_are_not_indexed_later(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0, recall_retry_seconds=0.3)
    await enable(fake_discord, world)
    fake_openai.inject("/embeddings", 500, times=-1)
    deleted = await fake_discord.post_message(
        world.channel_id, world.member_id, "my old address was elm street"
    )
    await fake_discord.post_message(world.other_channel_id, world.member_id, "the spare key is in the shed")
    kept = await fake_discord.post_message(world.channel_id, world.member_id, "the bake sale raised a lot")
    await eventually(lambda: _parked_count_is(bot, 3), "the failed batch to be parked")

    await fake_discord.delete_message_event(world.channel_id, int(deleted["id"]))
    await fake_discord.delete_channel(world.other_channel_id)
    await eventually(lambda: _parked_count_is(bot, 1), "deleted messages to leave the retry queue")
    assert [r["message_id"] for r in await parked(bot)] == [int(kept["id"])]
    fake_openai.clear_injections()
    rows = await wait_for_vectors(bot, 1)
    await asyncio.sleep(0.5)  # longer than a retry's back-off: nothing else arrives
    assert [r["message_id"] for r in await vectors(bot)] == [int(kept["id"])]
    assert rows[0]["message_id"] == int(kept["id"])
    assert await parked(bot) == []
    texts = embedded_texts(fake_openai)
    assert "my old address was elm street" not in texts
    assert "the spare key is in the shed" not in texts


async def test_forget_me_and_the_purge_clear_parked_messages(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    now = dt.datetime.now(dt.UTC)
    fake_discord.seed_history(
        world.channel_id,
        [
            {
                "author_id": world.moderator_id,
                "content": "an old note from the mod",
                "timestamp": now - dt.timedelta(days=20),
            },
            {
                "author_id": world.member_id,
                "content": "a note from alice",
                "timestamp": now - dt.timedelta(hours=2),
            },
            {
                "author_id": world.moderator_id,
                "content": "a new note from the mod",
                "timestamp": now - dt.timedelta(hours=1),
            },
        ],
    )
    bot = await start_bot(recall_retry_seconds=30)
    fake_openai.inject("/embeddings", 500, times=-1)
    await enable(fake_discord, world)
    await eventually(lambda: _parked_count_is(bot, 3), "the failed backfill batch to be parked")

    reply = await run(fake_discord, world, "forget me", user=world.member_id)
    assert "searchable message" in reply.all_text()
    assert sorted(r["text"] for r in await parked(bot)) == [
        "a new note from the mod",
        "an old note from the mod",
    ]
    await bot.services.privacy.purge_expired(retention_days=10)
    assert [r["text"] for r in await parked(bot)] == ["a new note from the mod"]
    await run(fake_discord, world, "recall disable", user=world.moderator_id)
    assert await parked(bot) == []


async def test_an_input_openai_refuses_is_dropped_with_a_log_line_not_retried(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(recall_backfill_days=0, recall_retry_seconds=0.1)
    await enable(fake_discord, world)
    fake_openai.inject("/embeddings", 400, message="'$.input' is invalid.", times=-1)
    with caplog.at_level(logging.WARNING, logger="bot.recall.service"):
        refused = await fake_discord.post_message(
            world.channel_id, world.member_id, "an input OpenAI refuses"
        )
        await fake_discord.wait_until(lambda: bot.services.recall.stats.dropped == 1, what="the drop")
    assert any(
        str(refused["id"]) in r.getMessage() and "not retried" in r.getMessage() for r in caplog.records
    )
    assert "an input OpenAI refuses" not in caplog.text  # message content is never logged
    assert await parked(bot) == []
    attempts = len(fake_openai.calls("/embeddings"))
    await asyncio.sleep(0.5)  # several back-offs' worth: no further attempt
    assert len(fake_openai.calls("/embeddings")) == attempts

    fake_openai.clear_injections()
    later = await fake_discord.post_message(world.channel_id, world.member_id, "a fine message")
    rows = await wait_for_vectors(bot, 1)
    assert [r["message_id"] for r in rows] == [int(later["id"])]


async def test_a_refused_batch_is_halved_and_its_good_messages_still_indexed(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    texts = ["apples are red", "bananas are yellow", "cherries are dark", "dates are sweet"]
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": t} for t in texts])
    bot = await start_bot(recall_retry_seconds=30)
    fake_openai.inject("/embeddings", 400, message="'$.input' is invalid.", times=1)
    interaction = await enable(fake_discord, world)
    await interaction.wait_for(lambda i: "Indexed" in i.all_text(), timeout=15)
    rows = await wait_for_vectors(bot, 4)
    assert sorted(r["excerpt"] for r in rows) == texts
    batches = embedding_inputs(fake_openai)
    assert sorted(batches[0]) == texts and fake_openai.calls("/embeddings")[0].status == 400
    assert len(batches) == 3 and sorted(batches[1] + batches[2]) == texts  # each half sent once
    assert await parked(bot) == []
    assert bot.services.recall.stats.dropped == 0


async def _parked_count_is(bot: OpenAIBot, count: int) -> bool:
    return len(await parked(bot)) == count


async def _attempts_at_least(bot: OpenAIBot, attempts: int) -> bool:
    return any(r["attempts"] >= attempts for r in await parked(bot))
