"""The Python API: the same calls the CLI makes, with results as pandas DataFrames.

>>> import srforensics
>>> run = srforensics.audit(model="bicubic", protocol="faces", samples=2)  # doctest: +SKIP
>>> run.counts.records, run.counts.outputs                                 # doctest: +SKIP
>>> run.results.groupby("record_id").psnr.min()                            # doctest: +SKIP
>>> srforensics.verify(run.run_dir).ok                                     # doctest: +SKIP

Every function takes keyword arguments only (the run folder, where one is needed, comes
first). ``audit`` takes the options of :class:`srforensics.run.config.AuditConfig` as keywords
(the CLI's option names, with underscores), or one ``config``; ``review`` those of :class:`srforensics.evidence.ReviewConfig`.
Errors a user can fix raise :class:`srforensics.SRForensicsError` with what to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srforensics.errors import SRForensicsError

# Each function imports what it runs (the pipeline, pandas, torch) when it is called:
# ``import srforensics`` and ``srforensics --help`` stay cheap.

if TYPE_CHECKING:
    import pandas as pd

    from srforensics.gates import Verdict
    from srforensics.run.pipeline import AuditConfig
    from srforensics.run.verify import VerifyResult

__all__ = ["Counts", "Review", "Run", "audit", "compare", "gate", "open_run", "review", "verify"]


@dataclass(frozen=True)
class Counts:
    """What a run holds: records (one HR and its outputs, the unit of every interval) beside
    outputs, and outputs by status (``ok``, ``failed``, ``no_face``)."""

    records: int
    outputs: int
    by_status: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A run folder, read lazily: its tables as DataFrames, its manifest as a dict.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    report : Path
        ``report.html``.
    manifest_sha256 : str
        SHA-256 of ``manifest.json``, as printed at the end of the run.
    report_sha256 : str or None
        SHA-256 of the report, as sealed in ``seal.json``.
    unavailable : Mapping[str, str]
        Each metric that could not be computed and why.
    """

    run_dir: Path
    report: Path
    manifest_sha256: str
    report_sha256: str | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """``manifest.json``."""
        from srforensics.provenance import read_manifest

        return read_manifest(self.run_dir)

    @cached_property
    def results(self) -> pd.DataFrame:
        """One row per output (``results.parquet``)."""
        return _table(self.run_dir, "results")

    @cached_property
    def per_input(self) -> pd.DataFrame:
        """One row per LR: best, worst and mean of N, diversity (``per_input.parquet``)."""
        return _table(self.run_dir, "per_input")

    @cached_property
    def breakdown(self) -> pd.DataFrame | None:
        """Per-group means and intervals (``breakdown.parquet``); None without attributes."""
        path = self.run_dir / "breakdown.parquet"
        return _table(self.run_dir, "breakdown") if path.is_file() else None

    @cached_property
    def disparities(self) -> dict[str, Any] | None:
        """``disparities.json``; None without attributes."""
        path = self.run_dir / "disparities.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def counts(self) -> Counts:
        """Records beside outputs, and outputs by status."""
        res = self.results
        by_status = {str(k): int(v) for k, v in res["status"].value_counts().sort_index().items()}
        return Counts(int(res["record_id"].nunique()), len(res), by_status)


@dataclass(frozen=True)
class Review:
    """A case review of one evidence image.

    Attributes
    ----------
    folder : Path
        The review folder (``review.html``, ``review.json``, ``outputs/``).
    report : Path
        ``review.html``.
    """

    folder: Path
    report: Path

    @cached_property
    def data(self) -> dict[str, Any]:
        """``review.json``: the evidence's SHA-256, the model card, every output's scores."""
        return json.loads((self.folder / "review.json").read_text())

    @cached_property
    def outputs(self) -> pd.DataFrame:
        """One row per output: its seed, scores, consistency and face findings."""
        import pandas as pd

        return pd.DataFrame(self.data["outputs"])


def _table(run_dir: Path, name: str) -> pd.DataFrame:
    import pandas as pd

    path = Path(run_dir) / f"{name}.parquet"
    if not path.is_file():
        raise SRForensicsError(f"{run_dir} has no {path.name}; is it a finished run folder?")
    return pd.read_parquet(path)


