"""The /usage chart's content, read from the figure's artists: bars, today, the cap line, the $ axis, labels."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.cost.chart import BACKGROUND, CostChart, cost_figure, font_families, tick_positions
from bot.i18n import translate
from bot.i18n.time import short_date

DAYS = [(dt.date(2026, 11, 3) + dt.timedelta(days=k), round(0.01 * (k % 5), 4)) for k in range(30)]


def chart(locale: str, cap: float | None = 0.05) -> CostChart:
    return CostChart(
        title=translate("usage.chart.title.user", locale),
        days=DAYS,
        date_labels=[short_date(day, locale) for day, _ in DAYS],
        cost_label=translate("usage.chart.cost", locale),
        partial_label=translate("usage.chart.today", locale),
        cap=cap,
        cap_label=translate("usage.chart.cap.user", locale, cap="$0.05") if cap else "",
    )


def test_bars_are_the_daily_costs_and_today_is_drawn_as_partial() -> None:
    figure = cost_figure(chart("en-US"))
    [axes] = figure.axes
    bars = axes.patches
    assert [round(b.get_height(), 4) for b in bars] == [cost for _, cost in DAYS]
    *days, today = bars
    assert today.get_hatch() == "///" and today.get_facecolor()[3] == 0  # hollow, hatched
    assert all(not b.get_hatch() and b.get_facecolor()[3] == 1 for b in days)


def test_the_cap_is_a_line_at_its_value_and_named_in_the_legend() -> None:
    figure = cost_figure(chart("en-US"))
    [axes] = figure.axes
    [cap] = axes.lines
    assert list(cap.get_ydata()) == [0.05, 0.05]
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["Cost (USD)", "Today (so far)", "Your daily cap $0.05"]
    assert axes.get_ylim()[1] > 0.05  # the line is inside the plot
    uncapped = cost_figure(chart("en-US", cap=None)).axes[0]
    assert len(uncapped.lines) == 0 and len(uncapped.get_legend().get_texts()) == 2


def test_the_axis_is_in_dollars_and_the_days_are_dated_in_the_readers_language() -> None:
    figure = cost_figure(chart("ko"))
    figure.canvas.draw()
    [axes] = figure.axes
    money = [t.get_text() for t in axes.get_yticklabels() if t.get_text()]
    assert money and all(label.startswith("$") for label in money)
    assert "$0.04" in money
    dates = [t.get_text() for t in axes.get_xticklabels()]
    assert dates[-1] == "12월 2일"  # today is always labelled
    assert axes.get_title() == "최근 30일 나의 일별 비용"
    assert [t.get_text() for t in axes.get_legend().get_texts()][1] == "오늘(진행 중)"
    english = cost_figure(chart("en-US")).axes[0]
    assert english.get_xticklabels()[-1].get_text() == "Dec 2"


def test_korean_text_has_a_hangul_font_and_the_card_is_opaque() -> None:
    assert len(font_families()) == 2, "no Hangul font: Korean labels would show as boxes"
    figure = cost_figure(chart("ko"))
    assert figure.get_facecolor()[3] == 1 and figure.axes[0].get_facecolor()[3] == 1
    assert figure.get_facecolor()[:3] == pytest.approx(
        tuple(int(BACKGROUND[i : i + 2], 16) / 255 for i in (1, 3, 5))
    )
    assert figure.axes[0].title.get_fontfamily() == list(font_families())
    assert figure.axes[0].title.get_fontsize() >= 14  # legible when Discord halves the image in an embed


def test_empty_when_nothing_was_spent() -> None:
    quiet = CostChart("t", [(day, 0.0) for day, _ in DAYS], [""] * 30, "c", "p")
    assert quiet.empty and not chart("en-US").empty


@pytest.mark.parametrize(("count", "expected"), [(30, [4, 9, 14, 19, 24, 29]), (3, [0, 1, 2]), (0, [])])
def test_ticks_always_include_today(count: int, expected: list[int]) -> None:
    assert tick_positions(count) == expected
