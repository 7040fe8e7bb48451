"""/forget me and the retention purge: what the bot keeps about a person, and for how long."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.history import History
from bot.cost.ledger import UsageLedger
from bot.storage.store import Store

log = logging.getLogger(__name__)

# Moderation tables keyed by a user, (table, column); a table missing from this database is skipped.
MODERATION_USER_COLUMNS = (
    ("moderation_strikes", "user_id"),
    ("moderation_actions", "author_id"),
)
# Queued messages keep their author inside a JSON subject.
MODERATION_QUEUE_AUTHOR = ("moderation_queue", "subject", "$.author_id")


@dataclass(frozen=True)
class ForgetReport:
    history_turns: int
    ledger_rows: int
    moderation_records: int


@dataclass(frozen=True)
class PurgeReport:
    history_turns: int
    ledger_rows: int


class Privacy:
    def __init__(
        self,
        store: Store,
        ledger: UsageLedger,
        history: History,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.history = history  # its cached windows must not outlive the turns deleted here
        self.clock = clock

    async def _tables(self) -> set[str]:
        rows = await self.store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows}

    async def forget_user(self, guild_id: int, user_id: int) -> ForgetReport:
        """Delete a user's turns (and the answers to them) and moderation records; hash their ledger id."""
        tables = await self._tables()
        self.history.forget_windows()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "SELECT id, channel_id FROM turns WHERE guild_id = ? AND author_id = ? AND role = 'user'",
                (guild_id, user_id),
            )
            asked = list(await cursor.fetchall())
            # An exchange is stored as two consecutive rows: the question, then the answer to it.
            ids = [int(r[0]) for r in asked]
            answers = []
            for question_id, channel_id in asked:
                cursor = await db.execute(
                    "SELECT id FROM turns WHERE id = ? AND channel_id = ? AND role = 'assistant'",
                    (int(question_id) + 1, channel_id),
                )
                answers += [int(r[0]) for r in await cursor.fetchall()]
            turns = 0
            for chunk_start in range(0, len(ids + answers), 500):
                chunk = (ids + answers)[chunk_start : chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                cursor = await db.execute(f"DELETE FROM turns WHERE id IN ({marks})", chunk)  # noqa: S608
                turns += cursor.rowcount
            moderation = 0
            for table, column in MODERATION_USER_COLUMNS:
                if table in tables:
                    cursor = await db.execute(
                        f"DELETE FROM {table} WHERE guild_id = ? AND {column} = ?",  # noqa: S608
                        (guild_id, user_id),
                    )
                    moderation += max(0, cursor.rowcount)
            table, column, path = MODERATION_QUEUE_AUTHOR
            if table in tables:
                cursor = await db.execute(
                    f"DELETE FROM {table} WHERE guild_id = ? AND json_extract({column}, ?) = ?",  # noqa: S608
                    (guild_id, path, user_id),
                )
                moderation += max(0, cursor.rowcount)
        self.history.forget_windows()  # again: an /ask may have read the turns while they were deleted
        ledger = await self.ledger.forget_user(guild_id, user_id)
        log.info(
            "forgot a user in guild %s: %d turns, %d ledger rows, %d moderation records",
            guild_id,
            turns,
            ledger,
            moderation,
        )
        return ForgetReport(turns, ledger, moderation)

    async def purge_expired(self, retention_days: int) -> PurgeReport:
        """Delete history older than `retention_days` and drop user ids from older ledger rows."""
        if retention_days <= 0:
            return PurgeReport(0, 0)
        cutoff = self.clock() - retention_days * 86400
        self.history.forget_windows()
        try:
            turns = await self.store.execute("DELETE FROM turns WHERE created_at < ?", (cutoff,))
        finally:
            self.history.forget_windows()
        ledger = await self.ledger.anonymize_before(cutoff)
        if turns or ledger:
            log.info("retention: deleted %d old turns, anonymised %d old ledger rows", turns, ledger)
        return PurgeReport(turns, ledger)
