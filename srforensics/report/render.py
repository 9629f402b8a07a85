"""Render ``report.html`` of a run folder: self-contained (CSS, figures and images inline)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srforensics.analysis import (
    DEFAULT_MIN_GROUP,
    LedgerTables,
    fairness_findings,
    gallery_picks,
    json_safe,
    status_counts,
    summarize,
)
from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.ledger import LEDGER_NAME, Ledger
from srforensics.provenance import DEPENDENCY_LICENCES, MANIFEST_NAME, read_manifest
from srforensics.report.figures import distribution, group_means, png_data_uri, scatter
from srforensics.resources import resource_dir

# jinja2, markupsafe, pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

REPORT_NAME = "report.html"
TEMPLATE = "audit.html.j2"


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if math.isnan(v):
            return "—"
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


@functools.lru_cache(maxsize=1)
def _environment():
    """One Jinja environment per process: it compiles each template once (and again only when
    the file changes: ``auto_reload``)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(resource_dir("reports"))),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["css_string"] = css_string
    return env


def css_string(value: Any) -> Any:
    """``value`` as a quoted CSS string: every character but letters, digits, spaces and
    ``.-_:`` as a CSS escape, so nothing in it can end the string or the style sheet."""
    from markupsafe import Markup

    out = "".join(
        c if (c.isascii() and (c.isalnum() or c in " .-_:")) else f"\\{ord(c):06x} "
        for c in str(value)
    )
    return Markup(f'"{out}"')


def render_template(name: str, **context: Any) -> str:
    """Render a template of ``reports/`` (autoescaped) with its CSS inlined as ``css``."""
    css = (resource_dir("reports") / "style.css").read_text(encoding="utf-8")
    return _environment().get_template(name).render(css=css, **context)


def _image(run_dir: Path, rel: str | None) -> str | None:
    if not isinstance(rel, str) or not rel:  # None, or NaN in a table: no image kept
        return None
    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        return None
    return png_data_uri(path.read_bytes())


def _per_input_rows(per, metrics, limit: int = 40) -> tuple[list[str], list[dict[str, Any]]]:
    """The worst-of-N columns of the per-input table, for the report."""
    names = [m["name"] for m in metrics if not m.get("unavailable") and f"{m['name']}_worst" in per]
    cols = [f"{n}_worst" for n in names] + [
        c for c in ("diversity", "pixel_std_mean", "n_inconsistent") if c in per
    ]
    rows = per[per["n_ok"] > 0].head(limit)
    return cols, [
        {
            "record_id": r["record_id"],
            "variant": int(r["variant"]),
            "n_ok": int(r["n_ok"]),
            "values": [None if r[c] is None or r[c] != r[c] else float(r[c]) for c in cols],
        }
        for _, r in rows.iterrows()
    ]


def _lr_entry(run_dir: Path, group, std_maps: dict) -> dict[str, Any]:
    """One LR for a strip of images: HR | LR | spread | its outputs."""
    first = group.iloc[0]
    rid, variant = first["record_id"], int(first["variant"])
    return {
        "record_id": rid,
        "variant": variant,
        "subject": first["subject"],
        "hr": _image(run_dir, first["hr_path"]),
        "lr": _image(run_dir, first["lr_path"]),
        "std": _image(run_dir, std_maps.get((rid, variant))),
        "outputs": [
            {
                "sample": int(r["sample"]),
                "src": _image(run_dir, r["output_path"]),
                "sha": r["output_sha256"],
            }
            for _, r in group.sort_values("sample").iterrows()
        ],
    }


def _examples(run_dir: Path, results, limit: int, std_maps: dict) -> list[dict[str, Any]]:
    """Up to ``limit`` records whose images were saved: HR | LR | outputs of their first variant."""
    saved = results[results["output_path"].notna() & (results["status"] == "ok")]
    saved = saved[saved.groupby("record_id")["variant"].transform("min") == saved["variant"]]
    out = []
    for _, group in saved.groupby(["record_id", "variant"], sort=False):
        if len(out) >= limit:
            break
        out.append(_lr_entry(run_dir, group, std_maps))
    return out


