"""Answers streaming when the process died: recorded while they stream, told "interrupted" at start-up."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, cast

import discord

from bot.chat.inflight import Orphan
from bot.i18n import translate

log = logging.getLogger(__name__)

ORIGINAL = "@original"  # Discord's name for an interaction's first response, in place of a message id


async def _server_locale(client: discord.Client, webhook: discord.Webhook, target: Any) -> str | None:
    """The language of the server the answer was posted in (the row keeps no locale): None when unknown."""
    try:
        message = await webhook.fetch_message(target)
    except discord.HTTPException:
        return None
    channel = client.get_channel(message.channel.id) if message.channel is not None else None
    guild = getattr(channel, "guild", None)
    return str(guild.preferred_locale) if isinstance(guild, discord.Guild) else None


async def tell_interrupted(client: discord.Client, orphans: list[Orphan]) -> int:
    """Edit each orphaned answer to the interrupted notice, in its server's language; returns how many."""
    edited = 0
    for orphan in orphans:
        webhook = discord.Webhook.partial(orphan.application_id, orphan.token, client=client)
        target = orphan.message_id if orphan.message_id is not None else cast(Any, ORIGINAL)
        notice = translate("ask.interrupted", await _server_locale(client, webhook, target))
        with contextlib.suppress(discord.HTTPException):  # expired meanwhile, or the message was deleted
            await webhook.edit_message(target, content=notice)
            edited += 1
    if orphans:
        log.info("told %d of %d interrupted answers that they were cut short", edited, len(orphans))
    return edited
