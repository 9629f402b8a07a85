"""Identity preservation: is the upscaled face still the same person, and could it pass for someone else?

Per output: cosine similarity of L2-normalised embeddings (output vs its HR) and the
angle in degrees; whether MTCNN finds any face in the output. Per LR: identity
stability across its N outputs (mean and minimum pairwise cosine). After the run,
with every HR embedded: the verification threshold (calibrated on the dataset's own
HR genuine/impostor pairs at a false-match rate, or given), and for each output
``id_verified`` (matches its HR at the threshold), ``id_swap`` (rank-1 search over
the gallery of all HR subjects finds another subject) and ``id_false_match`` (it
matches another subject at the threshold).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.faces.mtcnn import faces_found, search_largest_face
from srforensics.images import to_tensor

#: Per-output identity columns and their metadata (they flow through ledger, analysis, report).
OUTPUT_COLUMNS: dict[str, dict[str, Any]] = {
    "face_detected": {
        "higher_is_better": True,
        "score_range": [0.0, 1.0],
        "unit": "",
        "description": "1 when MTCNN finds a face in the output, 0 when it finds none",
    },
    "id_cosine": {
        "higher_is_better": True,
        "score_range": [-1.0, 1.0],
        "unit": "",
        "description": "cosine similarity of the output's face embedding to its HR's",
    },
    "id_angle": {
        "higher_is_better": False,
        "score_range": [0.0, 180.0],
        "unit": "deg",
        "description": "angle between the output's and the HR's face embeddings",
    },
    "id_verified": {
        "higher_is_better": True,
        "score_range": [0.0, 1.0],
        "unit": "",
        "description": "1 when the output matches its own HR at the verification threshold",
    },
    "id_swap": {
        "higher_is_better": False,
        "score_range": [0.0, 1.0],
        "unit": "",
        "description": "1 when rank-1 search over all HR subjects finds another subject (identity swap)",
    },
    "id_false_match": {
        "higher_is_better": False,
        "score_range": [0.0, 1.0],
        "unit": "",
        "description": "1 when the output matches another subject at the threshold (false match)",
    },
}
LR_COLUMNS = ("id_stability_mean", "id_stability_min", "id_verify_rate")
NEEDS_THRESHOLD = ("id_verified", "id_false_match", "id_verify_rate")
NEEDS_SUBJECTS = ("id_swap", "id_false_match")


def column_infos() -> list[dict[str, Any]]:
    return [
        {"name": k, "requires_reference": True, "requires_lr": False, **v}
        for k, v in OUTPUT_COLUMNS.items()
    ]


# -- pure functions ----------------------------------------------------------------------
def cosine_angle(cos: float) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def pair_scores(embeddings: np.ndarray, subjects: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of all genuine (same subject) and impostor (different subject) pairs."""
    e = np.asarray(embeddings, dtype=np.float64)
    sims = e @ e.T
    subj = np.asarray(subjects)
    iu = np.triu_indices(len(e), k=1)
    same = subj[iu[0]] == subj[iu[1]]
    return sims[iu][same], sims[iu][~same]


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str  # "calibrated", "given" or "published" (the embedder card's operating point)
    fmr: float | None = None
    n_genuine: int | None = None
    n_impostor: int | None = None
    fnmr: float | None = None
    source: str | None = None  # for "published": where, and how it became a cosine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InsufficientPairs(SRForensicsError):
    """Too few impostor pairs to calibrate a threshold at the asked false-match rate."""


def calibrate_threshold(genuine: np.ndarray, impostor: np.ndarray, *, fmr: float) -> Threshold:
    """The lowest threshold whose empirical FMR (share of impostor scores >= it) is at most ``fmr``.

    Needs at least ``ceil(1 / fmr)`` impostor pairs, so that the asked rate is resolvable.
    """
    if not 0 < fmr < 1:
        raise SRForensicsError(f"the false-match rate must be in (0, 1), got {fmr}")
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    need = math.ceil(1 / fmr)
    if len(imp) < need:
        raise InsufficientPairs(
            f"calibrating at FMR {fmr:g} needs at least {need} impostor pairs; the dataset's HR faces give "
            f"{len(imp)}. Use a dataset with more subjects, or set --id-threshold"
        )
    k = int(math.floor(fmr * len(imp)))
    value = float(np.nextafter(imp[k], np.inf))  # strictly above the (k+1)-th highest impostor
    gen = np.asarray(genuine, dtype=np.float64)
    fnmr = float((gen < value).mean()) if len(gen) else None
    return Threshold(value, "calibrated", fmr, int(len(gen)), int(len(imp)), fnmr)


@dataclass(frozen=True)
class SearchResult:
    nearest_subject: str
    own_score: float | None
    best_other: float | None


def rank1(
    embedding: np.ndarray, gallery: np.ndarray, subjects: Sequence[str], own: str
) -> SearchResult:
    """Rank-1 search: each subject scores its best gallery match; the nearest subject wins."""
    scores = np.asarray(gallery, dtype=np.float64) @ np.asarray(embedding, dtype=np.float64)
    best: dict[str, float] = {}
    for s, v in zip(subjects, scores, strict=True):
        best[s] = max(best.get(s, -np.inf), float(v))
    nearest = max(best, key=lambda s: best[s])
    others = [v for s, v in best.items() if s != own]
    return SearchResult(nearest, best.get(own), max(others) if others else None)


