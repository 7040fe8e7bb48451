"""/recall's search inside PostgreSQL with pgvector (an HNSW index, cosine distance), where the server has it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot import errors
from bot.storage.store import Store

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
# pgvector's HNSW index takes `vector` columns of at most 2,000 dimensions.
MAX_INDEXED_DIMENSIONS = 2000
# Rows given their pgvector copy per statement when an existing index is converted: each also goes into the
# HNSW graph (a few ms a row), well inside the pool's 60 s statement timeout.
FILL_ROWS = 500
# Candidates the index visits per search (pgvector's default is 40): room for the permission filter.
EF_SEARCH = 200
# pgvector 0.8 keeps scanning the index until enough rows pass the WHERE clause (iterative scans).
ITERATIVE_SCAN_SINCE = (0, 8, 0)


_NEAREST = (
    "SELECT message_id, embedding <=> ?::text::vector AS distance FROM recall_vectors "
    "WHERE guild_id = ? AND model = ? AND embedding IS NOT NULL "
    "AND (channel_id = ANY(?::bigint[]) OR parent_channel_id = ANY(?::bigint[])) "
    "ORDER BY distance LIMIT ?"
)


def literal(vector: np.ndarray | Sequence[float]) -> str:
    """A vector as pgvector's text input, `[x,y,...]` (sent as text and cast, so asyncpg needs no codec)."""
    return "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class PgVector:
    """The `embedding vector(N)` column beside `recall_vectors.vector` (the float32 blob stays the source
    of truth: it is what SQLite, the fallback search and `migrate-db` read) and its HNSW index.

    `ready()` answers once per process whether it can be used: PostgreSQL, the extension available (the
    capability check is `pg_available_extensions`) and created, and a fixed dimension the index takes.
    Anything else leaves the blob search in charge.
    """

    def __init__(self, store: Store, dimensions: int, *, wanted: bool = True) -> None:
        self.store = store
        self.dimensions = dimensions
        self.wanted = wanted
        self._ready: bool | None = None
        self._iterative = False
        self._preparing = asyncio.Lock()  # the first search and the first write may ask at once

    @property
    def active(self) -> bool:
        """Whether writes carry the pgvector copy (known after the first `ready()`)."""
        return bool(self._ready)

    async def ready(self) -> bool:
        if self._ready is None:
            async with self._preparing:
                if self._ready is None:
                    self._ready = await self._prepare()
        return self._ready

    async def _prepare(self) -> bool:
        if not self.wanted or self.store.dialect != "postgresql":
            return False
        if not 0 < self.dimensions <= MAX_INDEXED_DIMENSIONS:
            log.info(
                "recall: pgvector not used: EMBEDDING_DIMENSIONS must be 1-%d for its index",
                MAX_INDEXED_DIMENSIONS,
            )
            return False
        try:
            available = await self.store.fetchone(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            )
            if available is None:
                log.info("recall: the PostgreSQL server has no pgvector; searching float32 blobs instead")
                return False
            await self.store.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await self._column()
            row = await self.store.fetchone("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            self._iterative = row is not None and _version(str(row[0])) >= ITERATIVE_SCAN_SINCE
            await self._fill()
        except errors.StorageUnavailable as exc:
            # For example no right to CREATE EXTENSION: the blob search works without it.
            log.warning("recall: pgvector could not be set up (%s); searching float32 blobs instead", exc)
            return False
        log.info("recall: searching with pgvector (HNSW, cosine, %d dimensions)", self.dimensions)
        return True

    async def _column(self) -> None:
        """Add the typed column and its index; a column of another size (EMBEDDING_DIMENSIONS changed)
        is rebuilt, as the blob search ignores vectors of the other size."""
        wanted = f"vector({self.dimensions})"
        row = await self.store.fetchone(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = 'recall_vectors'::regclass AND a.attname = 'embedding' AND NOT a.attisdropped"
        )
        async with self.store.transaction() as db:
            # One process at a time changes the table: others wait here, then find it done.
            await db.execute("LOCK TABLE recall_vectors IN SHARE ROW EXCLUSIVE MODE")
            if row is not None and str(row[0]) != wanted:
                await db.execute("DROP INDEX IF EXISTS recall_embedding_hnsw")
                await db.execute("ALTER TABLE recall_vectors DROP COLUMN embedding")
            await db.execute(f"ALTER TABLE recall_vectors ADD COLUMN IF NOT EXISTS embedding {wanted}")
            await db.execute(
                "CREATE INDEX IF NOT EXISTS recall_embedding_hnsw ON recall_vectors "
                "USING hnsw (embedding vector_cosine_ops)"
            )

    async def _fill(self) -> None:
        """Give rows written without pgvector (before it was installed, or by the blob path) their copy."""
        import numpy as np

        filled = 0
        while True:
            rows = await self.store.fetchall(
                "SELECT message_id, vector FROM recall_vectors WHERE embedding IS NULL AND length(vector) = ? "
                "ORDER BY message_id LIMIT ?",
                (self.dimensions * 4, FILL_ROWS),
            )
            if not rows:
                break
            async with self.store.transaction() as db:
                await db.executemany(
                    "UPDATE recall_vectors SET embedding = ?::text::vector WHERE message_id = ?",
                    [(literal(np.frombuffer(bytes(r[1]), dtype="<f4")), int(r[0])) for r in rows],
                )
            filled += len(rows)
        if filled:
            log.info("recall: %d indexed messages copied into the pgvector column", filled)

    async def search(
        self, guild_id: int, model: str, query: np.ndarray, channel_ids: Sequence[int], limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` nearest rows (cosine) of the server among `channel_ids` or their threads, as
        (message id, cosine similarity), best first."""
        if len(query) != self.dimensions:
            return []
        channels = [int(c) for c in channel_ids]
        params = (literal(query), guild_id, model, channels, channels, limit)
        async with self.store.transaction() as db:
            await db.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, limit)}")
            if self._iterative:
                await db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = await (await db.execute(_NEAREST, params)).fetchall()
            if len(rows) < limit and not self._iterative:
                # Before pgvector 0.8 the index stops after ef_search candidates, which the server and
                # channel filter may mostly discard: a short answer is checked by an exact scan.
                await db.execute("SET LOCAL enable_indexscan = off")
                rows = await (await db.execute(_NEAREST, params)).fetchall()
        # relaxed_order may return neighbours slightly out of order: sort them again.
        return sorted(((int(r[0]), 1.0 - float(r[1])) for r in rows), key=lambda m: -m[1])
