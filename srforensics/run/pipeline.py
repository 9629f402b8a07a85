"""The audit pipeline: the stage loop that wires the stages together.

``run_audit(config)`` loads the parts (:mod:`.parts`); for each record it prepares the HR
(e.g. aligned face crop) and draws and applies each LR variant (:mod:`.records`), asks the
model for N outputs, quantises and scores them and commits them to the ledger (:mod:`.lrs`,
:mod:`.scoring`); then it finishes identity (:mod:`.identity`), saves the report's galleries
(:mod:`.gallery`), exports the tables (:mod:`.exports`), writes the manifest
(:mod:`.manifest`), judges the gates and renders and seals the report. Where the records are
processed is the executors' business (:mod:`.executors`). ``resume_audit(run_dir)`` finishes
a run that stopped, recomputing only what the ledger lacks (:mod:`.resume`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from srforensics.analysis import LedgerTables, identity_rates
from srforensics.errors import SRForensicsError
from srforensics.gates import gate_run, write_json, write_junit
from srforensics.images import to_tensor
from srforensics.ledger import LEDGER_NAME, Ledger, OutputRow
from srforensics.metrics.base import restore_features
from srforensics.provenance import utc_now, write_manifest
from srforensics.report import render_report
from srforensics.run.config import AuditConfig, Device, SaveImages
from srforensics.run.executors import LedgerSink, run_shards, shards
from srforensics.run.exports import export_tables
from srforensics.run.folder import (
    CONFIG_NAME,
    LOCK_NAME,
    REPORT_NAME,
    UNHASHED,
    check_new_run_dir,
    default_run_dir,
    image_stem,
    make_run_dir,
    run_files,
    run_lock,
    safe_name,
    write_atomic,
)
from srforensics.run.gallery import save_gallery_images
from srforensics.run.helpers import Helpers, helpers
from srforensics.run.histograms import Histograms
from srforensics.run.identity import finish_identity
from srforensics.run.lrs import ModelStage, Unit
from srforensics.run.manifest import finish_manifest, start_manifest
from srforensics.run.outlet import Outlet
from srforensics.run.parts import load_parts
from srforensics.run.records import OK, LoadedLR, LoadedRecord, load_record
from srforensics.run.resume import check_footing, resumable_config
from srforensics.run.seal import write_seal
from srforensics.run.timing import TIMED_PARTS, AuditRun, RunTiming, Stopwatch
from srforensics.runtime import collection_paused, heap_frozen, torch_threads

__all__ = [
    "CONFIG_NAME",
    "LOCK_NAME",
    "REPORT_NAME",
    "UNHASHED",
    "AuditConfig",
    "AuditRun",
    "Device",
    "Pipeline",
    "RunTiming",
    "SaveImages",
    "TIMED_PARTS",
    "default_run_dir",
    "export_tables",
    "image_stem",
    "resume_audit",
    "run_audit",
    "run_files",
    "run_lock",
    "safe_name",
]


class Pipeline:
    """One audit, loaded (:attr:`parts`): its records in, its ledger rows out.

    The executors see it as a :class:`~srforensics.run.executors.ShardWork`: :meth:`load` a
    record, :meth:`queue_loaded` its LRs for the model stage, :meth:`flush` the batches left.
    """

    def __init__(self, config: AuditConfig, *, started: float | None = None) -> None:
        """``started``: when the audit started (``time.perf_counter()``), for the loading
        time; default: now."""
        self.parts = parts = load_parts(config, started=started)
        self.config, self.protocol, self.records = config, parts.protocol, parts.records
        self.variants, self.run_seed, self.device = parts.variants, parts.run_seed, parts.device
        self.out = Outlet()
        #: Seconds spent in this process on each part of the work (see ``RunTiming``).
        self.watch = Stopwatch()
        self.watch.seconds["loading"] = parts.loading_s
        self.model_stage = ModelStage(parts, self.out, self.watch)
        #: Reference features taken from loader processes (metric computations not made
        #: here), and the loaders' seconds on the records they came with.
        self.features_taken, self.loader_metrics_s = 0, 0.0

    # What the executors set: where rows go, what to call between LRs, progress.
    sink = property(lambda self: self.out.sink, lambda self, v: setattr(self.out, "sink", v))
    poll = property(lambda self: self.out.poll, lambda self, v: setattr(self.out, "poll", v))
    progress = property(
        lambda self: self.out.progress, lambda self, v: setattr(self.out, "progress", v)
    )

    def open(self, run_dir: Path) -> Ledger:
        """Open (or create) the run folder's ledger; nothing is written before this."""
        run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(run_dir / LEDGER_NAME)
        check_footing(self.ledger, self.parts, run_dir)
        self.ledger.set_metrics(self.parts.metric_infos, self.parts.unavailable)
        self.ledger.set_meta("attribute_names", list(self.parts.dataset.attribute_names))
        self.sink = LedgerSink(self.ledger, run_dir)
        return self.ledger

    def pending(self, rec) -> dict[int, list[int]]:
        """The samples of each variant of ``rec`` that the ledger does not hold yet."""
        every = set(range(self.config.study.samples))
        return {
            v: sorted(every - self.ledger.done_samples(rec.id, v)) for v in range(self.variants)
        }

    def timing(self, wall_s: float) -> RunTiming:
        """This process's seconds so far, in a run that took ``wall_s``."""
        return RunTiming(
            wall_s=wall_s,
            **{f"{p}_s": s for p, s in self.watch.seconds.items()},
            loader_metrics_s=self.loader_metrics_s,
        )

    # -- one record: HR, then its LRs, queued for the model --------------------------
    def load(self, idx: int, rec, pending: Mapping[int, Sequence[int]]) -> LoadedRecord:
        """Decode, prepare and degrade ``rec`` here (what ``--loaders`` processes do ahead)."""
        with self.watch.timed("protocol"):
            return load_record(
                self.protocol,
                idx,
                rec,
                pending,
                run_seed=self.run_seed,
                max_pixels=self.config.safety.max_pixels,
            )

    def queue_loaded(self, loaded: LoadedRecord) -> None:
        """Record a loaded record in the ledger and queue its LRs for the model."""
        rec, idx, pending = loaded.rec, loaded.idx, loaded.pending
        self.out.tick(self.variants - len(pending))  # variants the ledger already holds
        if not pending:
            return
        base = {
            "record_id": rec.id,
            "idx": idx,
            "path": str(rec.path),
            "subject": rec.subject,
            "attributes": rec.attributes,
        }
        if loaded.status != OK:
            return self._record_failed(base, loaded.sha, pending, loaded.status, loaded.error)
        hr, stem = loaded.hr, image_stem(rec.id)
        hr_path = self.out.save(hr, f"{stem}/hr.png") if self._keep_images(idx, 0) else None
        self.sink.put_record(
            **base,
            sha256=loaded.sha,
            status=OK,
            hr_params=loaded.hr_params,
            hr_sha256=loaded.hr_sha,
            hr_path=hr_path,
        )
        hr_t = to_tensor(hr).to(self.device)
        face = self._embed_hr(hr, loaded.hr_params)
        units = [self._unit(idx, rec, stem, lr, hr, hr_t, face) for lr in loaded.lrs]
        units = [u for u in units if u is not None]
        ref_features = {}
        if units:
            with self.watch.timed("metrics"):  # once per input; a loader may have computed them
                taken = self.features_taken
                ref_features = self.reference_features(hr_t, loaded.features)
            if self.features_taken > taken:
                self.loader_metrics_s += loaded.features_s
        for unit in units:
            unit.ref_features = ref_features
            self.model_stage.queue(unit)

    def flush(self) -> None:
        """Run the model batches queued, full or not (a shard's end)."""
        self.model_stage.flush()

    def _embed_hr(self, hr, hr_params) -> tuple[Any, Any]:
        """The HR face's embedding and landmarks, once per input (None without a matcher)."""
        scorer = self.parts.identity.scorer
        if scorer is None or scorer.embedder is None:
            return None, None
        with self.watch.timed("identity"):
            landmarks = scorer.landmarks(hr, hr_params)
            return scorer.embed([hr], landmarks)[0], landmarks

    def reference_features(self, hr_t, computed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Each full-reference metric's share of the work on one HR (see
        ``Metric.reference_features``), or the exception it raised, reported when scoring.

        ``computed``: what a loader process computed (:func:`loader_features`), taken for each
        metric whose key it carries; the others are computed here."""
        features: dict[str, Any] = {}
        for metric in self.parts.metrics:
            if not metric.requires_reference:
                continue
            key, shipped = (computed or {}).get(metric.name, (None, None))
            if key is not None and key == self.parts.feature_keys.get(metric.name):
                f = restore_features(shipped)
                self.features_taken += 1
            else:
                try:
                    f = metric.reference_features(hr_t)
                except Exception as exc:
                    f = exc
            if f is not None:
                features[metric.name] = f
        return features

    def _record_failed(self, base, sha, pending, status: str, error: str) -> None:
        self.sink.put_record(**base, sha256=sha, status=status, error=error)
        self.sink.put_lrs(
            [
                {
                    "record_id": base["record_id"],
                    "variant": variant,
                    "params": None,
                    "lr_sha256": None,
                    "lr_path": None,
                    "outputs": [
                        OutputRow(sample=s, seed=None, status=status, error=error) for s in todo
                    ],
                }
                for variant, todo in pending.items()
            ]
        )
        self.out.tick(len(pending))

    def _unit(self, idx, rec, stem, lr: LoadedLR, hr, hr_t, face=(None, None)) -> Unit | None:
        """One LR for the model stage (None: its degradation failed, recorded as such).
        ``face``: the HR's embedding and landmarks (None without a face matcher)."""
        unit = Unit(
            rec.id,
            lr.variant,
            list(lr.todo),
            lr.seeds,
            hr,
            hr_t,
            face[0],
            dict(rec.attributes),
            hr_landmarks=face[1],
        )
        unit.params, unit.params_json = lr.params, lr.params_json
        if lr.error is not None:
            self.sink.put_lrs([unit.failed(lr.error)])
            self.out.tick(1)
            return None
        unit.lr_sha = lr.lr_sha
        keep = self._keep_images(idx, lr.variant)
        if keep or self._keep_lr(idx, lr.variant):
            unit.lr_path = self.out.save(lr.lr, f"{stem}/v{lr.variant}_lr.png")
        unit.out_stem = f"{stem}/v{lr.variant}" if keep else None
        unit.lr_t = to_tensor(lr.lr).to(self.device)
        return unit

    def _keep_images(self, idx: int, variant: int) -> bool:
        """Keep this LR's outputs: all, or the report's examples (first variant of the first records)."""
        mode = self.config.outputs.save_images
        return mode == "all" or (
            mode == "report" and idx < self.config.outputs.report_examples and variant == 0
        )

    def _keep_lr(self, idx: int, variant: int) -> bool:
        """Keep this LR: the report shows every variant of its example records (LRs are small)."""
        mode = self.config.outputs.save_images
        return mode == "all" or (mode == "report" and idx < self.config.outputs.report_examples)


