"""Loading weight files safely, and the log of those a run loaded (for its manifest)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srforensics.weights.files import WeightsError, check_sha256
from srforensics.weights.policy import (
    _TRUST_PICKLES,
    log_weights_file,
)

__all__ = [
    "load_state_dict",
    "normalise_state_dict",
]

# torch, safetensors: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")


def load_state_dict(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a state dict safely: safetensors, or ``torch.load(weights_only=True)``.

    Unwraps the usual containers (BasicSR ``params_ema``/``params``, ``state_dict``)
    and strips the ``module.`` prefix DataParallel leaves. A file that needs full
    unpickling is refused unless :func:`weights_policy` trusts pickles.
    """
    import torch

    path = Path(path)
    digest = check_sha256(path, sha256, what="weights") if sha256 is not None else None
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(
                f"{path} is a safetensors file, but the safetensors package is not installed"
            ) from None
        data: Any = load_file(str(path), device="cpu")
        how = "safetensors"
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            how = "torch.load(weights_only=True)"
        except Exception as exc:
            if not _TRUST_PICKLES.get():
                raise WeightsError(
                    f"{path} cannot be loaded with torch.load(weights_only=True): "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                    "Files that need full unpickling can run arbitrary code and are refused: "
                    "convert the file to a plain state dict or safetensors, or, if you trust "
                    "where it came from, pass --trust-weights (the manifest records it)"
                ) from None
            data = torch.load(path, map_location="cpu", weights_only=False)  # the user trusted it
            how = "torch.load(weights_only=False), trusted by --trust-weights"
    log_weights_file(path, how=how, sha256=digest)
    return normalise_state_dict(data, source=str(path))


def normalise_state_dict(data: Any, *, source: str = "weights") -> dict[str, Any]:
    import torch

    for _ in range(3):  # nested containers, e.g. {"state_dict": {"params_ema": ...}}
        if isinstance(data, Mapping) and not any(
            isinstance(v, torch.Tensor) for v in data.values()
        ):
            key = next((k for k in _CONTAINER_KEYS if k in data), None)
            if key is None:
                break
            data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{source} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in data.items()}
