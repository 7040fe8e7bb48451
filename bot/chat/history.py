"""Per-channel conversation memory in SQLite, shared or private to one member (plain data in and out)."""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store, Transaction
from bot.storage.versions import EVERY_SERVER, CacheVersions

# Context assembly never needs more rows than this: even tiny turns fill any sane budget first.
MAX_TURNS_READ = 400
# Channels whose recent window is kept in memory (least recently asked dropped first). A window holds at
# most the history token budget (6,000 tokens by default, ~25 KB of text), so 256 channels stay small.
CACHED_CHANNELS = 256
TURN_OVERHEAD_TOKENS = 4  # what select_history charges per turn beside its text


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    tokens: int
    author_id: int
    author_name: str = ""
    at: float = 0.0  # when it was stored: merges a member's private turns into the shared ones in order


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
    # A private /ask's exchange is remembered for its asker only (the asker's id); 0 is the shared memory.
    private_to: int = 0


SHARED = 0  # the `private_to` of the channel's shared memory


def within_budget(turns: list[Turn], budget: int) -> list[Turn]:
    """The newest of `turns` (oldest first) whose cost fits `budget`: all that context assembly can use."""
    used = 0
    for index in range(len(turns) - 1, -1, -1):
        used += turns[index].tokens + TURN_OVERHEAD_TOKENS
        if used > budget:
            return turns[index + 1 :]
    return turns


