"""Strikes per user per server within a window; they drive escalation to a timeout."""

from __future__ import annotations

import time

from bot.storage.store import Store


class Strikes:
    """One strike per acted-on message; a "False positive" clears the strike of its action."""

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
