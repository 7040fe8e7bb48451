"""The durable outage queue: channel messages seen while the Moderation endpoint fails, kept in SQLite."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store
from bot.util.metrics import Metrics

# How long a draining process owns the messages it claimed. Far longer than moderating a batch takes; a
# process that died holding a claim only delays its messages by this much, to whoever drains next.
CLAIM_SECONDS = 300.0

# Stored in moderation_actions.source: a live message, its edit, or one moderated late from the queue.
SubjectKind = Literal["message", "thread"]
Source = Literal["message", "edit", "queue", "catch-up", "backfill"]


@dataclass(frozen=True)
class MessageSubject:
    """A channel message as moderation needs it: plain data, so it can wait in SQLite across restarts."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    text: str = ""
    image_urls: tuple[str, ...] = ()
    role_ids: tuple[int, ...] = ()
    parent_channel_id: int | None = None  # a thread's or forum post's channel, for exemptions
    author_is_bot: bool = False
    source: Source = "message"
    # What the text belongs to: a message (its content, file names, embeds and poll), or a thread or
    # forum post (its name; message_id and channel_id are then the thread's own id).
    kind: SubjectKind = "message"
    jump_url: str = ""
    created_at: float = field(default_factory=time.time)

    @property
    def channel_ids(self) -> tuple[int, ...]:
        if self.parent_channel_id is None:
            return (self.channel_id,)
        return (self.channel_id, self.parent_channel_id)

    @property
    def is_thread(self) -> bool:
        return self.kind == "thread"

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.image_urls

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> MessageSubject:
        data = json.loads(raw)
        data["image_urls"] = tuple(data.get("image_urls") or ())
        data["role_ids"] = tuple(int(r) for r in data.get("role_ids") or ())
        return cls(**data)


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    subject: MessageSubject
    attempts: int


