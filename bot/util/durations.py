"""Durations as people type them (`30m`, `2h`, `1d`, `1h30m`, `30분`, `1시간 30분`) parsed to timedeltas, and back."""

from __future__ import annotations

import datetime as dt
import re

from bot.errors import InvalidInput
from bot.i18n import Message

# Longest accepted duration: far beyond any channel history worth reading, and well inside
# timedelta's range, so arithmetic with "now" can never overflow.
MAX_DURATION = dt.timedelta(days=3650)
MAX_TEXT_CHARS = 64

_UNIT_SECONDS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_NAMES: dict[str, str] = {
    "w": "w",
    "wk": "w",
    "wks": "w",
    "week": "w",
    "weeks": "w",
    "d": "d",
    "day": "d",
    "days": "d",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    # Korean: 주 (week), 일 (day), 시간 (hour), 분 (minute), 초 (second).
    "주": "w",
    "일": "d",
    "시간": "h",
    "분": "m",
    "초": "s",
}
# ASCII digits only: `\d` would also accept other scripts' digits, which nobody means here.
_PART = re.compile(r"([0-9]+)\s*([a-z]+|[\uac00-\ud7a3]+)")


def _invalid(text: str, why: str, **params: object) -> InvalidInput:
    shown = text if len(text) <= 20 else text[:19] + "…"
    return InvalidInput(message_id="duration.invalid", text=shown, why=Message(why, params))


def parse_duration(text: str) -> dt.timedelta:
    """Parse `30m`, `2h`, `1d`, `1w`, `45s` and combinations (`1h30m`, `1d 2h`); case and spaces are free.

    Raises InvalidInput (with a message for the user) for anything else: no unit, an unknown unit,
    a repeated unit, decimals, negative or zero durations, or more than MAX_DURATION.
    """
    raw = text.strip()
    lowered = raw.lower()
    if not lowered:
        raise InvalidInput(message_id="duration.empty")
    if len(lowered) > MAX_TEXT_CHARS:
        raise _invalid(raw, "duration.why.too_long")
    if lowered.startswith(("-", "+")):
        raise _invalid(raw, "duration.why.sign")
    if "." in lowered or "," in lowered:
        raise _invalid(raw, "duration.why.decimals")
    compact = lowered.replace(" ", "")
    if compact.isdigit():
        raise _invalid(raw, "duration.why.no_unit")
    total = 0
    seen: set[str] = set()
    position = 0
    for match in _PART.finditer(lowered):
        if lowered[position : match.start()].strip():
            raise _invalid(raw, "duration.why.stray")
        position = match.end()
        unit = _UNIT_NAMES.get(match.group(2))
        if unit is None:
            raise _invalid(raw, "duration.why.unknown_unit", unit=match.group(2))
        if unit in seen:
            raise _invalid(raw, "duration.why.repeated", unit=unit)
        seen.add(unit)
        total += int(match.group(1)) * _UNIT_SECONDS[unit]
        if total > MAX_DURATION.total_seconds():
            break
    if lowered[position:].strip() or not seen:
        raise _invalid(raw, "duration.why.stray")
    if total == 0:
        raise _invalid(raw, "duration.why.zero")
    if total > MAX_DURATION.total_seconds():
        raise _invalid(raw, "duration.why.too_long_span", days=MAX_DURATION.days)
    return dt.timedelta(seconds=total)


def format_duration(duration: dt.timedelta) -> str:
    """The compact form parse_duration reads back (`1d2h30m`); whole seconds only, `0s` for zero."""
    seconds = int(duration.total_seconds())
    if seconds < 0:
        raise ValueError("negative durations have no compact form")
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        amount, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
