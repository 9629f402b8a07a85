"""Aggregates of a run's results: per-metric summaries, flags, and per-input (best/worst/mean of N) tables."""

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


def with_flags(results: pd.DataFrame) -> pd.DataFrame:
    """Add ``inconsistent``: an ok output whose LR-PSNR is under 45 dB (NTIRE), i.e. it
    "contains content the evidence does not support". Missing when LR-PSNR is."""
    import pandas as pd

    from srforensics.metrics.fidelity import CONSISTENCY_DB

    out = results.copy()
    if "lr_psnr" in out:
        flag = pd.Series(pd.NA, index=out.index, dtype="boolean")
        known = (out["status"] == "ok") & out["lr_psnr"].notna()
        flag[known] = out.loc[known, "lr_psnr"] < CONSISTENCY_DB
        pos = list(out.columns).index("lr_psnr") + 1
        out.insert(pos, "inconsistent", flag)
    return out


def per_input(
    results: pd.DataFrame, metrics: Sequence[Mapping[str, Any]], lr_scores: pd.DataFrame
) -> pd.DataFrame:
    """One row per LR: best-, worst- and mean-of-N of every metric, diversity and spread.

    "Worst" follows each metric's direction; it is what matters in court.
    """
    import pandas as pd

    keys = ["record_id", "variant"]
    first = results.drop_duplicates(keys)
    attr_cols = [
        c for c in results.columns[: list(results.columns).index("variant")] if c not in keys
    ]
    rows = first[keys + attr_cols].set_index(keys)
    ok = results[results["status"] == "ok"]
    grouped = ok.groupby(keys)
    table = pd.DataFrame(index=rows.index)
    table["n_outputs"] = results.groupby(keys).size()
    table["n_ok"] = grouped.size()
    table["n_ok"] = table["n_ok"].fillna(0).astype(int)
    for m in metrics:
        name = m["name"]
        if m.get("unavailable") or name not in ok:
            continue
        hib = bool(m["higher_is_better"])
        g = grouped[name]
        table[f"{name}_mean"] = g.mean()
        table[f"{name}_worst"] = g.min() if hib else g.max()
        table[f"{name}_best"] = g.max() if hib else g.min()
    if "inconsistent" in results:
        table["n_inconsistent"] = grouped["inconsistent"].sum().astype("Int64")
    if len(lr_scores):
        wide = lr_scores.pivot_table(
            index=keys, columns="name", values="value", aggfunc="first", dropna=False
        )
        table = table.join(wide)
        paths = lr_scores.drop_duplicates(keys).set_index(keys)["std_map_path"]
        table["std_map_path"] = paths
        notes = lr_scores[lr_scores["name"] == "diversity"].set_index(keys)["note"]
        table["diversity_note"] = notes
    return rows.join(table).reset_index()


#: Identity rates reported per run: column -> what a rate of it means.
IDENTITY_RATES = {
    "id_swap": "identity swap rate (rank-1 subject is not the output's own)",
    "id_false_match": "false-match rate (matches another subject at the threshold)",
    "id_verified": "verification rate (matches its own HR at the threshold)",
    "face_detected": "rate of outputs in which MTCNN finds a face",
}


def bootstrap_rate(
    values: np.ndarray,
    clusters: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Rate with a percentile bootstrap CI, resampling whole clusters (records) with replacement.

    The N outputs of one record are not independent, so records, not outputs, are resampled.
    """
    values = np.asarray(values, dtype=np.float64)
    ids, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    rate = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    boot = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = (1 - level) / 2
    return rate, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def identity_rates(
    results: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000
) -> dict[str, dict[str, Any]]:
    """Per-run identity rates with 95% bootstrap confidence intervals (records resampled)."""
    ok = results[results["status"] == "ok"]
    out: dict[str, dict[str, Any]] = {}
    for col, meaning in IDENTITY_RATES.items():
        if col not in ok:
            continue
        rows = ok[ok[col].notna()]
        if rows.empty:
            continue
        rate, lo, hi = bootstrap_rate(
            rows[col].to_numpy(), rows["record_id"].to_numpy(), seed=seed, n_boot=n_boot
        )
        out[col] = {
            "meaning": meaning,
            "rate": rate,
            "ci_low": lo,
            "ci_high": hi,
            "ci_level": 0.95,
            "n_outputs": int(len(rows)),
            "n_records": int(rows["record_id"].nunique()),
        }
    return out