class OutageQueue(DataOwner):
    """FIFO in the database. Rows leave only after their message was moderated (or can never be).

    Several processes may drain it: each takes a batch with `claim`, which marks the rows as its own until
    the claim expires, so no message is judged by two of them and none is skipped.
    """

    owned_tables = (
        TablePolicy(
            "moderation_queue",
            "channel messages (text, author) waiting for moderation during an outage",
            Fate.KEPT,
            Retention.UNTIL_MODERATED,
            "a message posted during an outage must still be moderated; the drain deletes it once judged",
        ),
    )

    def __init__(
        self,
        store: Store,
        metrics: Metrics | None = None,
        *,
        claimer: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.claimer = claimer  # this process among the drainers (bot/storage/leases.py: process_name)
        self.clock = clock

    async def put(self, subject: MessageSubject) -> None:
        await self.store.execute(
            "INSERT INTO moderation_queue (guild_id, channel_id, message_id, subject, enqueued_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (subject.guild_id, subject.channel_id, subject.message_id, subject.to_json(), time.time()),
        )
        await self.observe()

    async def observe(self) -> None:
        """Export the queue's depth and oldest entry (only while someone collects metrics)."""
        if self.metrics is None:
            return
        row = await self.store.fetchone("SELECT COUNT(*), MIN(enqueued_at) FROM moderation_queue")
        depth, oldest = (int(row[0]), row[1]) if row is not None else (0, None)
        self.metrics.outage_queue(depth, float(oldest) if oldest is not None else None)

    async def peek(self, limit: int) -> list[QueuedMessage]:
        rows = await self.store.fetchall(
            "SELECT id, subject, attempts FROM moderation_queue ORDER BY id LIMIT ?", (limit,)
        )
        return [
            QueuedMessage(int(r["id"]), MessageSubject.from_json(str(r["subject"])), int(r["attempts"]))
            for r in rows
        ]

    async def claim(self, limit: int, seconds: float = CLAIM_SECONDS) -> list[QueuedMessage]:
        """The oldest `limit` rows nobody holds (unclaimed, or their claim expired), now this process's.

        One UPDATE: its subquery picks candidates, and the outer condition is checked again on each row as
        it is locked. Under PostgreSQL's READ COMMITTED a row another drainer claimed meanwhile fails that
        re-check and is left out, so two drainers never share a row; SQLite runs one writer at a time."""
        now = self.clock()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "UPDATE moderation_queue SET claimed_by = ?, claimed_until = ? "
                "WHERE id IN (SELECT id FROM moderation_queue WHERE claimed_until IS NULL OR claimed_until <= ? "
                "ORDER BY id LIMIT ?) AND (claimed_until IS NULL OR claimed_until <= ?) "
                "RETURNING id, subject, attempts",
                (self.claimer, now + seconds, now, limit, now),
            )
            rows = await cursor.fetchall()
        return sorted(
            (
                QueuedMessage(int(r["id"]), MessageSubject.from_json(str(r["subject"])), int(r["attempts"]))
                for r in rows
            ),
            key=lambda item: item.id,
        )

    async def unclaim(self, ids: list[int]) -> None:
        """Give claimed rows back (a drain that failed half-way), for the next drain to take at once."""
        if not ids:
            return
        async with self.store.transaction() as db:
            await db.executemany(
                "UPDATE moderation_queue SET claimed_by = NULL, claimed_until = NULL "
                "WHERE id = ? AND claimed_by = ?",
                [(i, self.claimer) for i in ids],
            )

    async def release_claims(self) -> int:
        """Give back every row this process claimed (a clean shutdown, wherever it interrupted a drain), so the
        next drainer takes them at once instead of after the claim runs out."""
        return await self._give_back(self.claimer)

    async def _give_back(self, claimer: str) -> int:
        return await self.store.execute(
            "UPDATE moderation_queue SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
            (claimer,),
        )

    async def free_orphaned_claims(self, live: set[str]) -> int:
        """Give back the rows claimed by processes that are no longer alive (`live`: the holders of every live
        process, this one included): a crash or kill -9 mid-drain delays its messages only until the next
        drainer starts or takes the drain over, not for the whole claim."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT claimed_by FROM moderation_queue WHERE claimed_by IS NOT NULL"
        )
        freed = 0
        for claimer in {str(r[0]) for r in rows} - live - {self.claimer}:
            freed += await self._give_back(claimer)
        return freed

    async def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self.store.transaction() as db:
            await db.executemany("DELETE FROM moderation_queue WHERE id = ?", [(i,) for i in ids])
        await self.observe()

    async def bump_attempts(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self.store.transaction() as db:
            # Given back too: the next drain tries them again without waiting for the claim to expire.
            await db.executemany(
                "UPDATE moderation_queue SET attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL "
                "WHERE id = ?",
                [(i,) for i in ids],
            )

    async def holding(self, message_ids: Sequence[int]) -> set[int]:
        """Of `message_ids`, those waiting in the queue (the drainer will moderate them)."""
        found: set[int] = set()
        for start in range(0, len(message_ids), 500):
            chunk = list(message_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self.store.fetchall(
                f"SELECT message_id FROM moderation_queue WHERE message_id IN ({marks})",  # noqa: S608
                tuple(chunk),
            )
            found.update(int(r["message_id"]) for r in rows)
        return found

    async def count(self, guild_id: int | None = None) -> int:
        if guild_id is None:
            row = await self.store.fetchone("SELECT COUNT(*) FROM moderation_queue")
        else:
            row = await self.store.fetchone(
                "SELECT COUNT(*) FROM moderation_queue WHERE guild_id = ?", (guild_id,)
            )
        return int(row[0]) if row else 0

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        row = await self.store.fetchone(
            f"SELECT COUNT(*) FROM moderation_queue WHERE {where} "  # noqa: S608
            "AND CAST(json_extract(subject, '$.author_id') AS BIGINT) = ?",
            (*params, user_id),
        )
        return (
            Effect(
                "moderation_queue", Fate.KEPT, int(row[0]) if row else 0, "message waiting for moderation"
            ),
        )

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        # A message the endpoint could not judge for the whole moderation retention is past acting on.
        cutoff = cutoffs.get(Retention.MODERATION)
        if cutoff is None:
            return ()
        deleted = await self.store.execute("DELETE FROM moderation_queue WHERE enqueued_at < ?", (cutoff,))
        return (Effect("moderation_queue", Fate.DELETED, deleted, "message waiting for moderation"),)
