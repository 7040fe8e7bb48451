"""Server-wide choices that belong to no one feature: the language of the server's public posts."""

from bot.guilds.language import ServerLanguages

__all__ = ["ServerLanguages"]
