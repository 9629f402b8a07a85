"""Recreate LRs from a protocol: preview a protocol on one image, replay a recorded LR.

``preview_protocol`` draws a protocol's LR variants of one image for a person to
look at. ``replay_lr`` recreates one LR of a finished run from what the run
recorded (its input file, the resolved protocol in the manifest, the parameters
in the ledger) and says whether the result is bit-identical to the ledger's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srforensics import __version__
from srforensics.errors import SRForensicsError
from srforensics.faces import NoFaceFound
from srforensics.images import encode_png, pixel_sha256, read_image
from srforensics.ledger import LEDGER_NAME, Ledger
from srforensics.provenance import MANIFEST_NAME, git_commit, read_manifest
from srforensics.report import render_template
from srforensics.report.figures import png_data_uri
from srforensics.seeding import degradation_rng


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _prepare(protocol, img: np.ndarray, source: str):

    try:
        return protocol.prepare(img)
    except NoFaceFound:
        raise SRForensicsError(
            f"no face found in {source}; protocol {protocol.name!r} needs one: use an image with a face"
        ) from None


def _kernel_png(kernel: Any) -> str | None:

    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.max() <= k.min():
        return None
    k = (k - k.min()) / (k.max() - k.min())
    big = np.kron(k, np.ones((6, 6)))  # 6x: a 21 px kernel becomes 126 px
    return png_data_uri(encode_png(np.repeat(big[..., None], 3, axis=2)))


def _describe_params(value: Any, kernels: list[dict[str, str]], path: str) -> Any:
    """Params for display: kernels replaced by a pointer to their picture."""
    if isinstance(value, dict):
        return {
            k: _describe_params(v, kernels, f"{path}.{k}" if path else k) for k, v in value.items()
        }
    if isinstance(value, list) and value and isinstance(value[0], list):
        src = _kernel_png(value)
        if src:
            kernels.append({"name": path, "src": src, "size": f"{len(value)}x{len(value[0])}"})
            return f"<{len(value)}x{len(value[0])} kernel, shown below>"
    if isinstance(value, list):
        return [_describe_params(v, kernels, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def preview_protocol(
    protocol_name: str | Path,
    image: str | Path,
    out_dir: str | Path,
    *,
    seed: int | None = None,
    variants: int | None = None,
) -> Path:
    """Write the HR, each LR variant, ``params.json`` and an ``index.html`` sheet; return the sheet."""
    from srforensics.degradations.protocol import load_protocol

    protocol = load_protocol(protocol_name)
    img, sha = read_image(image)
    record_id = Path(image).name
    hr, hr_params = _prepare(protocol, img, str(image))
    run_seed = protocol.seed if seed is None else seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hr.png").write_bytes(encode_png(hr))
    rows = []
    for v in range(protocol.variants if variants is None else variants):
        params = protocol.sample(degradation_rng(run_seed, record_id, v))
        lr = protocol.apply(hr, params)
        png = encode_png(lr)
        (out / f"lr_v{v}.png").write_bytes(png)
        kernels: list[dict[str, str]] = []
        shown = [
            {"op": step.name, "params": _describe_params(p, kernels, step.name)}
            for step, p in zip(protocol.steps, params, strict=True)
        ]
        rows.append(
            {
                "variant": v,
                "params": params,
                "lr_sha256": pixel_sha256(lr),
                "png": png,
                "shown": shown,
                "kernels": kernels,
                "size": lr.shape[:2],
            }
        )
    sheet = {
        "protocol": protocol.name,
        "protocol_sha256": protocol.sha256,
        "image": str(image),
        "image_sha256": sha,
        "record_id": record_id,
        "run_seed": run_seed,
        "hr_params": hr_params,
        "variants": [
            {"variant": r["variant"], "lr_sha256": r["lr_sha256"], "params": r["params"]}
            for r in rows
        ],
    }
    (out / "params.json").write_text(json.dumps(sheet, indent=2, sort_keys=True) + "\n")
    html = render_template(
        "preview.html.j2",
        protocol=protocol,
        sheet=sheet,
        hr_src=png_data_uri(encode_png(hr)),
        hr_size=hr.shape[:2],
        variants=[
            dict(r, src=png_data_uri(r["png"]), shown_json=json.dumps(r["shown"], indent=2))
            for r in rows
        ],
    )
    path = out / "index.html"
    path.write_text(html, encoding="utf-8")
    return path


@dataclass(frozen=True)
class ReplayResult:
    """What a replay found; ``ok`` when the LR is bit-identical and everything it depends on matches."""

    record_id: str
    variant: int
    input_matches: bool
    hr_matches: bool
    params_match: bool
    recorded_lr_sha256: str
    replayed_lr_sha256: str
    #: The srforensics that recorded the run and the one replaying it (version, and git
    #: commit when run from a checkout): face detection and the operators' arithmetic may
    #: change between versions in their last bits.
    recorded_by: str = ""
    replayed_by: str = ""

    @property
    def lr_matches(self) -> bool:
        return self.recorded_lr_sha256 == self.replayed_lr_sha256

    @property
    def ok(self) -> bool:
        return self.input_matches and self.hr_matches and self.params_match and self.lr_matches


def manifest_protocol(run_dir: Path, manifest: dict[str, Any]):
    """The protocol a run recorded (resolved form), checked against its recorded SHA-256."""
    from srforensics.degradations.protocol import parse_protocol

    protocol = parse_protocol(
        manifest["protocol"]["resolved"], source=f"{run_dir / MANIFEST_NAME}: protocol"
    )
    if protocol.sha256 != manifest["protocol"]["sha256"]:
        raise SRForensicsError(
            f"the protocol recorded in {run_dir / MANIFEST_NAME} hashes to {protocol.sha256[:12]}..., "
            f"not {manifest['protocol']['sha256'][:12]}...: the manifest was altered, or written by "
            f"srforensics {manifest.get('srforensics_version', '?')}, which resolves protocols differently"
        )
    return protocol


def replay_lr(run_dir: str | Path, record_id: str, *, variant: int = 0) -> ReplayResult:
    """Recreate one LR of a run from its recorded parameters and compare hashes with the ledger."""

    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST_NAME).is_file() or not (run_dir / LEDGER_NAME).is_file():
        raise SRForensicsError(
            f"{run_dir} is not a run folder (needs {MANIFEST_NAME} and {LEDGER_NAME})"
        )
    manifest = read_manifest(run_dir)
    protocol = manifest_protocol(run_dir, manifest)
    with Ledger(run_dir / LEDGER_NAME) as ledger:
        record = ledger.record(record_id)
        lr_row = ledger.lr(record_id, variant)
    if record is None:
        raise SRForensicsError(f"record {record_id!r} is not in the run {run_dir}")
    if lr_row is None:
        raise SRForensicsError(
            f"record {record_id!r} has no LR variant {variant} in {run_dir} (status: {record['status']})"
        )
    img, sha = read_image(record["path"])
    hr, _ = _prepare(protocol, img, record["path"])
    fresh = protocol.sample(degradation_rng(int(manifest["seeds"]["run_seed"]), record_id, variant))
    lr = protocol.apply(hr, lr_row["params"])
    return ReplayResult(
        record_id=record_id,
        variant=variant,
        input_matches=sha == record["sha256"],
        hr_matches=pixel_sha256(hr) == record["hr_sha256"],
        params_match=_canonical(fresh) == _canonical(lr_row["params"]),
        recorded_lr_sha256=lr_row["lr_sha256"],
        replayed_lr_sha256=pixel_sha256(lr),
        recorded_by=_software(manifest.get("srforensics_version"), manifest.get("git")),
        replayed_by=_software(__version__, git_commit()),
    )


def _software(version: str | None, git: dict[str, Any] | None) -> str:
    """``srforensics 0.1.0 (git 4263232..., dirty)``, as the manifest records it."""
    where = ""
    if git:
        where = f" (git {git.get('commit', '?')}{', dirty' if git.get('dirty') else ''})"
    return f"srforensics {version or '?'}{where}"
