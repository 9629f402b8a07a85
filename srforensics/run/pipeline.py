"""The audit pipeline: the one place that wires the pieces together.

``run_audit(config)`` loads the protocol, dataset, model and metrics; for each
record it prepares the HR (e.g. aligned face crop), draws and applies each LR
variant, asks the model for N outputs, quantises them to 8 bits, scores them,
and commits them to the ledger; then it exports the results, writes the
manifest and renders the report. ``resume_audit(run_dir)`` finishes a run that
stopped, recomputing only what the ledger lacks.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srforensics import __version__
from srforensics.errors import SRForensicsError
from srforensics.execution import (
    allocator_settings,
    collection_paused,
    heap_frozen,
    torch_threads,
)
from srforensics.images import (
    encode_png,
    to_tensor,
)
from srforensics.recompute import call_model, model_context, output_images
from srforensics.recompute import describe_error as _describe_error
from srforensics.run.config import AuditConfig, Device, SaveImages
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
from srforensics.run.records import FAILED, OK, LoadedLR, LoadedRecord, load_record
from srforensics.run.scoring import (
    build_metrics,
    metric_batches,
    metric_key,
    metric_scores,
    resolve_device,
)
from srforensics.run.timing import TIMED_PARTS, AuditRun, RunTiming

if TYPE_CHECKING:
    from srforensics.analysis import LedgerTables

__all__ = [
    "CONFIG_NAME",
    "LOCK_NAME",
    "REPORT_NAME",
    "UNHASHED",
    "AuditConfig",
    "AuditRun",
    "Device",
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


@dataclass(eq=False)
class _Unit:
    """One LR waiting for the model: what it needs to be run, scored and committed."""

    record_id: str
    variant: int
    todo: list[int]
    seeds: list[int]
    hr: np.ndarray
    hr_t: Any
    hr_embedding: Any
    attributes: dict[str, Any]
    hr_landmarks: Any = None  # the face's five landmarks, shared by its outputs
    #: per full-reference metric with reference features: its features of this HR, computed
    #: once per input, or the exception computing them raised
    ref_features: dict[str, Any] = field(default_factory=dict)
    params: Any = None
    params_json: str | None = None  # ``params`` as the ledger stores them
    lr_t: Any = None
    lr_sha: str | None = None
    lr_path: str | None = None
    out_stem: str | None = None

    def context(self) -> dict[str, Any]:
        """What the model is told about this LR (see ``SRModel.sample``)."""
        return model_context(self.record_id, self.variant, self.params, self.attributes)


@dataclass(eq=False)
class _Checked:
    """One LR's model outputs checked and quantised: the ledger rows of those that failed,
    and the index, image and hash of each that did not."""

    rows: list[Any]
    good: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)


def _no_poll() -> None:
    """The pipeline's ``poll`` when no loader processes feed it."""


