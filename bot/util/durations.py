"""Durations as people type them (`30m`, `2h`, `1d`, `1h30m`) parsed to timedeltas, and back."""

from __future__ import annotations

import datetime as dt
import re

from bot.errors import InvalidInput

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
}
# ASCII digits only: `\d` would also accept other scripts' digits, which nobody means here.
_PART = re.compile(r"([0-9]+)\s*([a-z]+)")
_EXAMPLES = "like `30m`, `2h`, `1d` or `1h30m`"


def _invalid(text: str, why: str) -> InvalidInput:
    shown = text if len(text) <= 20 else text[:19] + "…"
    return InvalidInput(f"`{shown}` is not a duration I understand: {why}. Use a duration {_EXAMPLES}.")


def parse_duration(text: str) -> dt.timedelta:
    """Parse `30m`, `2h`, `1d`, `1w`, `45s` and combinations (`1h30m`, `1d 2h`); case and spaces are free.

    Raises InvalidInput (with a message for the user) for anything else: no unit, an unknown unit,
    a repeated unit, decimals, negative or zero durations, or more than MAX_DURATION.
    """
    raw = text.strip()
    lowered = raw.lower()
    if not lowered:
        raise InvalidInput(f"The duration is empty. Use a duration {_EXAMPLES}.")
    if len(lowered) > MAX_TEXT_CHARS:
        raise _invalid(raw, "it is too long")
    if lowered.startswith(("-", "+")):
        raise _invalid(raw, "it must be a positive amount of time, without a sign")
    if "." in lowered or "," in lowered:
        raise _invalid(raw, "use whole numbers (for example `1h30m` instead of `1.5h`)")
    compact = lowered.replace(" ", "")
    if compact.isdigit():
        raise _invalid(raw, "it needs a unit (`s`, `m`, `h`, `d` or `w`); `m` means minutes")
    total = 0
    seen: set[str] = set()
    position = 0
    for match in _PART.finditer(lowered):
        if lowered[position : match.start()].strip():
            raise _invalid(raw, "it has characters that are not numbers and units")
        position = match.end()
        unit = _UNIT_NAMES.get(match.group(2))
        if unit is None:
            raise _invalid(
                raw, f"`{match.group(2)}` is not a unit (use `s`, `m`, `h`, `d` or `w`; `m` means minutes)"
            )
        if unit in seen:
            raise _invalid(raw, f"the unit `{unit}` appears twice")
        seen.add(unit)
        total += int(match.group(1)) * _UNIT_SECONDS[unit]
        if total > MAX_DURATION.total_seconds():
            break
    if lowered[position:].strip() or not seen:
        raise _invalid(raw, "it has characters that are not numbers and units")
    if total == 0:
        raise _invalid(raw, "it must be longer than zero")
    if total > MAX_DURATION.total_seconds():
        raise _invalid(raw, f"it is longer than the maximum of {MAX_DURATION.days} days")
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
