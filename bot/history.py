"""Per-channel conversation memory and personas in SQLite (plain data in and out)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.store import Store

# Context assembly never needs more rows than this: even tiny turns fill any sane budget first.
MAX_TURNS_READ = 400


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    tokens: int
    author_id: int
    author_name: str = ""


@dataclass(frozen=True)
class Exchange:
    """A question and its answer, stored together so history never holds half an exchange."""

    guild_id: int
    channel_id: int
    user_id: int
    user_name: str
    question: str
    question_tokens: int
    bot_id: int
    answer: str
    answer_tokens: int


class History:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Read on every /ask, written only by set_persona/clear_persona: cached, absent ones too.
        self._personas: dict[int, str | None] = {}
        self._persona_writes = 0  # a read that overlapped a write is not cached (it may be stale)

    async def recent(self, channel_id: int, limit: int = MAX_TURNS_READ) -> list[Turn]:
        """The newest turns of a channel, oldest first (uses the (channel_id, id) index)."""
        rows = await self.store.fetchall(
            "SELECT role, content, tokens, author_id, author_name FROM turns "
            "WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
            (channel_id, limit),
        )
        return [
            Turn(r["role"], r["content"], r["tokens"], r["author_id"], r["author_name"])
            for r in reversed(rows)
        ]

    async def append(self, exchange: Exchange) -> None:
        now = time.time()
        # Both turns in one insert: atomic, and committed together with the other concurrent writes.
        await self.store.insert(
            "INSERT INTO turns (guild_id, channel_id, author_id, author_name, role, content, tokens, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    exchange.guild_id,
                    exchange.channel_id,
                    exchange.user_id,
                    exchange.user_name,
                    "user",
                    exchange.question,
                    exchange.question_tokens,
                    now,
                ),
                (
                    exchange.guild_id,
                    exchange.channel_id,
                    exchange.bot_id,
                    "",
                    "assistant",
                    exchange.answer,
                    exchange.answer_tokens,
                    now,
                ),
            ],
        )

    async def forget_channel(self, channel_id: int) -> int:
        return await self.store.execute("DELETE FROM turns WHERE channel_id = ?", (channel_id,))

    async def count(self, channel_id: int) -> int:
        row = await self.store.fetchone("SELECT COUNT(*) FROM turns WHERE channel_id = ?", (channel_id,))
        return int(row[0]) if row else 0

    async def persona(self, channel_id: int) -> str | None:
        if channel_id in self._personas:
            return self._personas[channel_id]
        writes = self._persona_writes
        row = await self.store.fetchone(
            "SELECT persona FROM channel_personas WHERE channel_id = ?", (channel_id,)
        )
        persona = str(row[0]) if row else None
        if writes == self._persona_writes:
            if len(self._personas) > 100_000:
                self._personas.clear()  # a bound, not an LRU: re-reading is cheap, growing without end is not
            self._personas[channel_id] = persona
        return persona

    def _persona_changed(self, channel_id: int) -> None:
        self._persona_writes += 1
        self._personas.pop(channel_id, None)

    async def set_persona(self, guild_id: int, channel_id: int, persona: str, set_by: int) -> None:
        self._persona_changed(channel_id)
        await self.store.execute(
            "INSERT INTO channel_personas (channel_id, guild_id, persona, set_by, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (channel_id) DO UPDATE SET persona = excluded.persona, set_by = excluded.set_by, "
            "updated_at = excluded.updated_at",
            (channel_id, guild_id, persona, set_by, time.time()),
        )
        self._persona_changed(channel_id)

    async def clear_persona(self, channel_id: int) -> bool:
        self._persona_changed(channel_id)
        try:
            return (
                await self.store.execute("DELETE FROM channel_personas WHERE channel_id = ?", (channel_id,))
                > 0
            )
        finally:
            self._persona_changed(channel_id)