def worker_pipeline(config: dict[str, Any]) -> Pipeline:
    """The starter of worker processes and Ray actors: their own pipeline, from the audit's
    configuration (:meth:`AuditConfig.to_dict`)."""
    return Pipeline(AuditConfig.from_dict(config))


# -- a run: start, compute, finish ------------------------------------------------------------
def run_audit(config: AuditConfig) -> AuditRun:
    """Run a new audit into ``config.outputs.out`` (or ``runs/<UTC time>-<model>-<protocol>/``)."""
    run_dir = (
        Path(config.outputs.out) if config.outputs.out else default_run_dir(config)
    ).resolve()
    if (run_dir / CONFIG_NAME).exists():
        raise SRForensicsError(
            f"{run_dir} already holds a run; use --resume {run_dir} to finish it, or choose another --out"
        )
    check_new_run_dir(run_dir)
    started = time.perf_counter()
    with ExitStack() as stack:
        # Everything is loaded and checked before the run folder is made.
        helped, pipe = _load(stack, config, started)
        check_new_run_dir(run_dir, inputs=pipe.parts.dataset.root)
        make_run_dir(run_dir)
        with run_lock(run_dir):
            if (run_dir / CONFIG_NAME).exists():  # another process started here meanwhile
                raise SRForensicsError(f"{run_dir} already holds a run; choose another --out")
            write_atomic(
                run_dir / CONFIG_NAME,
                json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n",
            )
            run = _execute(pipe, run_dir, resumed=False, helped=helped)
    return _with_timing(run, pipe, started)


