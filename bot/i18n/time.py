"""Times for people: Discord timestamps (each member sees their own zone and language) and localised spans."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton

from bot.i18n.catalogs import resolve_locale, translate
from bot.spans import span_parts

TimestampStyle = Literal["t", "T", "d", "D", "f", "F", "R"]


def discord_timestamp(when: dt.datetime | float, style: TimestampStyle = "f") -> str:
    """`<t:1767225600:f>`: Discord renders it in the reader's time zone and client language."""
    seconds = when.timestamp() if isinstance(when, dt.datetime) else when
    return f"<t:{int(seconds)}:{style}>"


def format_span(seconds: float, locale: str | None, *, round_up: bool = False) -> str:
    """A wait or a window in the reader's language: '1 h 30 min', '1시간 30분'. Waits use round_up."""
    return " ".join(
        translate(f"unit.{unit}", locale, count=amount)
        for amount, unit in span_parts(seconds, round_up=round_up)
    )


def format_elapsed(seconds: float, locale: str | None) -> str:
    """A measured time (elapsed, a recording's length) like a stopwatch: '42 s', '3 min 05 s', '3분 05초'."""
    whole = int(seconds)
    if whole < 60:
        return translate("time.elapsed.seconds", locale, seconds=whole)
    return translate("time.elapsed.minutes", locale, minutes=whole // 60, seconds=f"{whole % 60:02d}")


def short_date(day: dt.date, locale: str | None) -> str:
    """A day and month as the reader's language writes them (CLDR, via Babel): 'Dec 2', '2 Dec', '12월 2일'."""
    language = resolve_locale(locale)
    # The regional form when the client's locale is a variant of a language we speak (en-GB: '2 Dec').
    tag = str(locale).replace("-", "_") if locale and str(locale).lower().startswith(language) else language
    try:
        babel_locale = Locale.parse(tag)
    except (ValueError, UnknownLocaleError):
        babel_locale = Locale.parse(language)
    return format_skeleton("MMMd", day, locale=babel_locale)
