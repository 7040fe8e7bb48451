"""Durations typed in Korean units, and refusals in the reader's language."""

from __future__ import annotations

import datetime as dt

import pytest

from bot import errors
from bot.util.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30분", dt.timedelta(minutes=30)),
        ("2시간", dt.timedelta(hours=2)),
        ("1일", dt.timedelta(days=1)),
        ("1시간 30분", dt.timedelta(hours=1, minutes=30)),
        ("1시간30분", dt.timedelta(hours=1, minutes=30)),
        ("45초", dt.timedelta(seconds=45)),
        ("1주", dt.timedelta(weeks=1)),
        ("1일 2h", dt.timedelta(days=1, hours=2)),
    ],
)
def test_korean_units(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


def test_refusals_follow_the_reader() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        parse_duration("1시간 1시간")
    assert "두 번" in caught.value.user_message("ko")
    assert "appears twice" in caught.value.user_message("en-US")
    with pytest.raises(errors.InvalidInput) as caught:
        parse_duration("3개월")
    assert "`개월`은(는) 단위가 아닙니다" in caught.value.user_message("ko")
