"""Answers whose Regenerate and Continue buttons must work after a restart, and the streams Stop can cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store


@dataclass(frozen=True)
class AnswerRecord:
    """What a button needs to ask again: who asked what, where, and the answer it got."""

    answer_key: int
    guild_id: int
    channel_id: int
    user_id: int
    user_name: str
    prompt: str
    answer: str
    truncated: bool
    private: bool
    # The messages showing the answer, first to last (the first carries the buttons); empty for an
    # answer stored before they were tracked.
    message_ids: tuple[int, ...] = ()
    # "ask" (an /ask interaction's response) or "mention" (replies to the member's message, whose id is
    # the answer key): where Regenerate sends the parts a longer answer needs.
    origin: str = "ask"


def join_ids(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids)


def split_ids(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip().isdigit())


class AnswerRecords(DataOwner):
    """Rows of `chat_answers`, keyed by the id in the answer's buttons (the interaction that made it)."""

    owned_tables = (
        TablePolicy(
            "chat_answers",
            "a member's question and the answer shown, for its Regenerate and Continue buttons",
            Fate.DELETED,
            Retention.CONVERSATION,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, record: AnswerRecord) -> None:
        await self.store.write_grouped(
            "INSERT INTO chat_answers (answer_key, guild_id, channel_id, user_id, user_name, prompt, "
            "answer, truncated, private, created_at, message_ids, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (answer_key) DO UPDATE SET guild_id = excluded.guild_id, "
            "channel_id = excluded.channel_id, user_id = excluded.user_id, user_name = excluded.user_name, "
            "prompt = excluded.prompt, answer = excluded.answer, truncated = excluded.truncated, "
            "private = excluded.private, created_at = excluded.created_at, "
            "message_ids = excluded.message_ids, origin = excluded.origin",
            [
                (
                    record.answer_key,
                    record.guild_id,
                    record.channel_id,
                    record.user_id,
                    record.user_name,
                    record.prompt,
                    record.answer,
                    int(record.truncated),
                    int(record.private),
                    time.time(),
                    join_ids(record.message_ids),
                    record.origin,
                )
            ],
        )

    async def get(self, answer_key: int) -> AnswerRecord | None:
        row = await self.store.fetchone(
            "SELECT answer_key, guild_id, channel_id, user_id, user_name, prompt, answer, truncated, private, "
            "message_ids, origin FROM chat_answers WHERE answer_key = ?",
            (answer_key,),
        )
        if row is None:
            return None
        return AnswerRecord(
            int(row[0]),
            int(row[1]),
            int(row[2]),
            int(row[3]),
            str(row[4]),
            str(row[5]),
            str(row[6]),
            bool(row[7]),
            bool(row[8]),
            split_ids(str(row[9] or "")),
            str(row[10] or "ask"),
        )

    # -- privacy (bot/privacy/owner.py) ---------------------------------------------------------

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        where, params = guild_clause(guild_id)
        rows = await self.store.execute(
            f"DELETE FROM chat_answers WHERE {where} AND user_id = ?",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("chat_answers", Fate.DELETED, rows, "answer kept for its buttons"),)

    async def forget_channel_data(self, channel_id: int) -> Sequence[Effect]:
        rows = await self.store.execute("DELETE FROM chat_answers WHERE channel_id = ?", (channel_id,))
        return (Effect("chat_answers", Fate.DELETED, rows, "answer kept for its buttons"),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.CONVERSATION)
        if cutoff is None:
            return ()
        rows = await self.store.execute("DELETE FROM chat_answers WHERE created_at < ?", (cutoff,))
        return (Effect("chat_answers", Fate.DELETED, rows, "answer kept for its buttons"),)


@dataclass
class Streaming:
    """An answer being written: its task (which Stop cancels) and who may stop it."""

    task: asyncio.Task[object]
    asker_id: int
    stopped_by: int | None = None


class RunningAnswers:
    """The answers streaming in this process, by answer key; Stop finds its stream here (never spends)."""

    def __init__(self) -> None:
        self._running: dict[int, Streaming] = {}

    def add(self, answer_key: int, task: asyncio.Task[object], asker_id: int) -> Streaming:
        streaming = Streaming(task, asker_id)
        self._running[answer_key] = streaming
        return streaming

    def remove(self, answer_key: int) -> None:
        self._running.pop(answer_key, None)

    def get(self, answer_key: int) -> Streaming | None:
        return self._running.get(answer_key)

    def stop(self, answer_key: int, by: int) -> bool:
        """Cancel the stream; False when it already ended."""
        streaming = self._running.get(answer_key)
        if streaming is None or streaming.task.done():
            return False
        streaming.stopped_by = by
        streaming.task.cancel()
        return True
