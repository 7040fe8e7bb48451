"""Per-channel personas (/persona): a channel's addition to the system prompt, and who set it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store
from bot.storage.versions import CacheVersions


class Personas(DataOwner):
    """Read on every /ask and written only by /persona: cached in memory, absent ones too. A change bumps
    the "persona" cache version, so other processes drop theirs on their next refresh."""

    owned_tables = (
        TablePolicy(
            "channel_personas", "a channel's persona and who set it", Fate.PSEUDONYMISED, Retention.WHILE_SET
        ),
    )

    def __init__(self, store: Store, versions: CacheVersions | None = None) -> None:
        self.store = store
        self.versions = versions
        self._cache: dict[int, str | None] = {}
        self._writes = 0  # a read that overlapped a write is not cached (it may be stale)
        if versions is not None:
            versions.watch("persona", lambda _guild_id: self._changed(None))

    async def for_channel(self, channel_id: int, parent_id: int = 0) -> str | None:
        """The persona that applies in a channel: its own, else (in a thread or forum post, `parent_id`
        being its channel) its parent channel's, as an admin who set one for a channel expects."""
        own = await self.get(channel_id)
        if own is not None or not parent_id or parent_id == channel_id:
            return own
        return await self.get(parent_id)

    async def get(self, channel_id: int) -> str | None:
        if channel_id in self._cache:
            return self._cache[channel_id]
        writes = self._writes
        row = await self.store.fetchone(
            "SELECT persona FROM channel_personas WHERE channel_id = ?", (channel_id,)
        )
        persona = str(row[0]) if row else None
        if writes == self._writes:
            if len(self._cache) > 100_000:
                self._cache.clear()  # a bound, not an LRU: re-reading is cheap, growing without end is not
            self._cache[channel_id] = persona
        return persona

    def _changed(self, channel_id: int | None) -> None:
        self._writes += 1
        if channel_id is None:
            self._cache.clear()
        else:
            self._cache.pop(channel_id, None)

    async def set(self, guild_id: int, channel_id: int, persona: str, set_by: int) -> None:
        self._changed(channel_id)
        try:
            async with self.store.transaction() as db:
                await db.execute(
                    "INSERT INTO channel_personas (channel_id, guild_id, persona, set_by, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET persona = excluded.persona, "
                    "set_by = excluded.set_by, updated_at = excluded.updated_at",
                    (channel_id, guild_id, persona, set_by, time.time()),
                )
                if self.versions is not None:
                    await self.versions.bump(db, "persona", guild_id)
        finally:
            self._changed(channel_id)

    async def clear(self, channel_id: int) -> bool:
        self._changed(channel_id)
        try:
            async with self.store.transaction() as db:
                cursor = await db.execute(
                    "DELETE FROM channel_personas WHERE channel_id = ? RETURNING guild_id", (channel_id,)
                )
                rows = await cursor.fetchall()
                if rows and self.versions is not None:
                    await self.versions.bump(db, "persona", int(rows[0][0]))
            return bool(rows)
        finally:
            self._changed(channel_id)

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The personas a member set stay (they are the channel's setting), without the member's id."""
        where, params = guild_clause(guild_id)
        changed = await self.store.execute(
            f"UPDATE channel_personas SET set_by = 0 WHERE {where} AND set_by = ?",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("channel_personas", Fate.PSEUDONYMISED, changed, "channel persona you set"),)
