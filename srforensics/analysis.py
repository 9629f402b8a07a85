"""Aggregates of a run's results: per-metric summaries over the outputs that finished."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def summarize(results: pd.DataFrame, metrics: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary per metric over ``status == 'ok'`` rows: count, mean, median, worst, best.

    "Worst" follows the metric's direction (the minimum of a higher-is-better
    metric). Metrics that could not be computed carry their reason instead.
    """
    ok = results[results["status"] == "ok"]
    out = []
    for m in metrics:
        name = m["name"]
        vals = ok[name].to_numpy(dtype=np.float64) if name in ok else np.array([])
        vals = vals[~np.isnan(vals)]
        finite = vals[np.isfinite(vals)]
        hib = bool(m["higher_is_better"])
        row = {
            "name": name,
            "higher_is_better": hib,
            "unit": m.get("unit", ""),
            "description": m.get("description", ""),
            "unavailable": m.get("unavailable"),
            "n": int(vals.size),
            "n_missing": int(len(ok) - vals.size),
            "mean": float(np.mean(finite)) if finite.size else None,
            "median": float(np.median(vals)) if vals.size else None,
            "worst": (float(vals.min()) if hib else float(vals.max())) if vals.size else None,
            "best": (float(vals.max()) if hib else float(vals.min())) if vals.size else None,
            "n_infinite": int(vals.size - finite.size),
        }
        out.append(row)
    return out


def status_counts(results: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in results["status"].value_counts().sort_index().items()}
