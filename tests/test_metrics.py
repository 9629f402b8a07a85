"""Metrics: the SR-convention PSNR/SSIM checked against scikit-image, and the pyiqa adapter."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from srforensics.images import quantize, to_tensor
from srforensics.metrics import (
    METRICS,
    MetricConfig,
    MetricUnavailable,
    build_metric,
    describe_metric,
)
from srforensics.metrics.fidelity import psnr
from srforensics.resize import imresize


def _skimage_y(img: np.ndarray, border: int) -> np.ndarray:
    from skimage.color import rgb2ycbcr

    y = rgb2ycbcr(img)[..., 0]  # BT.601 on the 8-bit scale
    return y[border:-border, border:-border] if border else y


def _pair(seed=0, shape=(48, 52, 3)):
    from skimage import data

    rng = np.random.default_rng(seed)
    hr = quantize(data.astronaut()[: shape[0], 200 : 200 + shape[1]] / 255.0)
    out = quantize(np.clip(hr + rng.normal(0, 0.03, hr.shape), 0, 1))
    return hr.astype(np.float64), out.astype(np.float64)


@pytest.mark.parametrize("border", [0, 4])
def test_y_psnr_ssim_match_scikit_image(border):
    # Reference: skimage.metrics with the BasicSR settings (Gaussian sigma 1.5, population
    # covariance, data_range 255) on Y of rgb2ycbcr; tolerance 1e-6.
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr, out = _pair()
    cfg = MetricConfig(scale=4, crop_border=border)
    ours_psnr = build_metric("psnr", cfg)(to_tensor(out), to_tensor(hr)).item()
    ours_ssim = build_metric("ssim", cfg)(to_tensor(out), to_tensor(hr)).item()
    ya, yb = _skimage_y(out, border), _skimage_y(hr, border)
    assert ours_psnr == pytest.approx(peak_signal_noise_ratio(yb, ya, data_range=255), abs=1e-6)
    ref_ssim = structural_similarity(
        ya, yb, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours_ssim == pytest.approx(ref_ssim, abs=1e-6)


def test_rgb_variants_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr, out = _pair(1)
    cfg = MetricConfig(scale=2)
    a, b = out[2:-2, 2:-2] * 255, hr[2:-2, 2:-2] * 255
    assert build_metric("psnr_rgb", cfg)(to_tensor(out), to_tensor(hr)).item() == pytest.approx(
        peak_signal_noise_ratio(b, a, data_range=255), abs=1e-6
    )
    ref = structural_similarity(
        a,
        b,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert build_metric("ssim_rgb", cfg)(to_tensor(out), to_tensor(hr)).item() == pytest.approx(
        ref, abs=1e-6
    )


def test_default_crop_border_is_the_scale():
    hr, out = _pair(2)
    t_out, t_hr = to_tensor(out), to_tensor(hr)
    by_default = build_metric("psnr", MetricConfig(scale=3))(t_out, t_hr).item()
    explicit = build_metric("psnr", MetricConfig(scale=1, crop_border=3))(t_out, t_hr).item()
    assert by_default == explicit


def test_psnr_formula_and_identical_images():
    a = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    b = a.clone()
    b[..., 0, 0] = 16.0  # MSE = 16^2 / 16 = 16 -> 10 log10(255^2 / 16)
    assert psnr(a, b).item() == pytest.approx(10 * np.log10(255**2 / 16), abs=1e-12)
    assert psnr(a, a).item() == float("inf")


def test_lr_psnr_is_infinite_for_an_output_consistent_by_construction():
    # x = HR; LR = quantised bicubic downscale of x. Downscaling x again gives the unrounded
    # LR, so LR-PSNR is bounded only by the 8-bit rounding of the LR (>= 55 dB).
    hr, _ = _pair(3, (64, 64, 3))
    lr = quantize(imresize(hr, 0.25))
    metric = build_metric("lr_psnr", MetricConfig(scale=4))
    value = metric(to_tensor(hr), None, lr=to_tensor(lr)).item()
    assert value > 55
    blurred = quantize(np.clip(hr + 0.1, 0, 1))
    assert metric(to_tensor(blurred), None, lr=to_tensor(lr)).item() < 25


def test_metadata_direction_and_kind():
    assert describe_metric("psnr")["higher_is_better"] is True
    assert describe_metric("lr_psnr")["requires_lr"] is True
    info = describe_metric("gmsd")  # pyiqa says lower is better
    assert info["higher_is_better"] is False and info["requires_reference"] is True
    assert describe_metric("piqe")["requires_reference"] is False
    assert describe_metric("pyiqa:nlpd")["higher_is_better"] is False


def test_pyiqa_metric_runs_in_batches():
    hr, out = _pair(4, (64, 64, 3))
    batch = to_tensor([out, hr])
    ref = to_tensor([hr, hr])
    fsim = build_metric("fsim", MetricConfig(scale=4))
    scores = fsim(batch, ref)
    assert scores.shape == (2,) and scores.dtype == torch.float64
    assert scores[1].item() == pytest.approx(1.0, abs=1e-4)  # identical images
    assert scores[0].item() < scores[1].item()


def test_unknown_metric_has_did_you_mean():
    from srforensics.errors import SRForensicsError

    with pytest.raises(SRForensicsError, match="did you mean 'psnr'"):
        METRICS.get("psnrr")
    with pytest.raises(SRForensicsError, match="pyiqa has no metric 'lpipz'"):
        build_metric("pyiqa:lpipz", MetricConfig(scale=4))


def test_metric_without_weights_is_unavailable_with_reason(tmp_path):
    # A fresh TORCH_HOME has no pyiqa weights: LPIPS must be unavailable, naming its file
    # and the folder, and nothing may be downloaded.
    code = (
        "from srforensics.metrics import build_metric, MetricConfig, MetricUnavailable\n"
        "try:\n"
        "    build_metric('lpips', MetricConfig(scale=4))\n"
        "except MetricUnavailable as e:\n"
        "    print('UNAVAILABLE', e)\n"
    )
    env = {"TORCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert "UNAVAILABLE" in out.stdout, out.stderr[-2000:]
    assert "LPIPS_v0.1_alex" in out.stdout and str(tmp_path) in out.stdout
    assert not any(tmp_path.rglob("*.pth"))


def test_metric_unavailable_is_a_user_error():
    from srforensics.errors import SRForensicsError

    assert issubclass(MetricUnavailable, SRForensicsError)
