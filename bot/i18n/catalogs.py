"""The .po catalogs, read with Babel when first needed and looked up with gettext's plural rules.

The `.po` files in `bot/i18n/locales/<lang>/LC_MESSAGES/bot.po` are the only source: they are parsed at run
time (a few hundred messages, once per process) and compiled in memory to gettext's binary form, so there is
no build step, no `.mo` file that can go stale beside its `.po`, and nothing is downloaded. Message ids are
stable keys (`error.quota`), not English sentences: the English catalog is a translation like any other,
so fixing an English typo never orphans the Korean text.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"
# The languages with a catalog; every other locale Discord sends falls back to English.
LOCALES: tuple[str, ...] = ("en", "ko")
DOMAIN = "bot"


def resolve_locale(locale: str | None) -> str:
    """The catalog for a Discord locale: `ko` -> ko, `en-US`/`en-GB` -> en, anything unknown -> en."""
    if not locale:
        return DEFAULT_LOCALE
    text = str(locale).replace("_", "-").lower()
    if text in LOCALES:
        return text
    language = text.split("-", 1)[0]
    return language if language in LOCALES else DEFAULT_LOCALE


def _read_catalog(language: str) -> gettext.GNUTranslations:
    path = resources.files("bot.i18n").joinpath("locales", language, "LC_MESSAGES", f"{DOMAIN}.po")
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    # Fuzzy entries (a translator's unchecked guess) are left out, so English shows instead.
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@dataclass(frozen=True)
class Translations:
    """Every catalog, each falling back to English, then to the message id itself."""

    by_language: dict[str, gettext.GNUTranslations]

    def text(self, message_id: str, locale: str | None, count: int | None = None) -> str:
        language = resolve_locale(locale)
        catalog = self.by_language[language]
        if count is None:
            return catalog.gettext(message_id)
        # Plural entries are keyed by their id; the plural id is the id with `_plural` appended.
        return catalog.ngettext(message_id, message_id + "_plural", count)


@functools.cache
def translations() -> Translations:
    """The catalogs, read once per process (they are package data and never change at run time)."""
    english = _read_catalog(DEFAULT_LOCALE)
    by_language = {DEFAULT_LOCALE: english}
    for language in LOCALES:
        if language != DEFAULT_LOCALE:
            catalog = _read_catalog(language)
            catalog.add_fallback(english)
            by_language[language] = catalog
    return Translations(by_language)


class _Params(dict[str, object]):
    """Format parameters that leave an unknown `{name}` as it is instead of failing the whole message."""

    def __missing__(self, key: str) -> str:
        log.warning("a translation uses the unknown parameter %r", key)
        return "{" + key + "}"


@dataclass(frozen=True)
class Message:
    """A catalog message and its parameters, rendered later in the reader's language (also as a parameter)."""

    message_id: str
    params: Mapping[str, object] = field(default_factory=dict)

    def render(self, locale: str | None) -> str:
        return translate(self.message_id, locale, **self.params)


def translate(message_id: str, locale: str | None = None, /, **params: object) -> str:
    """The text of `message_id` in `locale` (a Discord locale such as `ko` or `en-US`), with `{params}` filled.

    An int `count` parameter picks the plural form. A message missing from a language shows in English; a
    message missing from every catalog shows its id, which a test forbids.
    """
    count = params.get("count")
    template = translations().text(message_id, locale, count if isinstance(count, int) else None)
    rendered = {k: v.render(locale) if isinstance(v, Message) else v for k, v in params.items()}
    return string.Formatter().vformat(template, (), _Params(rendered))


@functools.cache
def catalog_ids(language: str) -> dict[str, str]:
    """Every message id in a language's catalog and its text (plural entries: their first form).
    Read once per process; callers must not change the mapping."""
    path = resources.files("bot.i18n").joinpath("locales", language, "LC_MESSAGES", f"{DOMAIN}.po")
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language, domain=DOMAIN)
    out: dict[str, str] = {}
    for message in catalog:
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        text = message.string[0] if isinstance(message.string, tuple | list) else message.string
        out[str(key)] = "" if message.fuzzy else str(text or "")
    return out
