"""The report's figures, drawn with matplotlib (Agg, no display) as SVG (or PNG) bytes.

Each function takes the report's data (``view``) and returns one figure; nothing here reads
files or decides what is true. Colours: one per run or client (matplotlib's cycle); faults
shaded in red (light: while being applied or removed; dark: surely in force), violations as
red crosses, reconnects as dashed orange lines.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.experiment.view import RunView, SweepPoint

WIDTH = 7.5
MAX_LEGEND = 12


FORMATS = ("svg", "png")
PNG_DPI = 100  # a 7.5-inch figure 750 pixels wide: readable, tens of KB


def _svg(figure: Figure, fmt: str = "svg") -> bytes:
    """The figure as ``fmt``: SVG for the report (text stays text: searchable, smaller, in the
    reader's own sans-serif), PNG for pages that show images (the README's)."""
    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt, bbox_inches="tight", dpi=PNG_DPI)
    return buffer.getvalue()


def cdf(views: Sequence[RunView], fmt: str = "svg") -> bytes:
    """Round-trip CDFs, one line per run, on a log axis (fault delays span decades)."""
    figure = Figure(figsize=(WIDTH, 4))
    axes = figure.subplots()
    for view in views:
        x, y = view.cdf
        if x.size:
            axes.step(x, y, where="post", label=f"{view.id} {view.label}", linewidth=1.2)
    axes.set_xscale("log")
    axes.set_xlabel("round trip (ms)")
    axes.set_ylabel("fraction of replies ≤ x")
    axes.set_ylim(0, 1.01)
    axes.grid(True, which="both", alpha=0.3)
    if 0 < len(views) <= MAX_LEGEND:
        axes.legend(fontsize=7, loc="lower right")
    return _svg(figure, fmt)


def sweep(key: str, points: Sequence[SweepPoint], order: Sequence[Any], fmt: str = "svg") -> bytes:
    """p50 and p99 (and throughput) against ``key``: every repetition a dot, the median of the
    repetitions a line, the spread the range the dots cover."""
    figure = Figure(figsize=(WIDTH, 3.4))
    latency, rate = figure.subplots(1, 2)
    position = {value: i for i, value in enumerate(order)}
    series: list[tuple[str, Callable[[SweepPoint], float | None], Axes, str]] = [
        ("p50", lambda p: p.p50, latency, "o"),
        ("p99", lambda p: p.p99, latency, "^"),
        ("throughput", lambda p: p.throughput, rate, "s"),
    ]
    for name, pick, axes, marker in series:
        xs, medians = [], []
        for value in order:
            ys = [y for p in points if p.value == value and (y := pick(p)) is not None]
            if not ys:
                continue
            axes.scatter([position[value]] * len(ys), ys, marker=marker, alpha=0.5, s=18)
            xs.append(position[value])
            medians.append(sorted(ys)[len(ys) // 2])
            axes.vlines(position[value], min(ys), max(ys), alpha=0.4)
        axes.plot(xs, medians, marker=marker, label=name)
    for axes, unit in ((latency, "round trip (ms)"), (rate, "replies/s")):
        axes.set_xticks(range(len(order)), [str(v) for v in order])
        axes.set_xlabel(key)
        axes.set_ylabel(unit)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return _svg(figure, fmt)


def timeline(view: RunView, fmt: str = "svg") -> bytes:
    """Each client's round trips over the run, with the faults in force shaded and labelled,
    every violation and reconnect marked where it happened."""
    figure = Figure(figsize=(WIDTH, 3.2))
    axes = figure.subplots()
    for client, (t, rtt) in view.lanes.items():
        axes.plot(t, rtt, linewidth=0.8, label=client)
    for n, period in enumerate(view.periods):
        axes.axvspan(period.start, period.end, color="tab:red", alpha=0.08)
        axes.axvspan(period.sure_start, period.sure_end, color="tab:red", alpha=0.18)
        axes.annotate(
            period.label,
            (period.start, 1.0 - 0.07 * (n % 4)),  # staggered: faults close in time stay legible
            xycoords=("data", "axes fraction"),
            fontsize=7,
            va="top",
            color="tab:red",
        )
    violations = [m for m in view.marks if m.kind != "reconnect"]
    if violations:
        axes.scatter(
            [m.t for m in violations], [0.0] * len(violations), marker="x", color="red",
            zorder=5, label=f"violations ({len(violations)})",
        )  # fmt: skip
    for mark in (m for m in view.marks if m.kind == "reconnect"):
        axes.axvline(mark.t, color="tab:orange", linewidth=1, linestyle="--")
    axes.set_xlabel("seconds since the clients were let go")
    axes.set_ylabel("round trip (ms)")
    highest = max((float(rtt.max()) for _, rtt in view.lanes.values() if rtt.size), default=0.0)
    if highest > 10.0:  # faults of tens of ms beside sub-millisecond replies: both visible
        axes.set_yscale("symlog", linthresh=1.0)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    if len(view.lanes) <= MAX_LEGEND:
        axes.legend(fontsize=7, loc="upper right")
    axes.set_title(f"{view.id} {view.label}", fontsize=9)
    return _svg(figure, fmt)