def misidentification(
    outputs: Mapping[tuple, np.ndarray],
    output_subjects: Mapping[tuple, str | None],
    gallery: np.ndarray,
    gallery_subjects: Sequence[str],
    threshold: float | None,
) -> dict[tuple, dict[str, float | None]]:
    """Per output key: ``id_swap``, ``id_false_match`` (needs the threshold) as 1.0/0.0 or None."""
    out: dict[tuple, dict[str, float | None]] = {}
    for key, emb in outputs.items():
        own = output_subjects.get(key)
        if own is None or len(gallery) == 0:
            out[key] = {"id_swap": None, "id_false_match": None}
            continue
        r = rank1(emb, gallery, gallery_subjects, own)
        false_match = None
        if threshold is not None:
            false_match = float(r.best_other is not None and r.best_other >= threshold)
        out[key] = {"id_swap": float(r.nearest_subject != own), "id_false_match": false_match}
    return out


# -- the scorer used by the pipeline ------------------------------------------------------
def unit_rows(vectors, *, embedder: str) -> np.ndarray:
    """Embeddings normalised to unit length (cosine similarity is their dot product); a zero
    or non-finite vector is an error naming the embedder, never a made-up similarity."""
    e = np.asarray(vectors, dtype=np.float64)
    if e.ndim != 2:
        raise SRForensicsError(
            f"face embedder {embedder!r} returned an array of shape {e.shape}; embed() must return "
            "(B, D)"
        )
    norms = np.linalg.norm(e, axis=1)
    bad = ~np.isfinite(norms) | (norms <= 1e-12)
    if bad.any():
        raise SRForensicsError(
            f"face embedder {embedder!r} returned {int(bad.sum())} zero or non-finite embedding(s); "
            "a cosine similarity cannot be computed from them: fix the embedder"
        )
    return e / norms[:, None]


class IdentityScorer:
    """Embeds HR faces once per input and every output, and scores what can be scored per LR.

    ``embedder`` None: only ``face_detected`` (MTCNN's finding, whose weights ship with
    facenet-pytorch) is scored. ``protocol``: where the HR steps located the face, so that
    the embedder gets the crop's landmarks (:meth:`Protocol.face_landmarks`); without a face
    step, MTCNN locates the largest face of the HR, and its outputs share its geometry.
    """

    def __init__(self, embedder=None, *, detect: bool = True, protocol=None) -> None:

        self.embedder = embedder
        self.detect = detect
        self.protocol = protocol
        #: An embedder whose ``embed`` takes no ``landmarks`` gets the crop alone.
        self.takes_landmarks = embedder is not None and (
            "landmarks" in inspect.signature(embedder.embed).parameters
        )

    def landmarks(self, hr: np.ndarray, hr_params) -> np.ndarray | None:
        """The five landmarks of the face in ``hr`` (its outputs have the same geometry)."""
        if self.embedder is None:
            return None
        if self.protocol is not None:
            points = self.protocol.face_landmarks(hr_params)
            if points is not None:
                return np.asarray(points, dtype=np.float64)

        faces, _ = search_largest_face(hr)
        return np.asarray(faces[0]["landmarks"], dtype=np.float64) if faces else None

    def embed(self, images: Sequence[np.ndarray], landmarks=None) -> np.ndarray:
        """Unit-length embeddings of ``images`` (all with the face at ``landmarks``)."""

        batch = to_tensor(list(images))
        if self.takes_landmarks:
            points = None if landmarks is None else np.repeat(landmarks[None], len(images), axis=0)
            raw = self.embedder.embed(batch, landmarks=points)
        else:
            raw = self.embedder.embed(batch)
        raw = raw.numpy() if hasattr(raw, "numpy") else raw
        return unit_rows(raw, embedder=getattr(self.embedder, "name", type(self.embedder).__name__))

    def score_lr(
        self, hr_embedding: np.ndarray | None, images: Sequence[np.ndarray], landmarks=None
    ):
        """Per-output scores and embeddings (None without an embedder), and per-LR stability,
        for the outputs of one LR."""

        per_output: list[dict[str, float]] = [{} for _ in images]
        if self.detect:  # the outputs of one LR have one size: one pass of the cascade
            for scores, found in zip(per_output, faces_found(list(images)), strict=True):
                scores["face_detected"] = float(found)
        if self.embedder is None:
            return per_output, None, {}
        embs = self.embed(images, landmarks)
        for scores, e in zip(per_output, embs, strict=True):
            cos = float(np.clip(e @ hr_embedding, -1.0, 1.0))  # unit vectors: rounding only
            scores.update({"id_cosine": cos, "id_angle": cosine_angle(cos)})
        lr_scores: dict[str, float | None] = {"id_stability_mean": None, "id_stability_min": None}
        if len(embs) >= 2:
            sims = embs @ embs.T
            iu = np.triu_indices(len(embs), k=1)
            lr_scores = {
                "id_stability_mean": float(sims[iu].mean()),
                "id_stability_min": float(sims[iu].min()),
            }
        return per_output, embs, lr_scores
