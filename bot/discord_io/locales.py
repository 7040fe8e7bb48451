"""Which language a reply is written in: the member's for what only they see, the server's for public posts."""

from __future__ import annotations

from typing import Any

import discord


def member_locale(interaction: discord.Interaction[Any]) -> str:
    """An ephemeral reply's language: the member's client (`interaction.locale`)."""
    return str(interaction.locale)


def server_locale(interaction: discord.Interaction[Any]) -> str:
    """A public post's language: the server's preferred locale, or the member's outside a server."""
    return str(interaction.guild_locale or interaction.locale)


def reply_locale(interaction: discord.Interaction[Any], *, private: bool) -> str:
    """The member's language when only they see the reply, else the server's."""
    return member_locale(interaction) if private else server_locale(interaction)


def message_locale(message: discord.Message) -> str | None:
    """A public reply to a message: the server's preferred locale (None in a DM: English)."""
    return str(message.guild.preferred_locale) if message.guild is not None else None
