"""Spans of time written for people: the one formatter every message uses (errors and cogs alike)."""

from __future__ import annotations

import math

_SPAN_UNITS: tuple[tuple[str, int], ...] = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def format_seconds(seconds: float, *, measured: bool = True, round_up: bool = False) -> str:
    """A time span for people, the one formatter every message uses.

    measured (an elapsed time, a recording's length): like a stopwatch, '42 s' or '3 min 05 s', cut down
    to whole seconds. Otherwise (a timeout, a window, a wait) the two largest units without zero parts:
    '45 s', '10 min', '1 h 30 min', '2 d'. `round_up` is for waits, which must never read shorter than
    they are: the remainder past the units shown counts as one more of the smaller one.
    """
    if measured:
        whole = int(seconds)
        return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"
    return " ".join(f"{amount} {unit}" for amount, unit in span_parts(seconds, round_up=round_up))


def span_parts(seconds: float, *, round_up: bool = False) -> list[tuple[int, str]]:
    """The two largest non-zero units of a span, as (amount, unit) with units `d`, `h`, `min`, `s`."""
    total = max(0, math.ceil(seconds) if round_up else int(seconds))
    largest = next((i for i, (_, size) in enumerate(_SPAN_UNITS) if total >= size), len(_SPAN_UNITS) - 1)
    smallest = _SPAN_UNITS[min(largest + 1, len(_SPAN_UNITS) - 1)][1]
    total = (math.ceil(total / smallest) if round_up else total // smallest) * smallest
    # Rounding up may carry into a larger unit (59 min 59 s -> 1 h): pick the units again.
    largest = next((i for i, (_, size) in enumerate(_SPAN_UNITS) if total >= size), len(_SPAN_UNITS) - 1)
    parts: list[tuple[int, str]] = []
    for name, size in _SPAN_UNITS[largest : largest + 2]:
        amount, total = divmod(total, size)
        if amount:
            parts.append((amount, name))
    return parts or [(0, "s")]
