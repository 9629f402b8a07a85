"""The MATLAB-compatible resize, checked against an independent implementation.

Reference: pyiqa's ``matlab_utils.imresize`` (a separate PyTorch port of
MATLAB's imresize by Sanghyun Son), on float64 inputs. That port builds its kernel weights in float32, so the two agree to
about 1e-6 (tolerance 2e-6); the same check against float64 weights would be exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srforensics.resize import imresize, imresize_tensor, output_size, weight_matrix


def _reference(
    img: np.ndarray, *, scale=None, sizes=None, kernel="cubic", antialias=True
) -> np.ndarray:
    from pyiqa.matlab_utils import imresize as ref

    t = torch.from_numpy(img.transpose(2, 0, 1).copy()).double()
    return (
        ref(t, scale=scale, sizes=sizes, kernel=kernel, antialiasing=antialias)
        .numpy()
        .transpose(1, 2, 0)
    )


@pytest.fixture(scope="module")
def img():
    from skimage import data

    return data.astronaut()[100:161, 150:219].astype(np.float64) / 255.0  # 61 x 69, odd sizes


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2, 4])
def test_bicubic_matches_independent_matlab_port(img, scale):
    ours = imresize(img, scale, method="bicubic")
    ref = _reference(img, scale=scale)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_bilinear_upscale_matches_matlab_closed_form():
    # MATLAB: imresize([1 2], 2, 'bilinear') along a row gives [1 1.25 1.75 2]: output centres at
    # u = x/2 + 1/4, triangle weights 3/4 and 1/4, mirrored border.
    a = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(
        imresize(a, size=(1, 4), method="bilinear"), [[1.0, 1.25, 1.75, 2.0]], atol=1e-12
    )
    # Downscaling by 2 with antialiasing widens the triangle to 4 taps: weights 1/8, 3/8, 3/8, 1/8.
    row = np.array([[0.0, 8.0, 16.0, 24.0, 32.0, 40.0]])
    np.testing.assert_allclose(
        imresize(row, size=(1, 3), method="bilinear"),
        [
            [
                (0 * 1 + 0 * 3 + 8 * 3 + 16) / 8,
                (8 + 16 * 3 + 24 * 3 + 32) / 8,
                (24 + 32 * 3 + 40 * 3 + 40) / 8,
            ]
        ],
        atol=1e-12,
    )


def test_explicit_size_and_no_antialias(img):
    ours = imresize(img, size=(15, 17), method="bicubic", antialias=False)
    ref = _reference(img, sizes=(15, 17), antialias=False)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def _impulse(n: int, k: int) -> np.ndarray:
    a = np.zeros((1, n))
    a[0, k - 1] = 1.0  # k is 1-based, as in MATLAB
    return a


def test_bicubic_values_worked_by_hand_from_matlab_kernel():
    # MATLAB imresize: output x (1-based) samples input position u = x/s + (1 - 1/s)/2 with the
    # cubic kernel of a = -0.5: 1.5|t|^3 - 2.5|t|^2 + 1 (|t| <= 1), -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2
    # (1 < |t| <= 2). Downscaling by s = 1/2 antialiases: h(t) = s * cubic(s t), 8 taps.
    # Output x = 4 of a 16 -> 8 downscale sits at u = 7.5; an impulse at k gives h(u - k):
    expected_down = {
        4: -0.01171875,
        5: -0.03515625,
        6: 0.11328125,
        7: 0.43359375,
        8: 0.43359375,
        9: 0.11328125,
        10: -0.03515625,
        11: -0.01171875,
    }
    for k, value in expected_down.items():
        out = imresize(_impulse(16, k), size=(1, 8), method="bicubic")
        assert out[0, 3] == pytest.approx(value, abs=1e-12)
    # Upscaling by 2: output x = 8 of an 8 -> 16 upscale sits at u = 4.25; weights cubic(u - k):
    expected_up = {3: -0.0703125, 4: 0.8671875, 5: 0.2265625, 6: -0.0234375}
    for k, value in expected_up.items():
        out = imresize(_impulse(8, k), size=(1, 16), method="bicubic")
        assert out[0, 7] == pytest.approx(value, abs=1e-12)


def test_output_size_is_matlab_ceil():
    assert output_size((61, 69), 0.25) == (16, 18)
    assert output_size((64, 64), 0.25) == (16, 16)


def test_weights_partition_unity_and_constant_is_preserved():
    for method in ("nearest", "bilinear", "bicubic", "lanczos2", "lanczos3"):
        w = weight_matrix(37, 9, 9 / 37, method, method != "nearest")
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    const = np.full((20, 24, 3), 0.37)
    for method in ("bicubic", "lanczos3"):
        np.testing.assert_allclose(imresize(const, 0.5, method=method), 0.37, atol=1e-12)


def test_nearest_upscale_replicates_pixels():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    up = imresize(a, 2, method="nearest")
    np.testing.assert_array_equal(up, np.repeat(np.repeat(a, 2, axis=0), 2, axis=1))


def test_tensor_and_numpy_paths_agree(img):
    t = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
    out = imresize_tensor(t, size=(20, 23), method="bicubic")[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(out, imresize(img, size=(20, 23)), atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 0.5, size=(2, 2))
    with pytest.raises(ValueError, match="unknown resize method"):
        imresize(np.zeros((4, 4)), 0.5, method="cubic-spline")  # type: ignore[arg-type]
