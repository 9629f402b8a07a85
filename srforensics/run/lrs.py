"""The model stage: LRs queued into model batches, the model's outputs checked and quantised
to 8 bits, scored (metrics, diversity, identity) and committed to the ledger, one
transaction per model call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srforensics.ledger import OutputRow
from srforensics.metrics.diversity import ntire_diversity, pixel_std, std_map_image
from srforensics.recompute import call_model, describe_error, model_context, output_images
from srforensics.run.outlet import Outlet
from srforensics.run.records import FAILED, OK
from srforensics.run.scoring import metric_batches, metric_scores
from srforensics.run.timing import Stopwatch


@dataclass(eq=False)
class Unit:
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

    def row(self, rows: list, **per_lr: Any) -> dict[str, Any]:
        """The ledger row of this LR with its output ``rows`` (see ``Ledger.put_lr``)."""
        return dict(
            record_id=self.record_id,
            variant=self.variant,
            params=self.params_json,  # stored only with an LR, whose parameters were encoded
            lr_sha256=self.lr_sha,
            lr_path=self.lr_path,
            outputs=rows,
            **per_lr,
        )

    def failed(self, error: str) -> dict[str, Any]:
        """The ledger row of this LR, every output failed with ``error``."""
        rows = [
            OutputRow(sample=s, seed=sd, status=FAILED, error=error)
            for s, sd in zip(self.todo, self.seeds, strict=True)
        ]
        return self.row(rows)


@dataclass(eq=False)
class _Checked:
    """One LR's model outputs checked and quantised: the ledger rows of those that failed,
    and the index, image and hash of each that did not."""

    rows: list[Any]
    good: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)


class ModelStage:
    """Model batches of LRs of one shape and sample count, run, scored and committed.

    ``parts``: the run's :class:`~srforensics.run.parts.Parts`; ``out``: where rows and
    images go; ``watch``: where the model's, metrics' and identity's seconds are counted.
    """

    def __init__(self, parts, out: Outlet, watch: Stopwatch) -> None:
        self.parts, self.out, self.watch = parts, out, watch
        self.config = parts.config
        self._pending: dict[tuple, list[Unit]] = {}

    def queue(self, unit: Unit) -> None:
        """Queue ``unit``; a full batch runs at once."""
        key = (tuple(unit.lr_t.shape), len(unit.todo))
        queue = self._pending.setdefault(key, [])
        queue.append(unit)
        if len(queue) >= self.config.execution.batch_size:
            self.run_batch(self._pending.pop(key))

    def flush(self) -> None:
        """Run every batch queued, full or not."""
        while self._pending:
            self.run_batch(self._pending.pop(next(iter(self._pending))))

    def run_batch(self, units: list[Unit]) -> None:
        """One model call for several LRs; a failure is narrowed down to the LR that caused it.

        The outputs of one call are committed in one transaction, so after a crash a
        resumed run forms the same batches again (and a batched model rounds the same).
        """
        with self.watch.timed("model"):
            call = call_model(
                self.parts.model,
                [u.lr_t for u in units],
                scale=self.parts.scale,
                seeds=[u.seeds for u in units],
                contexts=[u.context() for u in units],
                timeout=self.config.safety.model_timeout,
            )
        if call.error is not None:
            if len(units) > 1 and call.retry_alone:
                for u in units:  # retry one by one, so one bad input does not fail the others
                    self.run_batch([u])
                return
            self.out.sink.put_lrs([u.failed(call.error) for u in units])
            self.out.tick(len(units))
            return
        self.out.poll()
        checked = [self._check(unit, call.outputs[b]) for b, unit in enumerate(units)]
        with self.watch.timed("metrics"):
            scored = self._score_batch(checked, units)
        rows = []
        for unit, ch, sc in zip(units, checked, scored, strict=True):
            rows.append(self._finish(unit, ch, sc))
            self.out.poll()
        self.out.sink.put_lrs(rows, [(u.record_id, u.variant, u.todo) for u in units])
        self.out.tick(len(units))

    def _check(self, unit: Unit, outs) -> _Checked:
        """Check and quantise the outputs of one LR; failed ones get their ledger rows."""
        ch = _Checked(rows=[None] * len(unit.todo))
        checked = output_images(outs, tolerance=self.config.safety.range_tolerance)
        for j, (s, sd, out) in enumerate(zip(unit.todo, unit.seeds, checked, strict=True)):
            if out.image is not None:
                ch.good.append(j)
                ch.images.append(out.image)
                ch.hashes.append(out.sha256)
                continue
            ch.rows[j] = OutputRow(sample=s, seed=sd, status=FAILED, error=out.reason)
        return ch

    def _finish(self, unit: Unit, ch: _Checked, scored) -> dict[str, Any]:
        """The ledger row of one LR, from its checked and scored outputs."""
        rows, good, images, hashes = ch.rows, ch.good, ch.images, ch.hashes
        scores, notes = scored
        per_lr = self._spread(unit, images)
        if self.parts.identity.scorer is not None and images:
            self._identity(unit, ch, scores, per_lr)
        paths = (
            self.out.save_outputs(
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
        return unit.row([r for r in rows if r is not None], **per_lr)

    def _identity(self, unit: Unit, ch: _Checked, scores: list[dict], per_lr: dict) -> None:
        """Identity scores of one LR's outputs (into ``scores``), its per-LR values and the
        embeddings (into ``per_lr``)."""
        with self.watch.timed("identity"):
            id_scores, embs, lr_id = self.parts.identity.scorer.score_lr(
                unit.hr_embedding, ch.images, unit.hr_landmarks
            )
        for k, extra in enumerate(id_scores):
            scores[k].update(extra)
        per_lr["lr_scores"].update(lr_id)
        if embs is not None:
            per_lr["embeddings"] = {(-1, -1): unit.hr_embedding}
            per_lr["embeddings"].update(
                {(unit.variant, unit.todo[j]): embs[k] for k, j in enumerate(ch.good)}
            )

    def _spread(self, unit: Unit, images: list[np.ndarray]) -> dict[str, Any]:
        """Per-LR diversity and per-pixel spread of the outputs that finished (needs two or more)."""
        if len(images) < 2:
            note = f"needs at least two finished outputs, got {len(images)}"
            return {
                "lr_scores": {"diversity": None, "pixel_std_mean": None},
                "lr_notes": {"diversity": note, "pixel_std_mean": note},
            }
        stack = np.stack(images)
        notes = {"diversity": f"distance maps: {self.parts.distance_name}"}
        with self.watch.timed("metrics"):
            std = pixel_std(stack)
            scores: dict[str, float | None] = {"pixel_std_mean": float(std.mean())}
            try:
                scores["diversity"] = ntire_diversity(self.parts.distance(stack, unit.hr))
            except Exception as exc:
                scores["diversity"] = None
                notes["diversity"] = f"diversity could not be computed: {describe_error(exc)}"
        path = (
            self.out.save(std_map_image(std), f"{unit.out_stem}_std.png") if unit.out_stem else None
        )
        return {"lr_scores": scores, "lr_notes": notes, "std_map_path": path}

    def _score_batch(self, checked: list[_Checked], units: list[Unit]):
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
        for group, counts, batch, ref, lr in metric_batches(images, hrs, lrs, self.parts.device):
            for metric in self.parts.metrics:
                features = [units[i].ref_features.get(metric.name) for i in group]
                values = _metric_values(metric, batch, ref, lr, counts, features)
                for i, (vals, note) in zip(group, values, strict=True):
                    _spread_by_hash(metric.name, vals, note, first_of[i], checked[i], scored[i])
        return scored


def _spread_by_hash(name: str, vals, note, first: dict[str, int], ch: _Checked, scored) -> None:
    """Give each output of one LR the value of its distinct image (``first``: hash → index of
    the output scored); a NaN is no value, with a note."""
    by_hash = dict(zip(first, vals, strict=True))
    scores, notes = scored
    for k, h in enumerate(ch.hashes):
        v, n = by_hash[h], note
        if v is not None and not np.isfinite(v) and not np.isinf(v):
            v, n = None, f"{name} returned NaN"
        scores[k][name] = v
        if n:
            notes[k][name] = n


def _metric_values(metric, batch, ref, lr, counts: list[int], features: list[Any]):
    """``metric`` on a batch of LRs' outputs: per LR, its values and a note (or None).

    ``features``: per LR, the metric's reference features (see :func:`metric_scores`).
    A metric that fails on a batch of several LRs (out of GPU memory, say) is retried on
    each LR alone, so that one LR's failure is its own, as when each LR is scored alone.
    A metric that returns a value count other than one per output has failed."""
    try:
        vals = metric_scores(metric, batch, ref, lr, counts, features)
    except Exception as exc:
        if len(counts) == 1:
            note = f"{metric.name} could not be computed: {describe_error(exc)}"
            return [([None] * counts[0], note)]
        out, at = [], 0
        for j, n in enumerate(counts):
            part = slice(at, at + n)
            out += _metric_values(
                metric, batch[part], ref[part], lr[part], [n], features[j : j + 1]
            )
            at += n
        return out
    out, at = [], 0
    for n in counts:
        out.append((vals[at : at + n], None))
        at += n
    return out