def resume_audit(run_dir: str | Path, *, command: Sequence[str] | None = None) -> AuditRun:
    """Finish a run that stopped, with its recorded configuration, computing only missing outputs."""
    run_dir = Path(run_dir).resolve()
    config = resumable_config(run_dir, command=command)
    started = time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(run_lock(run_dir))
        helped, pipe = _load(stack, config, started)
        run = _execute(pipe, run_dir, resumed=True, helped=helped)
    return _with_timing(run, pipe, started)


def _load(stack: ExitStack, config: AuditConfig, started: float) -> tuple[Helpers, Pipeline]:
    """Start the helpers, set the run's thread count and load the pipeline, each kept
    open on ``stack`` until the run ends.

    Loading (imports, then objects that live through the run) runs with automatic garbage
    collection paused; after it, what is loaded is frozen out of the collector's scans
    until the run ends (:func:`~srforensics.runtime.heap_frozen`). Loading is timed from
    ``started`` (torch's first import, when the thread count is set, included); the model
    and the metrics load with the run's thread count while the helpers start on the other
    CPUs."""
    with collection_paused():
        helped = stack.enter_context(helpers(config, worker_pipeline))
        stack.enter_context(torch_threads(config.execution.threads))
        pipe = Pipeline(config, started=started)
    stack.enter_context(heap_frozen())
    return helped, pipe