def _galleries(run_dir: Path, results, per, std_maps: dict, problems) -> list[dict[str, Any]]:
    """The worst cases of :func:`srforensics.analysis.gallery_picks`, with their saved images."""

    why = {(p["record_id"], p["variant"]): p["problems"] for p in problems or []}
    ok = results[results["status"] == "ok"]
    out = []
    for g in gallery_picks(results, per):
        lrs = []
        for lr in g["lrs"]:
            key = (lr["record_id"], lr["variant"])
            group = ok[(ok["record_id"] == key[0]) & (ok["variant"] == key[1])]
            lrs.append(
                dict(
                    _lr_entry(run_dir, group, std_maps),
                    value=lr["value"],
                    problems=why.get(key, []),
                )
            )
        out.append(dict(g, lrs=lrs))
    return out


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], list):
        return f"{len(value)}×{len(value[0])} kernel"
    if isinstance(value, float):
        return _fmt(value)
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _lr_variants(run_dir: Path, lrs: list[dict[str, Any]], steps, limit: int = 8) -> list[dict]:
    """Every saved LR variant of the first record that has them, with its drawn parameters."""
    saved = [r for r in lrs if r["lr_path"]]
    if not saved:
        return []
    first = saved[0]["record_id"]
    out = []
    for r in [r for r in saved if r["record_id"] == first][:limit]:
        params = r["params"] or []
        out.append(
            {
                "record_id": first,
                "variant": int(r["variant"]),
                "src": _image(run_dir, r["lr_path"]),
                "sha": r["lr_sha256"],
                "params": [
                    {
                        "op": step.get("op", "?"),
                        "text": ", ".join(f"{k}={_short(v)}" for k, v in sorted(p.items()))
                        if isinstance(p, dict)
                        else _short(p),
                    }
                    for step, p in zip(steps, params, strict=False)
                ],
            }
        )
    return out


def _std_maps(per) -> dict:
    if "std_map_path" not in per:
        return {}
    rows = per[per["std_map_path"].notna()]
    return {(r["record_id"], int(r["variant"])): r["std_map_path"] for _, r in rows.iterrows()}


def _share_reasons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each run of consecutive unavailable metrics with the same reason one note: the
    first row's ``reason_rows`` is the run's length, the others' 0 (they share its cell)."""
    out = [dict(r, reason_rows=1) for r in rows]
    for i, r in enumerate(out):
        if not r["unavailable"] or r["reason_rows"] == 0:
            continue
        j = i + 1
        while j < len(out) and out[j]["unavailable"] == r["unavailable"]:
            out[j]["reason_rows"] = 0
            j += 1
        r["reason_rows"] = j - i
    return out


def _consistency(results) -> dict[str, int] | None:
    if "inconsistent" not in results:
        return None
    known = results["inconsistent"].dropna()
    return {"checked": int(len(known)), "inconsistent": int(known.sum())}


def histograms(results, metrics) -> dict[str, dict[str, Any]]:
    """The report's histograms, one per metric with values: the keyword arguments of
    :func:`~srforensics.report.figures.distribution`, keyed by a digest of them (the same
    values give the same key, so a figure drawn elsewhere is used only for its own values)."""
    ok = results[results["status"] == "ok"]
    out = {}
    for m in summarize(results, metrics):
        if m["unavailable"] is None and m["n"]:
            kwargs = {
                "values": ok[m["name"]].dropna().tolist(),
                "title": m["name"],
                "higher_is_better": m["higher_is_better"],
            }
            key = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()
            out[key] = kwargs
    return out


