"""The tables a run exports: results, per input and, with sensitive attributes, per group."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

# pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    from srforensics.analysis import LedgerTables


def export_tables(
    ledger,
    run_dir: Path,
    *,
    sensitive: Sequence[str] = (),
    seed: int = 0,
    n_boot: int = 1000,
    read: LedgerTables | None = None,
    timed: Callable[[str], AbstractContextManager[None]] | None = None,
) -> list[Path]:
    """``results`` (one row per output, with flags), ``per_input`` (one row per LR) and, when the
    dataset has sensitive attributes, ``breakdown`` (per group, with CIs) and ``disparities.json``.
    ``read``: those two tables if already read from ``ledger`` (:class:`LedgerTables`);
    ``timed("breakdown")``: a context that times the breakdown and the disparities."""
    from srforensics.analysis import LedgerTables, json_safe

    read = read or LedgerTables.read(ledger)
    results = read.results
    tables = {"results": results, "per_input": read.per_input}
    sensitive = [a for a in sensitive if a in results and results[a].notna().any()]
    extra: list[Path] = []
    if sensitive:
        with (timed or (lambda _part: nullcontext()))("breakdown"):
            disp = _group_tables(tables, results, ledger, sensitive, seed=seed, n_boot=n_boot)
        path = run_dir / "disparities.json"
        path.write_text(
            json.dumps(json_safe(disp), indent=2, sort_keys=True, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        extra.append(path)
    paths = []
    for name, df in tables.items():
        df.to_parquet(run_dir / f"{name}.parquet", index=False)
        csv_safe(df).to_csv(run_dir / f"{name}.csv", index=False)
        paths += [run_dir / f"{name}.parquet", run_dir / f"{name}.csv"]
    return paths + extra


#: A cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df):
    """``df`` with every text cell that a spreadsheet would read as a formula prefixed with
    ``'`` (OWASP's advice for CSV injection); numbers are left alone. The Parquet export
    keeps the exact values."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = df.copy()
    for col in out.columns:
        if is_object_dtype(out[col]) or is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v
            )
    return out


def _group_tables(tables, results, ledger, sensitive, *, seed: int, n_boot: int) -> list:
    """Add ``breakdown`` to ``tables``; return the disparities of each error rate."""
    from srforensics.analysis import ERROR_RATES, breakdown, disparities, with_error_columns

    scored = with_error_columns(results)
    columns = [m["name"] for m in ledger.metrics() if not m.get("unavailable")]
    columns += [c for c in ERROR_RATES if c in scored and c not in columns]
    tables["breakdown"] = breakdown(scored, columns, sensitive, seed=seed, n_boot=n_boot)
    # The gates' default: groups of fewer records are flagged small and left out.
    return [
        disparities(scored, c, (a,), n_boot=n_boot, seed=seed)
        for c in ERROR_RATES
        if c in scored and scored[c].notna().any()
        for a in sensitive
    ]
