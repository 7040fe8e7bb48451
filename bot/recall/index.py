"""Message embeddings in SQLite (float32 blobs) and their search by cosine similarity with numpy."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.recall.pgvector import PgVector, literal
from bot.storage.store import Store

if TYPE_CHECKING:  # numpy is imported where vectors are used, so an idle bot does not carry it
    import numpy as np

DISCORD_EPOCH = 1420070400.0
EXCERPT_CHARS = 1000  # stored: enough for /ask's quoted context; results show less
# Servers whose vectors stay in memory between searches, least recently searched dropped first, within a
# total number of vectors (512 floats each: 100,000 vectors are 200 MiB).
CACHED_VECTORS = 200_000
SCAN_ROWS = 20_000  # a server too big for the cache is searched in chunks of this many rows


def created_at(message_id: int) -> float:
    """When a Discord message (a snowflake) was made, in Unix seconds."""
    return DISCORD_EPOCH + (message_id >> 22) / 1000


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


@dataclass(frozen=True)
class Document:
    """One message to index, as plain data."""

    message_id: int
    guild_id: int
    channel_id: int
    author_id: int
    text: str
    author_name: str = ""
    parent_channel_id: int = 0

    @property
    def created_at(self) -> float:
        return created_at(self.message_id)


@dataclass(frozen=True)
class Match:
    """A search result: the message, where it is and how close it is to the query (cosine, -1..1)."""

    message_id: int
    guild_id: int
    channel_id: int
    author_id: int
    author_name: str
    created_at: float
    excerpt: str
    score: float

    @property
    def jump_url(self) -> str:
        return jump_url(self.guild_id, self.channel_id, self.message_id)


@dataclass
class _Matrix:
    """One server's vectors in memory; appended rows wait in `pending` until the next search."""

    ids: np.ndarray
    channels: np.ndarray
    parents: np.ndarray
    vectors: np.ndarray
    pending: list[tuple[int, int, int, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids) + len(self.pending)

    def settle(self) -> None:
        import numpy as np

        if not self.pending:
            return
        dims = self.vectors.shape[1]
        fresh = [row for row in self.pending if len(row[3]) == dims * 4]
        self.pending = []
        # A re-indexed (edited) message replaces its old row.
        stale = np.isin(self.ids, [row[0] for row in fresh])
        keep = ~stale
        self.ids = np.concatenate([self.ids[keep], np.array([r[0] for r in fresh], dtype=np.int64)])
        self.channels = np.concatenate([self.channels[keep], np.array([r[1] for r in fresh], dtype=np.int64)])
        self.parents = np.concatenate([self.parents[keep], np.array([r[2] for r in fresh], dtype=np.int64)])
        added = np.frombuffer(b"".join(r[3] for r in fresh), dtype="<f4").reshape(len(fresh), dims)
        self.vectors = np.vstack([self.vectors[keep], added])

    def remove(self, message_ids: Sequence[int]) -> None:
        import numpy as np

        self.settle()
        keep = ~np.isin(self.ids, np.asarray(message_ids, dtype=np.int64))
        self.ids, self.channels, self.parents = self.ids[keep], self.channels[keep], self.parents[keep]
        self.vectors = self.vectors[keep]


_UPSERT_VECTOR = (
    "INSERT INTO recall_vectors (message_id, guild_id, channel_id, parent_channel_id, "
    "author_id, author_name, created_at, excerpt, model, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (message_id) DO UPDATE SET guild_id = excluded.guild_id, "
    "channel_id = excluded.channel_id, parent_channel_id = excluded.parent_channel_id, "
    "author_id = excluded.author_id, author_name = excluded.author_name, "
    "created_at = excluded.created_at, excerpt = excluded.excerpt, model = excluded.model, "
    "vector = excluded.vector"
)
_UPSERT_VECTOR_AND_EMBEDDING = (
    "INSERT INTO recall_vectors (message_id, guild_id, channel_id, parent_channel_id, "
    "author_id, author_name, created_at, excerpt, model, vector, embedding) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::text::vector) "
    "ON CONFLICT (message_id) DO UPDATE SET guild_id = excluded.guild_id, "
    "channel_id = excluded.channel_id, parent_channel_id = excluded.parent_channel_id, "
    "author_id = excluded.author_id, author_name = excluded.author_name, "
    "created_at = excluded.created_at, excerpt = excluded.excerpt, model = excluded.model, "
    "vector = excluded.vector, embedding = excluded.embedding"
)


def _top(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the `limit` highest scores, best first, without sorting the whole array."""
    import numpy as np

    if len(scores) <= limit:
        return np.argsort(-scores)
    best = np.argpartition(-scores, limit - 1)[:limit]
    return best[np.argsort(-scores[best])]


class RecallIndex(DataOwner):
    """The `recall_servers`, `recall_vectors` and `recall_pending` tables. Every write and delete keeps the
    cache true."""

    owned_tables = (
        TablePolicy(
            "recall_vectors",
            "members' messages (an excerpt, author, time) and their embeddings, for /recall",
            Fate.DELETED,
            Retention.CONVERSATION,
        ),
        TablePolicy(
            "recall_pending",
            "members' messages waiting for a failed embedding request to be retried, for /recall",
            Fate.DELETED,
            Retention.CONVERSATION,
        ),
        TablePolicy(
            "recall_servers",
            "servers with /recall on and who turned it on",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(
        self,
        store: Store,
        model: str,
        *,
        dimensions: int = 0,
        pgvector: bool = True,
        cached_vectors: int = CACHED_VECTORS,
    ) -> None:
        self.store = store
        self.model = model
        # On PostgreSQL with the extension, search runs in the database (bot/recall/pgvector.py).
        self.pg = PgVector(store, dimensions, wanted=pgvector)
        self.cached_vectors = cached_vectors
        self._cache: OrderedDict[int, _Matrix] = OrderedDict()
        self._enabled: dict[int, bool] = {}
        # Bumped by every write and delete: a load that overlapped one is used once, not cached.
        self._writes = 0

    # -- servers ------------------------------------------------------------------------------------

    def known_off(self, guild_id: int | None) -> bool:
        """Whether `enabled` already read that recall is off in this server (no database trip needed)."""
        return self._enabled.get(guild_id or 0) is False

    async def enabled(self, guild_id: int) -> bool:
        if guild_id not in self._enabled:
            row = await self.store.fetchone("SELECT 1 FROM recall_servers WHERE guild_id = ?", (guild_id,))
            self._enabled[guild_id] = row is not None
        return self._enabled[guild_id]

    async def enable(self, guild_id: int, user_id: int) -> bool:
        """Turn recall on; False when it already was."""
        was_on = await self.enabled(guild_id)
        await self.store.execute(
            "INSERT INTO recall_servers (guild_id, enabled_by, enabled_at) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id) DO NOTHING",
            (guild_id, user_id, time.time()),
        )
        self._enabled[guild_id] = True
        return not was_on

    async def disable(self, guild_id: int) -> int:
        """Turn recall off and delete the server's vectors; returns how many were deleted."""
        async with self.store.transaction() as db:
            await db.execute("DELETE FROM recall_servers WHERE guild_id = ?", (guild_id,))
            cursor = await db.execute("DELETE FROM recall_vectors WHERE guild_id = ?", (guild_id,))
            deleted = cursor.rowcount
            await db.execute("DELETE FROM recall_pending WHERE guild_id = ?", (guild_id,))
        self._enabled[guild_id] = False
        self._cache.pop(guild_id, None)
        return deleted

    # -- writes ---------------------------------------------------------------------------------------

    async def add(
        self, documents: Sequence[Document], vectors: np.ndarray, *, retried: Iterable[int] = ()
    ) -> int:
        """Store `documents` with their (unit-length, float32) vectors; a message indexed again is replaced.

        Their rows in `recall_pending` go in the same transaction. A `retried` message (taken from that
        table) is stored only if its row is still there: deleted or forgotten meanwhile, it stays gone.
        Returns how many were stored.
        """
        import numpy as np

        retried_ids = set(retried)
        ids = [d.message_id for d in documents]
        with_embedding = await self.pg.ready()  # before the transaction: the first call may set it up
        async with self.store.transaction() as db:
            waiting: set[int] = set()
            if ids:
                marks = ", ".join("?" for _ in ids)
                cursor = await db.execute(
                    f"DELETE FROM recall_pending WHERE message_id IN ({marks}) RETURNING message_id",  # noqa: S608
                    ids,
                )
                waiting = {int(r[0]) for r in await cursor.fetchall()}
            keep = [
                i
                for i, d in enumerate(documents)
                if d.message_id not in retried_ids or d.message_id in waiting
            ]
            documents = [documents[i] for i in keep]
            vectors = vectors[keep]
            if documents:
                if with_embedding:
                    rows = [
                        (*row, literal(v))
                        for row, v in zip(self._rows(documents, vectors), vectors, strict=True)
                    ]
                    await db.executemany(_UPSERT_VECTOR_AND_EMBEDDING, rows)
                else:
                    await db.executemany(_UPSERT_VECTOR, self._rows(documents, vectors))
        self._writes += 1
        for d, row in zip(documents, vectors, strict=True):
            cached = self._cache.get(d.guild_id)
            if cached is not None:
                blob = np.ascontiguousarray(row, dtype="<f4").tobytes()
                cached.pending.append((d.message_id, d.channel_id, d.parent_channel_id, blob))
        return len(documents)

    def _rows(self, documents: Sequence[Document], vectors: np.ndarray) -> list[tuple[Any, ...]]:
        import numpy as np

        blobs = [np.ascontiguousarray(row, dtype="<f4").tobytes() for row in vectors]
        rows = [
            (
                d.message_id,
                d.guild_id,
                d.channel_id,
                d.parent_channel_id,
                d.author_id,
                d.author_name,
                d.created_at,
                d.text[:EXCERPT_CHARS],
                self.model,
                blob,
            )
            for d, blob in zip(documents, blobs, strict=True)
        ]
        return rows

    # -- messages waiting for a retry -----------------------------------------------------------------

    async def park(
        self, entries: Sequence[tuple[Document, int, float]], *, retried: Iterable[int] = ()
    ) -> None:
        """Keep messages whose embedding request failed: (message, failures so far, when to retry).

        A `retried` message (taken from the table) is only rescheduled if its row is still there: one
        forgotten or deleted while its request was in flight is not brought back.
        """
        again = set(retried)
        updates = [
            (attempts, retry_at, d.message_id) for d, attempts, retry_at in entries if d.message_id in again
        ]
        entries = [e for e in entries if e[0].message_id not in again]
        rows = [
            (
                d.message_id,
                d.guild_id,
                d.channel_id,
                d.parent_channel_id,
                d.author_id,
                d.author_name,
                d.created_at,
                d.text,
                attempts,
                retry_at,
            )
            for d, attempts, retry_at in entries
        ]
        async with self.store.transaction() as db:
            if updates:
                await db.executemany(
                    "UPDATE recall_pending SET attempts = ?, next_attempt_at = ? WHERE message_id = ?",
                    updates,
                )
            if not rows:
                return
            await db.executemany(
                "INSERT INTO recall_pending (message_id, guild_id, channel_id, parent_channel_id, author_id, "
                "author_name, created_at, text, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id) DO UPDATE SET text = excluded.text, "
                "author_name = excluded.author_name, attempts = excluded.attempts, "
                "next_attempt_at = excluded.next_attempt_at",
                rows,
            )

    async def due(self, now: float, limit: int) -> list[tuple[Document, int]]:
        """Parked messages whose retry time has come, oldest retry first, with their failures so far."""
        rows = await self.store.fetchall(
            "SELECT message_id, guild_id, channel_id, parent_channel_id, author_id, author_name, text, "
            "attempts FROM recall_pending WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        )
        return [
            (
                Document(
                    message_id=int(r[0]),
                    guild_id=int(r[1]),
                    channel_id=int(r[2]),
                    parent_channel_id=int(r[3]),
                    author_id=int(r[4]),
                    author_name=str(r[5]),
                    text=str(r[6]),
                ),
                int(r[7]),
            )
            for r in rows
        ]

    async def next_retry(self) -> float | None:
        """When the earliest parked message is due, or None when none waits."""
        row = await self.store.fetchone("SELECT MIN(next_attempt_at) FROM recall_pending")
        return None if row is None or row[0] is None else float(row[0])

    async def unpark(self, message_ids: Iterable[int]) -> int:
        ids = list(message_ids)
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        return await self.store.execute(
            f"DELETE FROM recall_pending WHERE message_id IN ({marks})",  # noqa: S608
            ids,
        )

    async def parked(self, guild_id: int | None = None) -> int:
        where, params = guild_clause(guild_id)
        row = await self.store.fetchone(f"SELECT COUNT(*) FROM recall_pending WHERE {where}", params)  # noqa: S608
        return int(row[0]) if row else 0

    async def delete_messages(self, message_ids: Iterable[int]) -> int:
        ids = list(message_ids)
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        async with self.store.transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM recall_vectors WHERE message_id IN ({marks})",  # noqa: S608
                ids,
            )
            deleted = cursor.rowcount
            await db.execute(f"DELETE FROM recall_pending WHERE message_id IN ({marks})", ids)  # noqa: S608
        self._writes += 1
        if deleted:
            for matrix in self._cache.values():
                matrix.remove(ids)
        return deleted

    async def delete_channel(self, channel_id: int) -> int:
        """Delete a channel's (or thread's) vectors and parked messages, with its threads'; returns how many
        vectors went."""
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM recall_vectors WHERE channel_id = ? OR parent_channel_id = ?",
                (channel_id, channel_id),
            )
            deleted = cursor.rowcount
            await db.execute(
                "DELETE FROM recall_pending WHERE channel_id = ? OR parent_channel_id = ?",
                (channel_id, channel_id),
            )
        self._forget_cache()
        return deleted

    # -- search ---------------------------------------------------------------------------------------

    async def channels(self, guild_id: int) -> set[tuple[int, int]]:
        """Each (channel, its parent or 0) holding indexed messages: the caller decides which are visible."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT channel_id, parent_channel_id FROM recall_vectors WHERE guild_id = ? AND model = ?",
            (guild_id, self.model),
        )
        return {(int(r[0]), int(r[1])) for r in rows}

    async def count(self, guild_id: int | None = None) -> int:
        where, params = guild_clause(guild_id)
        row = await self.store.fetchone(f"SELECT COUNT(*) FROM recall_vectors WHERE {where}", params)  # noqa: S608
        return int(row[0]) if row else 0

    async def search(
        self,
        guild_id: int,
        query: Sequence[float] | np.ndarray,
        channel_ids: Iterable[int],
        *,
        limit: int = 5,
        min_score: float = -1.0,
        exclude_texts: Iterable[str] = (),
    ) -> list[Match]:
        """The messages closest to `query` among those in `channel_ids` (or threads of them)."""
        import numpy as np

        allowed = np.fromiter(set(channel_ids), dtype=np.int64)
        if not len(allowed):
            return []
        q = np.asarray(query, dtype=np.float32)
        if await self.pg.ready():
            candidates = await self.pg.search(guild_id, self.model, q, allowed.tolist(), limit * 2 + 8)
            return await self._matches(candidates, limit, min_score, set(exclude_texts))
        matrix = await self._matrix(guild_id)
        if matrix is not None:
            candidates = self._best(matrix, q, allowed, limit * 2 + 8)
        else:
            candidates = await self._scan(guild_id, q, allowed, limit * 2 + 8)
        return await self._matches(candidates, limit, min_score, set(exclude_texts))

    @staticmethod
    def _best(matrix: _Matrix, q: np.ndarray, allowed: np.ndarray, limit: int) -> list[tuple[int, float]]:
        import numpy as np

        if len(matrix.ids) == 0 or matrix.vectors.shape[1] != len(q):
            return []
        scores = matrix.vectors @ q
        visible = np.isin(matrix.channels, allowed) | np.isin(matrix.parents, allowed)
        scores = np.where(visible, scores, -np.inf)
        best = _top(scores, limit)
        return [(int(matrix.ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]

    async def _matrix(self, guild_id: int) -> _Matrix | None:
        """The server's vectors from the cache, loaded on a miss; None when too many to cache."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            self._cache.move_to_end(guild_id)
            cached.settle()
            return cached
        size = await self.count(guild_id)
        if size > self.cached_vectors:
            return None
        writes = self._writes
        matrix = await self._load(guild_id, None, None)
        if writes != self._writes:
            return matrix
        self._cache[guild_id] = matrix
        while sum(len(m) for m in self._cache.values()) > self.cached_vectors and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return matrix

    async def _load(self, guild_id: int, after: int | None, rows: int | None) -> _Matrix:
        import numpy as np

        sql = (
            "SELECT message_id, channel_id, parent_channel_id, vector FROM recall_vectors "
            "WHERE guild_id = ? AND model = ?"
        )
        params: list[Any] = [guild_id, self.model]
        if after is not None:
            sql += " AND message_id > ? ORDER BY message_id LIMIT ?"
            params += [after, rows]
        fetched = await self.store.fetchall(sql, params)
        dims = max((len(r[3]) // 4 for r in fetched), default=0)
        fetched = [r for r in fetched if len(r[3]) == dims * 4]
        return _Matrix(
            ids=np.fromiter((r[0] for r in fetched), dtype=np.int64, count=len(fetched)),
            channels=np.fromiter((r[1] for r in fetched), dtype=np.int64, count=len(fetched)),
            parents=np.fromiter((r[2] for r in fetched), dtype=np.int64, count=len(fetched)),
            vectors=np.frombuffer(b"".join(r[3] for r in fetched), dtype="<f4").reshape(len(fetched), dims),
        )

    async def _scan(
        self, guild_id: int, q: np.ndarray, allowed: np.ndarray, limit: int
    ) -> list[tuple[int, float]]:
        """Search straight from the database in chunks (a server too big for the cache)."""
        best: list[tuple[int, float]] = []
        after = -1
        while True:
            chunk = await self._load(guild_id, after, SCAN_ROWS)
            if len(chunk.ids) == 0:
                break
            best = sorted(best + self._best(chunk, q, allowed, limit), key=lambda m: -m[1])[:limit]
            after = int(chunk.ids[-1])
        return best

    async def _matches(
        self, candidates: list[tuple[int, float]], limit: int, min_score: float, exclude: set[str]
    ) -> list[Match]:
        candidates = [c for c in candidates if c[1] >= min_score]
        if not candidates:
            return []
        marks = ", ".join("?" for _ in candidates)
        rows = await self.store.fetchall(
            "SELECT message_id, guild_id, channel_id, author_id, author_name, created_at, excerpt "  # noqa: S608
            f"FROM recall_vectors WHERE message_id IN ({marks})",
            [c[0] for c in candidates],
        )
        by_id = {int(r[0]): r for r in rows}
        matches: list[Match] = []
        for message_id, score in candidates:
            row = by_id.get(message_id)
            if row is None or str(row[6]) in exclude:
                continue  # deleted since the cache was read, or already in the caller's context
            matches.append(
                Match(
                    message_id,
                    int(row[1]),
                    int(row[2]),
                    int(row[3]),
                    str(row[4]),
                    float(row[5]),
                    str(row[6]),
                    score,
                )
            )
            if len(matches) >= limit:
                break
        return matches

    def _forget_cache(self) -> None:
        self._writes += 1
        self._cache.clear()

    def memory_bytes(self) -> int:
        """What the cache holds, for the benchmark."""
        return sum(m.vectors.nbytes + m.ids.nbytes * 3 for m in self._cache.values())

    # -- privacy --------------------------------------------------------------------------------------

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        async with self.store.transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM recall_vectors WHERE {where} AND author_id = ?",  # noqa: S608
                (*params, user_id),
            )
            deleted = cursor.rowcount
            cursor = await db.execute(
                f"DELETE FROM recall_pending WHERE {where} AND author_id = ?",  # noqa: S608
                (*params, user_id),
            )
            deleted += cursor.rowcount
            cursor = await db.execute(
                f"UPDATE recall_servers SET enabled_by = 0 WHERE {where} AND enabled_by = ?",  # noqa: S608
                (*params, user_id),
            )
            renamed = cursor.rowcount
        if deleted:
            self._forget_cache()
        return (
            Effect("recall_vectors", Fate.DELETED, deleted, "searchable message"),
            Effect("recall_servers", Fate.PSEUDONYMISED, renamed, "server setting you changed"),
        )

    async def forget_channel_data(self, channel_id: int) -> Sequence[Effect]:
        deleted = await self.delete_channel(channel_id)
        return (Effect("recall_vectors", Fate.DELETED, deleted, "searchable message"),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.CONVERSATION)
        if cutoff is None:
            return ()
        async with self.store.transaction() as db:
            cursor = await db.execute("DELETE FROM recall_vectors WHERE created_at < ?", (cutoff,))
            deleted = cursor.rowcount
            cursor = await db.execute("DELETE FROM recall_pending WHERE created_at < ?", (cutoff,))
            deleted += cursor.rowcount
        if deleted:
            self._forget_cache()
        return (Effect("recall_vectors", Fate.DELETED, deleted, "searchable message"),)
