"""Answers streaming when the process died: recorded while they stream, told "interrupted" at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import discord

from bot.storage.store import Store, StoreError

log = logging.getLogger(__name__)

# Discord honours an interaction's token for 15 minutes; an older orphan cannot be edited any more.
TOKEN_LIFETIME = 15 * 60.0
INTERRUPTED_NOTICE = "⚠️ This answer was interrupted: the bot restarted while writing it. Please ask again."
ORIGINAL = "@original"  # Discord's name for an interaction's first response, in place of a message id


@dataclass(frozen=True)
class Orphan:
    application_id: int
    token: str
    message_id: int | None


class InflightAnswers:
    """Rows of `inflight_answers`: inserted when an answer starts streaming, deleted when it ends."""

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
            await self.store.execute("DELETE FROM inflight_answers WHERE token = ?", (token,))
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


async def tell_interrupted(client: discord.Client, orphans: list[Orphan]) -> int:
    """Edit each orphaned answer to the interrupted notice; returns how many were edited."""
    edited = 0
    for orphan in orphans:
        webhook = discord.Webhook.partial(orphan.application_id, orphan.token, client=client)
        target = orphan.message_id if orphan.message_id is not None else cast(Any, ORIGINAL)
        with contextlib.suppress(discord.HTTPException):  # expired meanwhile, or the message was deleted
            await webhook.edit_message(target, content=INTERRUPTED_NOTICE)
            edited += 1
    if orphans:
        log.info("told %d of %d interrupted answers that they were cut short", edited, len(orphans))
    return edited
