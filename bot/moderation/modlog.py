"""The moderation log: every notice for a server's moderators goes through here to its mod-log channel."""

from __future__ import annotations

import logging
from typing import Protocol

from bot import errors
from bot.i18n import Message
from bot.moderation.policy import PolicyRepo

log = logging.getLogger(__name__)


# A notice: plain text, or a catalog message the edge renders in the server's language.
Notice = str | Message


class ModlogSink(Protocol):
    """Posts a notice to a channel; the Discord edge implements it (and picks the server's language)."""

    async def post_text(self, guild_id: int, channel_id: int, text: Notice) -> bool: ...

    async def dm_owner(self, guild_id: int, text: Notice) -> bool:
        """Send `text` to the server owner's DMs; False when Discord refused it."""
        ...


class ModerationLog:
    """Finds a server's mod-log channel through its policy and posts notices there."""

    def __init__(self, policies: PolicyRepo, sink: ModlogSink) -> None:
        self.policies = policies
        self.sink = sink

    async def channel_for(self, guild_id: int) -> int | None:
        try:
            return (await self.policies.get(guild_id)).modlog_channel_id
        except errors.StorageUnavailable:
            return None

    async def notify(self, guild_id: int, text: Notice) -> bool:
        """Post `text` to the server's mod-log; False (and a log line, without the text) when there is none."""
        channel_id = await self.channel_for(guild_id)
        if channel_id is None:
            log.warning("server %s has no mod-log channel for a notice to its moderators", guild_id)
            return False
        return await self.sink.post_text(guild_id, channel_id, text)

    async def alert_admins(self, guild_id: int, text: Notice) -> bool:
        """Tell a server's admins: in its mod-log channel, or by DM to its owner when it has none (or the
        channel refused the post); False when neither took it."""
        channel_id = await self.channel_for(guild_id)
        if channel_id is not None and await self.sink.post_text(guild_id, channel_id, text):
            return True
        return await self.sink.dm_owner(guild_id, text)
