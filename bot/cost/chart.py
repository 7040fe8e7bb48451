"""The /usage chart: cost per day as a small PNG (matplotlib's Agg backend; call it in a thread)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence


def render_cost_chart(days: Sequence[tuple[dt.date, float]], title: str) -> bytes:
    """A bar chart of USD per day. Blocking (about 50 ms): run it with asyncio.to_thread."""
    import matplotlib

    matplotlib.use("Agg")
    # The object API, not pyplot: pyplot keeps global state that is unsafe across threads.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 2.6), dpi=100)
    axes = figure.subplots()
    labels = [day.strftime("%d %b") for day, _ in days]
    values = [cost for _, cost in days]
    axes.bar(range(len(values)), values, color="#5865F2")
    step = max(1, len(labels) // 6)
    axes.set_xticks(range(0, len(labels), step), labels[::step], fontsize=8)
    axes.set_ylabel("USD / day", fontsize=8)
    axes.tick_params(axis="y", labelsize=8)
    axes.set_ylim(bottom=0, top=max(values + [0.01]) * 1.15)
    axes.set_title(title, fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