def _execute(pipe: Pipeline, run_dir: Path, *, resumed: bool, helped: Helpers) -> AuditRun:
    """Start the run in ``run_dir``, compute what the ledger lacks, and finish the run."""
    config = pipe.config
    ledger = pipe.open(run_dir)
    history = ledger.get_meta("history", [])
    history.append(
        {"started_at": utc_now(), "resumed": resumed, "command": list(config.command or [])}
    )
    ledger.set_meta("history", history)
    manifest = start_manifest(pipe.parts, ledger, run_dir, history)
    ledger.set_meta("run_id", manifest["run_id"])
    write_manifest(run_dir, manifest)
    try:
        computed = _compute(pipe, ledger, helped)
    except SRForensicsError as exc:  # the run cannot go on: the folder says why
        manifest["status"] = "stopped"
        manifest["stopped_because"] = str(exc)
        write_manifest(run_dir, manifest)
        raise
    return _finish(pipe, ledger, run_dir, manifest, *computed)


def _compute(pipe: Pipeline, ledger: Ledger, helped: Helpers):
    """Every record's outputs, scored, then identity and the galleries' images. Returns the
    scored tables, the histograms being drawn, the LRs whose images were saved and the
    manifest's identity."""
    config = pipe.config
    bar = tqdm(
        total=len(pipe.records) * pipe.variants,
        unit="LR",
        desc="audit",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        run_shards(
            pipe,
            shards(pipe.records, config.execution.shard_size, pipe.pending),
            start=worker_pipeline,
            executor=config.execution.executor,
            workers=config.execution.workers,
            ray_address=config.execution.ray_address,
            progress=bar.update,
            loaders=helped.loaders,
            pool=helped.workers,
        )
        parts = pipe.parts
        identity = finish_identity(
            parts.identity, ledger, config, parts.metric_infos, parts.unavailable
        )
        scored = LedgerTables.read(ledger)  # final scores; galleries add image paths
        drawing = Histograms(scored.results, ledger.metrics(), helped)
        saved = save_gallery_images(parts, ledger, pipe.out, scored)
    finally:
        bar.close()
    return scored, drawing, saved, identity


def _finish(pipe, ledger, run_dir: Path, manifest, scored, drawing, saved, identity) -> AuditRun:
    """Export the tables, write the finished manifest, judge the gates, render and seal the
    report."""
    config, parts = pipe.config, pipe.parts
    n_boot = config.outputs.breakdown_boot or 1000
    final = scored.with_image_paths(ledger, saved)  # the exports' tables; the report's too
    sensitive = parts.dataset.sensitive_attributes if config.outputs.breakdown_boot else ()
    if sensitive:  # after the bar's 100 %: say what the run is doing now
        print(
            f"audit: per-group breakdowns and disparities of {', '.join(sensitive)} "
            f"({config.outputs.breakdown_boot} record-level replicates) ...",
            file=sys.stderr,
            flush=True,
        )
    exports = export_tables(
        ledger,
        run_dir,
        sensitive=sensitive,
        seed=pipe.run_seed,
        n_boot=n_boot,
        read=final,
        timed=pipe.watch.timed,
    )
    if identity is not None:
        with pipe.watch.timed("breakdown"):
            identity["rates"] = identity_rates(scored.results, seed=pipe.run_seed, n_boot=n_boot)
    finish_manifest(manifest, parts, ledger, identity=identity, exports=exports)
    counts = ledger.counts()
    ledger.close()
    manifest["files"] = run_files(run_dir)
    digest = write_manifest(run_dir, manifest)
    verdicts = None
    if parts.gate_file is not None:
        verdicts = gate_run(run_dir, parts.gate_file)
        write_json(verdicts, run_dir / "gates.json")
        write_junit(verdicts, run_dir / "junit.xml")
    report = render_report(run_dir, drawn=drawing, read=final)  # drawing: read last
    seal = write_seal(run_dir)
    return AuditRun(
        run_dir=run_dir,
        report=report,
        manifest_sha256=digest,
        report_sha256=seal["files"]["report.html"],
        counts=counts,
        unavailable=dict(parts.unavailable),
        verdicts=verdicts,
    )


def _with_timing(run: AuditRun, pipe: Pipeline, started: float) -> AuditRun:
    """``run`` with its :class:`RunTiming` (helper processes stopped: the command's time),
    when this process computed the records."""
    config = pipe.config
    if config.execution.executor != "local" or config.execution.workers > 0:
        return run  # the model and the metrics ran in other processes
    return replace(run, timing=pipe.timing(time.perf_counter() - started))
