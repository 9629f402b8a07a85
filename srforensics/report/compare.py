"""Compare several runs of models on the same protocol and dataset, side by side.

Reads only finished run folders (ledger, manifest, exports). Runs whose resolved
protocol or input files differ are refused unless ``allow_mismatch`` is given, and
the page then says so.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srforensics.analysis import summarize, with_flags
from srforensics.errors import SRForensicsError
from srforensics.ledger import LEDGER_NAME, Ledger
from srforensics.provenance import MANIFEST_NAME, read_manifest
from srforensics.report.figures import compare_groups, png_data_uri
from srforensics.report.render import render_template

# pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def dataset_fingerprint(manifest: dict[str, Any]) -> str:
    """SHA-256 over the (record id, file SHA-256) pairs a run read, in order."""
    pairs = sorted((i["record_id"], i.get("sha256") or "") for i in manifest.get("inputs", []))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def compare_runs(
    run_dirs: Sequence[str | Path], out: str | Path, *, allow_mismatch: bool = False
) -> Path:
    """Write one self-contained HTML page with the runs side by side.

    Parameters
    ----------
    run_dirs : sequence of str or Path
        Two or more finished run folders.
    out : str or Path
        The page to write.
    allow_mismatch : bool, default False
        Compare runs whose resolved protocol or input files differ (refused otherwise).

    Returns
    -------
    Path
        ``out``.
    """
    if len(run_dirs) < 2:
        raise SRForensicsError("compare needs at least two run folders")
    runs = [_read_run(d) for d in map(Path, run_dirs)]
    _unique_labels(runs)
    mismatches = _mismatches(runs)
    if mismatches and not allow_mismatch:
        raise SRForensicsError(
            "; ".join(mismatches)
            + ": the runs are not on the same footing; use --allow-mismatch to compare anyway"
        )
    html = render_template(
        "compare.html.j2",
        runs=runs,
        table=_metric_table(runs),
        groups=_group_rows(runs),
        examples=_side_by_side(runs),
        mismatches=mismatches,
        protocol=runs[0]["manifest"]["protocol"],
        dataset=runs[0]["manifest"]["dataset"],
    )
    out = Path(out)
    out.write_text(html, encoding="utf-8")
    return out


def _read_run(d: Path) -> dict[str, Any]:
    if not (d / MANIFEST_NAME).is_file() or not (d / LEDGER_NAME).is_file():
        raise SRForensicsError(f"{d} is not a run folder (needs {MANIFEST_NAME} and {LEDGER_NAME})")
    manifest = read_manifest(d)
    with Ledger(d / LEDGER_NAME) as ledger:
        results, metrics = with_flags(ledger.results()), ledger.metrics()
    return {
        "dir": d,
        "manifest": manifest,
        "results": results,
        "metrics": metrics,
        "label": f"{manifest['model']['name']}"
        + (f"+{manifest['model']['sampler']}" if manifest["model"].get("sampler") else ""),
        "summary": {m["name"]: m for m in summarize(results, metrics)},
        "dataset": dataset_fingerprint(manifest),
        "protocol": manifest["protocol"]["sha256"],
    }


def _mismatches(runs: list[dict[str, Any]]) -> list[str]:
    """Each run whose protocol or input files differ from the first run's, in words."""
    mismatches = []
    for r in runs[1:]:
        for key, what in (("protocol", "protocol"), ("dataset", "input files")):
            if r[key] != runs[0][key]:
                mismatches.append(
                    f"{r['dir']} has a different {what} ({r[key][:12]}...) from {runs[0]['dir']} "
                    f"({runs[0][key][:12]}...)"
                )
    return mismatches


def _metric_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row a metric of any run, one cell a run (unavailable where a run lacks it)."""
    names = []
    for r in runs:
        names += [m["name"] for m in r["metrics"] if m["name"] not in names]
    table = []
    for name in names:
        cells = [r["summary"].get(name) for r in runs]
        first = next((c for c in cells if c), None)
        table.append(
            {
                "name": name,
                "higher_is_better": first["higher_is_better"] if first else True,
                "cells": [c or {"unavailable": "not in this run", "n": 0} for c in cells],
            }
        )
    return table


def _side_by_side(runs: list[dict[str, Any]], limit: int = 6) -> list[dict[str, Any]]:
    """The same records, variant 0, side by side: those for which every run saved images."""

    def saved(results):
        return (results["variant"] == 0) & results["output_path"].notna()

    shared = None
    for r in runs:
        ok = r["results"][(r["results"]["status"] == "ok") & saved(r["results"])]
        ids = list(dict.fromkeys(ok["record_id"]))
        shared = ids if shared is None else [i for i in shared if i in ids]
    examples = []
    for rid in (shared or [])[:limit]:
        row = {"record_id": rid, "images": []}
        for k, r in enumerate(runs):
            res = r["results"]
            first = res[(res["record_id"] == rid) & saved(res)].iloc[0]
            if k == 0:
                row["hr"] = png_data_uri((r["dir"] / first["hr_path"]).read_bytes())
                row["lr"] = png_data_uri((r["dir"] / first["lr_path"]).read_bytes())
            row["images"].append(
                {
                    "label": r["label"],
                    "src": png_data_uri((r["dir"] / first["output_path"]).read_bytes()),
                }
            )
        examples.append(row)
    return examples


def _unique_labels(runs) -> None:
    """Label each run by its model, and by its run folder too where models repeat (two runs
    of one model, e.g. two seeds or versions), so that columns and chart series stay apart."""

    seen = Counter(r["label"] for r in runs)
    for r in runs:
        if seen[r["label"]] > 1:
            r["label"] = f"{r['label']} ({r['dir'].name})"
    labels = Counter(r["label"] for r in runs)
    for k, r in enumerate(runs):  # the same folder name twice (runs/a/x, runs/b/x)
        if labels[r["label"]] > 1:
            r["label"] = f"{r['label']} #{k + 1}"


def _group_rows(runs) -> list[dict[str, Any]]:
    """Per-group means with CIs of every run, from their breakdowns, for single attributes."""
    import pandas as pd

    frames = []
    for r in runs:
        path = r["dir"] / "breakdown.parquet"
        if path.is_file():
            bd = pd.read_parquet(path)
            frames.append(
                bd[(bd["feature"] != "overall") & ~bd["feature"].str.contains("×")].assign(
                    run=r["label"]
                )
            )
    if len(frames) < 2:
        return []
    both = pd.concat(frames, ignore_index=True)
    out = []
    for (metric, feature), part in both.groupby(["metric", "feature"], sort=False):
        if part["run"].nunique() < 2:
            continue
        out.append(
            {
                "metric": metric,
                "feature": feature,
                "src": compare_groups(part.to_dict("records"), metric=metric, feature=feature),
            }
        )
    return out
