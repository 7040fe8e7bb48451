"""Times for people: Discord timestamps (each member sees their own zone and language) and localised spans."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from bot.i18n.catalogs import translate
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
