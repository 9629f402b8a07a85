"""The arithmetic of PSNR and SSIM in the SR convention, on float64 tensors of the 8-bit
scale; the convention itself is described in :mod:`srforensics.metrics.fidelity`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from srforensics.images import tensor_rgb_to_y
from srforensics.resize import imresize_tensor

# scipy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

_PEAK = 255.0


def to_8bit_scale(x: torch.Tensor, *, y_channel: bool) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> float64 on the 8-bit scale, Y (``(B, 1, H, W)``) or RGB."""
    x = torch.round(x.detach().to(torch.float64) * _PEAK).clamp(0, _PEAK)
    if y_channel:
        return tensor_rgb_to_y(x / _PEAK)
    return x


def crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def psnr(a: torch.Tensor, b: torch.Tensor, *, peak: float = _PEAK) -> torch.Tensor:
    """Per-image PSNR (dB) of two float64 tensors on the same scale; ``inf`` when identical."""
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, peak: float = _PEAK) -> torch.Tensor:
    """Per-image mean SSIM (averaged over channels), valid region of an 11x11 Gaussian window."""
    if a.device.type == "cpu":
        return _ssim_cpu(a, b, None, peak=peak)
    return ssim_features(a, ssim_reference(b), peak=peak)


def _ssim_filter(*maps: torch.Tensor) -> list[torch.Tensor]:
    """The 11x11 Gaussian window (sigma 1.5), valid region, on ``(B, C, H, W)`` maps, channel by
    channel: the window is separable, so a column pass then a row pass (:func:`_filter_valid`
    on the CPU, ``conv2d`` on the device)."""
    bsz, ch, h, w = maps[0].shape
    _check_size(h, w)
    g = _gaussian_window()
    if maps[0].device.type == "cpu":
        x = torch.stack(maps).reshape(len(maps), bsz * ch, h, w).numpy()
        out = np.empty((len(maps), bsz * ch, h - 10, w - 10))
        step = _chunk(len(maps), h, w)
        for i in range(0, bsz * ch, step):
            out[:, i : i + step] = _filter_valid(x[:, i : i + step], g.numpy())
        return list(torch.from_numpy(out).reshape(len(maps), bsz, ch, h - 10, w - 10))
    g = g.to(maps[0].device)
    x = torch.cat(maps).reshape(len(maps) * bsz * ch, 1, h, w)
    x = F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return list(x.reshape(len(maps), bsz, ch, h - 10, w - 10))


def _check_size(h: int, w: int) -> None:
    if min(h, w) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {w}x{h}")


def _chunk(n_maps: int, h: int, w: int) -> int:
    """Images filtered at a time: ``n_maps`` maps of that many images fill about 2 MB, so
    both passes and the SSIM map work in the CPU's cache."""
    return max(1, (1 << 18) // (n_maps * h * w))


def _filter_valid(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The separable window on ``(..., H, W)`` float64 maps, valid region: a row pass with
    ``scipy.ndimage.correlate1d`` (the filter scikit-image's SSIM uses), the columns the
    valid region drops cut, then a column pass."""
    from scipy.ndimage import correlate1d

    part = correlate1d(x, weights, axis=-1)[..., 5:-5]
    return correlate1d(part, weights, axis=-2)[..., 5:-5, :]


def _ssim_cpu(a: torch.Tensor, b: torch.Tensor, stats, *, peak: float) -> torch.Tensor:
    """SSIM on the CPU, a few images at a time from the products to the per-image means, so
    that every map stays in the CPU's cache. ``stats``: the reference's local mean and
    variance (:func:`ssim_reference`), or None to compute them here with the output's."""
    bsz, ch, h, w = a.shape
    _check_size(h, w)
    x = a.reshape(bsz * ch, h, w).numpy()
    y = b.expand(bsz, -1, -1, -1).reshape(bsz * ch, h, w).numpy()
    if stats is not None:
        mu_ref, var_ref = (
            s.expand(bsz, -1, -1, -1).reshape(bsz * ch, h - 10, w - 10).numpy() for s in stats
        )
    g = _gaussian_window().numpy()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    n_maps = 3 if stats is not None else 5
    step = _chunk(n_maps, h, w)
    means = np.empty(bsz * ch)
    buf = np.empty((n_maps, step, h, w))
    for i in range(0, bsz * ch, step):
        n = min(step, bsz * ch - i)
        xs, ys, maps = x[i : i + n], y[i : i + n], buf[:, :n]
        maps[0] = xs
        np.multiply(xs, xs, out=maps[1])
        np.multiply(xs, ys, out=maps[2])
        if stats is None:
            maps[3] = ys
            np.multiply(ys, ys, out=maps[4])
        f = _filter_valid(maps, g)
        if stats is None:
            mu_y, var_y = f[3], f[4] - f[3] ** 2
        else:
            mu_y, var_y = mu_ref[i : i + n], var_ref[i : i + n]
        means[i : i + n] = _ssim_means(f[0], f[1], f[2], mu_y, var_y, c1, c2)
    return torch.from_numpy(means.reshape(bsz, ch).mean(axis=1))


def _ssim_means(mu_x, xx, xy, mu_y, var_y, c1: float, c2: float) -> np.ndarray:
    """The mean of each image's SSIM map from the filtered maps (``xx``, ``xy``: the
    window's means of x² and x·y), in the order of operations of :func:`ssim_features`."""
    mxy = mu_x * mu_y
    mx2 = mu_x * mu_x
    num = (2 * mxy + c1) * (2 * (xy - mxy) + c2)
    den = (mx2 + mu_y * mu_y + c1) * ((xx - mx2) + var_y + c2)
    return (num / den).reshape(len(num), -1).mean(axis=1)


def ssim_reference(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's SSIM statistics: itself, its local mean and its local variance."""
    mu, bb = _ssim_filter(b, b * b)
    return b, mu, bb - mu**2


def ssim_features(
    a: torch.Tensor, features: tuple[torch.Tensor, ...], *, peak: float = _PEAK
) -> torch.Tensor:
    """:func:`ssim` of ``a`` against the reference statistics of :func:`ssim_reference`."""
    b, mu_y, syy = features
    if a.device.type == "cpu":
        return _ssim_cpu(a, b, (mu_y, syy), peak=peak)
    mu_x, aa, ab = _ssim_filter(a, a * a, a * b)
    sxx = aa - mu_x**2
    sxy = ab - mu_x * mu_y
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return smap.flatten(2).mean(dim=2).mean(dim=1)


def downscale_8bit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` in [0, 1] downscaled to ``size`` with MATLAB bicubic, in float64 on the 8-bit scale."""
    return imresize_tensor(x.detach().to(torch.float64), size=size, method="bicubic") * _PEAK
