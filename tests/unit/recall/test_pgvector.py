"""/recall's two search paths on one index: pgvector (PostgreSQL with the extension) and the float32 blob
search every backend has; the capability check picks, and both rank the same messages first."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from bot.recall.index import Document, RecallIndex
from bot.storage.store import Store, open_store
from tests.support.database import database_url, on_postgres

GUILD, OTHER_GUILD, DIMS, MODEL = 7, 8, 64, "text-embedding-3-small"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(database_url(tmp_path))
    try:
        yield opened
    finally:
        await opened.close()


async def has_pgvector(store: Store) -> bool:
    return await store.fetchone("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'") is not None


def documents(rng: random.Random, count: int, guild: int = GUILD) -> list[Document]:
    return [
        Document(
            message_id=(1 << 40) + guild * 100_000 + n,
            guild_id=guild,
            channel_id=100 + rng.randrange(6),
            author_id=5,
            text=f"message {n}",
            parent_channel_id=0 if n % 5 else 100,  # some are in threads of channel 100
        )
        for n in range(count)
    ]


def unit_rows(seed: int, count: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((count, DIMS)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def test_the_blob_search_is_used_where_pgvector_is_not(store: Store) -> None:
    # Where the server has pgvector, RECALL_PGVECTOR=false is the way to the blob search.
    wanted = not (on_postgres() and await has_pgvector(store))
    index = RecallIndex(store, MODEL, dimensions=DIMS, pgvector=wanted)
    await index.add(documents(random.Random(1), 10), unit_rows(1, 10))
    assert not await index.pg.ready()
    assert "embedding" not in await store.columns("recall_vectors")
    query = unit_rows(1, 10)[3]
    [best, *_] = await index.search(GUILD, query, range(100, 106), limit=3)
    assert best.message_id == (1 << 40) + GUILD * 100_000 + 3


@pytest.mark.postgresql_only("pgvector is a PostgreSQL extension")
async def test_pgvector_and_the_blob_search_rank_the_same_messages_first(store: Store) -> None:
    if not await has_pgvector(store):
        pytest.skip("this PostgreSQL server has no pgvector extension (pg_available_extensions)")
    rng = random.Random(2)
    blobs_only = RecallIndex(store, MODEL, dimensions=DIMS, pgvector=False)
    # Rows written before pgvector was set up get their copy when it is.
    early = documents(rng, 500)
    await blobs_only.add(early, unit_rows(2, 500))
    index = RecallIndex(store, MODEL, dimensions=DIMS)
    assert await index.pg.ready()
    later = documents(rng, 1500)[500:]
    await index.add(later, unit_rows(3, 1500)[500:])
    await index.add(documents(rng, 300, OTHER_GUILD), unit_rows(4, 300))
    missing = await store.fetchone("SELECT COUNT(*) FROM recall_vectors WHERE embedding IS NULL")
    assert missing is not None and missing[0] == 0

    where = {d.message_id: {d.channel_id, d.parent_channel_id} for d in early + later}
    visible = [100, 101, 102]  # a member who cannot read channels 103-105 (threads of 100 are visible)
    hits = total = 0
    for query in unit_rows(5, 20):
        expected = [m.message_id for m in await blobs_only.search(GUILD, query, visible, limit=5)]
        found = await index.search(GUILD, query, visible, limit=5)
        assert all(where[m.message_id] & set(visible) for m in found)
        assert [m.message_id for m in found][0] == expected[0]
        hits += len(set(expected) & {m.message_id for m in found})
        total += len(expected)
    # HNSW is approximate: nearly every exact top-5 neighbour is found.
    assert hits / total >= 0.9


@pytest.mark.postgresql_only("pgvector is a PostgreSQL extension")
async def test_deletions_leave_pgvector_results_too(store: Store) -> None:
    if not await has_pgvector(store):
        pytest.skip("this PostgreSQL server has no pgvector extension (pg_available_extensions)")
    index = RecallIndex(store, MODEL, dimensions=DIMS)
    docs = documents(random.Random(3), 50)
    rows = unit_rows(6, 50)
    await index.add(docs, rows)
    target = docs[7]
    [best, *_] = await index.search(GUILD, rows[7], range(100, 106), limit=3)
    assert best.message_id == target.message_id
    await index.delete_messages([target.message_id])
    assert target.message_id not in {
        m.message_id for m in await index.search(GUILD, rows[7], range(100, 106))
    }
    await index.delete_channel(target.channel_id)
    left = await index.search(GUILD, rows[7], range(100, 106), limit=50)
    assert left and all(target.channel_id not in (m.channel_id,) for m in left)


@pytest.mark.postgresql_only("pgvector is a PostgreSQL extension")
async def test_a_changed_dimension_rebuilds_the_pgvector_column(store: Store) -> None:
    if not await has_pgvector(store):
        pytest.skip("this PostgreSQL server has no pgvector extension (pg_available_extensions)")
    first = RecallIndex(store, MODEL, dimensions=DIMS)
    await first.add(documents(random.Random(4), 5), unit_rows(7, 5))
    second = RecallIndex(store, MODEL, dimensions=32)
    assert await second.pg.ready()
    kind = await store.fetchone(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'recall_vectors'::regclass AND attname = 'embedding'"
    )
    assert kind is not None and kind[0] == "vector(32)"
    # The 64-float vectors are not searched with a 32-float query, as in the blob search.
    assert await second.search(GUILD, unit_rows(8, 1)[0][:32], range(100, 106)) == []
