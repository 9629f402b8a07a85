"""The identity stage: the face matcher a run uses, and, once every HR is embedded, the
verification threshold, the verification and the misidentification of every output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from srforensics.faces.embed import choose_embedder, load_embedder
from srforensics.faces.identity import (
    NEEDS_SUBJECTS,
    NEEDS_THRESHOLD,
    IdentityScorer,
    InsufficientPairs,
    Threshold,
    calibrate_threshold,
    column_infos,
    misidentification,
    pair_scores,
)
from srforensics.weights import WeightsError


@dataclass(eq=False)
class IdentityStage:
    """The run's identity scorer (None: identity is off), its matcher's card and how the
    matcher was chosen."""

    scorer: IdentityScorer | None = None
    card: dict[str, Any] | None = None
    choice: dict[str, Any] | None = None


def load_identity(
    config, protocol, device: str, metric_infos: list, unavailable: dict, *, wanted: bool
) -> IdentityStage:
    """The identity scorer: the face matcher chosen (printed: a forensic run never switches
    matcher silently) and MTCNN's face finding, which needs no matcher. Its columns join
    ``metric_infos``; without a matcher, each but ``face_detected`` is ``unavailable``."""
    if not wanted:
        return IdentityStage()
    stage, reason, embedder = IdentityStage(), None, None
    try:
        name, why = (
            (config.identity.face_embedder, "its weights given by --face-weights")
            if config.identity.face_weights
            else choose_embedder(config.identity.face_embedder)
        )
        stage.choice = {"asked": config.identity.face_embedder, "used": name, "why": why}
        embedder = load_embedder(name, weights_file=config.identity.face_weights, device=device)
        stage.card = embedder.card().to_dict()
        print(f"audit: identity: face matcher {name} ({why})", file=sys.stderr)
    except WeightsError as exc:
        reason = f"no face matcher: {exc}"
        stage.choice = {"asked": config.identity.face_embedder, "used": None, "why": reason}
        print(
            f"audit: identity unavailable ({reason}); face_detected is still scored",
            file=sys.stderr,
        )
    stage.scorer = IdentityScorer(embedder, protocol=protocol)
    for info in column_infos():
        metric_infos.append(info)
        if reason and info["name"] != "face_detected":
            unavailable[info["name"]] = reason
    return stage


@dataclass
class _Gallery:
    """The embeddings in the ledger: keys ``(record_id, variant, sample)`` (``-1, -1``: an
    HR) and their matrix, and the HRs of records with a subject, as the gallery."""

    keys: list[tuple]
    mat: np.ndarray
    subjects: dict[str, Any]
    hr_idx: list[int]

    @classmethod
    def read(cls, ledger) -> _Gallery:
        keys, mat = ledger.embeddings()
        subjects = {r["record_id"]: r["subject"] for r in ledger.records()}
        hr_idx = [i for i, k in enumerate(keys) if k[1] == -1 and subjects.get(k[0]) is not None]
        return cls(keys, mat, subjects, hr_idx)

    @property
    def embeddings(self) -> np.ndarray:
        return self.mat[self.hr_idx] if self.hr_idx else np.zeros((0, 0))

    @property
    def gallery_subjects(self) -> list:
        return [self.subjects[self.keys[i][0]] for i in self.hr_idx]


def finish_identity(
    stage: IdentityStage, ledger, config, metric_infos: list, unavailable: dict
) -> dict[str, Any] | None:
    """After every HR is embedded: the threshold, then the verification and misidentification
    of every output, into the ledger. Returns the manifest's ``identity`` (None: identity is
    off)."""
    if stage.scorer is None:
        return None
    if stage.scorer.embedder is None:
        ledger.set_metrics(metric_infos, unavailable)
        return {"embedder": None, "choice": stage.choice, "threshold": None}
    gallery = _Gallery.read(ledger)
    threshold, reason, why_published = _threshold(config, stage, gallery)
    if reason:
        for name in NEEDS_THRESHOLD:
            unavailable[name] = reason
    if len(set(gallery.gallery_subjects)) < 2:
        for name in NEEDS_SUBJECTS:
            unavailable.setdefault(
                name,
                "misidentification needs HR faces of at least two subjects (the 'subject' column)",
            )
    _score_outputs(ledger, gallery, threshold, unavailable)
    ledger.set_metrics(metric_infos, unavailable)
    return {
        "embedder": stage.card,
        "choice": stage.choice,
        "threshold": threshold.to_dict() if threshold else None,
        "threshold_why": why_published,
        "threshold_unavailable": reason,
        "gallery_size": len(gallery.hr_idx),
        "gallery_subjects": len(set(gallery.gallery_subjects)),
    }


def _threshold(
    config, stage: IdentityStage, gallery: _Gallery
) -> tuple[Threshold | None, str | None, str | None]:
    """The verification threshold: given, calibrated on the gallery's pairs at the run's
    FMR, or the matcher's published operating point (said to be so). Returns it (or None),
    why there is none, and why the published one was taken."""
    if config.identity.id_threshold is not None:
        return Threshold(float(config.identity.id_threshold), "given"), None, None
    subjects = gallery.gallery_subjects
    try:
        genuine, impostor = (
            pair_scores(gallery.embeddings, subjects) if gallery.hr_idx else ([], [])
        )
        found = calibrate_threshold(
            np.asarray(genuine), np.asarray(impostor), fmr=config.identity.id_fmr
        )
        return found, None, None
    except InsufficientPairs as exc:
        point = (stage.card or {}).get("operating_point")
        if not point:
            return None, f"no verification threshold: {exc}", None
        source = f"{point['published']}, {point['source']}; {point['derivation']}"
        return Threshold(float(point["cosine"]), "published", source=source), None, str(exc)


def _score_outputs(ledger, gallery: _Gallery, threshold: Threshold | None, unavailable) -> None:
    """Each output's verification against its own HR and its misidentification against the
    gallery; per LR, its verification rate."""
    keys, mat, subjects = gallery.keys, gallery.mat, gallery.subjects
    out_keys = [k for k in keys if k[1] >= 0]
    outputs = {k: mat[keys.index(k)] for k in out_keys}
    hr_of = {k[0]: mat[i] for i, k in enumerate(keys) if k[1] == -1}
    mis = misidentification(
        outputs,
        {k: subjects.get(k[0]) for k in out_keys},
        gallery.embeddings,
        gallery.gallery_subjects,
        threshold.value if threshold else None,
    )
    rows, verified_by_lr = [], {}
    for k in out_keys:
        vals = dict(mis[k])
        if threshold is not None:
            vals["id_verified"] = float(outputs[k] @ hr_of[k[0]] >= threshold.value)
            verified_by_lr.setdefault(k[:2], []).append(vals["id_verified"])
        for name, v in vals.items():
            if name not in unavailable:
                rows.append((*k, name, v, None if v is not None else "no subject for this record"))
    ledger.update_scores(rows)
    ledger.update_lr_scores(
        [
            (rid, v, "id_verify_rate", float(np.mean(vs)), None)
            for (rid, v), vs in verified_by_lr.items()
        ]
    )
