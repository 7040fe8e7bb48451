"""Command names and descriptions in each member's language: discord.py's Translator over the catalogs.

Every command, group, option and choice is looked up by a key derived from where it sits in the tree
(`command.limits.budget.description`, `command.limits.budget.option.reset.name`, `choice.<English name>`),
so cogs need no `locale_str` wrapping and a new command shows up as missing in the catalog test.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.i18n import catalog_ids, resolve_locale

# The Discord locales given localisations: English for both English clients, and Korean.
LOCALISED: frozenset[discord.Locale] = frozenset(
    {discord.Locale.american_english, discord.Locale.british_english, discord.Locale.korean}
)


def _command_key(command: object) -> str:
    qualified = str(getattr(command, "qualified_name", getattr(command, "name", "?")))
    return "command." + qualified.replace(" ", ".")


def translation_key(context: app_commands.TranslationContextTypes, english: str) -> str | None:
    """The catalog id for one translatable string of the command tree, or None for what is not ours."""
    location, data = context.location, context.data
    if location in (Where.command_name, Where.group_name):
        return _command_key(data) + ".name"
    if location in (Where.command_description, Where.group_description):
        return _command_key(data) + ".description"
    if isinstance(data, app_commands.Parameter):
        part = "name" if location is Where.parameter_name else "description"
        return f"{_command_key(data.command)}.option.{data.name}.{part}"
    if location is Where.choice_name:
        return "choice." + english
    return None


class CatalogTranslator(app_commands.Translator):
    """Names and descriptions from the .po catalogs for en-US, en-GB and ko; other locales see the default."""

    def __init__(self) -> None:
        self._catalogs = {language: catalog_ids(language) for language in ("en", "ko")}

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if locale not in LOCALISED:
            return None
        key = translation_key(context, string.message)
        if key is None:
            return None
        # A missing or empty entry leaves the locale out, so Discord shows the default (English) text.
        return self._catalogs[resolve_locale(locale.value)].get(key) or None


def _command_chain(
    command: app_commands.Command | app_commands.Group,
) -> list[app_commands.Command | app_commands.Group]:
    chain: list[app_commands.Command | app_commands.Group] = []
    current: app_commands.Command | app_commands.Group | None = command
    while current is not None:
        chain.insert(0, current)
        current = current.parent
    return chain


def command_label(command: app_commands.Command | app_commands.Group, locale: str | None) -> str:
    """`tldr` / `요약`, `moderation log-channel` / `모더레이션 로그-채널`: as the member's client shows it."""
    catalog = catalog_ids(resolve_locale(locale))
    return " ".join(
        catalog.get(_command_key(part) + ".name") or part.name for part in _command_chain(command)
    )


def command_description(command: app_commands.Command | app_commands.Group, locale: str | None) -> str:
    """The command's one-line description in `locale`, or its own (English) one when not in the catalog."""
    catalog = catalog_ids(resolve_locale(locale))
    return catalog.get(_command_key(command) + ".description") or command.description
