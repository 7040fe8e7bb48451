"""Posts to a server's mod-log channel: the Discord side of bot.moderation.modlog, shared by every notice."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot import errors
from bot.i18n import DEFAULT_LOCALE, Message
from bot.moderation.modlog import Notice

log = logging.getLogger(__name__)


class DiscordModlog:
    """Sends text, embeds and buttons to a mod-log channel; a failure is logged and reported as False."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._reported: set[tuple[int, str]] = set()

    async def locale_for(self, guild_id: int | None, fallback: str | None = None) -> str:
        """The language of a server's public posts: the one its admins forced (`/settings language`),
        otherwise the server's own preferred locale (`fallback` when the server is not cached)."""
        if guild_id is None:
            return fallback or DEFAULT_LOCALE
        services = getattr(self.client, "services", None)
        if services is not None:
            try:
                forced = await services.server_languages.get(guild_id)
            except errors.StorageUnavailable:
                forced = None  # a notice in the server's own language beats no notice
            if forced is not None:
                return str(forced)
        guild = self.client.get_guild(guild_id)
        return str(guild.preferred_locale) if guild is not None else fallback or DEFAULT_LOCALE

    async def render(self, guild_id: int, text: Notice) -> str:
        return text.render(await self.locale_for(guild_id)) if isinstance(text, Message) else text

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

    async def post_text(self, guild_id: int, channel_id: int, text: Notice) -> bool:
        return await self.post(guild_id, channel_id, content=await self.render(guild_id, text))

    async def dm_owner(self, guild_id: int, text: Notice) -> bool:
        guild = self.client.get_guild(guild_id)
        try:
            # The owner's own client language is unknown outside an interaction: the server's language.
            text = await self.render(guild_id, text)
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


async def public_locale(interaction: discord.Interaction[Any]) -> str:
    """The language of a public post answering `interaction` (framing texts, notices in the channel): the
    server's forced language, else the server's own; in DMs, the member's. Ephemeral replies use
    `interaction.locale` instead."""
    fallback = str(interaction.guild_locale or interaction.locale)
    modlog = getattr(interaction.client, "modlog", None)
    if interaction.guild_id is None or not isinstance(modlog, DiscordModlog):
        return str(interaction.locale) if interaction.guild_id is None else fallback
    return await modlog.locale_for(interaction.guild_id, fallback)
