"""Translations: the gettext catalogs shipped in the package and the one `translate` every message goes through."""

from bot.i18n.catalogs import (
    DEFAULT_LOCALE,
    LOCALES,
    Message,
    Translations,
    catalog_ids,
    resolve_locale,
    translate,
    translations,
)
from bot.i18n.time import discord_timestamp, format_span

__all__ = [
    "DEFAULT_LOCALE",
    "LOCALES",
    "Message",
    "Translations",
    "catalog_ids",
    "discord_timestamp",
    "format_span",
    "resolve_locale",
    "translate",
    "translations",
]
