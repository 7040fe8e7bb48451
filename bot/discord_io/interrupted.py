"""Answers streaming when the process died: recorded while they stream, told "interrupted" at start-up."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, cast

import discord

from bot.chat.inflight import Orphan

log = logging.getLogger(__name__)

INTERRUPTED_NOTICE = "⚠️ This answer was interrupted: the bot restarted while writing it. Please ask again."
ORIGINAL = "@original"  # Discord's name for an interaction's first response, in place of a message id


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
