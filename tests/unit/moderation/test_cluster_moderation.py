"""Two processes on one database: the outage queue is drained exactly once, and one message makes one strike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.moderation.policy import Decision
from bot.moderation.queue import MessageSubject, OutageQueue
from bot.moderation.records import ActionLog
from bot.storage.store import Store, open_store
from tests.support.database import database_url


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    url = database_url(tmp_path)
    first = await open_store(url)
    second = await open_store(url)
    yield first, second
    await first.close()
    await second.close()


def subject(message_id: int) -> MessageSubject:
    return MessageSubject(guild_id=1, channel_id=2, message_id=message_id, author_id=3, text=f"m{message_id}")


async def test_two_drainers_claim_every_message_once(stores: tuple[Store, Store]) -> None:
    one = OutageQueue(stores[0], claimer="a")
    two = OutageQueue(stores[1], claimer="b")
    for message_id in range(1, 121):
        await (one if message_id % 2 else two).put(subject(message_id))
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    async def drain(queue: OutageQueue) -> None:
        while batch := await queue.claim(7):
            claimed[queue.claimer] += [item.subject.message_id for item in batch]
            assert [item.id for item in batch] == sorted(item.id for item in batch), "oldest first"
            await queue.remove([item.id for item in batch])

    # Several claimers per process, as racing as a pool allows.
    await asyncio.gather(*(drain(queue) for queue in (one, two, one, two)))
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == list(range(1, 121)), "none twice, none skipped"
    assert await one.count() == 0


async def test_a_dead_claimers_messages_are_claimed_again_after_its_claim_expires(
    stores: tuple[Store, Store],
) -> None:
    now = [1000.0]
    dead = OutageQueue(stores[0], claimer="dead", clock=lambda: now[0])
    alive = OutageQueue(stores[1], claimer="alive", clock=lambda: now[0])
    for message_id in (10, 11, 12):
        await dead.put(subject(message_id))
    taken = await dead.claim(2, seconds=60)
    assert [item.subject.message_id for item in taken] == [10, 11]
    # The claimer dies here: its two messages are neither judged nor given back.
    assert [item.subject.message_id for item in await alive.claim(10, seconds=600)] == [12]
    now[0] += 59
    assert await alive.claim(10, seconds=60) == [], "still claimed"
    now[0] += 2
    again = await alive.claim(10, seconds=60)
    assert [item.subject.message_id for item in again] == [10, 11], "reclaimed once expired"
    rows = await stores[0].fetchall("SELECT claimed_by FROM moderation_queue ORDER BY id")
    assert [r[0] for r in rows] == ["alive", "alive", "alive"]
    # A drain that failed gives its messages back for the next one to take at once.
    await alive.bump_attempts([again[0].id])
    await alive.unclaim([again[1].id])
    assert [item.subject.message_id for item in await dead.claim(10)] == [10, 11]


async def test_only_the_claims_of_processes_that_are_gone_are_taken_back(stores: tuple[Store, Store]) -> None:
    alive = OutageQueue(stores[0], claimer="alive")
    gone = OutageQueue(stores[1], claimer="gone")
    me = OutageQueue(stores[1], claimer="me")
    for message_id in (20, 21, 22, 23):
        await alive.put(subject(message_id))
    await alive.claim(1)
    await gone.claim(2)
    await me.claim(1)
    assert await me.free_orphaned_claims(live={"alive", "me"}) == 2
    rows = await stores[0].fetchall("SELECT claimed_by FROM moderation_queue ORDER BY id")
    assert [r[0] for r in rows] == ["alive", None, None, "me"]
    assert await me.release_claims() == 1, "a clean shutdown gives back its own, and only its own"
    rows = await stores[0].fetchall("SELECT claimed_by FROM moderation_queue ORDER BY id")
    assert [r[0] for r in rows] == ["alive", None, None, None]


async def test_a_message_and_its_edit_flagged_in_two_processes_make_one_strike(
    stores: tuple[Store, Store],
) -> None:
    logs = ActionLog(stores[0]), ActionLog(stores[1])
    decision = Decision(["harassment"], {"harassment": 0.9}, "delete")
    for message_id in range(500, 540):
        results = await asyncio.gather(
            *(
                logs[n % 2].record(1, 2, message_id, 3, "message" if n < 2 else "edit", decision)
                for n in range(4)
            )
        )
        firsts = [repeat for _, repeat in results if not repeat]
        assert len(firsts) == 1, f"message {message_id}: {results}"
    row = await stores[0].fetchone("SELECT COUNT(*) FROM moderation_actions")
    assert row is not None and row[0] == 40 * 4
