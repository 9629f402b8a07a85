"""MATLAB-compatible ``imresize``: the one resize used by protocols, baselines and checks.

Follows MATLAB's ``imresize`` exactly: kernel evaluated at
``u = x / scale + 0.5 * (1 - 1 / scale)``, kernel widened by ``1 / scale`` and
scaled when downscaling with antialiasing, weights normalised per output pixel,
symmetric (mirror) padding at the borders. The resize is linear and separable,
so it is applied as two dense matrices: ``out = Wh @ img @ Ww.T``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch

Method = Literal["nearest", "area", "bilinear", "bicubic", "lanczos2", "lanczos3"]
METHODS: tuple[str, ...] = ("nearest", "area", "bilinear", "bicubic", "lanczos2", "lanczos3")


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5, as MATLAB.
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def _lanczos(a: int):
    def kernel(x: np.ndarray) -> np.ndarray:
        eps = np.finfo(np.float64).eps
        num = np.sin(np.pi * x) * np.sin(np.pi * x / a) + eps
        den = (np.pi**2 * x**2 / a) + eps
        return (num / den) * (np.abs(x) < a)

    return kernel


_KERNELS = {
    "nearest": (_box, 1.0),
    # MATLAB 'box', antialiased: downscaling by an integer factor averages whole blocks
    # (OpenCV INTER_AREA's result for integer factors).
    "area": (_box, 1.0),
    "bilinear": (_triangle, 2.0),
    "bicubic": (_cubic, 4.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
}


@lru_cache(maxsize=256)
def weight_matrix(
    in_len: int, out_len: int, scale: float, method: str, antialias: bool
) -> np.ndarray:
    """The ``(out_len, in_len)`` float64 matrix of one axis of MATLAB ``imresize``."""
    if method not in _KERNELS:
        raise ValueError(f"unknown resize method {method!r}; choose from {', '.join(METHODS)}")
    kernel, width = _KERNELS[method]
    if scale < 1 and antialias:
        base = kernel

        def kernel(x, _s=scale, _k=base):
            return _s * _k(_s * x)

        width = width / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # Mirror indices (1-based) into [1, in_len], as MATLAB's symmetric padding.
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, aux.size)] - 1
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), idx.ravel()), w.ravel())
    mat.setflags(write=False)
    return mat


def output_size(in_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size: ``ceil(size * scale)`` per axis."""
    return tuple(int(math.ceil(s * scale - 1e-9)) for s in in_hw)  # type: ignore[return-value]


def _plan(in_hw, scale, size):
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if size is None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        size = output_size(in_hw, scale)
        scales = (float(scale), float(scale))
    else:
        size = (int(size[0]), int(size[1]))
        if min(size) < 1:
            raise ValueError(f"output size must be positive, got {size}")
        scales = (size[0] / in_hw[0], size[1] / in_hw[1])
    return size, scales


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    method: Method = "bicubic",
    antialias: bool | None = None,
) -> np.ndarray:
    """Resize an ``(H, W)`` or ``(H, W, C)`` array as MATLAB ``imresize``.

    Parameters
    ----------
    img : ndarray
        Input, any float or integer dtype; computed in float64.
    scale : float, optional
        Scale factor (output size ``ceil(H * scale)``). Give this or ``size``.
    size : (int, int), optional
        Output ``(height, width)``.
    method : {"nearest", "area", "bilinear", "bicubic", "lanczos2", "lanczos3"}
    antialias : bool, optional
        Widen the kernel when downscaling. Default: True except for "nearest" (as MATLAB).

    Returns
    -------
    ndarray
        float64 result (not clipped, not rounded).
    """
    a = np.asarray(img, dtype=np.float64)
    (oh, ow), (sh, sw) = _plan(a.shape[:2], scale, size)
    aa = (method != "nearest") if antialias is None else antialias
    wh = weight_matrix(a.shape[0], oh, sh, method, aa)
    ww = weight_matrix(a.shape[1], ow, sw, method, aa)
    if a.ndim == 2:
        return wh @ a @ ww.T
    return np.einsum("oh,hwc,pw->opc", wh, a, ww, optimize=True)


def imresize_tensor(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    method: Method = "bicubic",
    antialias: bool | None = None,
) -> torch.Tensor:
    """:func:`imresize` for ``(..., H, W)`` tensors, in the tensor's dtype and device."""
    import torch

    (oh, ow), (sh, sw) = _plan(tuple(x.shape[-2:]), scale, size)
    aa = (method != "nearest") if antialias is None else antialias
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    wh = torch.tensor(weight_matrix(x.shape[-2], oh, sh, method, aa), device=x.device, dtype=dtype)
    ww = torch.tensor(weight_matrix(x.shape[-1], ow, sw, method, aa), device=x.device, dtype=dtype)
    return wh @ x.to(dtype) @ ww.T
