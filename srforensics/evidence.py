"""Case review: one evidence image, no ground truth.

What can be said without a ground truth: the input's SHA-256; N seeded outputs of
the model; where they disagree (per-pixel standard deviation); whether each one is
consistent with the evidence (LR-PSNR: downscaled again, does it give back the
input?); no-reference quality; and, with ``face=True``, whether a face is found in
each output and whether the outputs agree on identity (pairwise similarity of their
face embeddings). Writes ``review.html`` (self-contained, printable) and
``review.json`` with the outputs as PNGs beside them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srforensics import __version__
from srforensics.errors import SRForensicsError
from srforensics.faces import NoFaceFound
from srforensics.faces.align import FaceAlign
from srforensics.faces.embed import choose_embedder, load_embedder
from srforensics.faces.identity import IdentityScorer
from srforensics.images import (
    DEFAULT_MAX_PIXELS,
    encode_png,
    pixel_sha256,
    quantize,
    read_image,
    to_tensor,
)
from srforensics.metrics import MetricConfig, MetricUnavailable, build_metric
from srforensics.metrics.diversity import pixel_std, std_map_image
from srforensics.provenance import package_versions, utc_now
from srforensics.report import render_template
from srforensics.report.figures import png_data_uri
from srforensics.resize import imresize
from srforensics.run.scoring import resolve_device
from srforensics.seeding import model_seed
from srforensics.weights import WeightsError

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


@dataclass(frozen=True)
class ReviewConfig:
    image: str
    model: str = "bicubic"
    scale: int = 4
    samples: int = 16
    face: bool = True
    out: str | None = None
    seed: int = 0
    model_args: Mapping[str, Any] = field(default_factory=dict)
    sampler: str | None = None
    sampler_args: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    nr_metrics: tuple[str, ...] = ("piqe",)
    face_embedder: str = "auto"
    face_weights: str | None = None
    id_threshold: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: An image of the same scene at the output's resolution (e.g. the same region of a
    #: higher-resolution frame): what the camera would have recorded closer up.
    reference: str | None = None
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.scale <= 16:
            raise SRForensicsError(f"--scale must be between 1 and 16, got {self.scale}")
        if not 1 <= self.samples <= 256:
            raise SRForensicsError(f"--samples must be between 1 and 256, got {self.samples}")


def run_review(config: ReviewConfig) -> Path:
    """Review one evidence image; return the path of ``review.html``."""
    started = utc_now()
    image, sha = read_image(config.image, max_pixels=config.max_pixels)
    lr = quantize(image)
    device = resolve_device(config.device)
    model, n_samples, deterministic_note = _review_model(config, device)
    card = model.card()
    out_dir = Path(config.out or f"review-{Path(config.image).stem}").resolve()
    (out_dir / "outputs").mkdir(parents=True, exist_ok=True)
    seeds = [model_seed(config.seed, sha, 0, s) for s in range(n_samples)]
    import torch

    with torch.no_grad():
        outs = model.sample(
            to_tensor(lr).to(device),
            scale=config.scale,
            n=n_samples,
            seeds=[seeds],
            context=[{"record_id": sha, "variant": 0, "degradation": None, "attributes": {}}],
        )
    outputs = [quantize(o.permute(1, 2, 0).cpu().numpy()) for o in outs[0]]
    mconf = MetricConfig(scale=config.scale, device=device)
    rows, unavailable = _score_outputs(config, outputs, lr, seeds, mconf)
    reference = (
        _against_reference(config, outputs, rows, mconf, out_dir, device)
        if config.reference
        else None
    )
    for r, o in zip(rows, outputs, strict=True):
        (out_dir / r["file"]).write_bytes(encode_png(o))
    std = pixel_std(np.stack(outputs))
    (out_dir / "std.png").write_bytes(encode_png(std_map_image(std)))
    (out_dir / "input.png").write_bytes(encode_png(lr))
    face = _faces(config, outputs, rows, device) if config.face else None
    review = {
        "srforensics_version": __version__,
        "input": {
            "path": str(Path(config.image).resolve()),
            "sha256": sha,
            "size": list(lr.shape[:2]),
        },
        "config": dict(
            asdict(config),
            model_args=dict(config.model_args),
            sampler_args=dict(config.sampler_args),
        ),
        "model": card.to_dict(),
        "deterministic_note": deterministic_note,
        "outputs": rows,
        "pixel_std_mean": float(std.mean()),
        "consistent_outputs": int(sum(r["consistent"] for r in rows)),
        "unavailable": unavailable,
        "face": face,
        "reference": reference,
        "packages": package_versions(),
        "started_at": started,
        "finished_at": utc_now(),
    }
    (out_dir / "review.json").write_text(
        json.dumps(review, indent=2, sort_keys=True, default=str) + "\n"
    )
    return _render(out_dir, review)


#: Full-reference metrics of the outputs against ``--reference`` (RGB: the reference is no
#: HR of the model's input, so the SR convention's Y-channel border crop is not assumed).
REFERENCE_METRICS = ("psnr_rgb", "ssim_rgb")


def _review_model(config: ReviewConfig, device):
    """The review's model, and how many outputs it draws: one for a deterministic model
    (with the note that says why), ``config.samples`` otherwise."""
    from srforensics.models import load_model

    model = load_model(
        config.model,
        args=config.model_args,
        device=device,
        sampler=config.sampler,
        sampler_args=config.sampler_args,
    )
    if model.scale is not None and model.scale != config.scale:
        raise SRForensicsError(
            f"model {config.model!r} upscales x{model.scale}; use --scale {model.scale}"
        )
    card = model.card()
    if card.stochastic or config.samples <= 1:
        return model, config.samples, None
    note = (
        f"{card.name} is deterministic: its {config.samples} outputs would be identical, so "
        "one is drawn. For a spread of plausible outputs use a stochastic model or "
        "--sampler tta, mc-dropout or input-noise"
    )
    print(f"review: {note}", file=sys.stderr)
    return model, 1, note


def _score_outputs(config: ReviewConfig, outputs, lr, seeds, mconf: MetricConfig):
    """One row an output (seed, pixel hash, LR-PSNR and consistency, the no-reference
    metrics) and the reasons of the metrics that could not be computed."""
    lr_metric = build_metric("lr_psnr", mconf)
    batch, lr_t = to_tensor(outputs), to_tensor(lr).expand(len(outputs), -1, -1, -1)
    rows = [
        {"sample": s, "seed": seeds[s], "sha256": pixel_sha256(o), "file": f"outputs/s{s:03d}.png"}
        for s, o in enumerate(outputs)
    ]
    for r, v in zip(rows, lr_metric(batch, None, lr=lr_t).tolist(), strict=True):
        r["lr_psnr"] = v
        r["consistent"] = v >= 45.0
    unavailable = {}
    for name in config.nr_metrics:
        try:
            metric = build_metric(name, mconf)
            if metric.requires_reference:
                raise MetricUnavailable(
                    f"{name} needs a ground truth, which a case review does not have"
                )
            for r, v in zip(rows, metric(batch).tolist(), strict=True):
                r[name] = v
        except MetricUnavailable as exc:
            unavailable[name] = str(exc)
    return rows, unavailable


def _against_reference(config: ReviewConfig, outputs, rows, mconf, out_dir: Path, device: str):
    """How far each output is from a real higher-resolution image of the same scene:
    RGB PSNR and SSIM, and the cosine between each output's face and the reference's."""

    image, sha = read_image(config.reference, max_pixels=config.max_pixels)
    ref = quantize(image)
    h, w = outputs[0].shape[:2]
    info: dict[str, Any] = {
        "path": str(Path(config.reference).resolve()),
        "sha256": sha,
        "size": list(ref.shape[:2]),
    }
    if ref.shape[:2] != (h, w):
        ref = quantize(np.clip(imresize(ref, size=(h, w)), 0.0, 1.0))
        info["resized_to"] = [h, w]
        info["resize"] = (
            "MATLAB-compatible bicubic (antialiased when shrinking) to the outputs' size"
        )
    (out_dir / "reference.png").write_bytes(encode_png(ref))
    batch, ref_t = to_tensor(outputs), to_tensor(ref).expand(len(outputs), -1, -1, -1)
    mc = MetricConfig(scale=mconf.scale, crop_border=0, device=device)
    for name in REFERENCE_METRICS:
        for r, v in zip(rows, build_metric(name, mc)(batch, ref_t).tolist(), strict=True):
            r[f"{name}_vs_reference"] = v
    info["metrics"] = [f"{n}_vs_reference" for n in REFERENCE_METRICS]
    info["identity"] = _identity_vs_reference(config, ref, outputs, rows, device)
    return info


def _identity_vs_reference(config: ReviewConfig, ref, outputs, rows, device: str):
    """Cosine between the face of each output and the reference's face (None where either
    has none), with the matcher :func:`_faces` uses."""

    align = FaceAlign()

    def face(img):
        try:
            p = align.fit(img)
        except NoFaceFound:
            return None
        return align.apply(img, **p), align.points(p)

    try:
        name, _ = (
            (config.face_embedder, "")
            if config.face_weights
            else choose_embedder(config.face_embedder)
        )
        scorer = IdentityScorer(
            load_embedder(name, weights_file=config.face_weights, device=device)
        )
    except WeightsError as exc:
        return {"unavailable": str(exc)}
    ref_face = face(ref)
    if ref_face is None:
        return {"unavailable": "no face is found in the reference"}
    ref_emb = scorer.embed([ref_face[0]], ref_face[1])[0]
    for r, o in zip(rows, outputs, strict=True):
        found = face(o)
        r["id_cosine_vs_reference"] = (
            None
            if found is None
            else float(np.clip(scorer.embed([found[0]], found[1])[0] @ ref_emb, -1, 1))
        )
    values = [r["id_cosine_vs_reference"] for r in rows if r["id_cosine_vs_reference"] is not None]
    return {
        "matcher": name,
        "mean": float(np.mean(values)) if values else None,
        "min": float(np.min(values)) if values else None,
        "faces": len(values),
    }


def _faces(config: ReviewConfig, outputs, rows, device: str) -> dict[str, Any]:
    """Faces found in each output (MTCNN) and identity agreement across the outputs with the
    face matcher (``auto``: see :func:`~srforensics.faces.embed.choose_embedder`), judged at
    ``--id-threshold`` or else the matcher's published operating point."""

    align = FaceAlign()
    crops, points = [], []
    for r, o in zip(rows, outputs, strict=True):
        try:
            params = align.fit(o)
            crops.append(align.apply(o, **params))
            points.append(align.points(params))
            r["face_detected"] = True
        except NoFaceFound:
            r["face_detected"] = False
    info: dict[str, Any] = {"faces_found": len(crops), "outputs": len(outputs), "warnings": []}
    if 0 < len(crops) < len(outputs):
        info["warnings"].append(
            f"a face is found in {len(crops)} of {len(outputs)} outputs: the outputs disagree on whether there is a face"
        )
    try:
        name, why = (
            (config.face_embedder, "its weights given by --face-weights")
            if config.face_weights
            else choose_embedder(config.face_embedder)
        )
        embedder = load_embedder(name, weights_file=config.face_weights, device=device)
    except WeightsError as exc:
        info["identity_unavailable"] = str(exc)
        print(f"review: identity agreement unavailable: {exc}", file=sys.stderr)
        return info
    card = embedder.card().to_dict()
    info["embedder"], info["embedder_why"] = card, why
    print(f"review: identity: face matcher {name} ({why})", file=sys.stderr)
    if len(crops) < 2:
        info["note"] = (
            "identity agreement needs faces in at least two outputs"
            if len(outputs) > 1
            else "one output: there is no agreement across outputs to measure"
        )
        return info
    scorer = IdentityScorer(embedder)
    emb = np.concatenate([scorer.embed([c], p) for c, p in zip(crops, points, strict=True)])
    sims = emb @ emb.T
    iu = np.triu_indices(len(crops), k=1)
    info["pairwise_cosine"] = sims.round(4).tolist()
    info["stability_mean"], info["stability_min"] = float(sims[iu].mean()), float(sims[iu].min())
    point = card.get("operating_point")
    if config.id_threshold is not None:
        info["threshold"], info["threshold_source"] = config.id_threshold, "--id-threshold"
    elif point:
        info["threshold"] = point["cosine"]
        info["threshold_source"] = f"{name}'s published operating point ({point['published']})"
    else:
        info["threshold"] = None
        info["note"] = (
            "no --id-threshold given and the matcher publishes none: the similarities are shown, not judged"
        )
    if info["threshold"] is not None and info["stability_min"] < info["threshold"]:
        info["warnings"].append(
            f"the outputs disagree on identity: some pairs of outputs have a face similarity of "
            f"{info['stability_min']:.3f}, below the threshold {info['threshold']:g} "
            f"({info['threshold_source']}); they would not be taken for the same person"
        )
    return info


def _render(out_dir: Path, review: dict[str, Any]) -> Path:

    def uri(rel: str) -> str:
        return png_data_uri((out_dir / rel).read_bytes())

    html = render_template(
        "review.html.j2",
        review=review,
        review_json=json.dumps(review, indent=2, sort_keys=True, default=str),
        input_src=uri("input.png"),
        std_src=uri("std.png"),
        reference_src=uri("reference.png") if review.get("reference") else None,
        outputs=[dict(r, src=uri(r["file"])) for r in review["outputs"]],
    )
    path = out_dir / "review.html"
    path.write_text(html, encoding="utf-8")
    return path
