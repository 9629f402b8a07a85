"""Record-level resampling: the one source of every interval the tool prints.

The N outputs of one record (one HR, its LRs and their samples) share an input, so
they are not independent: the record is the resampling unit. Every interval —
per-group breakdowns, disparities, identity rates, gates — comes from
:func:`estimate` over a :class:`RecordTable`, resampling whole records with
replacement within each group (a stratified cluster bootstrap), so each group keeps
its number of records. The draws of a group depend only on the run's seed and the
group's key (attribute and value), never on which other columns or groups are
computed beside it: the same quantity gets the same interval wherever it is printed.

A group's value is the mean over its outputs (records weighted by their number of
outputs), the quantity a reader expects from "mean of the group". Intervals are
percentile intervals of the resampled values. For a 0/1 rate whose group value is
exactly 0 or 1 the bootstrap degenerates to a point; the interval is then the Wilson
score interval with the number of records as the number of trials (a record's
outputs count as one trial, the conservative choice). A group with fewer than
:data:`MIN_RECORDS_FOR_INTERVAL` records gets no interval at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

# scipy, pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import pandas as pd

#: With one record a record-level bootstrap has nothing to resample: no interval.
MIN_RECORDS_FOR_INTERVAL = 2


@dataclass(frozen=True)
class Resampling:
    """How intervals are drawn: replicates, seed and level (recorded in the manifest)."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be at least 1, got {self.n_boot}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def describe(self) -> dict[str, Any]:
        return {
            "unit": "record",
            "scheme": "cluster bootstrap: whole records resampled with replacement, "
            "stratified by group",
            "n_boot": self.n_boot,
            "seed": self.seed,
            "level": self.level,
            "interval": "percentile; Wilson score on records where a 0/1 rate is 0 or 1",
            "min_records_for_interval": MIN_RECORDS_FOR_INTERVAL,
        }


def stream(seed: int, key: Sequence[str]) -> np.random.Generator:
    """The random stream of one group: a function of the seed and the group's key only."""
    words = [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") for k in key]
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, *words]))


@dataclass(frozen=True)
class RecordTable:
    """Per-record sums and counts of finite values, one column per metric.

    ``sums[r, c]`` and ``counts[r, c]``: the sum and the number of finite values of
    column ``c`` over record ``r``'s outputs. ``binary[c]``: every value is 0 or 1.
    """

    records: np.ndarray
    columns: tuple[str, ...]
    sums: np.ndarray
    counts: np.ndarray
    binary: np.ndarray

    @classmethod
    def from_outputs(
        cls, outputs: pd.DataFrame, columns: Sequence[str], *, record: str = "record_id"
    ) -> RecordTable:
        """From one row per output (the run's ``ok`` rows); records in first-seen order."""
        import pandas as pd

        codes, records = pd.factorize(outputs[record], sort=False)
        m = len(records)
        sums = np.zeros((m, len(columns)))
        counts = np.zeros((m, len(columns)))
        binary = np.zeros(len(columns), dtype=bool)
        for j, c in enumerate(columns):
            v = pd.to_numeric(outputs[c], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            finite = np.isfinite(v)
            sums[:, j] = np.bincount(codes[finite], weights=v[finite], minlength=m)
            counts[:, j] = np.bincount(codes[finite], minlength=m)
            binary[j] = bool(finite.any()) and bool(np.isin(v[finite], (0.0, 1.0)).all())
        return cls(np.asarray(records, dtype=object), tuple(columns), sums, counts, binary)

    def take(self, mask: np.ndarray) -> RecordTable:
        return RecordTable(
            self.records[mask], self.columns, self.sums[mask], self.counts[mask], self.binary
        )

    def __len__(self) -> int:
        return len(self.records)


def weights(n_records: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_records)`` multiplicities of each record in each bootstrap replicate."""
    picks = rng.integers(0, n_records, size=(n_boot, n_records))
    flat = picks + (np.arange(n_boot) * n_records)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n_records).reshape(n_boot, n_records)


def replicate_means(table: RecordTable, w: np.ndarray) -> np.ndarray:
    """``(n_boot, columns)`` group means of each replicate (NaN where it has no value)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ table.sums) / (w @ table.counts)


def wilson(successes: float, n: float, level: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (E. B. Wilson, JASA 22, 1927)."""
    from scipy.stats import norm

    if n <= 0:
        return (float("nan"), float("nan"))
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The interval contains p; at p = 0 or 1 rounding would put the bound a hair inside.
    return (min(max(0.0, float(centre - half)), p), max(min(1.0, float(centre + half)), p))


@dataclass(frozen=True)
class Estimate:
    """One group's values for every column of a :class:`RecordTable`."""

    columns: tuple[str, ...]
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    method: tuple[str, ...]  # per column: "bootstrap", "wilson" or "none: <why>"
    n_records: np.ndarray
    n_outputs: np.ndarray
    replicates: np.ndarray  # (n_boot, columns)

    def row(self, column: str) -> dict[str, Any]:
        j = self.columns.index(column)
        return {
            "mean": _num(self.mean[j]),
            "ci_low": _num(self.ci_low[j]),
            "ci_high": _num(self.ci_high[j]),
            "ci_method": self.method[j],
            "n_records": int(self.n_records[j]),
            "n_outputs": int(self.n_outputs[j]),
        }


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def estimate(
    table: RecordTable, rs: Resampling, key: Sequence[str], *, level: float | None = None
) -> Estimate:
    """Means of every column over ``table``'s records with record-level intervals.

    ``key`` names the group (e.g. ``("race", "asian")`` or ``("overall",)``) and fixes its
    random stream. ``level`` overrides ``rs.level`` (e.g. a familywise adjustment); the
    replicates are the same.
    """
    level = rs.level if level is None else level
    n_rec = (table.counts > 0).sum(axis=0)
    n_out = table.counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = table.sums.sum(axis=0) / n_out
    reps = replicate_means(table, weights(len(table), rs.n_boot, stream(rs.seed, key)))
    alpha = (1 - level) / 2
    lo = np.full(len(table.columns), np.nan)
    hi = np.full(len(table.columns), np.nan)
    methods = []
    for j in range(len(table.columns)):
        if n_rec[j] < MIN_RECORDS_FOR_INTERVAL:
            methods.append(
                f"none: {int(n_rec[j])} record(s), an interval needs {MIN_RECORDS_FOR_INTERVAL}"
            )
            continue
        if table.binary[j] and mean[j] in (0.0, 1.0):
            lo[j], hi[j] = wilson(mean[j] * n_rec[j], n_rec[j], level)
            methods.append("wilson")
            continue
        col = reps[:, j]
        col = col[np.isfinite(col)]
        lo[j], hi[j] = np.quantile(col, alpha), np.quantile(col, 1 - alpha)
        methods.append("bootstrap")
    return Estimate(table.columns, mean, lo, hi, tuple(methods), n_rec, n_out, reps)


def group_codes(outputs: pd.DataFrame, feature: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each output's group label (``a×b`` for several attributes; None where one is missing)."""
    known = outputs[list(feature)].notna().all(axis=1).to_numpy()
    labels = np.full(len(outputs), None, dtype=object)
    if known.any():
        labels[known] = (
            outputs.loc[known, list(feature)].astype(str).agg("×".join, axis=1).to_numpy()
        )
    return labels, known
