"""Answers streaming right now, recorded so a restart can tell their askers they were cut short."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.store import Store, StoreError

log = logging.getLogger(__name__)

# Discord honours an interaction's token for 15 minutes; an older orphan cannot be edited any more.
TOKEN_LIFETIME = 15 * 60.0


@dataclass(frozen=True)
class Orphan:
    application_id: int
    token: str
    message_id: int | None


class InflightAnswers(DataOwner):
    """Rows of `inflight_answers`: inserted when an answer starts streaming, deleted when it ends."""

    owned_tables = (
        TablePolicy(
            "inflight_answers",
            "no member id: the interaction token of an answer being written (valid 15 minutes)",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

    def __init__(self, store: Store) -> None:
        self.store = store

    def started(self, application_id: int, token: str, message_id: int | None = None) -> asyncio.Future[None]:
        """Queue the row with the next group commit (the answer does not wait for it); `ended` awaits it."""
        return self.store.insert_soon(
            "INSERT INTO inflight_answers (application_id, token, message_id, started_at) VALUES (?, ?, ?, ?)",
            [(application_id, token, message_id, time.time())],
        )

    async def ended(self, token: str, started: asyncio.Future[None]) -> None:
        try:
            await started
            # `started` is committed: the delete cannot overtake its insert in the group commit.
            await self.store.write_grouped("DELETE FROM inflight_answers WHERE token = ?", [(token,)])
        except StoreError:
            log.warning("an in-flight answer's record could not be written or removed")

    async def take_orphans(self, now: float | None = None) -> list[Orphan]:
        """Every recorded answer (a previous process died streaming it), removed from the table; those
        whose token expired are dropped."""
        cutoff = (time.time() if now is None else now) - TOKEN_LIFETIME
        rows = await self.store.fetchall(
            "SELECT id, application_id, token, message_id, started_at FROM inflight_answers ORDER BY id"
        )
        if rows:
            async with self.store.transaction() as db:
                await db.executemany("DELETE FROM inflight_answers WHERE id = ?", [(r["id"],) for r in rows])
        return [
            Orphan(int(r["application_id"]), str(r["token"]), r["message_id"])
            for r in rows
            if float(r["started_at"]) > cutoff
        ]