def render_report(
    run_dir: str | Path,
    *,
    drawn: Mapping[str, str] | None = None,
    read: LedgerTables | None = None,
    out: str | Path | None = None,
) -> Path:
    """Render the audit report of a finished (or stopped) run from its ledger and manifest.

    The same run folder gives the same bytes (the report embeds no time): ``verify``
    re-renders it into ``out`` and compares.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    drawn : mapping, optional
        Histograms already drawn (by helper processes, while the audit saved its galleries),
        as ``{key: data URI}`` with the keys of :func:`histograms`; the others are drawn here.
        It is looked up last, once the rest of the report is ready (helpers draw meanwhile).
    read : LedgerTables, optional
        The run's results and per-input table, if the caller has just read them from the
        ledger (the audit, which exported them); otherwise they are read here.
    out : str or Path, optional
        Where to write the page (default ``RUN_DIR/report.html``).
    """
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST_NAME).is_file() or not (run_dir / LEDGER_NAME).is_file():
        raise SRForensicsError(
            f"{run_dir} is not a run folder (needs {MANIFEST_NAME} and {LEDGER_NAME})"
        )
    manifest = read_manifest(run_dir)
    with Ledger(run_dir / LEDGER_NAME) as ledger:
        read = read or LedgerTables.read(ledger)
        results, per = read.results, read.per_input
        metrics = ledger.metrics()
        notes = ledger.notes()
        records = ledger.records()
        lrs = ledger.lrs(saved=True)  # the report shows saved LRs only
        gallery_problems = ledger.get_meta("gallery_problems", [])
    summary = _share_reasons(summarize(results, metrics))
    ok = results[results["status"] == "ok"]
    note_rows = (
        notes.groupby(["metric", "note"]).size().reset_index(name="count").to_dict("records")
        if len(notes)
        else []
    )
    problems = [r for r in records if r["status"] != "ok"]
    per_cols, per_rows = _per_input_rows(per, metrics)
    std_maps = _std_maps(per)
    gates = _read_json(run_dir / "gates.json", None)
    context = dict(
        manifest=manifest,
        manifest_sha256=sha256_file(run_dir / MANIFEST_NAME),
        manifest_json=json.dumps(manifest, indent=2, sort_keys=True, default=str),
        model=manifest["model"],
        protocol=manifest["protocol"],
        dataset=manifest["dataset"],
        summary=summary,
        examples=_examples(
            run_dir, results, int(manifest["config"]["outputs"].get("report_examples", 4)), std_maps
        ),
        galleries=_galleries(run_dir, results, per, std_maps, gallery_problems),
        unreproducible=len(gallery_problems or []),
        lr_variants=_lr_variants(run_dir, lrs, manifest["protocol"]["resolved"].get("steps", [])),
        per_input_cols=per_cols,
        per_input_rows=per_rows,
        n_per_input=int((per["n_ok"] > 0).sum()) if len(per) else 0,
        consistency=_consistency(results),
        gates=gates,
        resampling=manifest.get("resampling") or {"n_boot": 0, "seed": 0, "level": 0.95},
        min_group=DEFAULT_MIN_GROUP,
        scatter_src=_identity_scatter(ok),
        status=status_counts(results) if len(results) else {},
        n_records=len(records),
        problems=problems,
        note_rows=note_rows,
        licences=DEPENDENCY_LICENCES,
        packages=manifest.get("packages", {}),
        **_fairness_context(run_dir),
    )
    # The histograms last: those drawn elsewhere (``drawn``) have had the most time.
    drawn = {} if drawn is None else drawn
    figures = [
        {"name": kwargs["title"], "src": drawn.get(key) or distribution(**kwargs)}
        for key, kwargs in histograms(results, metrics).items()
    ]
    html = render_template(TEMPLATE, figures=figures, **context)
    path = Path(out) if out is not None else run_dir / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _fairness_context(run_dir: Path) -> dict[str, Any]:
    """The report's demographic section: the breakdown's groups, their figures, the
    disparities and the findings drawn from them."""
    import pandas as pd

    groups, bd = [], None
    disparity_rows = _read_json(run_dir / "disparities.json", [])
    if (run_dir / "breakdown.parquet").is_file():
        bd = pd.read_parquet(run_dir / "breakdown.parquet")
        groups = json_safe(bd[bd["feature"] != "overall"].to_dict("records"))
    overall = (
        {
            r["metric"]: r["mean"]
            for r in json_safe(bd[bd["feature"] == "overall"].to_dict("records"))
        }
        if bd is not None
        else {}
    )
    group_figures = []
    for (metric, feature), part in (
        pd.DataFrame(groups).groupby(["metric", "feature"], sort=False) if groups else []
    ):
        if "×" not in feature and len(part) > 1:  # single attributes; intersections: table only
            group_figures.append(
                group_means(
                    json_safe(part.to_dict("records")),
                    metric=metric,
                    feature=feature,
                    overall=overall.get(metric),
                )
            )
    return dict(
        groups=groups,
        fairness_findings=fairness_findings(bd, disparity_rows),
        n_comparisons=len(groups),
        disparities=disparity_rows,
        group_figures=group_figures,
    )


def _identity_scatter(ok) -> str | None:
    """Identity cosine against LR-PSNR, one point an output, when both were computed."""
    if not {"id_cosine", "lr_psnr"} <= set(ok.columns):
        return None
    pts = ok[["id_cosine", "lr_psnr"]].dropna()
    if not len(pts):
        return None
    return scatter(
        pts["lr_psnr"].clip(upper=100).tolist(),
        pts["id_cosine"].tolist(),
        xlabel="LR-PSNR (dB; consistent at >= 45)",
        ylabel="identity cosine to HR",
        xline=45.0,
    )
