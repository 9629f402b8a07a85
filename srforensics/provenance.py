"""The run manifest: what was run, on what, with what, and the hashes to prove it."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

MANIFEST_NAME = "manifest.json"

#: Distributions whose versions every manifest records.
TRACKED_PACKAGES = (
    "srforensics",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-image",
    "pillow",
    "pyiqa",
    "facenet-pytorch",
    "pandas",
    "pyarrow",
    "matplotlib",
    "fairlearn",
    "jinja2",
    "pyyaml",
    "tqdm",
    "dlib-bin",
    "face_recognition_models",
    "spandrel",
    "safetensors",
    "threadpoolctl",
)

#: Licences shown in every report, as docs/licences.md lists them; pyiqa's restricts
#: commercial use.
DEPENDENCY_LICENCES = {
    "pyiqa": "PolyForm-Noncommercial-1.0.0 (non-commercial use only)",
    "srforensics": "Apache-2.0",
    "dlib-bin": "Boost Software License 1.0",
    "face_recognition_models": "MIT (its dlib model files: public domain)",
    "spandrel": "MIT (each architecture's weights carry their own licence, shown on the model card)",
    "safetensors": "Apache-2.0",
    "threadpoolctl": "BSD-3-Clause",
    "torch": "BSD-3-Clause",
    "torchvision": "BSD-3-Clause",
    "facenet-pytorch": "MIT (MTCNN weights: MIT, from the original MTCNN release)",
    "scikit-image": "BSD-3-Clause",
    "numpy": "BSD-3-Clause",
    "scipy": "BSD-3-Clause",
    "pillow": "MIT-CMU (HPND)",
    "pandas": "BSD-3-Clause",
    "pyarrow": "Apache-2.0",
    "matplotlib": "Matplotlib licence (PSF-based)",
    "fairlearn": "MIT",
    "jinja2": "BSD-3-Clause",
    "pyyaml": "MIT",
    "tqdm": "MPL-2.0 and MIT",
}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """``{distribution: installed version}`` (None: not installed), as
    ``importlib.metadata.version`` gives them."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = _version(metadata.distribution(n))
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def _version(dist: metadata.Distribution) -> str | None:
    """``dist.version``, read from the metadata's header alone: ``Distribution.version``
    parses the whole file as an e-mail message, long descriptions included (four fifths of a
    manifest's 20 ms of version lookups went there)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    for line in (text or "").splitlines():
        if not line.strip():  # the header ends at the first empty line
            break
        if line.startswith("Version:"):
            return line.removeprefix("Version:").strip()
    return dist.version


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """The git commit (and whether the tree is dirty) of the srforensics source, when in a checkout."""
    where = path or Path(__file__).resolve().parent.parent
    if not (where / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment(*, device: str = "cpu", allocator: str | None = None) -> dict[str, Any]:
    """Where the numbers were computed. ``allocator``: the C allocator's settings made for
    this process (``srforensics.runtime.allocator_settings()``), None for its defaults.
    For a CUDA run, also the GPU, the CUDA and cuDNN versions and whether TF32 (10-bit
    mantissa) was allowed for float32 convolutions and matrix products: each changes a
    model's float32 outputs in their last bits."""
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "allocator": allocator,
    }
    if device == "cuda":
        env["cuda"] = {
            "device_name": torch.cuda.get_device_name(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return env


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` (sorted keys, stable) and return its SHA-256."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    tmp = run_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(run_dir / MANIFEST_NAME)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