class _Pipeline:
    """The loaded parts of one audit (protocol, dataset, model, metrics) and its ledger."""

    def __init__(self, config: AuditConfig, *, started: float | None = None) -> None:
        """``started``: when the audit started (``time.perf_counter()``), for the loading
        time; default: now."""
        started = time.perf_counter() if started is None else started
        from srforensics.data import load_dataset
        from srforensics.degradations.protocol import load_protocol

        self.config = config
        self.progress: Callable[..., Any] | None = None
        #: Called between the LRs of a model batch: loader processes that became ready
        #: meanwhile get their records then (set by ``execution._process_local``).
        self.poll: Callable[[], None] = _no_poll
        self._pending: dict[tuple, list[_Unit]] = {}
        #: Seconds spent in this process on each part of the work (see ``RunTiming``).
        self.seconds = dict.fromkeys(TIMED_PARTS, 0.0)
        self.protocol = load_protocol(config.protocol)
        self.dataset = load_dataset(config.dataset, root=config.dataset_root)
        self.gate_file = None
        if config.gates:
            from srforensics.gates import load_gates

            self.gate_file = load_gates(config.gates)  # checked before anything runs
        self.device = resolve_device(config.device)
        from srforensics.weights import weights_policy

        # Every weight file read while the parts load is logged for the manifest.
        with weights_policy(trust_pickles=config.trust_weights) as log:
            self.weights_log = log
            self._load_parts(config)
        self.seconds["loading"] = time.perf_counter() - started

    def _load_parts(self, config: AuditConfig) -> None:
        from srforensics.metrics import MetricConfig, run_metric_names

        self.model = config.load_model(self.device)
        self.card = self.model.card()
        self.scale = self.protocol.scale
        if self.model.scale is not None and self.model.scale != self.scale:
            raise SRForensicsError(
                f"model {config.model!r} upscales x{self.model.scale}, but protocol "
                f"{self.protocol.name!r} is x{self.scale}; pick a matching protocol"
            )
        self.run_seed = self.protocol.seed if config.seed is None else config.seed
        self.variants = self.protocol.variants if config.variants is None else config.variants
        mconf = MetricConfig(
            scale=self.scale,
            crop_border=config.crop_border,
            device=self.device,
            allow_downloads=config.allow_downloads,
        )
        names = run_metric_names(config.metrics, self.protocol.metrics)
        self.metrics, self.metric_infos, self.unavailable = build_metrics(names, mconf)
        #: Per metric whose reference features a loader process may compute, its key.
        self.feature_keys = {m.name: metric_key(m) for m in self.metrics if m.loader_features}
        #: Reference features taken from loader processes (metric computations not made
        #: here), and the loaders' seconds on the records they came with.
        self.features_taken, self.loader_metrics_s = 0, 0.0
        from srforensics.metrics.diversity import distance_backend

        self.distance_name, self.distance = distance_backend(config.diversity, device=self.device)
        self.identity, self.identity_card, self.identity_choice = None, None, None
        if config.identity == "on" or (config.identity == "auto" and self.protocol.needs_face):
            self._load_identity(config)
        from srforensics.recompute import Recomputer

        self.recomputer = Recomputer(
            self.protocol,
            self.model,
            device=self.device,
            tolerance=config.range_tolerance,
            max_pixels=config.max_pixels,
            timeout=config.model_timeout,
            refit=False,  # galleries: this run's own HR parameters, the HR checked by its hash
        )
        records = self.dataset.records
        self.limit_info = None
        if config.limit:
            from srforensics.data import limit_records

            records, self.limit_info = limit_records(
                records,
                config.limit,
                attributes=self.dataset.sensitive_attributes,
                seed=self.run_seed,
            )
            print(f"audit: --limit {config.limit}: {self.limit_info['how']}", file=sys.stderr)
        self.records = records

    def open(self, run_dir: Path) -> None:
        """Open (or create) the run folder's ledger; nothing is written before this."""
        from srforensics.ledger import LEDGER_NAME, Ledger

        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(run_dir / LEDGER_NAME)
        self._check_footing()
        self.ledger.set_metrics(self.metric_infos, self.unavailable)
        self.ledger.set_meta("attribute_names", list(self.dataset.attribute_names))
        from srforensics.execution import LedgerSink

        self.sink = LedgerSink(self.ledger, run_dir)

    def _check_footing(self) -> None:
        """A run is one protocol, one model and one list of records: a resume whose protocol
        file, model (or its weights) or dataset changed since the run started is refused
        before anything is written, so that LRs of two protocols never mix in one ledger."""
        records = hashlib.sha256(
            json.dumps([(r.id, str(r.path)) for r in self.records]).encode()
        ).hexdigest()
        footing = json.loads(
            json.dumps(
                {
                    "protocol_sha256": self.protocol.sha256,
                    "model": self.card.to_dict(),
                    "records_sha256": records,
                },
                sort_keys=True,
                default=str,
            )
        )
        recorded = self.ledger.get_meta("footing")
        if recorded is None:
            self.ledger.set_meta("footing", footing)
            return
        changed = [
            what
            for key, what in (
                ("protocol_sha256", "the protocol (its resolved form's SHA-256)"),
                ("model", "the model (its card or weights)"),
                ("records_sha256", "the dataset's records"),
            )
            if recorded.get(key) != footing[key]
        ]
        if changed:
            raise SRForensicsError(
                f"{self.run_dir} was started with other inputs: {'; '.join(changed)} changed since. "
                "Resuming would mix two audits in one run; restore them, or start a new run "
                "with another --out"
            )

    def pending(self, rec) -> dict[int, list[int]]:
        """The samples of each variant of ``rec`` that the ledger does not hold yet."""
        every = set(range(self.config.samples))
        return {
            v: sorted(every - self.ledger.done_samples(rec.id, v)) for v in range(self.variants)
        }

    # -- image files ----------------------------------------------------------
    def _save(self, img: np.ndarray, rel: str) -> str:
        return self.sink.save_png(encode_png(img), rel)

    def _save_outputs(
        self, stem: str, images: Mapping[int, np.ndarray], hashes: Mapping[int, str]
    ) -> dict[int, str]:
        """Save the outputs ``{sample: image}`` of one LR as ``{stem}_s{sample}.png``; outputs
        with the same 8-bit pixels (``hashes``: :func:`~srforensics.images.pixel_sha256`) are
        encoded once (a deterministic model's N outputs are one image)."""
        encoded: dict[str, bytes] = {}
        paths = {}
        for s, img in images.items():
            if hashes[s] not in encoded:
                encoded[hashes[s]] = encode_png(img)
            paths[s] = self.sink.save_png(encoded[hashes[s]], f"{stem}_s{s}.png")
        return paths

    def _keep_images(self, idx: int, variant: int) -> bool:
        """Keep this LR's outputs: all, or the report's examples (first variant of the first records)."""
        mode = self.config.save_images
        return mode == "all" or (
            mode == "report" and idx < self.config.report_examples and variant == 0
        )

    def _keep_lr(self, idx: int, variant: int) -> bool:
        """Keep this LR: the report shows every variant of its example records (LRs are small)."""
        mode = self.config.save_images
        return mode == "all" or (mode == "report" and idx < self.config.report_examples)

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        """Add the block's seconds to ``part`` of :attr:`seconds`."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t

    def timing(self, wall_s: float) -> RunTiming:
        """This process's seconds so far, in a run that took ``wall_s``."""
        return RunTiming(
            wall_s=wall_s,
            **{f"{p}_s": s for p, s in self.seconds.items()},
            loader_metrics_s=self.loader_metrics_s,
        )

    # -- one record: HR, then its LRs, queued for the model --------------------------
    def load(self, idx: int, rec, pending: Mapping[int, Sequence[int]]) -> LoadedRecord:
        """Decode, prepare and degrade ``rec`` here (what ``--loaders`` processes do ahead)."""
        with self._timed("protocol"):
            return load_record(
                self.protocol,
                idx,
                rec,
                pending,
                run_seed=self.run_seed,
                max_pixels=self.config.max_pixels,
            )

    def queue_loaded(self, loaded: LoadedRecord) -> None:
        """Record a loaded record in the ledger and queue its LRs for the model."""
        rec, idx, pending = loaded.rec, loaded.idx, loaded.pending
        self._tick(self.variants - len(pending))  # variants the ledger already holds
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
        hr = loaded.hr
        stem = image_stem(rec.id)
        hr_path = self._save(hr, f"{stem}/hr.png") if self._keep_images(idx, 0) else None
        self.sink.put_record(
            **base,
            sha256=loaded.sha,
            status=OK,
            hr_params=loaded.hr_params,
            hr_sha256=loaded.hr_sha,
            hr_path=hr_path,
        )
        hr_t = to_tensor(hr).to(self.device)
        hr_embedding, landmarks = None, None
        if self.identity is not None and self.identity.embedder is not None:
            with self._timed("identity"):  # once per input
                landmarks = self.identity.landmarks(hr, loaded.hr_params)
                hr_embedding = self.identity.embed([hr], landmarks)[0]
        units = [
            self._unit(idx, rec, stem, lr, hr, hr_t, (hr_embedding, landmarks)) for lr in loaded.lrs
        ]
        units = [u for u in units if u is not None]
        ref_features = {}
        if units:
            with self._timed("metrics"):  # once per input; a loader may have computed them
                taken = self.features_taken
                ref_features = self._reference_features(hr_t, loaded.features)
            if self.features_taken > taken:
                self.loader_metrics_s += loaded.features_s
        for unit in units:
            unit.ref_features = ref_features
            self._queue(unit)

    def _reference_features(
        self, hr_t, computed: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Each full-reference metric's share of the work on one HR (see
        ``Metric.reference_features``), or the exception it raised, reported when scoring.

        ``computed``: what a loader process computed (:func:`loader_features`), taken for each
        metric whose key it carries; the others are computed here."""
        from srforensics.metrics.base import restore_features

        features: dict[str, Any] = {}
        for metric in self.metrics:
            if not metric.requires_reference:
                continue
            key, shipped = (computed or {}).get(metric.name, (None, None))
            if key is not None and key == self.feature_keys.get(metric.name):
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
        from srforensics.ledger import OutputRow

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
        self._tick(len(pending))

    def _unit(self, idx, rec, stem, lr: LoadedLR, hr, hr_t, face=(None, None)) -> _Unit | None:
        """``face``: the HR's embedding and landmarks (None without a face matcher)."""
        unit = _Unit(
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
            self.sink.put_lrs([self._failed(unit, lr.error)])
            self._tick(1)
            return None
        unit.lr_sha = lr.lr_sha
        keep = self._keep_images(idx, lr.variant)
        if keep or self._keep_lr(idx, lr.variant):
            unit.lr_path = self._save(lr.lr, f"{stem}/v{lr.variant}_lr.png")
        unit.out_stem = f"{stem}/v{lr.variant}" if keep else None
        unit.lr_t = to_tensor(lr.lr).to(self.device)
        return unit

    # -- batches of LRs through the model ----------------------------------------------
    def _queue(self, unit: _Unit) -> None:
        key = (tuple(unit.lr_t.shape), len(unit.todo))
        queue = self._pending.setdefault(key, [])
        queue.append(unit)
        if len(queue) >= self.config.batch_size:
            self._run_batch(self._pending.pop(key))

    def flush(self) -> None:
        while self._pending:
            self._run_batch(self._pending.pop(next(iter(self._pending))))

    def _run_batch(self, units: list[_Unit]) -> None:
        """One model call for several LRs; a failure is narrowed down to the LR that caused it.

        The outputs of one call are committed in one transaction, so after a crash a
        resumed run forms the same batches again (and a batched model rounds the same).
        """
        contexts = [u.context() for u in units]
        with self._timed("model"):
            call = call_model(
                self.model,
                [u.lr_t for u in units],
                scale=self.scale,
                seeds=[u.seeds for u in units],
                contexts=contexts,
                timeout=self.config.model_timeout,
            )
        if call.error is not None:
            if len(units) > 1 and call.retry_alone:
                for u in units:  # retry one by one, so one bad input does not fail the others
                    self._run_batch([u])
                return
            self.sink.put_lrs([self._failed(u, call.error) for u in units])
            self._tick(len(units))
            return
        self.poll()
        checked = []
        for b, unit in enumerate(units):
            checked.append(self._check(unit, call.outputs[b]))
        with self._timed("metrics"):
            scored = self._score_batch(checked, units)
        finished = []
        for unit, ch, sc in zip(units, checked, scored, strict=True):
            finished.append(self._finish(unit, ch, sc))
            self.poll()
        self.sink.put_lrs(
            [
                self._lr_row(u, rows, **per_lr)
                for u, (rows, per_lr) in zip(units, finished, strict=True)
            ],
            [(u.record_id, u.variant, u.todo) for u in units],
        )
        self._tick(len(units))

    def _check(self, unit: _Unit, outs) -> _Checked:
        """Check and quantise the outputs of one LR; failed ones get their ledger rows."""
        from srforensics.ledger import OutputRow

        ch = _Checked(rows=[None] * len(unit.todo))
        checked = output_images(outs, tolerance=self.config.range_tolerance)
        for j, (s, sd, out) in enumerate(zip(unit.todo, unit.seeds, checked, strict=True)):
            if out.image is not None:
                ch.good.append(j)
                ch.images.append(out.image)
                ch.hashes.append(out.sha256)
                continue
            ch.rows[j] = OutputRow(sample=s, seed=sd, status=FAILED, error=out.reason)
        return ch

    def _finish(self, unit: _Unit, ch: _Checked, scored) -> tuple[list, dict[str, Any]]:
        """The ledger rows and per-LR values of one LR's checked and scored outputs."""
        from srforensics.ledger import OutputRow

        rows, good, images, hashes = ch.rows, ch.good, ch.images, ch.hashes
        scores, notes = scored
        per_lr = self._spread(unit, images)
        if self.identity is not None and images:
            with self._timed("identity"):
                id_scores, embs, lr_id = self.identity.score_lr(
                    unit.hr_embedding, images, unit.hr_landmarks
                )
            for k, extra in enumerate(id_scores):
                scores[k].update(extra)
            per_lr["lr_scores"].update(lr_id)
            if embs is not None:
                per_lr["embeddings"] = {(-1, -1): unit.hr_embedding}
                per_lr["embeddings"].update(
                    {(unit.variant, unit.todo[j]): embs[k] for k, j in enumerate(good)}
                )
        paths = (
            self._save_outputs(
                unit.out_stem,
                {unit.todo[j]: images[k] for k, j in enumerate(good)},
                {unit.todo[j]: hashes[k] for k, j in enumerate(good)},
            )
            if unit.out_stem
            else {}
        )
        for k, j in enumerate(good):
            s = unit.todo[j]
            rows[j] = OutputRow(
                sample=s,
                seed=unit.seeds[j],
                status=OK,
                output_sha256=hashes[k],
                output_path=paths.get(s),
                scores=scores[k],
                notes=notes[k],
            )
        return [r for r in rows if r is not None], per_lr

    def _spread(self, unit: _Unit, images: list[np.ndarray]) -> dict[str, Any]:
        """Per-LR diversity and per-pixel spread of the outputs that finished (needs two or more)."""
        from srforensics.metrics.diversity import ntire_diversity, pixel_std, std_map_image

        if len(images) < 2:
            note = f"needs at least two finished outputs, got {len(images)}"
            return {
                "lr_scores": {"diversity": None, "pixel_std_mean": None},
                "lr_notes": {"diversity": note, "pixel_std_mean": note},
            }
        stack = np.stack(images)
        notes = {"diversity": f"distance maps: {self.distance_name}"}
        with self._timed("metrics"):
            std = pixel_std(stack)
            scores: dict[str, float | None] = {"pixel_std_mean": float(std.mean())}
            try:
                scores["diversity"] = ntire_diversity(self.distance(stack, unit.hr))
            except Exception as exc:
                scores["diversity"] = None
                notes["diversity"] = f"diversity could not be computed: {_describe_error(exc)}"
        path = self._save(std_map_image(std), f"{unit.out_stem}_std.png") if unit.out_stem else None
        return {"lr_scores": scores, "lr_notes": notes, "std_map_path": path}

    def _load_identity(self, config: AuditConfig) -> None:
        """The identity scorer: the face matcher chosen (printed: a forensic run never switches
        matcher silently) and MTCNN's face finding, which needs no matcher."""
        from srforensics.faces.embed import choose_embedder, load_embedder
        from srforensics.faces.identity import IdentityScorer, column_infos
        from srforensics.weights import WeightsError

        reason, embedder = None, None
        try:
            name, why = (
                (config.face_embedder, "its weights given by --face-weights")
                if config.face_weights
                else choose_embedder(config.face_embedder)
            )
            self.identity_choice = {"asked": config.face_embedder, "used": name, "why": why}
            embedder = load_embedder(name, weights_file=config.face_weights, device=self.device)
            self.identity_card = embedder.card().to_dict()
            print(f"audit: identity: face matcher {name} ({why})", file=sys.stderr)
        except WeightsError as exc:
            reason = f"no face matcher: {exc}"
            self.identity_choice = {"asked": config.face_embedder, "used": None, "why": reason}
            print(
                f"audit: identity unavailable ({reason}); face_detected is still scored",
                file=sys.stderr,
            )
        self.identity = IdentityScorer(embedder, protocol=self.protocol)
        for info in column_infos():
            self.metric_infos.append(info)
            if reason and info["name"] != "face_detected":
                self.unavailable[info["name"]] = reason

    def finish_identity(self) -> dict[str, Any] | None:
        """After every HR is embedded: threshold, verification and misidentification of every output."""
        if self.identity is None:
            return None
        if self.identity.embedder is None:
            self.ledger.set_metrics(self.metric_infos, self.unavailable)
            return {"embedder": None, "choice": self.identity_choice, "threshold": None}
        from srforensics.faces.identity import (
            NEEDS_SUBJECTS,
            NEEDS_THRESHOLD,
            InsufficientPairs,
            Threshold,
            calibrate_threshold,
            misidentification,
            pair_scores,
        )

        keys, mat = self.ledger.embeddings()
        subjects = {r["record_id"]: r["subject"] for r in self.ledger.records()}
        hr_idx = [i for i, k in enumerate(keys) if k[1] == -1 and subjects.get(k[0]) is not None]
        gallery, gallery_subjects = (
            mat[hr_idx] if hr_idx else np.zeros((0, 0)),
            [subjects[keys[i][0]] for i in hr_idx],
        )
        threshold, reason, why_published = None, None, None
        if self.config.id_threshold is not None:
            threshold = Threshold(float(self.config.id_threshold), "given")
        else:
            try:
                genuine, impostor = pair_scores(gallery, gallery_subjects) if hr_idx else ([], [])
                threshold = calibrate_threshold(
                    np.asarray(genuine), np.asarray(impostor), fmr=self.config.id_fmr
                )
            except InsufficientPairs as exc:
                point = (self.identity_card or {}).get("operating_point")
                if point:  # the matcher's published operating point, said to be so
                    threshold = Threshold(
                        float(point["cosine"]),
                        "published",
                        source=f"{point['published']}, {point['source']}; {point['derivation']}",
                    )
                    why_published = str(exc)
                else:
                    reason = f"no verification threshold: {exc}"
        if reason:
            for name in NEEDS_THRESHOLD:
                self.unavailable[name] = reason
        if len(set(gallery_subjects)) < 2:
            for name in NEEDS_SUBJECTS:
                self.unavailable.setdefault(
                    name,
                    "misidentification needs HR faces of at least two subjects (the 'subject' column)",
                )
        out_keys = [k for k in keys if k[1] >= 0]
        outputs = {k: mat[keys.index(k)] for k in out_keys}
        hr_of = {k[0]: mat[i] for i, k in enumerate(keys) if k[1] == -1}
        mis = misidentification(
            outputs,
            {k: subjects.get(k[0]) for k in out_keys},
            gallery,
            gallery_subjects,
            threshold.value if threshold else None,
        )
        rows, verified_by_lr = [], {}
        for k in out_keys:
            vals = dict(mis[k])
            if threshold is not None:
                vals["id_verified"] = float(outputs[k] @ hr_of[k[0]] >= threshold.value)
                verified_by_lr.setdefault(k[:2], []).append(vals["id_verified"])
            for name, v in vals.items():
                if name not in self.unavailable:
                    rows.append(
                        (*k, name, v, None if v is not None else "no subject for this record")
                    )
        self.ledger.update_scores(rows)
        self.ledger.update_lr_scores(
            [
                (rid, v, "id_verify_rate", float(np.mean(vs)), None)
                for (rid, v), vs in verified_by_lr.items()
            ]
        )
        self.ledger.set_metrics(self.metric_infos, self.unavailable)
        return {
            "embedder": self.identity_card,
            "choice": self.identity_choice,
            "threshold": threshold.to_dict() if threshold else None,
            "threshold_why": why_published,
            "threshold_unavailable": reason,
            "gallery_size": len(hr_idx),
            "gallery_subjects": len(set(gallery_subjects)),
        }

    def save_gallery_images(self, tables: LedgerTables) -> list[tuple[str, int]]:
        """Save the images of the report's worst cases that the run did not keep.

        ``tables``: the ledger's results and per-input table. The LRs' batches are recomputed
        from the recorded inputs, parameters and seeds; an image is saved only when it is
        bit-identical to the ledger's hash. Those that could not be reproduced are recorded
        in the ledger (``gallery_problems``), with the reasons. Returns the LRs whose images
        were saved (``(record_id, variant)``).
        """
        if self.config.save_images == "none":
            return []
        from srforensics.analysis import gallery_picks
        from srforensics.metrics.diversity import pixel_std, std_map_image

        results = tables.results
        wanted = {
            (lr["record_id"], lr["variant"])
            for g in gallery_picks(results, tables.per_input)
            for lr in g["lrs"]
        }
        ok = results[results["status"] == OK]
        rows = list(
            zip(
                zip(ok["record_id"].tolist(), ok["variant"].tolist(), strict=True),
                ok["sample"].tolist(),
                ok["output_sha256"].tolist(),
                ok["output_path"].isna().tolist(),
                strict=True,
            )
        )  # plain lists: a pandas group per LR costs milliseconds each
        # The ledger's hashes of the wanted LRs whose images the run did not keep (an output
        # is saved only when it is bit-identical to its hash).
        unsaved = {key for key, _, _, no_path in rows if no_path and key in wanted}
        hashes: dict[tuple[str, int], dict[int, str]] = {}
        for key, sample, sha, _ in rows:
            if key in unsaved:
                hashes.setdefault(key, {})[sample] = sha
        missing = sorted(hashes)
        problems: list[dict[str, Any]] = []
        saved: list[tuple[str, int]] = []
        for key in missing:
            got = self.recomputer.lr(self.ledger, *key)
            if got.problems:
                problems.append({"record_id": key[0], "variant": key[1], "problems": got.problems})
                continue
            stem = f"{image_stem(key[0])}/v{key[1]}"
            rec = self.ledger.record(key[0])
            hr_path = None if rec["hr_path"] else self._save(got.hr, f"{image_stem(key[0])}/hr.png")
            images = [got.outputs[s] for s in sorted(got.outputs)]
            std_path = (
                self._save(std_map_image(pixel_std(np.stack(images))), f"{stem}_std.png")
                if len(images) > 1
                else None
            )
            self.ledger.set_image_paths(
                record_id=key[0],
                variant=key[1],
                hr_path=hr_path,
                lr_path=self._save(got.lr, f"{stem}_lr.png"),
                std_map_path=std_path,
                output_paths=self._save_outputs(stem, got.outputs, hashes[key]),
            )
            saved.append(key)
        self.ledger.set_meta("gallery_problems", problems)
        return saved

    def _failed(self, unit: _Unit, error: str) -> dict[str, Any]:
        from srforensics.ledger import OutputRow

        rows = [
            OutputRow(sample=s, seed=sd, status=FAILED, error=error)
            for s, sd in zip(unit.todo, unit.seeds, strict=True)
        ]
        return self._lr_row(unit, rows)

    def _lr_row(self, unit: _Unit, rows, **per_lr: Any) -> dict[str, Any]:
        """The ledger row of one LR (see ``Ledger.put_lr``)."""
        return dict(
            record_id=unit.record_id,
            variant=unit.variant,
            params=unit.params_json,  # stored only with an LR, whose parameters were encoded
            lr_sha256=unit.lr_sha,
            lr_path=unit.lr_path,
            outputs=rows,
            **per_lr,
        )

    def _score_batch(self, checked: list[_Checked], units: list[_Unit]):
        """Scores and notes of every distinct output of a model batch's LRs, LR by LR.

        Each distinct output is scored once (a deterministic model's N outputs are one). The
        LRs are scored in the groups :func:`metric_groups` forms: on a GPU several LRs' outputs
        in one call of each metric, on the CPU one LR at a time.
        """
        first_of: list[dict[str, int]] = []  # per LR: each distinct hash, its first output
        for ch in checked:
            first: dict[str, int] = {}
            for k, h in enumerate(ch.hashes):
                first.setdefault(h, k)
            first_of.append(first)
        images = [
            [ch.images[k] for k in f.values()] for ch, f in zip(checked, first_of, strict=True)
        ]
        scored = [([{} for _ in ch.images], [{} for _ in ch.images]) for ch in checked]
        hrs, lrs = [u.hr_t for u in units], [u.lr_t for u in units]
        for group, counts, batch, ref, lr in metric_batches(images, hrs, lrs, self.device):
            for metric in self.metrics:
                features = [units[i].ref_features.get(metric.name) for i in group]
                values = self._metric_values(metric, batch, ref, lr, counts, features)
                for i, (vals, note) in zip(group, values, strict=True):
                    by_hash = dict(zip(first_of[i], vals, strict=True))
                    scores, notes = scored[i]
                    for k, h in enumerate(checked[i].hashes):
                        v, n = by_hash[h], note
                        if v is not None and not np.isfinite(v) and not np.isinf(v):
                            v, n = None, f"{metric.name} returned NaN"
                        scores[k][metric.name] = v
                        if n:
                            notes[k][metric.name] = n
        return scored

    def _metric_values(self, metric, batch, ref, lr, counts: list[int], features: list[Any]):
        """``metric`` on a batch of LRs' outputs: per LR, its values and a note (or None).

        ``features``: per LR, the metric's reference features (see :func:`metric_scores`).
        A metric that fails on a batch of several LRs (out of GPU memory, say) is retried on
        each LR alone, so that one LR's failure is its own, as when each LR is scored alone.
        A metric that returns a value count other than one per output has failed."""
        try:
            vals = metric_scores(metric, batch, ref, lr, counts, features)
        except Exception as exc:
            if len(counts) == 1:
                note = f"{metric.name} could not be computed: {_describe_error(exc)}"
                return [([None] * counts[0], note)]
            out, at = [], 0
            for j, n in enumerate(counts):
                part = slice(at, at + n)
                out += self._metric_values(
                    metric, batch[part], ref[part], lr[part], [n], features[j : j + 1]
                )
                at += n
            return out
        out, at = [], 0
        for n in counts:
            out.append((vals[at : at + n], None))
            at += n
        return out

    def _tick(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)


@dataclass
class _Helpers:
    """The processes started for a run before its pipeline loads (see :func:`_helpers`)."""

    loaders: Any = None
    workers: Any = None

    def submit(self, fn, /, *args: Any, **kwargs: Any):
        """``fn(*args, **kwargs)`` in a helper process (once one is free), or ``None`` when
        there is none to take it."""
        pool = self.loaders if self.loaders is not None else self.workers
        return None if pool is None else pool.submit(fn, *args, **kwargs)

    @property
    def processes(self) -> int:
        """How many helper processes there are (0: none)."""
        pool = self.loaders if self.loaders is not None else self.workers
        return 0 if pool is None else pool.processes


@contextmanager
def _helpers(config: AuditConfig) -> Iterator[_Helpers]:
    """Loader processes (``--loaders``) or local worker processes (``--workers``), started
    first, so that they start while the model and the metrics load here."""
    from srforensics.execution import Loaders, Workers

    if config.loaders:
        from srforensics.report.figures import warm_up

        # Idle once every record is sent, they warm up for the report's histograms, which
        # they draw at the run's end (_Histograms).
        with Loaders(config.to_dict(), processes=config.loaders, when_idle=warm_up) as loaders:
            yield _Helpers(loaders=loaders)
    elif config.workers > 0 and config.executor == "local":
        with Workers(config.to_dict(), processes=config.workers) as workers:
            yield _Helpers(workers=workers)
    else:
        yield _Helpers()


class _Histograms(Mapping):
    """The report's histograms, drawn by the helper processes (if the run has any) while this
    one saves galleries, exports tables and prepares the rest of the report: matplotlib's
    seconds there.

    A mapping ``{key: data URI}``, keyed as :func:`srforensics.report.histograms` keys them
    (by their values), collected when it is first read (:meth:`collect`).

    The helpers get one histogram per process at a time, the next as one finishes, so that
    those not handed over yet are there for this process to take when it is free: a process
    pool queues what it is sent, and a queued call cannot be taken back once a process has
    it (or the pipe to it does).
    """

    def __init__(self, results, metrics, helpers: _Helpers | None) -> None:
        import threading
        from collections import deque

        self.kwargs: dict[str, dict[str, Any]] = {}
        self.futures: dict[str, Any] = {}
        self._drawn: dict[str, str] | None = None
        self._todo: deque[str] = deque()  # not handed over yet: the helpers take from its head
        # Guards the queue; notified as a histogram is handed over, or refused.
        self._lock = threading.Condition()
        self._refused = False
        self._helpers = helpers
        if helpers is None or not helpers.processes:
            return
        from srforensics.report import histograms

        self.kwargs = histograms(results, metrics)
        self._todo.extend(self.kwargs)
        for _ in range(helpers.processes):
            self._hand_over()

    def _hand_over(self, _finished: Any = None) -> None:
        """Send the next histogram to the helpers (also called as one of theirs finishes)."""
        from srforensics.report.figures import distribution

        with self._lock:
            try:
                if not self._todo:
                    return
                key = self._todo.popleft()
                fut = self._helpers.submit(distribution, **self.kwargs[key])
                if fut is None:  # they take no more work: it is left for this process
                    self._todo.appendleft(key)
                    self._refused = True
                    return
                self.futures[key] = fut
            finally:
                self._lock.notify_all()
        fut.add_done_callback(self._hand_over)

    def _wait_for_helpers(self, patience: float) -> None:
        """Wait while the helpers draw every histogram; stop early if they take no more work,
        or if ``patience`` seconds pass without one handing over its next."""
        with self._lock:
            while not self._refused and (
                self._todo or not all(f.done() for f in self.futures.values())
            ):
                if not self._lock.wait(timeout=patience):
                    return

    def collect(
        self, timeout: float = 60.0, *, help_here: bool | None = None, patience: float = 5.0
    ) -> dict[str, str]:
        """``{key: data URI}``. This process, free now, draws those not handed over yet (from
        the end: the helpers take from the head) and those handed over that no helper has
        started, while the helpers finish theirs; one that failed (or is late) is left out,
        for the report to draw.

        It helps only where matplotlib is loaded here already (``help_here=None``): a first
        figure imports it, 0.4 to 0.6 s, where the helpers, which have it, take 30 to 80 ms a
        histogram. Otherwise it waits for them, and draws here only what they leave: the rest,
        if they take no more work or ``patience`` seconds pass without one finishing one.
        """
        if self._drawn is not None:
            return self._drawn
        import concurrent.futures as cf

        from srforensics.report.figures import distribution, drawing_loaded

        if help_here is None:
            help_here = drawing_loaded()
        if not help_here:
            self._wait_for_helpers(patience)

        drawn: dict[str, str] = {}
        while True:
            with self._lock:
                if not self._todo:
                    queue = list(self.futures.items())
                    break
                key = self._todo.pop()
            drawn[key] = distribution(**self.kwargs[key])
        while queue and queue[-1][1].cancel():
            key, _ = queue.pop()
            drawn[key] = distribution(**self.kwargs[key])
        done, _ = cf.wait([fut for _, fut in queue], timeout=timeout)
        for key, fut in queue:
            if fut in done and fut.exception() is None:
                drawn[key] = fut.result()
            else:
                fut.cancel()
        self._drawn = drawn
        return drawn

    def __getitem__(self, key: str) -> str:
        return self.collect()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.collect())

    def __len__(self) -> int:
        return len(self.collect())


