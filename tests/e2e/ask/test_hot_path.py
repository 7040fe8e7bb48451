"""The /ask hot path's shortcuts keep their guarantees: grouped inserts, urgent moderation, cached reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.chat.history import Exchange, History
from bot.chat.personas import Personas
from bot.cost.rules import LimitsStore
from bot.discord_io.client import OpenAIBot
from bot.discord_io.replies import StreamingReply
from bot.moderation.batcher import ModerationBatcher
from bot.openai_api.calls import CallContext, PlannedCall
from bot.openai_api.gateway import OpenAIGateway
from bot.settings import Settings
from bot.storage.store import Store, StoreError, open_store
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.database import database_url
from tests.support.server import World

CONTEXT = CallContext(1, 2, 3, "test")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(database_url(tmp_path))
    await opened.execute("CREATE TABLE numbers (n INTEGER NOT NULL)")
    yield opened
    await opened.close()


@pytest.fixture
async def gateway(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIGateway]:
    settings = Settings(
        openai_api_key=fake_openai.api_key, openai_base_url=fake_openai.base_url, openai_max_retries=0
    )
    gateway = OpenAIGateway.from_settings(settings)
    yield gateway
    await gateway.close()


async def test_concurrent_inserts_are_committed_and_one_bad_insert_fails_alone(store: Store) -> None:
    sql = "INSERT INTO numbers (n) VALUES (?)"
    good = [store.insert(sql, [(n,), (n + 100,)]) for n in range(10)]
    outcomes = await asyncio.gather(*good, store.insert(sql, [(None,)]), return_exceptions=True)
    assert outcomes[:10] == [None] * 10
    assert isinstance(outcomes[10], StoreError)
    rows = await store.fetchall("SELECT n FROM numbers ORDER BY n")
    assert [r[0] for r in rows] == list(range(10)) + list(range(100, 110))


async def test_a_failed_insert_stores_none_of_its_rows(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.insert("INSERT INTO numbers (n) VALUES (?)", [(1,), (None,)])
    assert await store.fetchall("SELECT n FROM numbers") == []


async def test_grouped_deletes_and_upserts_commit_with_concurrent_inserts(store: Store) -> None:
    """An /ask's in-flight delete and answer upsert ride the group commit: each caller still returns
    once its own statement is committed, in the order they were queued, and a failure is its own."""
    await store.execute("CREATE TABLE keyed (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    upsert = "INSERT INTO keyed (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    await store.insert("INSERT INTO numbers (n) VALUES (?)", [(n,) for n in range(5)])
    outcomes = await asyncio.gather(
        store.write_grouped("DELETE FROM numbers WHERE n = ?", [(1,)]),
        store.insert("INSERT INTO numbers (n) VALUES (?)", [(10,)]),
        store.write_grouped(upsert, [(1, "first")]),
        store.write_grouped(upsert, [(1, "second")]),
        store.write_grouped(upsert, [(2, None)]),  # NOT NULL: fails alone
        store.write_grouped("DELETE FROM numbers WHERE n = ?", [(3,)]),
        return_exceptions=True,
    )
    assert outcomes[:4] == [None] * 4 and outcomes[5] is None
    assert isinstance(outcomes[4], StoreError)
    rows = await store.fetchall("SELECT n FROM numbers ORDER BY n")
    assert [r[0] for r in rows] == [0, 2, 4, 10]
    assert [tuple(r) for r in await store.fetchall("SELECT k, v FROM keyed")] == [(1, "second")]


async def test_an_urgent_text_does_not_wait_out_the_batching_window(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderation_latency = 0.2
    batcher = ModerationBatcher(gateway, window=30.0)
    background = asyncio.create_task(batcher.texts(["a channel message"], context=CONTEXT))
    await asyncio.sleep(0.05)  # its request is in flight: a plain text would now wait for the window
    [result] = await asyncio.wait_for(batcher.texts(["my prompt"], context=CONTEXT, urgent=True), 5)
    assert not result.flagged
    await background
    assert [r.json["input"] for r in fake_openai.calls("/moderations")] == [
        ["a channel message"],
        ["my prompt"],
    ]
    await batcher.close()


async def test_cached_persona_and_budgets_follow_their_changes(store: Store) -> None:
    personas = Personas(store)
    assert await personas.get(7) is None
    await personas.set(1, 7, "a pirate", set_by=9)
    assert await personas.get(7) == "a pirate"
    assert await personas.clear(7)
    assert await personas.get(7) is None

    limits = LimitsStore(store, Settings(user_daily_budget=1.0, server_monthly_budget=50.0))
    assert (await limits.budgets(1)).user_daily_cap == 1.0
    await limits.set_budgets(1, user_daily=0.25, server_monthly=None, by=9)
    assert (await limits.budgets(1)).user_daily_cap == 0.25
    await limits.set_budgets(1, user_daily=None, server_monthly=None, by=9, reset=True)
    assert (await limits.budgets(1)).user_daily_cap == 1.0


async def test_ask_budget_estimate_counts_the_stored_history(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    """The estimate from stored token counts equals a full re-count of the messages sent."""
    where = {"guild_id": world.guild_id, "channel_id": world.channel_id, "user_id": world.member_id}
    first = await fake_discord.invoke("ask", {"prompt": "hello there"}, **where)
    await first.wait_done(5)
    limits = bot.services.limits
    assert limits is not None
    seen: list[tuple[int | None, float]] = []
    original = limits.estimate

    def spy(call: PlannedCall) -> float:
        estimate = original(call)
        if call.kind == "chat":
            seen.append((call.prompt_tokens, estimate - original(replace(call, prompt_tokens=None))))
        return estimate

    limits.estimate = spy  # type: ignore[method-assign]
    second = await fake_discord.invoke("ask", {"prompt": "and again"}, **where)
    await second.wait_done(5)
    # The pre-check counts the prompt alone; the call itself carries the stored history's count.
    [(prompt_tokens, difference)] = [entry for entry in seen if entry[0] is not None]
    assert prompt_tokens is not None and prompt_tokens > 20
    assert difference == 0


class _Message:
    def __init__(self, content: str) -> None:
        self.content = content
        self.deleted = False

    async def edit(self, content: str) -> None:
        self.content = content

    async def delete(self) -> None:
        self.deleted = True


async def test_finishing_while_a_streamed_message_is_being_created_leaves_no_cursor_behind() -> None:
    """A fast end (no moderation window any more) can land while the stream creates its next message."""
    created: list[_Message] = []

    async def create(content: str) -> _Message:
        message = _Message(content)
        created.append(message)  # Discord has made the message before the call returns
        await asyncio.sleep(0.05)
        return message

    reply = StreamingReply(None, create, interval=0.01)
    await reply.update("x" * 2500)
    await asyncio.sleep(0.01)  # the worker is inside `create`
    await reply.finish("y" * 2500)
    live = [m.content for m in created if not m.deleted]
    assert "".join(live) == "y" * 2500  # every message made is tracked: none keeps the cursor


async def test_an_urgent_text_does_not_wait_for_the_channel_lane(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderation_latency = 0.3
    batcher = ModerationBatcher(gateway, window=0.0, concurrency=1)
    channel = asyncio.create_task(batcher.texts(["a channel message"], context=CONTEXT))
    await asyncio.sleep(0.05)  # the channel lane's only slot is busy
    [prompt] = await batcher.texts(["my prompt"], context=CONTEXT, urgent=True)
    assert not prompt.flagged
    await channel
    first, second = fake_openai.calls("/moderations")
    assert (first.json["input"], second.json["input"]) == (["a channel message"], ["my prompt"])
    assert first.end_time is not None and second.time < first.end_time  # sent beside it, not after it
    await batcher.close()


async def test_urgent_texts_batch_while_their_lane_is_busy(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderation_latency = 0.2
    batcher = ModerationBatcher(gateway, window=0.0, urgent_concurrency=1)
    first = asyncio.create_task(batcher.texts(["prompt 0"], context=CONTEXT, urgent=True))
    await asyncio.sleep(0.05)
    rest = [batcher.texts([f"prompt {n}"], context=CONTEXT, urgent=True) for n in range(1, 6)]
    await asyncio.gather(first, *rest)
    assert [r.json["input"] for r in fake_openai.calls("/moderations")] == [
        ["prompt 0"],
        [f"prompt {n}" for n in range(1, 6)],
    ]
    await batcher.close()


async def test_cached_history_windows_follow_appends_and_deletions(store: Store) -> None:
    await store.execute("DROP TABLE numbers")
    history = History(store, window_tokens=60)
    exchange = Exchange(1, 7, 3, "ann", "question", 10, 99, "answer", 10)
    assert await history.window(7) == []
    await history.append(exchange)
    await history.append(replace(exchange, question="second", answer="reply"))
    assert [t.content for t in await history.window(7)] == ["question", "answer", "second", "reply"]
    await history.append(replace(exchange, question="third", answer="more"))
    # 14 tokens a turn: the window keeps what fits 60, as a read from the database does.
    assert [t.content for t in await history.window(7)] == ["second", "reply", "third", "more"]
    history.forget_windows()
    assert [t.content for t in await history.window(7)] == ["second", "reply", "third", "more"]
    assert await history.forget_channel(7) == 6
    assert await history.window(7) == []


async def test_forget_me_and_the_retention_purge_reach_the_next_context(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    """The history window cached by the first /ask must not bring deleted turns back."""
    await ask(fake_discord, world, "my secret plan")
    done = await (
        await fake_discord.invoke(
            "forget me", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.member_id
        )
    ).wait_done()
    assert "2 conversation turns" in done.all_text()
    await ask(fake_discord, world, "what did I say?")
    assert "secret plan" not in str(chat_bodies(fake_openai)[-1]["messages"])

    privacy = bot.services.privacy
    assert privacy is not None
    await bot.services.store.execute("UPDATE turns SET created_at = 0")
    await privacy.purge_expired(retention_days=1)
    await ask(fake_discord, world, "anything left?")
    assert "what did I say" not in str(chat_bodies(fake_openai)[-1]["messages"])
