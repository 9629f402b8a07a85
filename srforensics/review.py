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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srforensics import __version__
from srforensics.errors import SRForensicsError
from srforensics.images import (
    DEFAULT_MAX_PIXELS,
    encode_png,
    pixel_sha256,
    quantize,
    read_image,
    to_tensor,
)


@dataclass(frozen=True)
class ReviewConfig:
    image: str
    model: str = "bicubic"
    scale: int = 4
    samples: int = 16
    face: bool = False
    out: str | None = None
    seed: int = 0
    model_args: Mapping[str, Any] = field(default_factory=dict)
    sampler: str | None = None
    sampler_args: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    nr_metrics: tuple[str, ...] = ("piqe",)
    face_embedder: str = "facenet-vggface2"
    face_weights: str | None = None
    id_threshold: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.scale <= 16:
            raise SRForensicsError(f"--scale must be between 1 and 16, got {self.scale}")
        if not 1 <= self.samples <= 256:
            raise SRForensicsError(f"--samples must be between 1 and 256, got {self.samples}")


def run_review(config: ReviewConfig) -> Path:
    """Review one evidence image; return the path of ``review.html``."""
    from srforensics.audit import resolve_device
    from srforensics.metrics import MetricConfig, MetricUnavailable, build_metric
    from srforensics.metrics.diversity import pixel_std, std_map_image
    from srforensics.models import load_model
    from srforensics.provenance import package_versions, utc_now
    from srforensics.seeding import model_seed

    started = utc_now()
    image, sha = read_image(config.image, max_pixels=config.max_pixels)
    lr = quantize(image)
    device = resolve_device(config.device)
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
    out_dir = Path(config.out or f"review-{Path(config.image).stem}").resolve()
    (out_dir / "outputs").mkdir(parents=True, exist_ok=True)
    seeds = [model_seed(config.seed, sha, 0, s) for s in range(config.samples)]
    import torch

    with torch.no_grad():
        outs = model.sample(
            to_tensor(lr).to(device),
            scale=config.scale,
            n=config.samples,
            seeds=[seeds],
            context=[{"record_id": sha, "variant": 0, "degradation": None, "attributes": {}}],
        )
    outputs = [quantize(o.permute(1, 2, 0).cpu().numpy()) for o in outs[0]]
    mconf = MetricConfig(scale=config.scale, device=device)
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
        "model": model.card().to_dict(),
        "outputs": rows,
        "pixel_std_mean": float(std.mean()),
        "consistent_outputs": int(sum(r["consistent"] for r in rows)),
        "unavailable": unavailable,
        "face": face,
        "packages": package_versions(),
        "started_at": started,
        "finished_at": utc_now(),
    }
    (out_dir / "review.json").write_text(
        json.dumps(review, indent=2, sort_keys=True, default=str) + "\n"
    )
    return _render(out_dir, review)


def _faces(config: ReviewConfig, outputs, rows, device: str) -> dict[str, Any]:
    """Faces found in each output and, with an embedder, identity agreement across outputs."""
    from srforensics.faces import NoFaceFound
    from srforensics.faces.align import FaceAlign
    from srforensics.faces.embed import load_embedder
    from srforensics.weights import WeightsError

    align = FaceAlign()
    crops = []
    for r, o in zip(rows, outputs, strict=True):
        try:
            crops.append(align.apply(o, **align.fit(o)))
            r["face_detected"] = True
        except NoFaceFound:
            crops.append(None)
            r["face_detected"] = False
    found = [c for c in crops if c is not None]
    info: dict[str, Any] = {"faces_found": len(found), "outputs": len(outputs), "warnings": []}
    if 0 < len(found) < len(outputs):
        info["warnings"].append(
            f"a face is found in {len(found)} of {len(outputs)} outputs: the outputs disagree on whether there is a face"
        )
    try:
        embedder = load_embedder(
            config.face_embedder, weights_file=config.face_weights, device=device
        )
    except WeightsError as exc:
        info["identity_unavailable"] = str(exc)
        return info
    if len(found) >= 2:
        from srforensics.images import to_tensor

        emb = embedder.embed(to_tensor(found)).numpy()
        sims = emb @ emb.T
        iu = np.triu_indices(len(found), k=1)
        info["pairwise_cosine"] = sims.round(4).tolist()
        info["stability_mean"], info["stability_min"] = (
            float(sims[iu].mean()),
            float(sims[iu].min()),
        )
        info["embedder"] = embedder.card().to_dict()
        info["threshold"] = config.id_threshold
        if config.id_threshold is not None and info["stability_min"] < config.id_threshold:
            info["warnings"].append(
                f"the outputs disagree on identity: some pairs of outputs have a face similarity of "
                f"{info['stability_min']:.3f}, below the threshold {config.id_threshold}; they would not be "
                "taken for the same person"
            )
        elif config.id_threshold is None:
            info["note"] = "no --id-threshold given: the similarities are shown, not judged"
    return info


def _render(out_dir: Path, review: dict[str, Any]) -> Path:
    from srforensics.report import render_template
    from srforensics.report.figures import png_data_uri

    def uri(rel: str) -> str:
        return png_data_uri((out_dir / rel).read_bytes())

    html = render_template(
        "review.html.j2",
        review=review,
        review_json=json.dumps(review, indent=2, sort_keys=True, default=str),
        input_src=uri("input.png"),
        std_src=uri("std.png"),
        outputs=[dict(r, src=uri(r["file"])) for r in review["outputs"]],
    )
    path = out_dir / "review.html"
    path.write_text(html, encoding="utf-8")
    return path
