"""The /usage chart: cost per day as a small PNG (matplotlib's Agg backend; call it in a thread).

It is drawn on an opaque light card with dark text, so it reads the same on Discord's dark and light themes
(a transparent chart would need text that is legible on both, which no single grey is at embed size).
The caller passes every word already in the reader's language: this module draws, it does not translate.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

BACKGROUND = "#FFFFFF"
TEXT = "#2E3338"
GRID = "#D4D7DC"
BAR = "#5865F2"  # Discord's blurple
CAP = "#D83C3E"
# Shown at about 400 px wide in an embed: a 8 x 4 inch figure at 100 dpi is halved, so the type is large.
FIGSIZE = (8.0, 4.0)
DPI = 100
FONT = 14
MAX_TICKS = 6
LATIN_FONT = "DejaVu Sans"  # matplotlib's own; it has no Hangul, so a Korean font follows it
KOREAN_FONT_PACKAGE = "koreanize_matplotlib"  # ships the NanumGothic fonts (SIL OFL)


@functools.cache
def font_families() -> tuple[str, ...]:
    """The fonts every text is set in, in fallback order: Latin, then Hangul (registered once per process).

    The Korean font is found from the package's location without importing it: its import would change
    matplotlib's global settings, which other threads' renders share.
    """
    from matplotlib import font_manager

    spec = importlib.util.find_spec(KOREAN_FONT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "fonts" / "NanumGothic.ttf"
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            return (LATIN_FONT, font_manager.FontProperties(fname=str(path)).get_name())
    return (LATIN_FONT,)


@dataclass(frozen=True)
class CostChart:
    """What the chart shows, as plain data: the days oldest first (the last is today, still running)."""

    title: str
    days: Sequence[tuple[dt.date, float]]
    date_labels: Sequence[str]  # one per day, already in the reader's language
    cost_label: str  # the bars' legend entry
    partial_label: str  # today's bar: the day is not over
    cap: float | None = None  # a per-day cap to draw as a line (None: no cap)
    cap_label: str = ""

    @property
    def values(self) -> list[float]:
        return [cost for _, cost in self.days]

    @property
    def empty(self) -> bool:
        return not any(cost > 0 for cost in self.values)


def dollars(value: float, top: float) -> str:
    """An axis tick in dollars with as many decimals as the scale needs: $0.0025, $0.50, $12."""
    decimals = 4 if top < 0.05 else 2 if top < 20 else 0
    return f"${value:,.{decimals}f}"


def tick_positions(count: int) -> list[int]:
    """At most MAX_TICKS evenly spread days, always including today (the last)."""
    if count <= 0:
        return []
    step = max(1, -(-count // MAX_TICKS))
    positions = list(range(count - 1, -1, -step))
    return sorted(positions)


def cost_figure(chart: CostChart) -> Figure:
    """The figure, not yet saved: tests read its artists (bars, cap line, labels) instead of pixels."""
    import matplotlib

    matplotlib.use("Agg")
    # The object API, not pyplot: pyplot keeps global state that is unsafe across threads.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    values = chart.values
    figure = Figure(figsize=FIGSIZE, dpi=DPI, facecolor=BACKGROUND)
    axes = figure.subplots()
    axes.set_facecolor(BACKGROUND)
    positions = list(range(len(values)))
    bars = axes.bar(positions, values, color=BAR, label=chart.cost_label)
    if bars.patches:
        # Today is not over: its bar is hollow and hatched, and says so in the legend.
        today = bars.patches[-1]
        today.set_facecolor("none")
        today.set_edgecolor(BAR)
        today.set_hatch("///")
        today.set_linewidth(1.5)
        today.set_label(chart.partial_label)
    top = max([*values, chart.cap or 0.0, 0.0001]) * 1.2
    if chart.cap is not None and chart.cap > 0:
        axes.axhline(chart.cap, color=CAP, linestyle="--", linewidth=2, label=chart.cap_label)
    axes.set_ylim(bottom=0, top=top)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: dollars(value, top)))
    ticks = tick_positions(len(values))
    axes.set_xticks(ticks, [chart.date_labels[i] for i in ticks])
    axes.tick_params(colors=TEXT, labelsize=FONT - 2)
    axes.set_title(chart.title, fontsize=FONT + 1, color=TEXT)
    axes.grid(axis="y", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(GRID)
    handles: list[Artist] = [bars.patches[0]] if len(bars.patches) > 1 else []
    labels = [chart.cost_label] if handles else []
    if bars.patches:
        handles.append(bars.patches[-1])
        labels.append(chart.partial_label)
    if chart.cap is not None and chart.cap > 0:
        handles.append(axes.lines[-1])
        labels.append(chart.cap_label)
    # Below the plot, in one row: it never hides a bar or the cap line.
    legend = axes.legend(
        handles,
        labels,
        fontsize=FONT - 3,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=len(handles),
        frameon=False,
    )
    for text in legend.get_texts():
        text.set_color(TEXT)
    from matplotlib.text import Text

    families = list(font_families())
    for text in figure.findobj(Text):
        text.set_fontfamily(families)
    figure.tight_layout()
    return figure


def render_cost_chart(chart: CostChart) -> bytes:
    """The chart as PNG bytes. Blocking (about 100 ms): run it with asyncio.to_thread."""
    buffer = io.BytesIO()
    cost_figure(chart).savefig(buffer, format="png", facecolor=BACKGROUND)
    return buffer.getvalue()
