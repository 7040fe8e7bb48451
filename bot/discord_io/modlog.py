"""Posts to a server's mod-log channel: the Discord side of bot.moderation.modlog, shared by every notice."""

from __future__ import annotations

import logging

import discord

log = logging.getLogger(__name__)


class DiscordModlog:
    """Sends text, embeds and buttons to a mod-log channel; a failure is logged and reported as False."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._reported: set[tuple[int, str]] = set()

    def first_report(self, guild_id: int, problem: str) -> bool:
        """True the first time a server is told about `problem` (a missing permission): told once, not spammed."""
        key = (guild_id, problem)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    async def post(
        self,
        guild_id: int,
        channel_id: int,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
    ) -> bool:
        channel = self.client.get_partial_messageable(channel_id, guild_id=guild_id)
        try:
            if view is not None:
                await channel.send(content=content, embed=embed, view=view)  # type: ignore[arg-type]
            else:
                await channel.send(content=content, embed=embed)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            log.warning("posting to the mod-log of server %s failed: HTTP %s", guild_id, exc.status)
            return False
        return True

    async def post_text(self, guild_id: int, channel_id: int, text: str) -> bool:
        return await self.post(guild_id, channel_id, content=text)

    async def dm_owner(self, guild_id: int, text: str) -> bool:
        guild = self.client.get_guild(guild_id)
        try:
            if guild is None:
                guild = await self.client.fetch_guild(guild_id)
            owner_id = guild.owner_id
            if owner_id is None:
                return False
            owner = self.client.get_user(owner_id) or await self.client.fetch_user(owner_id)
            await owner.send(text, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning("a DM to the owner of server %s failed: HTTP %s", guild_id, exc.status)
            return False
        return True
