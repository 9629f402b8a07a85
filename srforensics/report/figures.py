"""Matplotlib figures as PNG data URIs (object-oriented API: no pyplot, no global state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return png_data_uri(buf.getvalue())


def distribution(
    values: Sequence[float],
    *,
    title: str,
    higher_is_better: bool,
    groups: Sequence[str] | None = None,
) -> str:
    """Histogram of one metric's values with each value as a tick below (rug)."""
    from matplotlib.figure import Figure

    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    fig = Figure(figsize=(4.2, 2.4))
    ax = fig.add_subplot()
    if vals.size:
        ax.hist(vals, bins=min(20, max(5, vals.size)), color="#4a6fa5", alpha=0.85)
        ax.plot(vals, np.zeros_like(vals), "|", color="#222", markersize=10)
        ax.axvline(float(np.mean(vals)), color="#c0392b", linestyle="--", linewidth=1, label="mean")
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"{title} ({'higher' if higher_is_better else 'lower'} is better)", fontsize=9)
    ax.set_ylabel("outputs", fontsize=8)
    ax.tick_params(labelsize=7)
    return _figure_png(fig)