def audit(*, config: AuditConfig | None = None, **fields: Any) -> Run:
    """Run an audit, as ``srforensics audit`` does.

    Parameters
    ----------
    config : AuditConfig, optional
        The whole configuration; or give its fields as keywords instead.
    **fields
        Options of the audit by name (:meth:`AuditConfig.from_options`: the CLI's options,
        with underscores): ``model``, ``protocol``, ``dataset``, ``samples``, ``out``, ...

    Returns
    -------
    Run
        The run folder with its tables.

    Examples
    --------
    >>> run = audit(model="bicubic", protocol="faces", samples=2, out="runs/quick")  # doctest: +SKIP
    >>> run.counts                                                                   # doctest: +SKIP
    Counts(records=5, outputs=20, by_status={'no_face': 12, 'ok': 8})
    """
    from srforensics.run.pipeline import AuditConfig, run_audit

    if config is not None and fields:
        raise SRForensicsError("give either config or its fields as keywords, not both")
    done = run_audit(config if config is not None else AuditConfig.from_options(**fields))
    return _run(done)


def open_run(run_dir: str | Path) -> Run:
    """A finished run folder, for its tables.

    Examples
    --------
    >>> open_run("runs/quick").results.psnr.describe()  # doctest: +SKIP
    """
    from srforensics.images import sha256_file
    from srforensics.provenance import MANIFEST_NAME

    run_dir = Path(run_dir).resolve()
    if not (run_dir / MANIFEST_NAME).is_file():
        raise SRForensicsError(f"{run_dir} is not a run folder (no {MANIFEST_NAME})")
    seal = run_dir / "seal.json"
    report_sha = None
    if seal.is_file():
        report_sha = json.loads(seal.read_text()).get("files", {}).get("report.html")
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    unavailable = {
        m["name"]: m["unavailable"]
        for m in manifest.get("metrics", [])
        if isinstance(m, dict) and m.get("unavailable")
    }
    return Run(
        run_dir,
        run_dir / "report.html",
        sha256_file(run_dir / MANIFEST_NAME),
        report_sha,
        unavailable,
    )


def _run(done: Any) -> Run:
    return Run(
        done.run_dir, done.report, done.manifest_sha256, done.report_sha256, dict(done.unavailable)
    )


def review(*, image: str | Path, **fields: Any) -> Review:
    """Review one evidence image, as ``srforensics review`` does.

    Parameters
    ----------
    image : str or Path
        The evidence image.
    **fields
        Other fields of :class:`srforensics.evidence.ReviewConfig`: ``model``, ``samples``,
        ``sampler``, ``reference``, ``out``, ...

    Examples
    --------
    >>> page = review(image="evidence.png", model="bicubic", sampler="tta")  # doctest: +SKIP
    >>> page.outputs[["sample", "lr_psnr", "consistent"]]                    # doctest: +SKIP
    """
    from srforensics.evidence import ReviewConfig, run_review

    report = run_review(ReviewConfig(image=str(image), **fields))
    return Review(report.parent, report)


def compare(*, runs: Sequence[str | Path], out: str | Path, allow_mismatch: bool = False) -> Path:
    """Compare runs of the same records side by side (``srforensics compare``); returns the page.

    Examples
    --------
    >>> compare(runs=["runs/a", "runs/b"], out="compare.html")  # doctest: +SKIP
    """
    from srforensics.report.compare import compare_runs

    return compare_runs(list(runs), out, allow_mismatch=allow_mismatch)


def gate(run_dir: str | Path, *, gates: str | Path) -> list[Verdict]:
    """Judge a run against a gates file (``srforensics gate``); each verdict says why.

    ``srforensics.gates.exit_status(verdicts)`` gives the CLI's exit status.

    Examples
    --------
    >>> verdicts = gate("runs/quick", gates="gates.yaml")  # doctest: +SKIP
    >>> all(v.passed for v in verdicts)                     # doctest: +SKIP
    """
    from srforensics.gates import gate_run, load_gates

    return gate_run(run_dir, load_gates(gates))


def verify(run_dir: str | Path, *, full: bool = False, **options: Any) -> VerifyResult:
    """Re-check a run folder's hashes, seal and report (``srforensics verify``); with
    ``full``, recompute outputs from their seeds and score them again.

    Examples
    --------
    >>> check = verify("runs/quick", full=True)  # doctest: +SKIP
    >>> check.ok, check.problems                 # doctest: +SKIP
    """
    from srforensics.run.verify import verify_run

    return verify_run(run_dir, full=full, **options)
