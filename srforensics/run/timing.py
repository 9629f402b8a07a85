"""Where a run's time went (:class:`RunTiming`) and what a run returns (:class:`AuditRun`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class RunTiming:
    """Where an audit's wall time went, measured in the process that ran it.

    ``loading_s``: from the start until the protocol, the dataset's list, the model and the
    metrics are loaded (their libraries' imports, torch's among them, weights, pyiqa's split
    checks; helper processes start meanwhile); ``model_s``: the model's calls;
    ``metrics_s``: the metrics (the reference features, the scores, the diversity and the
    per-pixel spread); ``identity_s``: face embeddings and identity scores; ``breakdown_s``:
    the per-group breakdowns, the disparities and the identity rates with their record-level
    intervals; ``protocol_s``:
    records read, prepared and degraded in this process (loader processes' work runs beside
    it and is not counted). :attr:`own_s` is the rest: srforensics's own work (output checks
    and hashes, the ledger, images, the galleries' recomputation, tables, the report) and
    waiting for helper processes. ``loader_metrics_s`` is not part of the wall time: the
    seconds loader processes spent, beside this one, on the reference features of the
    records whose features this process took from them (on the CPU, see
    :attr:`~srforensics.metrics.Metric.loader_features`).

    On a GPU, work is counted where this process waits for it: the model's and the metrics'
    calls copy their results to the CPU and so wait for them; the reference features' GPU
    work may be counted in the next call that waits.
    """

    wall_s: float
    loading_s: float
    model_s: float
    metrics_s: float
    identity_s: float
    protocol_s: float
    breakdown_s: float = 0.0
    loader_metrics_s: float = 0.0

    @property
    def own_s(self) -> float:
        return self.wall_s - sum(getattr(self, f"{p}_s") for p in TIMED_PARTS)

    def describe(self) -> str:
        """One line, as ``srforensics audit`` prints it."""
        share = self.own_s / self.wall_s * 100 if self.wall_s > 0 else 0.0
        return (
            f"time: {self.wall_s:.1f} s: loading {self.loading_s:.1f} s, model "
            f"{self.model_s:.1f} s, metrics "
            f"{self.metrics_s:.1f} s, identity {self.identity_s:.1f} s, breakdowns "
            f"{self.breakdown_s:.1f} s, protocol in this "
            f"process {self.protocol_s:.1f} s, srforensics {self.own_s:.1f} s ({share:.0f}%)"
            + (
                f"; beside it, loader processes' reference features {self.loader_metrics_s:.1f} s"
                if self.loader_metrics_s
                else ""
            )
        )


#: The parts of :class:`RunTiming` this process times (its fields, less ``wall_s``).
TIMED_PARTS = tuple(
    f.name.removesuffix("_s")
    for f in fields(RunTiming)
    if f.name not in ("wall_s", "loader_metrics_s")
)


class Stopwatch:
    """Seconds spent in this process on each of :data:`TIMED_PARTS` (see :class:`RunTiming`)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(TIMED_PARTS, 0.0)

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Add the block's seconds to ``part``."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t


@dataclass(frozen=True)
class AuditRun:
    run_dir: Path
    report: Path
    manifest_sha256: str
    counts: Mapping[str, int]
    unavailable: Mapping[str, str] = field(default_factory=dict)
    verdicts: list | None = None
    #: The report's SHA-256, as sealed beside the manifest (``seal.json``).
    report_sha256: str | None = None
    #: Where the time went; None when worker processes or Ray actors computed the records.
    timing: RunTiming | None = None