class History(DataOwner):
    """SQLite holds every turn. A channel's recent window, the part a context can use, is also kept in
    memory (`window_tokens` > 0), so an /ask does not queue behind every other read of the database's one
    thread. Appends update the window after they commit; every deletion of turns goes through
    `forget_windows`.

    A private /ask's exchange is a member's own memory of the channel (`private_to`): it is read back only
    for that member's private questions, merged with the shared turns; a public question never sees it.

    Several processes: a channel's turns are appended only by the process whose shards hold its server,
    but deletions (/forget me everywhere, the purge in the process holding its lease) come from any; each
    bumps the "history" cache version, and `versions.refresh()` (before a context is built) drops the
    windows it made stale.
    """

    owned_tables = (
        TablePolicy(
            "turns",
            "members' messages to the bot, its answers to them, display names",
            Fate.DELETED,
            Retention.CONVERSATION,
        ),
    )

    def __init__(
        self, store: Store, *, window_tokens: int = 0, versions: CacheVersions | None = None
    ) -> None:
        self.store = store
        self.window_tokens = window_tokens
        self.versions = versions
        if versions is not None:
            versions.watch("history", lambda _guild_id: self.forget_windows())
        # Keyed by (channel, private_to): the shared window, and each member's private one.
        self._windows: OrderedDict[tuple[int, int], list[Turn]] = OrderedDict()
        # A read that overlapped a change of its channel is not cached: it may miss the change.
        self._changes: dict[int, int] = {}
        self._all_changes = 0

    async def recent(
        self, channel_id: int, limit: int = MAX_TURNS_READ, *, private_to: int = SHARED
    ) -> list[Turn]:
        """The newest turns of one memory of a channel, oldest first (uses the turns_by_memory index)."""
        rows = await self.store.fetchall(
            "SELECT role, content, tokens, author_id, author_name, created_at FROM turns "
            "WHERE channel_id = ? AND private_to = ? ORDER BY id DESC LIMIT ?",
            (channel_id, private_to, limit),
        )
        return [
            Turn(r["role"], r["content"], r["tokens"], r["author_id"], r["author_name"], r["created_at"])
            for r in reversed(rows)
        ]

    async def window(self, channel_id: int, *, private_to: int = SHARED) -> list[Turn]:
        """The newest shared turns of a channel that fit `window_tokens`, oldest first (a copy; cached).
        With `private_to`, that member's private turns are merged in by time: what their private /ask sees."""
        shared = await self._memory_window(channel_id, SHARED)
        if private_to == SHARED:
            return shared
        own = await self._memory_window(channel_id, private_to)
        if not own:
            return shared
        # Both are oldest first; an exchange's two turns share a time and keep their order (merge is stable).
        return list(heapq.merge(shared, own, key=lambda turn: turn.at))

    async def _memory_window(self, channel_id: int, private_to: int) -> list[Turn]:
        key = (channel_id, private_to)
        cached = self._windows.get(key)
        if cached is not None:
            self._windows.move_to_end(key)
            return list(cached)
        before = self._change_mark(channel_id)
        turns = await self.recent(channel_id, private_to=private_to)
        if self.window_tokens <= 0:
            return turns
        turns = within_budget(turns, self.window_tokens)
        if self._change_mark(channel_id) == before:
            self._windows[key] = turns
            while len(self._windows) > CACHED_CHANNELS:
                self._windows.popitem(last=False)
        return list(turns)

    def forget_windows(self, channel_id: int | None = None) -> None:
        """Drop the cached window of one channel, or of every channel (a user's or old turns deleted)."""
        if channel_id is None:
            self._all_changes += 1
            self._windows.clear()
        else:
            self._changes[channel_id] = self._changes.get(channel_id, 0) + 1
            for key in [key for key in self._windows if key[0] == channel_id]:
                del self._windows[key]

    def _change_mark(self, channel_id: int) -> tuple[int, int]:
        return self._all_changes, self._changes.get(channel_id, 0)

    def _appended(self, channel_id: int, private_to: int, turns: list[Turn]) -> None:
        key = (channel_id, private_to)
        cached = self._windows.get(key)
        if len(self._changes) >= 100 * CACHED_CHANNELS and channel_id not in self._changes:
            self._all_changes += 1  # a bound on the marks: reads in flight just go uncached
            self._changes.clear()
        self._changes[channel_id] = self._changes.get(channel_id, 0) + 1
        if cached is not None:
            self._windows[key] = within_budget(cached + turns, self.window_tokens)

    async def append(self, exchange: Exchange) -> None:
        now = time.time()
        # Both turns in one insert: atomic, and committed together with the other concurrent writes.
        await self.store.insert(
            "INSERT INTO turns (guild_id, channel_id, author_id, author_name, role, content, tokens, "
            "created_at, private_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    exchange.private_to,
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
                    exchange.private_to,
                ),
            ],
        )
        self._appended(
            exchange.channel_id,
            exchange.private_to,
            [
                Turn(
                    "user",
                    exchange.question,
                    exchange.question_tokens,
                    exchange.user_id,
                    exchange.user_name,
                    now,
                ),
                Turn("assistant", exchange.answer, exchange.answer_tokens, exchange.bot_id, "", now),
            ],
        )

    async def replace_answer(
        self, channel_id: int, user_id: int, old_answer: str, new_answer: str, tokens: int
    ) -> bool:
        """Regenerate: the newest answer `old_answer` to `user_id` in the channel becomes `new_answer`."""
        self.forget_windows(channel_id)
        try:
            return (
                await self.store.execute(
                    "UPDATE turns SET content = ?, tokens = ? WHERE id = (SELECT a.id FROM turns a "
                    "JOIN turns q ON q.id = a.id - 1 AND q.channel_id = a.channel_id "
                    "WHERE a.channel_id = ? AND a.role = 'assistant' AND a.content = ? "
                    "AND q.role = 'user' AND q.author_id = ? ORDER BY a.id DESC LIMIT 1)",
                    (new_answer, tokens, channel_id, old_answer, user_id),
                )
                > 0
            )
        finally:
            self.forget_windows(channel_id)

    async def forget_channel(self, channel_id: int) -> int:
        self.forget_windows(channel_id)
        try:
            async with self.store.transaction() as db:
                cursor = await db.execute("DELETE FROM turns WHERE channel_id = ?", (channel_id,))
                await self._deleted(db, cursor.rowcount, None)
            return cursor.rowcount
        finally:
            self.forget_windows(channel_id)

    async def _deleted(self, db: Transaction, rows: int, guild_id: int | None) -> None:
        """Other processes' windows of the server (None: of any) must be read again."""
        if rows > 0 and self.versions is not None:
            await self.versions.bump(db, "history", guild_id or EVERY_SERVER)

    async def count(self, channel_id: int) -> int:
        row = await self.store.fetchone("SELECT COUNT(*) FROM turns WHERE channel_id = ?", (channel_id,))
        return int(row[0]) if row else 0

    # -- privacy (bot/privacy/owner.py) ---------------------------------------------------------

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """Delete a member's questions and the answers to them."""
        where, params = guild_clause(guild_id)
        self.forget_windows()
        try:
            async with self.store.transaction() as db:
                cursor = await db.execute(
                    f"SELECT id, channel_id FROM turns WHERE {where} AND author_id = ? AND role = 'user'",  # noqa: S608
                    (*params, user_id),
                )
                asked = list(await cursor.fetchall())
                # An exchange is stored as two consecutive rows: the question, then the answer to it.
                ids = [int(r[0]) for r in asked]
                for question_id, channel_id in asked:
                    cursor = await db.execute(
                        "SELECT id FROM turns WHERE id = ? AND channel_id = ? AND role = 'assistant'",
                        (int(question_id) + 1, channel_id),
                    )
                    ids += [int(r[0]) for r in await cursor.fetchall()]
                turns = 0
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    cursor = await db.execute(f"DELETE FROM turns WHERE id IN ({marks})", chunk)  # noqa: S608
                    turns += max(0, cursor.rowcount)
                # The member's private memory: their private questions and the answers only they saw.
                cursor = await db.execute(
                    f"DELETE FROM turns WHERE {where} AND private_to = ?",  # noqa: S608
                    (*params, user_id),
                )
                turns += max(0, cursor.rowcount)
                await self._deleted(db, turns, guild_id)
        finally:
            self.forget_windows()  # again: an /ask may have read the turns while they were deleted
        return (
            Effect("turns", Fate.DELETED, turns, "conversation turn", "your messages and my answers to them"),
        )

    async def forget_channel_data(self, channel_id: int) -> Sequence[Effect]:
        """The channel's conversation (its persona is a setting, cleared with /persona clear)."""
        turns = await self.forget_channel(channel_id)
        return (Effect("turns", Fate.DELETED, turns, "conversation turn"),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.CONVERSATION)
        if cutoff is None:
            return ()
        self.forget_windows()
        try:
            async with self.store.transaction() as db:
                turns = (await db.execute("DELETE FROM turns WHERE created_at < ?", (cutoff,))).rowcount
                await self._deleted(db, turns, None)
        finally:
            self.forget_windows()
        return (Effect("turns", Fate.DELETED, turns, "conversation turn"),)
