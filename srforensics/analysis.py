"""Aggregates of a run's results: per-metric summaries, flags, and per-input (best/worst/mean of N) tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from srforensics.metrics.fidelity import CONSISTENCY_DB
from srforensics.resampling import (
    MIN_RECORDS_FOR_INTERVAL,
    RecordTable,
    Resampling,
    estimate,
    group_codes,
    stream,
)

# pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import pandas as pd

    from srforensics.resampling import RecordTable


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
    """Add ``inconsistent``: an ok output whose LR-PSNR is under 45 dB (NTIRE's consistency
    rule): degraded again, it does not give back its LR. Missing when LR-PSNR is."""
    import pandas as pd

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


def identity_rates(
    results: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> dict[str, dict[str, Any]]:
    """Per-run identity rates with record-level intervals (:mod:`srforensics.resampling`).

    The same draws as the breakdown's ``overall`` row, so the two print the same interval.
    """

    ok = results[results["status"] == "ok"]
    cols = [c for c in IDENTITY_RATES if c in ok and ok[c].notna().any()]
    if not cols:
        return {}
    rs = Resampling(n_boot=n_boot, seed=seed, level=level)
    est = estimate(RecordTable.from_outputs(ok, cols), rs, OVERALL_KEY)
    out: dict[str, dict[str, Any]] = {}
    for col in cols:
        row = est.row(col)
        out[col] = {
            "meaning": IDENTITY_RATES[col],
            "rate": row["mean"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "ci_method": row["ci_method"],
            "ci_level": level,
            "n_outputs": row["n_outputs"],
            "n_records": row["n_records"],
            "resampling": rs.describe(),
        }
    return out


# -- demographic breakdowns ------------------------------------------------------------------
#: Per-output error indicators whose group rates get the NIST IR 8429 max/geomean disparity.
ERROR_RATES = ("id_swap", "id_false_match", "inconsistent", "face_missing")
#: Groups with fewer records than this are "small": flagged everywhere, skipped by gates
#: unless a gate includes them.
DEFAULT_MIN_GROUP = 30
#: The key of the whole run's random stream (see :func:`srforensics.resampling.stream`).
OVERALL_KEY = ("overall",)
BREAKDOWN_COLUMNS = [
    "metric",
    "feature",
    "group",
    "n_records",
    "n_outputs",
    "mean",
    "ci_low",
    "ci_high",
    "ci_method",
    "small",
]


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


def group_tables(
    ok: pd.DataFrame, columns: Sequence[str], feature: Sequence[str]
) -> dict[str, RecordTable]:
    """The :class:`RecordTable` of each group of ``feature`` (records whose value is known),
    groups in sorted order. Attributes belong to records, so a record is in one group."""

    labels, known = group_codes(ok, feature)
    if not known.any():
        return {}
    part = ok[known]
    table = RecordTable.from_outputs(part, columns)
    of_record = dict(zip(part["record_id"], labels[known], strict=False))
    record_labels = np.array([of_record[r] for r in table.records], dtype=object)
    return {str(g): table.take(record_labels == g) for g in sorted(set(record_labels))}


def breakdown(
    results: pd.DataFrame,
    columns: Sequence[str],
    attribute_names: Sequence[str],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_group: int = DEFAULT_MIN_GROUP,
    intersections: bool = True,
) -> pd.DataFrame:
    """Overall and per-group mean of every column, with record-level intervals.

    Rows: :data:`BREAKDOWN_COLUMNS`. ``n_records`` and ``n_outputs`` count the records
    (people's images) and the outputs with a value; a group is ``small`` when it has
    fewer than ``min_group`` records. The ``overall`` row uses every record, whatever
    its attributes. Group means are those of fairlearn's ``MetricFrame.by_group`` on the
    outputs (checked in the tests); the intervals resample records, stratified by group
    (:mod:`srforensics.resampling`), which fairlearn's row bootstrap does not.
    """
    import pandas as pd

    ok = results[results["status"] == "ok"].reset_index(drop=True)
    columns = [c for c in columns if c in ok and pd.api.types.is_numeric_dtype(ok[c])]
    rows: list[dict[str, Any]] = []
    if ok.empty or not columns:
        return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)
    rs = Resampling(n_boot=n_boot, seed=seed, level=level)

    def add(est, feature: str, group: str) -> None:
        for c in columns:
            row = est.row(c)
            if row["n_outputs"]:
                small = feature != "overall" and row["n_records"] < min_group
                rows.append(dict(metric=c, feature=feature, group=group, small=small, **row))

    add(estimate(RecordTable.from_outputs(ok, columns), rs, OVERALL_KEY), "overall", "all")
    for feat in features(list(attribute_names), intersections=intersections):
        label = "×".join(feat)
        for group, table in group_tables(ok, columns, feat).items():
            add(estimate(table, rs, (label, group)), label, group)
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


#: What each disparity means, for the report and the JSON.
DISPARITY_MEANING = {
    "difference": "highest group value minus lowest (0 = parity)",
    "ratio": "lowest group value over highest (1 = parity, smaller = larger gap)",
    "max_over_geomean": "highest group rate over the geometric mean of the group rates "
    "(NIST IR 8429; 1 = parity)",
}
#: Continuity correction of max/geomean when some group's rate is 0 (not all): each
#: group's rate becomes (events + 0.5) / (outputs + 1) (Haldane-Anscombe).
CONTINUITY = 0.5


def disparity_stats(
    means: np.ndarray, *, n: np.ndarray | None = None, binary: bool = True
) -> dict[str, np.ndarray]:
    """Difference, ratio and max over geometric mean of group values, one per row.

    ``means``: ``(k,)`` or ``(B, k)`` group values; ``n``: the groups' numbers of
    outputs (same shape), for the continuity correction of 0/1 rates. All-zero values
    are parity (ratio 1, max/geomean 1). With some zero group rate (not all),
    max/geomean uses continuity-corrected rates; a zero mean of a non-rate column
    leaves it undefined (NaN), as does a negative value for ratio and max/geomean.
    """
    m = np.atleast_2d(np.asarray(means, dtype=np.float64))
    hi, lo = m.max(axis=1), m.min(axis=1)
    all_zero = hi == 0
    negative = lo < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(all_zero & ~negative, 1.0, lo / hi)
        ratio = np.where(negative, np.nan, ratio)
        some_zero = (lo == 0) & ~all_zero
        rates = m
        if n is not None and binary:
            nn = np.atleast_2d(np.asarray(n, dtype=np.float64))
            corrected = (m * nn + CONTINUITY) / (nn + 2 * CONTINUITY)
            rates = np.where(some_zero[:, None], corrected, m)
        geo = np.exp(np.mean(np.log(rates), axis=1))
        mog = rates.max(axis=1) / geo
    mog = np.where(all_zero, 1.0, mog)
    mog = np.where(negative | (some_zero & (n is None or not binary)), np.nan, mog)
    out = {"difference": hi - lo, "ratio": ratio, "max_over_geomean": mog}
    return out if np.ndim(means) > 1 else {k: v[:1] for k, v in out.items()}


def _extreme(name: str, perm: np.ndarray, observed: float) -> np.ndarray:
    """Permutation values at least as far from parity as the observed one."""
    tol = 1e-12 * max(1.0, abs(observed))
    return perm <= observed + tol if name == "ratio" else perm >= observed - tol


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
    """Disparities of ``column`` across the groups of ``feature``: estimates, intervals, a test.

    Every group is resampled as in :func:`breakdown` (whole records, stratified by group,
    the same draws), so a group's interval here is its interval there. For each
    statistic of :func:`disparity_stats`:

    - ``value``: the statistic of the group means (NIST IR 8429 for max/geomean);
    - ``bias_corrected``: ``value`` less its bootstrap bias, on the log scale for ratio
      and max/geomean (the max of noisy group values is biased away from parity), kept
      within the statistic's range;
    - ``ci_low`` / ``ci_high``: the percentile interval shifted by the same bias;
    - ``p_parity``: the share of permutations of the group labels over records whose
      statistic is at least as far from parity (a test of "every group has the same
      value" that keeps each record's outputs together).

    Groups with fewer than ``min_group`` records are left out (listed, with their
    counts, in ``small_groups``) unless ``include_small``. A value that cannot be given
    is ``None`` with the reason beside it: the result is strict JSON.
    """

    rs = Resampling(n_boot=n_boot, seed=seed, level=level)
    label = "×".join(feature)
    ok = results[(results["status"] == "ok")]
    out: dict[str, Any] = {
        "metric": column,
        "feature": label,
        "groups": {},
        "small_groups": {},
        "min_group_records": min_group,
        "resampling": rs.describe(),
        "meaning": DISPARITY_MEANING,
    }
    tables = group_tables(ok, [column], feature) if column in ok else {}
    tables = {g: t for g, t in tables.items() if t.counts.sum() > 0}
    for g, t in tables.items():
        est = estimate(t, rs, (label, g))
        n_rec = int(est.n_records[0])
        small = n_rec < min_group
        included = (not small or include_small) and n_rec >= MIN_RECORDS_FOR_INTERVAL
        out["groups"][g] = dict(est.row(column), small=small, included=included)
        if small:
            out["small_groups"][g] = n_rec
        out["groups"][g]["_reps"] = est.replicates[:, 0]
    kept = [g for g, d in out["groups"].items() if d["included"]]
    reps = {g: out["groups"][g].pop("_reps") for g in list(out["groups"])}
    if len(kept) < 2:
        need = "records" if include_small else f"{min_group}+ records"
        out["unavailable"] = (
            f"needs at least two groups of {need} with values of {column}; found {len(kept)}"
            + (f" (small groups: {_counts(out['small_groups'])})" if out["small_groups"] else "")
        )
        return out
    means = np.array([out["groups"][g]["mean"] for g in kept])
    counts = np.array([out["groups"][g]["n_outputs"] for g in kept], dtype=float)
    binary = bool(tables[kept[0]].binary[0])
    point = disparity_stats(means, n=counts, binary=binary)
    boot_means = np.column_stack([reps[g] for g in kept])
    boot = disparity_stats(boot_means, n=np.broadcast_to(counts, boot_means.shape), binary=binary)
    perm = _permutation_stats(
        [tables[g] for g in kept], n_boot, stream(seed, ("permutation", column, label)), binary
    )
    alpha = (1 - level) / 2
    for name in ("difference", "ratio", "max_over_geomean"):
        out[name] = _disparity_entry(name, float(point[name][0]), boot[name], perm[name], alpha)
    out["parity_test"] = {
        "method": "permutation of the group labels over records",
        "n_permutations": n_boot,
    }
    vals = {g: out["groups"][g]["mean"] for g in kept}
    out["highest_group"] = max(vals, key=vals.get)
    out["lowest_group"] = min(vals, key=vals.get)
    return out


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None and numpy scalars as Python numbers: strict
    JSON has no NaN or Infinity (a None sits beside its reason where one is given)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def fairness_findings(
    bd: pd.DataFrame, disparity_rows: Sequence[Mapping[str, Any]] = (), *, top: int = 3
) -> list[str]:
    """Plain sentences for the report: per attribute, the largest gaps between groups.

    For each single attribute, and each metric with two or more groups that are not
    small and have intervals, the gap is the highest group mean minus the lowest. It is
    "beyond the intervals' noise" when those two groups' intervals do not overlap (for
    error rates, also when the permutation test of parity in ``disparity_rows`` rejects
    at 5%). Gaps are ranked by their size relative to the overall interval's width; the
    ``top`` largest are told, or, when none is beyond noise, the largest one.
    """
    if bd is None or not len(bd):
        return []
    tests = {(d["metric"], d["feature"]): d for d in disparity_rows if "unavailable" not in d}
    overall = bd[bd["feature"] == "overall"].set_index("metric")
    sentences = []
    singles = [f for f in dict.fromkeys(bd["feature"]) if f != "overall" and "×" not in f]
    for feature in singles:
        gaps = []
        part = bd[(bd["feature"] == feature) & ~bd["small"] & bd["ci_low"].notna()]
        for metric, rows in part.groupby("metric", sort=False):
            if len(rows) < 2:
                continue
            hi, lo = rows.loc[rows["mean"].idxmax()], rows.loc[rows["mean"].idxmin()]
            gap = float(hi["mean"] - lo["mean"])
            if gap <= 0:
                continue
            beyond = bool(lo["ci_high"] < hi["ci_low"])
            d = tests.get((metric, feature))
            p = d["difference"].get("p_parity") if d else None
            if p is not None:
                beyond = beyond or p < 0.05
            width = 1.0
            if metric in overall.index and pd_notna(overall.loc[metric, "ci_low"]):
                width = float(overall.loc[metric, "ci_high"] - overall.loc[metric, "ci_low"]) or 1.0
            gaps.append((gap / width, metric, hi, lo, gap, beyond, p))
        if not gaps:
            continue
        gaps.sort(key=lambda g: -g[0])
        chosen = [g for g in gaps if g[5]][:top] or gaps[:1]
        for _, metric, hi, lo, gap, beyond, p in chosen:
            verdict = (
                "beyond the intervals' noise"
                if beyond
                else "within the intervals' noise (their intervals overlap)"
            )
            test = f"; permutation test of parity p = {p:.3g}" if p is not None else ""
            sentences.append(
                f"{feature}: the largest gap in {metric} is {gap:.4g}, between {hi['group']} "
                f"({hi['mean']:.4g}, 95% CI {hi['ci_low']:.4g}–{hi['ci_high']:.4g}, "
                f"{int(hi['n_records'])} records) and {lo['group']} ({lo['mean']:.4g}, "
                f"95% CI {lo['ci_low']:.4g}–{lo['ci_high']:.4g}, {int(lo['n_records'])} records): "
                f"{verdict}{test}."
            )
    return sentences


def pd_notna(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and not np.isfinite(v))


def _counts(small: dict[str, int]) -> str:
    return ", ".join(f"{g} ({n} record{'s' * (n != 1)})" for g, n in small.items())


_RANGE = {"difference": (0.0, np.inf), "ratio": (0.0, 1.0), "max_over_geomean": (1.0, np.inf)}


def _disparity_entry(
    name: str, value: float, boot: np.ndarray, perm: np.ndarray, alpha: float
) -> dict[str, Any]:
    entry: dict[str, Any] = {"meaning": DISPARITY_MEANING[name]}
    if not np.isfinite(value):
        entry.update(value=None, bias_corrected=None, ci_low=None, ci_high=None, p_parity=None)
        entry["reason"] = (
            "undefined: a group's value is 0 (not a 0/1 rate) or negative"
            if name != "difference"
            else "undefined"
        )
        return entry
    log = name in ("ratio", "max_over_geomean")
    b = boot[np.isfinite(boot) & ((boot > 0) if log else True)]
    f, inv = (np.log, np.exp) if log else (lambda x: x, lambda x: x)
    lo_r, hi_r = _RANGE[name]
    if value <= 0 and log:  # a ratio of 0: no log scale; the plain percentile interval
        f, inv = (lambda x: x, lambda x: x)
        b = boot[np.isfinite(boot)]
    if b.size:
        bias = float(np.mean(f(b)) - f(value))
        corrected = float(np.clip(inv(f(value) - bias), lo_r, hi_r))
        lo = float(np.clip(inv(np.quantile(f(b), alpha) - 2 * bias), lo_r, hi_r))
        hi = float(np.clip(inv(np.quantile(f(b), 1 - alpha) - 2 * bias), lo_r, hi_r))
    else:
        corrected, lo, hi = value, None, None
    valid = perm[np.isfinite(perm)]
    p = (1 + int(_extreme(name, valid, value).sum())) / (1 + valid.size) if valid.size else None
    entry.update(value=value, bias_corrected=corrected, ci_low=lo, ci_high=hi, p_parity=p)
    return entry


def _permutation_stats(
    tables: Sequence[RecordTable], n_perm: int, rng: np.random.Generator, binary: bool
) -> dict[str, np.ndarray]:
    """The statistics under ``n_perm`` permutations of group labels over records."""
    sums = np.concatenate([t.sums[:, 0] for t in tables])
    counts = np.concatenate([t.counts[:, 0] for t in tables])
    labels = np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)])
    k, m = len(tables), len(labels)
    perm = rng.permuted(np.broadcast_to(labels, (n_perm, m)), axis=1)
    flat = (perm + (np.arange(n_perm) * k)[:, None]).ravel()
    gs = np.bincount(flat, weights=np.tile(sums, n_perm), minlength=n_perm * k).reshape(n_perm, k)
    gc = np.bincount(flat, weights=np.tile(counts, n_perm), minlength=n_perm * k).reshape(n_perm, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return disparity_stats(gs / gc, n=gc, binary=binary)


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
