"""Blur kernels and convolution: pure functions of their parameters.

The anisotropic, generalised and plateau kernels and the sinc (circular
lowpass) filter follow Real-ESRGAN (Wang et al. 2021, ``basicsr/data/
degradations.py``): for a covariance ``Σ = R diag(σx², σy²) Rᵀ`` with rotation
``θ`` and ``d(x) = xᵀ Σ⁻¹ x`` on the pixel grid centred on the kernel,

- Gaussian: ``exp(-d / 2)``;
- generalised Gaussian: ``exp(-(d)^β / 2)`` (β = 1 is the Gaussian);
- plateau: ``1 / (1 + d^β)``;

each normalised to sum to 1. Motion blur is a line segment of ``length``
pixels at ``angle`` degrees (counter-clockwise from the x axis, y up), drawn by
supersampling; defocus is a uniform disk of ``radius`` pixels, anti-aliased by
supersampling its edge.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

# scipy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

Border = Literal["reflect", "reflect101", "replicate", "constant"]
#: Border modes and their scipy.ndimage names: reflect = "dcba|abcd" (half-sample
#: symmetric, MATLAB 'symmetric'), reflect101 = "dcb|abcd" (OpenCV default, torch
#: 'reflect'), replicate = "aaa|abcd" (MATLAB 'replicate').
BORDERS: dict[str, str] = {
    "reflect": "reflect",
    "reflect101": "mirror",
    "replicate": "nearest",
    "constant": "constant",
}


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the centre of an odd ``size`` kernel: ``(x, y)`` with y pointing down."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(ax, ax)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``xᵀ Σ⁻¹ x`` on the grid, with θ in radians (Real-ESRGAN ``sigma_matrix2``)."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {sigma_x}, {sigma_y}")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    x, y = grid(size)
    return inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y


def _normalise(k: np.ndarray) -> np.ndarray:
    total = k.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("kernel does not sum to a positive number")
    return k / total


def gaussian(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0
) -> np.ndarray:
    """Isotropic (``sigma_y`` None) or anisotropic Gaussian kernel; ``theta`` in radians."""
    d = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(np.exp(-0.5 * d))


def generalized_gaussian(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> np.ndarray:
    return _normalise(np.exp(-0.5 * np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta)))


def plateau(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    return _normalise(1.0 / (np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta) + 1.0))


def _supersampled(size: int, inside, factor: int = 8) -> np.ndarray:
    """Fraction of each pixel where ``inside(x, y)`` holds, by ``factor``² subsamples."""
    offs = (np.arange(factor) + 0.5) / factor - 0.5
    x, y = grid(size)
    acc = np.zeros((size, size))
    for dy in offs:
        for dx in offs:
            acc += inside(x + dx, y + dy)
    return acc / factor**2


def motion(size: int, length: float, angle: float, width: float = 1.0) -> np.ndarray:
    """Linear motion blur: a centred segment of ``length`` px at ``angle`` degrees (CCW, y up)."""
    if length < 1:
        raise ValueError(f"motion length must be >= 1 px, got {length}")
    if length > size:
        raise ValueError(f"motion length {length} does not fit a kernel of size {size}")
    a = math.radians(angle)
    ux, uy = math.cos(a), -math.sin(a)  # image rows grow downwards

    def inside(x, y):
        along = x * ux + y * uy
        across = -x * uy + y * ux
        return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)

    return _normalise(_supersampled(size, inside))


def defocus(size: int, radius: float) -> np.ndarray:
    """Defocus (pillbox): a uniform disk of ``radius`` px, edge anti-aliased."""
    if radius <= 0:
        raise ValueError(f"defocus radius must be positive, got {radius}")
    if 2 * radius + 1 > size + 1e-9:
        raise ValueError(f"a disk of radius {radius} does not fit a kernel of size {size}")
    return _normalise(_supersampled(size, lambda x, y: x * x + y * y <= radius * radius))


def sinc(size: int, cutoff: float) -> np.ndarray:
    """2-D circular lowpass (sinc) kernel with cutoff ``cutoff`` rad/px (Real-ESRGAN ``circular_lowpass_kernel``)."""
    from scipy.special import j1

    if not 0 < cutoff <= math.pi:
        raise ValueError(f"sinc cutoff must be in (0, pi], got {cutoff}")
    x, y = grid(size)
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * j1(cutoff * r) / (2 * math.pi * r)
    k[r == 0] = cutoff**2 / (4 * math.pi)
    return _normalise(k)


#: A kernel whose second singular value is at most this fraction of its first is
#: filtered as the outer product of its first singular vectors (two 1-D passes): the
#: isotropic Gaussian, axis-aligned motion. The factors' product differs from the
#: kernel by about 1e-16, far below float32's resolution (6e-8).
SEPARABLE_RTOL = 1e-13


def separable_factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(column, row)`` with ``outer(column, row)`` equal to ``kernel`` to within
    :data:`SEPARABLE_RTOL` of its largest singular value, or ``None`` if it has rank above 1."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or min(k.shape) < 2:
        return None
    u, s, vt = np.linalg.svd(k)
    if s[0] == 0 or s[1] > SEPARABLE_RTOL * s[0]:
        return None
    root = math.sqrt(s[0])
    return u[:, 0] * root, vt[0] * root


def convolve(img: np.ndarray, kernel: np.ndarray | list, border: str = "reflect") -> np.ndarray:
    """Filter each channel of ``(H, W, C)`` with ``kernel`` (correlation, as MATLAB ``imfilter``).

    A separable kernel (:func:`separable_factors`) is applied as a column then a
    row pass, a tenth of the work of the 2-D sum for a 21 px kernel; the result
    is that of the 2-D correlation to within about 1e-15 before the float32 cast.
    """
    from scipy.ndimage import correlate, correlate1d

    k = np.asarray(kernel, dtype=np.float64)
    mode = BORDERS[border]
    factors = separable_factors(k)
    if factors is not None:
        column, row = factors
        out = correlate1d(img.astype(np.float64), column, axis=0, mode=mode)
        return correlate1d(out, row, axis=1, mode=mode).astype(np.float32)
    out = np.stack(
        [correlate(img[..., c].astype(np.float64), k, mode=mode) for c in range(img.shape[2])],
        axis=2,
    )
    return out.astype(np.float32)
