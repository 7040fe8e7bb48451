"""Strikes per user per server within a window; they drive escalation to a timeout."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.moderation.records import KEPT_FOR_SAFETY
from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store


class Strikes(DataOwner):
    """One strike per acted-on message; a "False positive" clears the strike of its action."""

    owned_tables = (
        TablePolicy(
            "moderation_strikes", "strikes against a member", Fate.KEPT, Retention.MODERATION, KEPT_FOR_SAFETY
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, guild_id: int, user_id: int, action_id: int, *, window: float) -> int:
        """Record a strike and return how many uncleared strikes the user has within `window` s."""
        now = time.time()
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO moderation_strikes (guild_id, user_id, action_id, created_at) VALUES (?, ?, ?, ?)",
                (guild_id, user_id, action_id, now),
            )
            cursor = await db.execute(
                "SELECT COUNT(*) FROM moderation_strikes WHERE guild_id = ? AND user_id = ? "
                "AND cleared_at IS NULL AND created_at >= ?",
                (guild_id, user_id, now - window),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 1

    async def count(self, guild_id: int, user_id: int, *, window: float) -> int:
        row = await self.store.fetchone(
            "SELECT COUNT(*) FROM moderation_strikes WHERE guild_id = ? AND user_id = ? "
            "AND cleared_at IS NULL AND created_at >= ?",
            (guild_id, user_id, time.time() - window),
        )
        return int(row[0]) if row else 0

    async def clear_for_action(self, action_id: int) -> int:
        return await self.store.execute(
            "UPDATE moderation_strikes SET cleared_at = ? WHERE action_id = ? AND cleared_at IS NULL",
            (time.time(), action_id),
        )

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        row = await self.store.fetchone(
            f"SELECT COUNT(*) FROM moderation_strikes WHERE {where} AND user_id = ? AND cleared_at IS NULL",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("moderation_strikes", Fate.KEPT, int(row[0]) if row else 0, "strike"),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.MODERATION)
        if cutoff is None:
            return ()
        deleted = await self.store.execute("DELETE FROM moderation_strikes WHERE created_at < ?", (cutoff,))
        return (Effect("moderation_strikes", Fate.DELETED, deleted, "strike"),)
