"""Aggregates of a run's results: per-metric summaries, flags, and per-input (best/worst/mean of N) tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    parts = [results.groupby(keys).size().rename("n_outputs"), grouped.size().rename("n_ok")]
    scored = [m for m in metrics if not m.get("unavailable") and m["name"] in ok]
    if scored:  # each statistic of every metric at once, and one alignment for them all
        sub = grouped[[m["name"] for m in scored]]
        stat = {"mean": sub.mean(), "min": sub.min(), "max": sub.max()}
        block = {}
        for m in scored:
            name, hib = m["name"], bool(m["higher_is_better"])
            block[f"{name}_mean"] = stat["mean"][name].array
            block[f"{name}_worst"] = stat["min" if hib else "max"][name].array
            block[f"{name}_best"] = stat["max" if hib else "min"][name].array
        parts.append(pd.DataFrame(block, index=stat["mean"].index))
    if "inconsistent" in results:
        parts.append(grouped["inconsistent"].sum().astype("Int64").rename("n_inconsistent"))
    table = pd.concat(parts, axis=1).reindex(rows.index)
    table["n_ok"] = table["n_ok"].fillna(0).astype(int)
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


@dataclass(frozen=True)
class LedgerTables:
    """A run's results (with flags) and its per-input table, read from its ledger once and
    shared by what needs them at the end of a run (exports, report)."""

    results: pd.DataFrame
    per_input: pd.DataFrame

    @classmethod
    def read(cls, ledger) -> LedgerTables:
        """Read them from an open :class:`~srforensics.ledger.Ledger`."""
        results = with_flags(ledger.results())
        return cls(results, per_input(results, ledger.metrics(), ledger.lr_scores()))

    def with_image_paths(self, ledger, lrs: Sequence[tuple[str, int]]) -> LedgerTables:
        """These tables with the image paths of ``lrs`` (``(record_id, variant)``) read again
        from ``ledger``: the tables :meth:`read` gives after those LRs' images were saved
        (the galleries'), without reading the rest again."""
        results, per = self.results.copy(), self.per_input.copy()
        for record_id, variant in lrs:
            record, lr = ledger.record(record_id), ledger.lr(record_id, variant)
            outputs = {r["sample"]: r["output_path"] for r in ledger.outputs_of(record_id, variant)}
            of_record = results["record_id"] == record_id
            mine = of_record & (results["variant"] == variant)
            results.loc[of_record, "hr_path"] = record["hr_path"]
            results.loc[mine, "lr_path"] = lr["lr_path"]
            results.loc[mine, "output_path"] = results.loc[mine, "sample"].map(outputs)
            if "std_map_path" in per:
                mine = (per["record_id"] == record_id) & (per["variant"] == variant)
                per.loc[mine, "std_map_path"] = lr["std_map_path"]
        return LedgerTables(results, per)


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


# -- demographic breakdowns ------------------------------------------------------------------
#: Per-output error indicators whose group rates get the NIST IR 8429 max/geomean disparity.
ERROR_RATES = ("id_swap", "id_false_match", "inconsistent", "face_missing")
DEFAULT_MIN_GROUP = 30


def with_error_columns(results: pd.DataFrame) -> pd.DataFrame:
    """Add ``face_missing`` (1 - face_detected) so every error rate is a 0/1 column."""
    out = results.copy()
    if "face_detected" in out:
        out["face_missing"] = 1.0 - out["face_detected"]
    if "inconsistent" in out:
        out["inconsistent"] = out["inconsistent"].astype("Float64").astype(float)
    return out


def features(
    attribute_names: Sequence[str], *, intersections: bool = True
) -> list[tuple[str, ...]]:
    """Each sensitive attribute, and every pair of them (e.g. race x gender)."""
    singles = [(a,) for a in attribute_names]
    pairs = [(a, b) for i, a in enumerate(attribute_names) for b in attribute_names[i + 1 :]]
    return singles + (pairs if intersections else [])


def _label(values: Any) -> str:
    return "×".join(str(v) for v in values) if isinstance(values, tuple) else str(values)


def breakdown(
    results: pd.DataFrame,
    columns: Sequence[str],
    attribute_names: Sequence[str],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    min_group: int = DEFAULT_MIN_GROUP,
    intersections: bool = True,
) -> pd.DataFrame:
    """Overall and per-group count, mean and bootstrap CI of every column (fairlearn ``MetricFrame``).

    Rows: ``metric, feature, group, n, mean, ci_low, ci_high, small``. One MetricFrame per
    feature evaluates every metric on the same bootstrap replicates (``y_pred`` carries
    row indices into the metric columns); the overall row comes from the first one. Groups
    with fewer than ``min_group`` outputs are flagged ``small``. fairlearn's bootstrap
    resamples rows (outputs).
    """
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    ok = results[results["status"] == "ok"].reset_index(drop=True)
    columns = [c for c in columns if c in ok and pd.api.types.is_numeric_dtype(ok[c])]
    alpha = (1 - level) / 2
    rows: list[dict[str, Any]] = []
    if ok.empty or not columns:
        return pd.DataFrame(
            rows, columns=["metric", "feature", "group", "n", "mean", "ci_low", "ci_high", "small"]
        )
    data = {c: ok[c].to_numpy(dtype=np.float64) for c in columns}

    def mean_of(col):
        def f(yt, yp):
            v = data[col][yp.astype(int)]
            v = v[np.isfinite(v)]
            return float(v.mean()) if v.size else float("nan")

        return f

    funcs = {c: mean_of(c) for c in columns}
    for k, feat in enumerate(features(list(attribute_names), intersections=intersections)):
        mask = ok[list(feat)].notna().all(axis=1).to_numpy()
        sel = ok.index.to_numpy()[mask]
        if len(sel) == 0:
            continue
        sensitive = ok.loc[mask, list(feat)].astype(str).reset_index(drop=True)
        import warnings

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            mf = MetricFrame(
                metrics=funcs,
                y_true=np.zeros(len(sel)),
                y_pred=sel.astype(float),
                sensitive_features=sensitive,
                n_boot=n_boot,
                ci_quantiles=[alpha, 1 - alpha],
                random_state=seed,
            )
        counts = ok.loc[mask].groupby(list(feat))[columns].count()
        if (
            k == 0
        ):  # the overall row, from the first frame (over rows where that attribute is known)
            for c in columns:
                n = int(np.isfinite(data[c][sel]).sum())
                if n:
                    rows.append(
                        {
                            "metric": c,
                            "feature": "overall",
                            "group": "all",
                            "n": n,
                            "mean": float(mf.overall[c]),
                            "ci_low": float(mf.overall_ci[0][c]),
                            "ci_high": float(mf.overall_ci[1][c]),
                            "small": False,
                        }
                    )
        by, lo, hi = mf.by_group, mf.by_group_ci[0], mf.by_group_ci[1]
        for group in by.index:
            key = group if isinstance(group, tuple) else (group,)
            for c in columns:
                idx = key if len(key) > 1 else key[0]
                n = (
                    int(counts.loc[idx, c]) if idx in counts.index else 0
                )  # fairlearn lists empty combinations too
                if n == 0:
                    continue
                rows.append(
                    {
                        "metric": c,
                        "feature": "×".join(feat),
                        "group": _label(group),
                        "n": n,
                        "mean": float(by.loc[group, c]),
                        "ci_low": float(lo.loc[group, c]),
                        "ci_high": float(hi.loc[group, c]),
                        "small": n < min_group,
                    }
                )
    return pd.DataFrame(rows)


def _group_stats(values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    sums = np.bincount(codes, weights=values, minlength=k)
    counts = np.bincount(codes, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def disparity_stats(means: np.ndarray) -> dict[str, float]:
    """Difference (max - min), ratio (min / max) and max over geometric mean of group values."""
    means = np.asarray(means, dtype=np.float64)
    hi, lo = float(means.max()), float(means.min())
    ratio = lo / hi if hi != 0 else float("nan")
    with np.errstate(divide="ignore"):
        geo = float(np.exp(np.mean(np.log(means)))) if (means > 0).all() else 0.0
    mog = hi / geo if geo > 0 else float("inf")
    return {"difference": hi - lo, "ratio": ratio, "max_over_geomean": mog}


def disparities(
    results: pd.DataFrame,
    column: str,
    feature: Sequence[str],
    *,
    min_group: int = DEFAULT_MIN_GROUP,
    include_small: bool = False,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Disparities of ``column`` across the groups of ``feature``, each with a bootstrap CI.

    Difference and ratio for every metric; max over geometric mean of the group rates
    (NIST IR 8429) for error rates. Small groups are left out unless ``include_small``.
    The bootstrap resamples outputs within each group (stratified), so every group keeps its size.
    """
    ok = results[(results["status"] == "ok") & results[column].notna()]
    ok = ok[ok[list(feature)].notna().all(axis=1)]
    labels = ok[list(feature)].astype(str).agg("×".join, axis=1).to_numpy()
    groups, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(groups))
    keep = counts >= (1 if include_small else min_group)
    small = [str(g) for g, k in zip(groups, keep, strict=True) if not k]
    values = ok[column].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {
        "metric": column,
        "feature": "×".join(feature),
        "groups": {},
        "small_groups": small,
    }
    if keep.sum() < 2:
        out["unavailable"] = (
            f"needs at least two groups of {'any size' if include_small else f'{min_group}+ outputs'}; "
            f"found {int(keep.sum())}"
        )
        return out
    means = _group_stats(values, codes, len(groups))
    for g, m, n, k in zip(groups, means, counts, keep, strict=True):
        out["groups"][str(g)] = {"mean": float(m), "n": int(n), "included": bool(k)}
    stats = disparity_stats(means[keep])
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(codes == i) for i in range(len(groups)) if keep[i]]
    boot = {name: [] for name in stats}
    for _ in range(n_boot):
        bm = np.array([values[rng.choice(idx, size=len(idx))].mean() for idx in members])
        for name, v in disparity_stats(bm).items():
            boot[name].append(v)
    alpha = (1 - level) / 2
    for name, v in stats.items():
        arr = np.asarray(boot[name], dtype=np.float64)
        # No interpolation: a replicate in which some group's rate is 0 has an infinite max/geomean.
        out[name] = {
            "value": v,
            "ci_low": float(np.quantile(arr, alpha, method="lower")),
            "ci_high": float(np.quantile(arr, 1 - alpha, method="higher")),
        }
    kept = {g: d for g, d in out["groups"].items() if d["included"]}
    out["highest_group"] = max(kept, key=lambda g: kept[g]["mean"])
    out["lowest_group"] = min(kept, key=lambda g: kept[g]["mean"])
    return out


#: The report's galleries of worst cases: (name, title, per-input column, sort, what it shows).
GALLERIES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "lowest-identity",
        "Lowest identity similarity",
        "id_cosine_worst",
        "ascending",
        "The LRs whose least similar output is furthest from the HR face",
    ),
    (
        "identity-swaps",
        "Identity swaps",
        "n_id_swap",
        "descending",
        "The LRs with the most outputs whose rank-1 subject is another person",
    ),
    (
        "least-consistent",
        "Least consistent with the evidence",
        "lr_psnr_worst",
        "ascending",
        "The LRs whose worst output, downscaled again, differs most from the LR (LR-PSNR)",
    ),
    (
        "highest-spread",
        "Highest spread across outputs",
        "pixel_std_mean",
        "descending",
        "The LRs where the outputs disagree most (mean per-pixel standard deviation)",
    ),
)
GALLERY_SIZE = 3


def gallery_picks(
    results: pd.DataFrame, per: pd.DataFrame, *, k: int = GALLERY_SIZE
) -> list[dict[str, Any]]:
    """The worst ``k`` LRs for each gallery of :data:`GALLERIES` that the run has values for.

    Ties keep the run's order, so the same ledger always gives the same picks.
    """
    table = per[per["n_ok"] > 0] if len(per) else per
    if "id_swap" in results:
        ok = results[results["status"] == "ok"]
        swaps = ok.groupby(["record_id", "variant"])["id_swap"].sum(min_count=1)
        table = table.join(swaps.rename("n_id_swap"), on=["record_id", "variant"])
    out = []
    for name, title, column, order, meaning in GALLERIES:
        if column not in table:
            continue
        vals = table[table[column].notna()]
        if column == "n_id_swap":
            vals = vals[vals[column] > 0]
        if not len(vals) or (len(vals) > 1 and vals[column].nunique() == 1):
            continue  # nothing to rank, or no LR stands out (e.g. no spread from a deterministic model)
        picked = vals.sort_values(column, ascending=order == "ascending", kind="stable").head(k)
        out.append(
            {
                "name": name,
                "title": title,
                "column": column,
                "meaning": meaning,
                "lrs": [
                    {
                        "record_id": r["record_id"],
                        "variant": int(r["variant"]),
                        "value": float(r[column]),
                    }
                    for _, r in picked.iterrows()
                ],
            }
        )
    return out
