"""parse_duration: the forms people type, clear refusals, round-trip properties; format_seconds for people."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import BotError, InvalidInput
from bot.spans import format_seconds
from bot.util.durations import MAX_DURATION, format_duration, parse_duration

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("45s", 45),
        ("1h30m", 5400),
        ("1d2h", 93600),
        ("1h 30m", 5400),
        (" 2H ", 7200),
        ("90 minutes", 5400),
        ("1 hour 15 mins", 4500),
        ("2days", 172800),
        ("30m1h", 5400),  # order does not matter
        ("0h5m", 300),
    ],
)
def test_accepted_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("30", "needs a unit"),
        ("1.5h", "whole numbers"),
        ("-2h", "positive"),
        ("+2h", "positive"),
        ("0m", "longer than zero"),
        ("2x", "`x` is not a unit"),
        ("2 months", "`months` is not a unit"),
        ("1h1h", "appears twice"),
        ("h", "not numbers and units"),
        ("1h30", "not numbers and units"),
        ("yesterday", "not numbers and units"),
        ("1h; drop table", "not numbers and units"),
        ("٣h", "not numbers and units"),  # non-ASCII digits
        ("99999d", "maximum"),
        ("1" * 100 + "h", "too long"),
    ],
)
def test_refusals_say_why(text: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    message = caught.value.user_message()
    assert hint in message
    assert "30m" in message  # every refusal shows an example that works


@given(st.dictionaries(st.sampled_from(sorted(UNITS)), st.integers(0, 500), min_size=1))
def test_any_combination_of_units_adds_up(parts: dict[str, int]) -> None:
    text = "".join(f"{amount}{unit}" for unit, amount in parts.items())
    expected = sum(amount * UNITS[unit] for unit, amount in parts.items())
    if expected == 0 or expected > MAX_DURATION.total_seconds():
        with pytest.raises(InvalidInput):
            parse_duration(text)
    else:
        assert parse_duration(text) == dt.timedelta(seconds=expected)


@given(st.integers(1, int(MAX_DURATION.total_seconds())))
def test_format_then_parse_round_trips(seconds: int) -> None:
    duration = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_invalid_input(text: str) -> None:
    try:
        result = parse_duration(text)
    except InvalidInput as error:
        assert isinstance(error, BotError) and error.user_message()
    else:
        assert dt.timedelta(0) < result <= MAX_DURATION
        assert result.microseconds == 0


@given(
    st.lists(st.sampled_from(sorted(UNITS)), min_size=1, max_size=5, unique=True),
    st.data(),
)
def test_spacing_and_case_do_not_matter(units: list[str], data: st.DataObject) -> None:
    amounts = [data.draw(st.integers(1, 99)) for _ in units]
    plain = "".join(f"{a}{u}" for a, u in zip(amounts, units, strict=True))
    spaced = " ".join(f"{a} {u.upper()}" for a, u in zip(amounts, units, strict=True))
    assert parse_duration(spaced) == parse_duration(plain)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (9.9, "9 s"), (59.99, "59 s"), (60, "1 min 00 s"), (125, "2 min 05 s")]
)
def test_format_seconds_reads_as_people_write_it(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45, "45 s"), (90, "1 min 30 s"), (600, "10 min"), (5400, "1 h 30 min"), (86400, "1 d")],
)
def test_spans_show_their_two_largest_units_without_zero_parts(seconds: float, text: str) -> None:
    assert format_seconds(seconds, measured=False) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1 s"), (119.5, "2 min"), (3659, "1 h 1 min"), (86399, "1 d"), (50000, "13 h 54 min")],
)
def test_a_wait_rounded_up_never_reads_shorter_than_it_is(seconds: float, text: str) -> None:
    assert format_seconds(seconds, measured=False, round_up=True) == text


@given(st.floats(0, 40 * 86400))
def test_a_rounded_up_wait_is_at_least_the_real_one(seconds: float) -> None:
    shown = format_seconds(seconds, measured=False, round_up=True)
    sizes = {"d": 86400, "h": 3600, "min": 60, "s": 1}
    words = shown.split()
    assert sum(int(n) * sizes[unit] for n, unit in zip(words[::2], words[1::2], strict=True)) >= seconds
