"""Threads the bot started from an answer, each server's no-mention mode in them, and their titles."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot import errors
from bot.moderation.gate import ModerationGate
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.store import Store

log = logging.getLogger(__name__)

MAX_THREAD_NAME = 100  # Discord's limit on a thread's name
TITLE_TOKENS = 30
TITLE_PROMPT = (
    "Write a short title (at most 8 words, no quotes, no trailing period) for a discussion that starts "
    "with the question below. Reply with the title only."
)


def plain_title(question: str, limit: int = MAX_THREAD_NAME) -> str:
    """The question's first line, cut at a word to fit `limit`: the title when the model's is unusable."""
    line = " ".join(question.split()) or "Conversation"
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip(" ,.;:") + "…"


def clean_title(text: str) -> str:
    """The model's title as one line without wrapping quotes or a final period; empty when unusable."""
    line = " ".join(text.split()).strip().strip("\"'`*“”").rstrip(".").strip()
    return line if len(line) <= MAX_THREAD_NAME else plain_title(line)


class ThreadTitles:
    """Asks the chat model for a short title, moderated; falls back to the question itself."""

    def __init__(self, gateway: OpenAIGateway, moderation: ModerationGate) -> None:
        self.gateway = gateway
        self.moderation = moderation

    async def title(self, question: str, context: CallContext) -> str:
        try:
            result = await self.gateway.complete_chat(
                [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": question[:2000]}],
                context=context,
                max_tokens=TITLE_TOKENS,
                deadline=20.0,
            )
            title = clean_title(result.text)
            if not title:
                raise errors.IncompleteAnswer()
            await self.moderation.require_clean_output(title, context=context)
        except errors.BotError as exc:
            # The question itself already passed moderation: it is a safe (if plainer) name.
            log.info("thread title fell back to the question: %s", type(exc).__name__)
            return plain_title(question)
        return title


@dataclass(frozen=True)
class BotThread:
    thread_id: int
    guild_id: int
    parent_id: int
    started_by: int
    model: str


class ChatThreads(DataOwner):
    """`chat_threads` (the threads /ask started) and `thread_settings` (each server's no-mention mode).

    Every message in every channel asks whether its channel is a bot thread: answers are cached, absent
    ones too, so a busy server costs no database read per message.
    """

    owned_tables = (
        TablePolicy(
            "chat_threads",
            "threads /ask started and the member who started each",
            Fate.PSEUDONYMISED,
            Retention.DATABASE,
        ),
        TablePolicy(
            "thread_settings",
            "each server's no-mention mode in bot threads, and who set it",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store
        self._threads: dict[int, bool] = {}
        self._modes: dict[int, bool] = {}
        self._writes = 0  # a read that overlapped a write is not cached (it may be stale)

    async def record(self, thread: BotThread) -> None:
        self._writes += 1
        await self.store.execute(
            "INSERT INTO chat_threads (thread_id, guild_id, parent_id, started_by, model, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (thread_id) DO UPDATE SET guild_id = excluded.guild_id, "
            "parent_id = excluded.parent_id, started_by = excluded.started_by, model = excluded.model, "
            "created_at = excluded.created_at",
            (
                thread.thread_id,
                thread.guild_id,
                thread.parent_id,
                thread.started_by,
                thread.model,
                time.time(),
            ),
        )
        self._threads[thread.thread_id] = True

    async def is_bot_thread(self, channel_id: int) -> bool:
        if channel_id in self._threads:
            return self._threads[channel_id]
        writes = self._writes
        row = await self.store.fetchone("SELECT 1 FROM chat_threads WHERE thread_id = ?", (channel_id,))
        if writes == self._writes:
            if len(self._threads) > 100_000:
                self._threads.clear()  # a bound, not an LRU: re-reading is cheap, growing without end is not
            self._threads[channel_id] = row is not None
        return row is not None

    async def every_message(self, guild_id: int) -> bool:
        """Whether members talk to the bot in its threads without mentioning it (on unless turned off)."""
        if guild_id in self._modes:
            return self._modes[guild_id]
        writes = self._writes
        row = await self.store.fetchone(
            "SELECT every_message FROM thread_settings WHERE guild_id = ?", (guild_id,)
        )
        mode = True if row is None else bool(row[0])
        if writes == self._writes:
            self._modes[guild_id] = mode
        return mode

    async def set_every_message(self, guild_id: int, on: bool, set_by: int) -> None:
        self._writes += 1
        self._modes.pop(guild_id, None)
        await self.store.execute(
            "INSERT INTO thread_settings (guild_id, every_message, set_by, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id) DO UPDATE SET every_message = excluded.every_message, "
            "set_by = excluded.set_by, updated_at = excluded.updated_at",
            (guild_id, int(on), set_by, time.time()),
        )
        self._modes.pop(guild_id, None)

    # -- privacy (bot/privacy/owner.py) ---------------------------------------------------------

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The threads and the setting stay (they are the server's), without the member's id."""
        where, params = guild_clause(guild_id)
        threads = await self.store.execute(
            f"UPDATE chat_threads SET started_by = 0 WHERE {where} AND started_by = ?",  # noqa: S608
            (*params, user_id),
        )
        settings = await self.store.execute(
            f"UPDATE thread_settings SET set_by = 0 WHERE {where} AND set_by = ?",  # noqa: S608
            (*params, user_id),
        )
        return (
            Effect("chat_threads", Fate.PSEUDONYMISED, threads, "thread you started"),
            Effect("thread_settings", Fate.PSEUDONYMISED, settings, "thread setting you chose"),
        )
