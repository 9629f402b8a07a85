"""Interpolation baselines, all through the one MATLAB-compatible resize."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from srforensics.models.base import SRModel
from srforensics.resize import imresize_tensor

if TYPE_CHECKING:
    import torch


class Interpolation(SRModel):
    """Upscale by classical interpolation (deterministic; invents no detail)."""

    method: ClassVar[str] = "bicubic"
    version = "matlab-imresize"
    licence = "n/a: classical interpolation, no weights"
    source = "srforensics.resize (MATLAB imresize semantics)"

    def upscale(self, lr: torch.Tensor, *, scale: int) -> torch.Tensor:
        h, w = lr.shape[-2:]
        out = imresize_tensor(lr, size=(h * scale, w * scale), method=self.method)  # type: ignore[arg-type]
        return out.clamp(0.0, 1.0)


class Nearest(Interpolation):
    """Nearest-neighbour upscaling (MATLAB imresize 'nearest')."""

    name = "nearest"
    method = "nearest"


class Bilinear(Interpolation):
    """Bilinear upscaling (MATLAB imresize 'bilinear')."""

    name = "bilinear"
    method = "bilinear"


class Bicubic(Interpolation):
    """Bicubic upscaling (MATLAB imresize 'bicubic', a = -0.5)."""

    name = "bicubic"
    method = "bicubic"


class Lanczos(Interpolation):
    """Lanczos-3 upscaling (MATLAB imresize 'lanczos3')."""

    name = "lanczos"
    method = "lanczos3"
