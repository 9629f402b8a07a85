"""Verify a finished run: every hash its manifest names, and outputs recomputed from their seeds.

``verify_run`` re-hashes every file the manifest names (input files, the run
folder's images and exports, weight files), compares the ledger's content with
the digests the manifest recorded, checks that each saved output file holds the
pixels the ledger hashed, and recomputes a seeded random subset of the run's
model batches (all of them with ``full=True``) from the input files, the
recorded degradation parameters and seeds, confirming that every output is
bit-identical to the ledger. Bit-identity is promised on the same device and
software; differences in either are listed with the result.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.faces.identity import OUTPUT_COLUMNS
from srforensics.images import pixel_sha256, read_image, sha256_file, to_tensor
from srforensics.ledger import LEDGER_NAME, Ledger
from srforensics.metrics import MetricConfig
from srforensics.provenance import MANIFEST_NAME, package_versions, read_manifest
from srforensics.recompute import Recomputer
from srforensics.replay import _canonical, manifest_protocol
from srforensics.report import render_report
from srforensics.run.config import AuditConfig
from srforensics.run.folder import UNHASHED
from srforensics.run.scoring import build_metrics, metric_batches, metric_scores, resolve_device
from srforensics.run.seal import check_seal
from srforensics.runtime import torch_threads
from srforensics.seeding import degradation_rng
from srforensics.weights import weights_policy

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


@dataclass
class VerifyResult:
    """What ``verify`` checked and every problem it found (``ok`` when there is none)."""

    run_dir: Path
    manifest_sha256: str
    files_checked: int = 0
    outputs_checked: int = 0
    batches_total: int = 0
    batches_recomputed: int = 0
    outputs_recomputed: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "manifest_sha256": self.manifest_sha256,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "outputs_checked": self.outputs_checked,
            "batches_total": self.batches_total,
            "batches_recomputed": self.batches_recomputed,
            "outputs_recomputed": self.outputs_recomputed,
            "problems": self.problems,
            "notes": self.notes,
        }


def _check_file(path: Path, expected: str, label: str, result: VerifyResult) -> None:
    result.files_checked += 1
    if not path.is_file():
        result.problems.append(f"missing: {label} ({path})")
        return
    actual = sha256_file(path)
    if actual != expected:
        result.problems.append(
            f"altered: {label} ({path}) hashes to {actual}, the manifest says {expected}"
        )


def _check_files(run_dir: Path, manifest: dict[str, Any], result: VerifyResult) -> None:

    for item in manifest.get("inputs", []):
        if item.get("sha256"):
            _check_file(Path(item["path"]), item["sha256"], f"input {item['record_id']}", result)
    named = manifest.get("files", {})
    for rel, digest in sorted(named.items()):
        _check_file(run_dir / rel, digest, rel, result)
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if p.is_file() and rel not in named and rel not in UNHASHED:
            result.problems.append(
                f"unexpected: {rel} is in the run folder but not in the manifest"
            )
    for w in manifest.get("weights", []):
        _check_file(Path(w["path"]), w["sha256"], f"weight file {Path(w['path']).name}", result)


def _check_report(run_dir: Path, manifest: dict[str, Any], result: VerifyResult) -> None:
    """The seal (report, gate verdicts, PDF against the manifest) and the report re-rendered
    from the ledger and the manifest, byte for byte."""

    result.problems += check_seal(run_dir, result.manifest_sha256)
    report = run_dir / "report.html"
    if not report.is_file():
        return  # the seal check names it
    with tempfile.TemporaryDirectory(prefix="srforensics-verify-") as tmp:
        fresh = render_report(run_dir, out=Path(tmp) / "report.html").read_bytes()
    kept = report.read_bytes()
    result.files_checked += 1
    if fresh != kept:
        at = next((i for i, (a, b) in enumerate(zip(fresh, kept, strict=False)) if a != b), None)
        at = min(len(fresh), len(kept)) if at is None else at
        from srforensics import __version__
        from srforensics.provenance import git_commit

        then = (manifest.get("srforensics_version"), (manifest.get("git") or {}).get("commit"))
        now = (__version__, (git_commit() or {}).get("commit"))
        other = (
            f"; the run was rendered by srforensics {then[0]} (commit {then[1]}), this is "
            f"{now[0]} (commit {now[1]}): a change of the report's template alone would do this"
            if then != now
            else ""
        )
        result.problems.append(
            f"altered: report.html differs from the report re-rendered from the ledger and the "
            f"manifest (from byte {at}){other}"
        )


def _check_ledger(ledger, manifest: dict[str, Any], run_dir: Path, result: VerifyResult) -> None:
    recorded = manifest.get("ledger_content_sha256") or {}
    current = ledger.content_digests()
    for table in sorted(set(recorded) | set(current)):
        if recorded.get(table) != current.get(table):
            result.problems.append(
                f"altered: ledger.sqlite table {table!r} differs from the content the manifest "
                "recorded (a value was added, removed or edited)"
            )
    results = ledger.results()
    saved = results[(results["status"] == "ok") & results["output_path"].notna()]
    for _, row in saved.iterrows():
        path = run_dir / row["output_path"]
        if not path.is_file():
            continue  # already reported as missing
        result.outputs_checked += 1
        try:
            img, _ = read_image(path)
        except SRForensicsError as exc:
            result.problems.append(f"altered: {row['output_path']} is no longer an image ({exc})")
            continue
        if pixel_sha256(img) != row["output_sha256"]:
            result.problems.append(
                f"altered: {row['output_path']} does not hold the pixels the ledger hashed for "
                f"{row['record_id']} variant {row['variant']} output {row['sample']}"
            )


def _software_notes(manifest: dict[str, Any], device: str) -> list[str]:

    notes = []
    recorded, now = manifest.get("packages", {}), package_versions()
    for name in sorted(set(recorded) | set(now)):
        if recorded.get(name) != now.get(name):
            notes.append(
                f"software differs: {name} {recorded.get(name) or '(absent)'} in the run, "
                f"{now.get(name) or '(absent)'} now; outputs may differ for that reason alone"
            )
    if manifest.get("device") and manifest["device"] != device:
        notes.append(f"device differs: the run used {manifest['device']}, this check uses {device}")
    return notes


def verify_run(
    run_dir: str | Path,
    *,
    full: bool = False,
    fraction: float = 0.1,
    seed: int | None = None,
    expect_manifest: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> VerifyResult:
    """Check a finished run folder; see the module docstring for what is checked.

    Parameters
    ----------
    full : recompute every model batch, not a sample of them.
    fraction : share of the batches recomputed without ``full`` (at least one).
    seed : picks the sample (default: the run's seed), so a check can be repeated exactly.
    expect_manifest : the manifest SHA-256 printed at the end of the run, if kept apart.
    """
    run_dir = Path(run_dir).resolve()
    if not 0 < fraction <= 1:
        raise SRForensicsError(f"--fraction must be in (0, 1], got {fraction}")
    manifest = _finished_manifest(run_dir)
    result = VerifyResult(run_dir, sha256_file(run_dir / MANIFEST_NAME))
    if expect_manifest and expect_manifest.lower() != result.manifest_sha256:
        result.problems.append(
            f"altered: manifest.json hashes to {result.manifest_sha256}, expected {expect_manifest.lower()}"
        )
    _check_files(run_dir, manifest, result)
    _check_report(run_dir, manifest, result)
    config = AuditConfig.from_dict(manifest["config"])
    with Ledger(run_dir / LEDGER_NAME) as ledger, torch_threads(config.execution.threads):
        _check_ledger(ledger, manifest, run_dir, result)
        result.batches_total = ledger.next_batch()
        if not result.batches_total:
            return result
        k = result.batches_total if full else max(1, math.ceil(fraction * result.batches_total))
        rng = np.random.default_rng(int(manifest["seeds"]["run_seed"] if seed is None else seed))
        picked = sorted(int(b) for b in rng.choice(result.batches_total, size=k, replace=False))
        recomputer = _recomputer(run_dir, manifest, config, resolve_device(config.execution.device))
        result.notes += _software_notes(manifest, recomputer.device)
        scorer = _Rescorer(manifest, config, recomputer, ledger)
        for batch in picked:
            _recompute_batch(batch, ledger, manifest, recomputer, scorer, result)
            if progress is not None:
                progress(1)
    return result


def _finished_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of the finished run in ``run_dir``; anything else is refused."""
    if not (run_dir / MANIFEST_NAME).is_file() or not (run_dir / LEDGER_NAME).is_file():
        raise SRForensicsError(
            f"{run_dir} is not a run folder (needs {MANIFEST_NAME} and {LEDGER_NAME})"
        )
    try:
        manifest = read_manifest(run_dir)
    except (OSError, json.JSONDecodeError) as exc:
        raise SRForensicsError(f"cannot read {run_dir / MANIFEST_NAME}: {exc}") from None
    if manifest.get("status") != "finished":
        raise SRForensicsError(
            f"the run in {run_dir} did not finish (status {manifest.get('status')!r}); "
            f"finish it with 'srforensics audit --resume {run_dir}', then verify it"
        )
    return manifest


def _recompute_batch(batch: int, ledger, manifest, recomputer, scorer, result) -> None:
    """Recompute one model batch: its outputs' hashes, their scores, and the degradation
    parameters its seeds draw, each against the ledger."""
    run_seed = int(manifest["seeds"]["run_seed"])
    for got in recomputer.batch(ledger, batch):
        where = f"{got.record_id} variant {got.variant} (batch {batch})"
        result.problems += [f"recompute: {where}: {p}" for p in got.problems]
        result.problems += [f"rescore: {where}: {p}" for p in scorer.check(got)]
        result.outputs_recomputed += got.checked
        params = ledger.lr(got.record_id, got.variant)["params"]
        fresh = recomputer.protocol.sample(degradation_rng(run_seed, got.record_id, got.variant))
        if _canonical(fresh) != _canonical(params):
            result.problems.append(
                f"recompute: {where}: the recorded degradation parameters are not the ones "
                "its seed draws"
            )
    result.batches_recomputed += 1


class _Rescorer:
    """The run's metrics, computed again on the outputs verify recomputed, against the scores
    the ledger holds: a forged score is caught even where every hash was re-made to match.

    The outputs are scored as the audit scores them on the CPU: an LR's distinct outputs in
    one call, against its HR's reference features computed once
    (:func:`srforensics.run.scoring.metric_scores`). Values agree to a relative 1e-6 (a GPU run
    scores several LRs per call, which may round differently in the last bits). The
    identity scores, which need the whole gallery, are not recomputed."""

    RTOL = 1e-6

    def __init__(self, manifest: dict[str, Any], config, recomputer, ledger) -> None:

        names = [
            m["name"]
            for m in manifest.get("metrics", [])
            if not m.get("unavailable") and m["name"] not in OUTPUT_COLUMNS
        ]
        mconf = MetricConfig(
            scale=recomputer.protocol.scale,
            crop_border=config.study.crop_border,
            device=recomputer.device,
        )
        self.device = recomputer.device
        self.metrics = build_metrics(names, mconf)[0] if names else []
        self.recorded = ledger.results().set_index(["record_id", "variant", "sample"])

    def check(self, got) -> list[str]:
        import torch

        if not got.outputs or got.hr is None or got.lr is None or not self.metrics:
            return []
        shas = {s: pixel_sha256(img) for s, img in got.outputs.items()}
        unique = list({shas[s]: got.outputs[s] for s in sorted(got.outputs)}.items())
        hr_t, lr_t = to_tensor(got.hr).to(self.device), to_tensor(got.lr).to(self.device)
        problems = []
        with torch.no_grad():
            for metric in self.metrics:
                try:
                    features = (
                        metric.reference_features(hr_t) if metric.requires_reference else None
                    )
                    ((_, counts, batch, ref, lrs),) = metric_batches(
                        [[img for _, img in unique]], [hr_t], [lr_t], self.device
                    )
                    values = metric_scores(metric, batch, ref, lrs, counts, [features])
                except Exception as exc:  # noqa: BLE001 - reported, as the run reports it
                    problems.append(f"{metric.name}: could not be recomputed ({exc})")
                    continue
                by_sha = {sha: v for (sha, _), v in zip(unique, values, strict=True)}
                for s in sorted(got.outputs):
                    problems += self._compare(got, s, metric.name, by_sha[shas[s]])
        return problems

    def _compare(self, got, sample: int, name: str, value: float) -> list[str]:
        key = (got.record_id, got.variant, sample)
        if key not in self.recorded.index or name not in self.recorded:
            return []
        kept = self.recorded.at[key, name]
        if kept is None or kept != kept:  # no value recorded (a note instead)
            return []
        if math.isclose(float(kept), value, rel_tol=self.RTOL, abs_tol=1e-12):
            return []
        return [
            f"output {sample}: {name} recomputes to {value:.9g}, the ledger says {float(kept):.9g}"
        ]


def _recomputer(run_dir: Path, manifest: dict[str, Any], config, device: str) -> Any:
    """The run's protocol and model, loaded as the run loaded them."""

    with weights_policy(trust_pickles=config.safety.trust_weights):
        model = config.load_model(device)
    return Recomputer(
        manifest_protocol(run_dir, manifest),
        model,
        device=device,
        tolerance=config.safety.range_tolerance,
        max_pixels=config.safety.max_pixels,
        timeout=config.safety.model_timeout,
    )
