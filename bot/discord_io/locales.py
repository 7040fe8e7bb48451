"""Which language a reply is written in: the member's for what only they see, the server's for public posts."""

from __future__ import annotations

from typing import Any

import discord


def member_locale(interaction: discord.Interaction[Any]) -> str:
    """An ephemeral reply's language: the member's client (`interaction.locale`)."""
    return str(interaction.locale)


def _forced(client: discord.Client, guild_id: int | None) -> str | None:
    """The language the server's admins forced with `/settings language`, if any."""
    services = getattr(client, "services", None)
    return services.server_languages.forced(guild_id) if services is not None else None


def server_locale(interaction: discord.Interaction[Any]) -> str:
    """A public post's language: the server's forced language, else its preferred locale; outside a
    server, the member's."""
    forced = _forced(interaction.client, interaction.guild_id)
    return forced or str(interaction.guild_locale or interaction.locale)


def reply_locale(interaction: discord.Interaction[Any], *, private: bool) -> str:
    """The member's language when only they see the reply, else the server's."""
    return member_locale(interaction) if private else server_locale(interaction)


def message_locale(client: discord.Client, message: discord.Message) -> str | None:
    """A public reply to a message: the server's forced language, else its preferred locale (None in a
    DM: English)."""
    if message.guild is None:
        return None
    return _forced(client, message.guild.id) or str(message.guild.preferred_locale)
