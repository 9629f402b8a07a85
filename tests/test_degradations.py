from __future__ import annotations

import numpy as np
import pytest

from srforensics.degradations import DEGRADATIONS
from srforensics.resize import imresize


def _img(shape=(64, 64, 3)):
    from skimage import data

    return (data.astronaut()[: shape[0], 200 : 200 + shape[1]] / 255.0).astype(np.float32)


def op(name, **spec):
    return DEGRADATIONS.get(name)(**spec)


def test_gaussian_blur_smooths_and_keeps_mean():
    img = _img()
    out = op("gaussian_blur", sigma=2.0).apply(img, sigma=2.0, kernel_size=21)
    assert abs(out.mean() - img.mean()) < 2e-3  # reflect borders: mean nearly preserved
    assert np.abs(np.diff(out, axis=1)).mean() < 0.5 * np.abs(np.diff(img, axis=1)).mean()
    np.testing.assert_array_equal(
        op("gaussian_blur", sigma=0.0).apply(img, sigma=0.0, kernel_size=21), img
    )


def test_downscale_is_the_matlab_resize():
    img = _img((66, 70, 3))
    out = op("downscale", scale=2).apply(img, scale=2, method="bicubic")
    assert out.shape == (33, 35, 3)
    np.testing.assert_allclose(out, imresize(img, size=(33, 35)), atol=1e-6)


def test_gaussian_noise_has_the_asked_sigma_and_is_replayable():
    flat = np.full((256, 256, 3), 0.5, np.float32)
    noise = op("gaussian_noise", sigma=10.0)
    params = noise.sample(np.random.default_rng(1))
    a = noise.apply(flat, **params)
    np.testing.assert_array_equal(a, noise.apply(flat, **params))
    assert np.std(a - flat) * 255 == pytest.approx(10.0, rel=0.02)
    gray = noise.apply(flat, sigma=10.0, gray=True, seed=3)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])


def test_jpeg_lower_quality_loses_more():
    img = _img()
    err = {q: np.abs(op("jpeg", quality=q).apply(img, quality=q) - img).mean() for q in (20, 95)}
    assert err[20] > err[95] > 0


def test_mod_crop_crops_to_multiple():
    img = _img((66, 70, 3))
    assert op("mod_crop", multiple=4).apply(img, multiple=4).shape == (64, 68, 3)