def _execute(
    pipe: _Pipeline, run_dir: Path, *, resumed: bool, helpers: _Helpers | None = None
) -> AuditRun:
    from tqdm import tqdm

    from srforensics.provenance import (
        environment,
        git_commit,
        package_versions,
        utc_now,
        write_manifest,
    )
    from srforensics.report import render_report

    config = pipe.config
    started = utc_now()
    pipe.open(run_dir)
    ledger = pipe.ledger
    history = ledger.get_meta("history", [])
    history.append(
        {"started_at": started, "resumed": resumed, "command": list(config.command or [])}
    )
    ledger.set_meta("history", history)
    manifest: dict[str, Any] = {
        "run_id": ledger.get_meta("run_id") or f"{run_dir.name}-{uuid.uuid4().hex[:8]}",
        "srforensics_version": __version__,
        "status": "running",
        "command": list(config.command or []),
        "config": config.to_dict(),
        "protocol": {
            "name": pipe.protocol.name,
            "version": pipe.protocol.version,
            "file": pipe.protocol.source,
            "sha256": pipe.protocol.sha256,
            "text": pipe.protocol.text,
            "resolved": pipe.protocol.resolved(),
        },
        "dataset": dict(pipe.dataset.info(), limit=pipe.limit_info),
        "model": pipe.card.to_dict(),
        "metrics": [
            dict(i, unavailable=pipe.unavailable.get(i["name"])) for i in pipe.metric_infos
        ],
        "seeds": {
            "run_seed": pipe.run_seed,
            "variants": pipe.variants,
            "samples": config.samples,
            "scheme": "numpy SeedSequence(run_seed, spawn_key=(stream, sha256(record_id)[:8], variant[, sample])); "
            "stream 0 = degradation parameters, 1 = model seeds",
        },
        "device": pipe.device,
        "diversity_distance": pipe.distance_name,
        "packages": package_versions(),
        "git": git_commit(),
        "environment": environment(device=pipe.device, allocator=allocator_settings()),
        "history": history,
        "started_at": history[0]["started_at"],
        "finished_at": None,
    }
    ledger.set_meta("run_id", manifest["run_id"])
    write_manifest(run_dir, manifest)
    bar = tqdm(
        total=len(pipe.records) * pipe.variants,
        unit="LR",
        desc="audit",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        from srforensics.execution import run_shards, shards

        run_shards(
            pipe,
            shards(pipe.records, config.shard_size, pipe.pending),
            executor=config.executor,
            workers=config.workers,
            ray_address=config.ray_address,
            progress=bar.update,
            loaders=helpers.loaders if helpers else None,
            pool=helpers.workers if helpers else None,
        )
        identity_info = pipe.finish_identity()
        from srforensics.analysis import LedgerTables

        scored = LedgerTables.read(ledger)  # final scores; galleries add image paths
        drawing = _Histograms(scored.results, ledger.metrics(), helpers)
        saved = pipe.save_gallery_images(scored)
    except SRForensicsError as exc:  # the run cannot go on: the folder says why
        manifest["status"] = "stopped"
        manifest["stopped_because"] = str(exc)
        write_manifest(run_dir, manifest)
        raise
    finally:
        bar.close()
    final = scored.with_image_paths(ledger, saved)  # the exports' tables; the report's too
    sensitive = pipe.dataset.sensitive_attributes if config.breakdown_boot else ()
    if sensitive:  # after the bar's 100 %: say what the run is doing now
        print(
            f"audit: per-group breakdowns and disparities of {', '.join(sensitive)} "
            f"({config.breakdown_boot} record-level replicates) ...",
            file=sys.stderr,
            flush=True,
        )
    exports = export_tables(
        ledger,
        run_dir,
        sensitive=sensitive,
        seed=pipe.run_seed,
        n_boot=config.breakdown_boot or 1000,
        read=final,
        timed=pipe._timed,
    )
    from srforensics.images import sha256_file

    manifest["inputs"] = [
        {
            "record_id": r["record_id"],
            "path": r["path"],
            "sha256": r["sha256"],
            "status": r["status"],
            "error": r["error"],
        }
        for r in ledger.records()
    ]
    # Parameters (kernels included) live in the ledger; the manifest keeps their hash.
    manifest["lrs"] = ledger.lr_digests()
    manifest["counts"] = ledger.counts()
    if identity_info is not None:
        from srforensics.analysis import identity_rates

        with pipe._timed("breakdown"):
            identity_info["rates"] = identity_rates(  # scores only
                scored.results, seed=pipe.run_seed, n_boot=config.breakdown_boot or 1000
            )
    manifest["identity"] = identity_info
    from srforensics.resampling import Resampling

    manifest["resampling"] = Resampling(
        n_boot=config.breakdown_boot or 1000, seed=pipe.run_seed
    ).describe()
    manifest["metrics"] = [
        dict(i, unavailable=pipe.unavailable.get(i["name"])) for i in pipe.metric_infos
    ]
    manifest["exports"] = {p.name: sha256_file(p) for p in exports}
    manifest["weights"] = pipe.weights_log
    manifest["trust_weights"] = config.trust_weights
    manifest["status"] = "finished"
    manifest["finished_at"] = utc_now()
    counts = ledger.counts()
    manifest["ledger_content_sha256"] = ledger.content_digests()
    ledger.close()
    manifest["files"] = run_files(run_dir)
    digest = write_manifest(run_dir, manifest)
    verdicts = None
    if pipe.gate_file is not None:
        from srforensics.gates import gate_run, write_json, write_junit

        verdicts = gate_run(run_dir, pipe.gate_file)
        write_json(verdicts, run_dir / "gates.json")
        write_junit(verdicts, run_dir / "junit.xml")
    report = render_report(run_dir, drawn=drawing, read=final)  # drawing: read last
    from srforensics.run.seal import write_seal

    seal = write_seal(run_dir)
    return AuditRun(
        run_dir=run_dir,
        report=report,
        manifest_sha256=digest,
        report_sha256=seal["files"]["report.html"],
        counts=counts,
        unavailable=dict(pipe.unavailable),
        verdicts=verdicts,
    )


def run_audit(config: AuditConfig) -> AuditRun:
    """Run a new audit into ``config.out`` (or ``runs/<UTC time>-<model>-<protocol>/``)."""
    run_dir = (Path(config.out) if config.out else default_run_dir(config)).resolve()
    if (run_dir / CONFIG_NAME).exists():
        raise SRForensicsError(
            f"{run_dir} already holds a run; use --resume {run_dir} to finish it, or choose another --out"
        )
    check_new_run_dir(run_dir)
    started = time.perf_counter()
    with ExitStack() as stack:
        # Everything is loaded and checked before the run folder is made.
        helpers, pipe = _load(stack, config, started)
        check_new_run_dir(run_dir, inputs=pipe.dataset.root)
        make_run_dir(run_dir)
        with run_lock(run_dir):
            if (run_dir / CONFIG_NAME).exists():  # another process started here meanwhile
                raise SRForensicsError(f"{run_dir} already holds a run; choose another --out")
            write_atomic(
                run_dir / CONFIG_NAME,
                json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n",
            )
            run = _execute(pipe, run_dir, resumed=False, helpers=helpers)
    return _with_timing(run, pipe, started)


def resume_audit(run_dir: str | Path, *, command: Sequence[str] | None = None) -> AuditRun:
    """Finish a run that stopped, with its recorded configuration, computing only missing outputs."""
    run_dir = Path(run_dir).resolve()
    cfg_path = run_dir / CONFIG_NAME
    if not cfg_path.is_file():
        raise SRForensicsError(f"{run_dir} is not a run folder (no {CONFIG_NAME}); check the path")
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SRForensicsError(f"cannot read {cfg_path}: {exc}") from None
    if command is not None:
        data["command"] = list(command)
    from srforensics.provenance import MANIFEST_NAME

    try:
        status = json.loads((run_dir / MANIFEST_NAME).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status == "finished":
        raise SRForensicsError(
            f"{run_dir} is a finished run: it is never rewritten, so the manifest SHA-256 printed "
            f"when it ended stays valid. Check it with 'srforensics verify {run_dir}'"
        )
    config = AuditConfig.from_dict(data)
    started = time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(run_lock(run_dir))
        helpers, pipe = _load(stack, config, started)
        run = _execute(pipe, run_dir, resumed=True, helpers=helpers)
    return _with_timing(run, pipe, started)


def _load(stack: ExitStack, config: AuditConfig, started: float) -> tuple[_Helpers, _Pipeline]:
    """Start the helpers, set the run's thread count and load the pipeline, each kept
    open on ``stack`` until the run ends.

    Loading (imports, then objects that live through the run) runs with automatic garbage
    collection paused; after it, what is loaded is frozen out of the collector's scans
    until the run ends (:func:`~srforensics.execution.heap_frozen`). Loading is timed from
    ``started`` (torch's first import, when the thread count is set, included); the model
    and the metrics load with the run's thread count while the helpers start on the other
    CPUs."""
    with collection_paused():
        helpers = stack.enter_context(_helpers(config))
        stack.enter_context(torch_threads(config.threads))
        pipe = _Pipeline(config, started=started)
    stack.enter_context(heap_frozen())
    return helpers, pipe


def _with_timing(run: AuditRun, pipe: _Pipeline, started: float) -> AuditRun:
    """``run`` with its :class:`RunTiming` (helper processes stopped: the command's time),
    when this process computed the records."""
    from dataclasses import replace

    config = pipe.config
    if config.executor != "local" or config.workers > 0:
        return run  # the model and the metrics ran in other processes
    return replace(run, timing=pipe.timing(time.perf_counter() - started))
