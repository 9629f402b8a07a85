"""SR models: the plug-in base, built-in baselines, and how a model is named.

A model is named by a registry name (``bicubic``), an entry point in group
``srforensics.models``, or ``package.module:Class``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.models.base import ModelCard, SRModel
from srforensics.registry import Registry

MODELS: Registry[type[SRModel]] = Registry("model", entry_point_group="srforensics.models")
MODELS.register(
    "nearest",
    "srforensics.models.interpolation:Nearest",
    description="nearest-neighbour interpolation (deterministic)",
)
MODELS.register(
    "bilinear",
    "srforensics.models.interpolation:Bilinear",
    description="bilinear interpolation (deterministic)",
)
MODELS.register(
    "bicubic",
    "srforensics.models.interpolation:Bicubic",
    description="MATLAB bicubic interpolation (deterministic)",
)
MODELS.register(
    "lanczos",
    "srforensics.models.interpolation:Lanczos",
    aliases=("lanczos3",),
    description="Lanczos-3 interpolation (deterministic)",
)


def load_model(name: str, *, args: Mapping[str, Any] | None = None, device: str = "cpu") -> SRModel:
    """Instantiate a model by registry name, entry point or ``module:Class``."""
    target = MODELS.get(name)
    if not (isinstance(target, type) and issubclass(target, SRModel)):
        raise SRForensicsError(
            f"{name!r} resolves to {target!r}, which is not a subclass of srforensics.models.SRModel"
        )
    try:
        return target(device=device, **dict(args or {}))
    except TypeError as exc:
        raise SRForensicsError(
            f"cannot create model {name!r} with arguments {dict(args or {})}: {exc}"
        ) from None


__all__ = ["MODELS", "ModelCard", "SRModel", "load_model"]
