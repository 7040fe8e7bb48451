"""Answers streaming right now, recorded so a restart can tell their askers they were cut short."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.leases import Leases
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
    """Rows of `inflight_answers`: inserted when an answer starts streaming, deleted when it ends.

    Each row names the process streaming it: several processes share the database, and an answer is an
    orphan only when its process is gone (its liveness lease lapsed, or its pid on this host exited).
    """

    owned_tables = (
        TablePolicy(
            "inflight_answers",
            "no member id: the interaction token of an answer being written (valid 15 minutes)",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

    def __init__(self, store: Store, leases: Leases | None = None) -> None:
        self.store = store
        self.leases = leases

    @property
    def process(self) -> str:
        return self.leases.holder if self.leases is not None else ""

    def started(self, application_id: int, token: str, message_id: int | None = None) -> asyncio.Future[None]:
        """Queue the row with the next group commit (the answer does not wait for it); `ended` awaits it."""
        return self.store.insert_soon(
            "INSERT INTO inflight_answers (application_id, token, message_id, started_at, process) "
            "VALUES (?, ?, ?, ?, ?)",
            [(application_id, token, message_id, time.time(), self.process)],
        )

    async def ended(self, token: str, started: asyncio.Future[None]) -> None:
        try:
            await started
            # `started` is committed: the delete cannot overtake its insert in the group commit.
            await self.store.write_grouped("DELETE FROM inflight_answers WHERE token = ?", [(token,)])
        except StoreError:
            log.warning("an in-flight answer's record could not be written or removed")

    async def take_orphans(self, now: float | None = None) -> list[Orphan]:
        """Every recorded answer whose process died streaming it, removed from the table; those whose
        token expired are dropped. Two processes taking at once each get different orphans."""
        cutoff = (time.time() if now is None else now) - TOKEN_LIFETIME
        rows = await self.store.fetchall(
            "SELECT id, application_id, token, message_id, started_at, process FROM inflight_answers ORDER BY id"
        )
        if rows and self.leases is not None:
            alive = await self.leases.live_processes() | {self.process}
            rows = [r for r in rows if str(r["process"]) not in alive]
        if rows:
            taken: set[int] = set()
            async with self.store.transaction() as db:
                for start in range(0, len(rows), 500):
                    chunk = [int(r["id"]) for r in rows[start : start + 500]]
                    marks = ",".join("?" * len(chunk))
                    cursor = await db.execute(
                        f"DELETE FROM inflight_answers WHERE id IN ({marks}) RETURNING id",  # noqa: S608
                        chunk,
                    )
                    taken.update(int(r[0]) for r in await cursor.fetchall())
            rows = [r for r in rows if int(r["id"]) in taken]
        return [
            Orphan(int(r["application_id"]), str(r["token"]), r["message_id"])
            for r in rows
            if float(r["started_at"]) > cutoff
        ]
