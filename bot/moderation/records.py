"""The record of every moderation action, in SQLite: what was flagged, what was done, what was reviewed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from bot.moderation.policy import Action, Decision
from bot.moderation.queue import Source
from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store

# Why moderation data outlives /forget me (docs/privacy.md); MODERATION_RETENTION_DAYS bounds it instead.
KEPT_FOR_SAFETY = (
    "so /forget me cannot undo moderation: strikes still escalate, and moderators can review what was done"
)


@dataclass(frozen=True)
class ActionRecord:
    id: int
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    source: Source
    categories: list[str]
    scores: dict[str, float]
    action: Action
    deleted: bool
    warned: str
    timed_out: float
    false_positive: bool


class ActionLog(DataOwner):
    owned_tables = (
        TablePolicy(
            "moderation_actions",
            "flagged messages' authors, categories, scores and the action taken (no message text)",
            Fate.KEPT,
            Retention.MODERATION,
            KEPT_FOR_SAFETY,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self,
        guild_id: int,
        channel_id: int,
        message_id: int,
        author_id: int,
        source: Source,
        decision: Decision,
    ) -> tuple[int, bool]:
        """The new action's id, and whether the message already had a non-log action (its edit, judged
        alongside it): checked in the same write transaction, so two concurrent verdicts cannot both miss.

        The transaction is locked on the message id: SQLite's BEGIN IMMEDIATE serialises it anyway, and on
        PostgreSQL (READ COMMITTED) the advisory lock makes verdicts of one message take turns in every
        process sharing the database, so the second always sees the first's row."""
        async with self.store.transaction(lock_key=message_id) as db:
            cursor = await db.execute(
                "SELECT 1 FROM moderation_actions WHERE message_id = ? AND action != 'log' LIMIT 1",
                (message_id,),
            )
            repeat = await cursor.fetchone() is not None
            cursor = await db.execute(
                "INSERT INTO moderation_actions (guild_id, channel_id, message_id, author_id, source, "
                "categories, scores, action, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    guild_id,
                    channel_id,
                    message_id,
                    author_id,
                    source,
                    json.dumps(decision.categories),
                    json.dumps(decision.scores, sort_keys=True),
                    decision.action,
                    time.time(),
                ),
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0, repeat

    async def recorded(self, message_ids: Sequence[int]) -> dict[int, bool]:
        """Of `message_ids`, those with an action on record: {message_id: still counts as flagged}
        (False once every one of its records was marked a false positive)."""
        found: dict[int, bool] = {}
        for start in range(0, len(message_ids), 500):
            chunk = list(message_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self.store.fetchall(
                f"SELECT message_id, MIN(false_positive) AS cleared FROM moderation_actions "  # noqa: S608
                f"WHERE message_id IN ({marks}) GROUP BY message_id",
                tuple(chunk),
            )
            found.update({int(r["message_id"]): not bool(r["cleared"]) for r in rows})
        return found

    async def set_effects(self, action_id: int, *, deleted: bool, warned: str, timed_out: float) -> None:
        await self.store.execute(
            "UPDATE moderation_actions SET deleted = ?, warned = ?, timed_out = ? WHERE id = ?",
            (int(deleted), warned, timed_out, action_id),
        )

    async def add_timeout(self, action_id: int, seconds: float) -> None:
        await self.store.execute(
            "UPDATE moderation_actions SET timed_out = ? WHERE id = ?", (seconds, action_id)
        )

    async def mark_false_positive(self, action_id: int, reviewer_id: int) -> bool:
        """True when this call marked it (False if it already was, or does not exist)."""
        changed = await self.store.execute(
            "UPDATE moderation_actions SET false_positive = 1, reviewed_by = ? "
            "WHERE id = ? AND false_positive = 0",
            (reviewer_id, action_id),
        )
        return changed > 0

    async def get(self, action_id: int) -> ActionRecord | None:
        row = await self.store.fetchone("SELECT * FROM moderation_actions WHERE id = ?", (action_id,))
        if row is None:
            return None
        return ActionRecord(
            id=int(row["id"]),
            guild_id=int(row["guild_id"]),
            channel_id=int(row["channel_id"]),
            message_id=int(row["message_id"]),
            author_id=int(row["author_id"]),
            source=cast(Source, str(row["source"])),
            categories=list(json.loads(row["categories"])),
            scores=dict(json.loads(row["scores"])),
            action=cast(Action, str(row["action"])),
            deleted=bool(row["deleted"]),
            warned=str(row["warned"]),
            timed_out=float(row["timed_out"]),
            false_positive=bool(row["false_positive"]),
        )

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        row = await self.store.fetchone(
            f"SELECT COUNT(*) FROM moderation_actions WHERE {where} AND author_id = ?",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("moderation_actions", Fate.KEPT, int(row[0]) if row else 0, "moderation record"),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.MODERATION)
        if cutoff is None:
            return ()
        # Their strikes go with them (ON DELETE CASCADE).
        deleted = await self.store.execute("DELETE FROM moderation_actions WHERE created_at < ?", (cutoff,))
        return (Effect("moderation_actions", Fate.DELETED, deleted, "moderation record"),)
