"""Matplotlib figures as PNG data URIs (object-oriented API: no pyplot; the one state kept is
the histogram axes each thread reuses)."""

from __future__ import annotations

import base64
import io
import sys
import threading
from collections.abc import Sequence

import numpy as np

# matplotlib: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

#: This thread's histogram axes (:func:`distribution`), reused from one histogram to the next.
_HISTOGRAM = threading.local()


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    # Figures are laid out by "constrained" layout: one draw, no bbox_inches="tight" second pass.
    # zlib level 3, not Pillow's 6: a third of a histogram's time less, files a tenth larger.
    fig.savefig(
        buf,
        format="png",
        dpi=100,
        metadata={"Software": None},
        pil_kwargs={"compress_level": 3},
    )
    return png_data_uri(buf.getvalue())


def drawing_loaded() -> bool:
    """Whether this process has loaded matplotlib's drawing: a first figure costs its import
    (0.3 to 0.6 s) where it has not, about 30 ms where it has."""
    return "matplotlib.backends.backend_agg" in sys.modules


def _new_histogram_axes():
    from matplotlib.figure import Figure

    # Fixed margins (the labels here are short and of known size): a constrained layout
    # costs two thirds more, and a report draws one of these per metric.
    fig = Figure(figsize=(4.2, 2.4))
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.88)
    return fig.add_subplot()


def _reused_histogram_axes():
    """This thread's histogram axes, emptied of the last histogram's artists (made on first
    use). The axes, and their ticks, stay: a new Axes makes its ticks anew, which took two
    fifths of a histogram's time. The PNG is the same, byte for byte, as a new figure's
    (tests/test_figures.py draws both)."""
    ax = getattr(_HISTOGRAM, "axes", None)
    if ax is None:
        ax = _HISTOGRAM.axes = _new_histogram_axes()
        return ax
    for artist in (*ax.patches, *ax.lines):
        artist.remove()
    ax.relim()  # and the data limits are the new artists' alone
    return ax


def distribution(
    values: Sequence[float],
    *,
    title: str,
    higher_is_better: bool,
    groups: Sequence[str] | None = None,
) -> str:
    """Histogram of one metric's values with each value as a tick below (rug)."""
    from matplotlib.ticker import MaxNLocator

    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    # Reused only for values: the empty picture's default limits are a new axes's.
    ax = _reused_histogram_axes() if vals.size else _new_histogram_axes()
    if vals.size:
        # One filled outline, not a rectangle per bin: the same picture, drawn faster.
        bins = min(20, max(5, vals.size))
        ax.hist(vals, bins=bins, histtype="stepfilled", color="#4a6fa5", alpha=0.85)
        ax.plot(vals, np.zeros_like(vals), "|", color="#222", markersize=10)
        mean = float(np.mean(vals))
        ax.axvline(mean, color="#c0392b", linestyle="--", linewidth=1)
        # The mean's value in the title, not a legend: a legend's boxes took a fifth of a
        # histogram's time, and the value says more than the word.
        said = f"; dashed: mean {mean:.4g}"
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        said = ""
    # The title at a given height (nothing is drawn above the axes): placing it automatically
    # measures every tick label first. Five ticks at most per axis: each costs a label drawn.
    ax.set_title(
        f"{title} ({'higher' if higher_is_better else 'lower'} is better){said}",
        fontsize=9,
        y=1.0,
    )
    ax.set_ylabel("outputs", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))  # counts
    return _figure_png(ax.figure)


def warm_up() -> None:
    """Draw a histogram and discard it: what a first figure costs in a process (loading the
    fonts, making the axes the next histograms of this thread reuse; about 80 ms where the
    next take 30) is paid now. Loader processes do it once they have no record left to load,
    before the run's end hands them the report's histograms."""
    distribution([0.0, 1.0], title="warm-up", higher_is_better=True)


def group_means(
    rows: Sequence[dict], *, metric: str, feature: str, overall: float | None = None
) -> str:
    """Per-group means with their CI as error bars, the overall mean as a dashed line, and
    each group's number of records under its label; small groups drawn hollow, a group
    without an interval as a bare point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 2.8), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{r['group']}\n{r['n_records']} rec." for r in rows]
    x = np.arange(len(rows))
    for i, r in enumerate(rows):
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            _interval(ax, x[i], r["ci_low"], r["ci_high"], color="#4a6fa5")
        ax.plot(
            x[i],
            r["mean"],
            "o",
            color="#4a6fa5",
            markerfacecolor="white" if r["small"] else "#4a6fa5",
        )
    if overall is not None:
        ax.axhline(overall, color="#888888", linestyle="--", linewidth=1)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=6)
    ax.set_title(
        f"{metric} by {feature} (95% CI, records resampled; dashed: overall; hollow: small)",
        fontsize=7,
    )
    ax.tick_params(labelsize=7)
    return _figure_png(fig)


def _interval(ax, x: float, low: float, high: float, *, color: str) -> None:
    """A vertical bar with caps from ``low`` to ``high``, drawn as the bounds are (an error
    bar measured from the mean could not show an interval that excludes it)."""
    ax.vlines(x, low, high, color=color, linewidth=1)
    ax.plot([x, x], [low, high], "_", color=color, markersize=6)


def scatter(
    x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str, xline: float | None = None
) -> str:
    """One point per output; a dashed line at ``xline`` (e.g. the 45 dB consistency threshold)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=10, alpha=0.7, color="#4a6fa5")
    if xline is not None:
        ax.axvline(xline, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _figure_png(fig)


def compare_groups(rows: Sequence[dict], *, metric: str, feature: str) -> str:
    """Per-group means with CIs, one series per run, side by side."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 2.8), layout="constrained")
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(str(r["group"]) for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    width = 0.8 / max(len(runs), 1)
    for k, run in enumerate(runs):
        sel = [r for r in rows if r["run"] == run]
        x = (
            np.array([groups.index(str(r["group"])) for r in sel])
            + (k - (len(runs) - 1) / 2) * width
        )
        means = np.array([r["mean"] for r in sel], dtype=float)
        (point,) = ax.plot(x, means, "o", label=run)
        for xi, r in zip(x, sel, strict=True):
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                _interval(ax, xi, r["ci_low"], r["ci_high"], color=point.get_color())
    ax.set_xticks(np.arange(len(groups)), groups, rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{metric} by {feature} (95% CI)", fontsize=8)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
    return _figure_png(fig)
