"""Each operator, tested for its effect (sources of the expected values given inline)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srforensics.degradations import DEGRADATIONS
from srforensics.degradations import kernels as K
from srforensics.degradations.ops import encode
from srforensics.resize import imresize


def _img(shape=(64, 64, 3)):
    from skimage import data

    return (data.astronaut()[: shape[0], 200 : 200 + shape[1]] / 255.0).astype(np.float32)


def op(name, **spec):
    return DEGRADATIONS.get(name)(**spec)


def run(name, img, seed=0, **spec):
    o = op(name, **spec)
    params = o.sample(np.random.default_rng(seed))
    return o.apply(img, **params), params


BLURS = [
    ("gaussian_blur", {"sigma": 1.5}),
    ("aniso_gaussian_blur", {"sigma_x": 3.0, "sigma_y": 0.8, "theta": 30.0}),
    ("generalized_gaussian_blur", {"sigma_x": 2.0, "sigma_y": 1.0, "theta": 10.0, "beta": 0.5}),
    ("plateau_blur", {"sigma_x": 2.0, "sigma_y": 2.0, "beta": 1.5}),
    ("motion_blur", {"length": 9.0, "angle": 45.0}),
    ("defocus_blur", {"radius": 3.0}),
    ("sinc_filter", {"cutoff": 1.5}),
]


@pytest.mark.parametrize("name, spec", BLURS)
def test_blur_kernels_sum_to_one_are_recorded_and_preserve_mean(name, spec):
    flat_ramp = np.tile(np.linspace(0.2, 0.8, 48, dtype=np.float32)[None, :, None], (48, 1, 3))
    out, params = run(name, flat_ramp, **spec)
    k = np.asarray(params["kernel"])
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert out.mean() == pytest.approx(flat_ramp.mean(), abs=2e-3)  # reflected borders
    img = _img()
    blurred = op(name, **spec).apply(img, kernel=params["kernel"], border="reflect")
    assert np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(img, axis=1)).mean()


def test_isotropic_gaussian_matches_formula():
    # exp(-(x^2 + y^2) / (2 sigma^2)) normalised; as MATLAB fspecial('gaussian', 7, 1.6).
    k = K.gaussian(7, 1.6)
    x = np.arange(7) - 3.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.6**2))
    np.testing.assert_allclose(k, g / g.sum(), atol=1e-15)


def test_anisotropic_gaussian_axes_follow_theta():
    k = K.gaussian(31, 4.0, 1.0, math.radians(90))  # long axis rotated to vertical
    x, y = K.grid(31)
    assert (k * y * y).sum() == pytest.approx(16.0, rel=0.02)  # variance sigma_x^2 along y
    assert (k * x * x).sum() == pytest.approx(1.0, rel=0.05)


def _principal_angle(k: np.ndarray) -> float:
    x, y = K.grid(k.shape[0])
    y = -y  # angles counter-clockwise with y up
    cxx, cyy, cxy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_motion_blur_spreads_along_its_angle(angle):
    k = K.motion(31, 15.0, angle)
    assert _principal_angle(k) == pytest.approx(angle % 180, abs=2.0)
    x, y = K.grid(31)
    a = math.radians(angle)
    along = x * math.cos(a) - y * math.sin(a)
    across = x * math.sin(a) + y * math.cos(a)
    # A segment of length L has variance L^2 / 12 along it; almost none across.
    assert (k * along**2).sum() == pytest.approx(15.0**2 / 12, rel=0.1)
    assert (k * across**2).sum() < 0.2


def test_defocus_disk_is_flat_inside_and_zero_outside():
    k = K.defocus(15, 5.0)
    x, y = K.grid(15)
    r = np.hypot(x, y)
    inside, outside = k[r < 4.0], k[r > 6.0]
    assert np.ptp(inside) < 1e-12 and (outside == 0).all()
    assert inside[0] == pytest.approx(1 / (math.pi * 25), rel=0.03)  # 1 / disk area


def test_sinc_kernel_has_negative_lobes_and_formula_centre():
    k = K.sinc(21, math.pi / 2)
    assert k.min() < 0
    # Real-ESRGAN circular_lowpass_kernel: centre value cutoff^2 / (4 pi) before normalisation.
    from scipy.special import j1

    x, y = K.grid(21)
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (math.pi / 2) * j1((math.pi / 2) * r) / (2 * math.pi * r)
    raw[10, 10] = (math.pi / 2) ** 2 / (4 * math.pi)
    np.testing.assert_allclose(k, raw / raw.sum(), atol=1e-15)


def test_generalized_gaussian_with_beta_one_is_the_gaussian():
    np.testing.assert_allclose(
        K.generalized_gaussian(21, 2.0, 1.0, 0.3, 1.0), K.gaussian(21, 2.0, 1.0, 0.3), atol=1e-15
    )


def test_borders_follow_their_definitions():
    row = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)[..., None].repeat(3, axis=2)
    k = np.zeros((3, 3))
    k[1, 0] = 1.0  # out(x) = in(x - 1): shows the pixel left of the border
    left = {b: float(K.convolve(row, k, b)[0, 0, 0]) for b in K.BORDERS}
    assert left == {"reflect": 1.0, "reflect101": 2.0, "replicate": 1.0, "constant": 0.0}


def _correlate_2d(img, k, border):
    """The reference: scipy's 2-D correlation of each channel, in float64."""
    from scipy.ndimage import correlate

    chans = [correlate(img[..., c].astype(np.float64), k, mode=K.BORDERS[border]) for c in range(3)]
    return np.stack(chans, axis=2)


@pytest.mark.parametrize("border", list(K.BORDERS))
@pytest.mark.parametrize(
    "kernel",
    [K.gaussian(21, 0.2), K.gaussian(21, 1.3), K.gaussian(15, 4.0), K.motion(11, 7.0, 0.0)],
    ids=["gauss0.2", "gauss1.3", "gauss4", "motion0"],
)
def test_separable_kernels_are_filtered_in_two_passes_as_the_2d_sum(kernel, border):
    # The isotropic Gaussian exp(-(x²+y²)/2σ²) = exp(-x²/2σ²)·exp(-y²/2σ²) and a
    # horizontal segment are rank 1; their two 1-D passes equal the 2-D sum up to
    # float64 rounding, so at most one float32 step (2^-24 relative) apart.
    assert K.separable_factors(kernel) is not None
    img = _img((40, 52, 3))
    out = K.convolve(img, kernel, border)
    ref = _correlate_2d(img, kernel, border)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=2**-23, atol=1e-12)


@pytest.mark.parametrize(
    "kernel",
    [
        K.gaussian(21, 3.0, 0.8, 0.5),
        K.sinc(21, 1.5),
        K.defocus(11, 3.0),
        K.motion(11, 7.0, 45.0),
    ],
    ids=["aniso", "sinc", "defocus", "motion45"],
)
def test_other_kernels_are_filtered_by_the_2d_sum_exactly(kernel):
    assert K.separable_factors(kernel) is None
    img = _img((40, 52, 3))
    out = K.convolve(img, kernel, "reflect")
    np.testing.assert_array_equal(out, _correlate_2d(img, kernel, "reflect").astype(np.float32))


def test_downscale_is_the_matlab_resize():
    img = _img((66, 70, 3))
    out, _ = run("downscale", img, scale=2, method="bicubic")
    assert out.shape == (33, 35, 3)
    np.testing.assert_allclose(out, imresize(img, size=(33, 35)), atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("method", ["bicubic", "bilinear", "area", "nearest"])
def test_downscale_integer_scales_and_methods(scale, method):
    img = _img((64, 64, 3))
    out, _ = run("downscale", img, scale=scale, method=method)
    assert out.shape == (64 // scale, 64 // scale, 3)


def test_area_averages_whole_blocks():
    img = np.random.default_rng(0).random((12, 12, 3))
    out = imresize(img, size=(4, 4), method="area")
    np.testing.assert_allclose(out, img.reshape(4, 3, 4, 3, 3).mean(axis=(1, 3)), atol=1e-12)


def test_resize_to_arbitrary_sizes():
    img = _img((50, 60, 3))
    out, _ = run("resize", img, factor=0.37, method="bilinear")
    assert out.shape == (math.ceil(50 * 0.37), math.ceil(60 * 0.37), 3)
    out, _ = run("resize", img, height=17, width=41, method="area")
    assert out.shape == (17, 41, 3)
    np.testing.assert_allclose(
        out, np.clip(imresize(img, size=(17, 41), method="area"), 0, 1), atol=1e-6
    )
    from srforensics.degradations import ProtocolError

    with pytest.raises(ProtocolError, match="either 'factor', or both 'height' and 'width'"):
        op("resize", factor=0.5, height=10, width=10)
    with pytest.raises(ProtocolError, match="either 'factor'"):
        op("resize", height=10)


FLAT = np.full((256, 256, 3), 0.5, np.float32)


def test_gaussian_noise_sigma_within_five_percent_and_replayable():
    out, params = run("gaussian_noise", FLAT, sigma=10.0)
    np.testing.assert_array_equal(out, op("gaussian_noise", sigma=10.0).apply(FLAT, **params))
    assert np.std(out - FLAT) * 255 == pytest.approx(10.0, rel=0.05)
    gray, _ = run("gaussian_noise", FLAT, sigma=10.0, gray=True)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_speckle_noise_sigma_scales_with_the_signal():
    out, _ = run("speckle_noise", FLAT, sigma=0.04)
    assert np.std(out - FLAT) == pytest.approx(0.5 * 0.04, rel=0.05)  # img * n, std = level * sigma


def test_poisson_noise_variance_is_the_signal_over_the_level_count():
    # Real-ESRGAN's form: v = 2^ceil(log2(#levels)) = 256 for an 8-bit ramp with every level;
    # noise = Poisson(v x) / v - x has variance x / v.
    ramp = np.tile((np.arange(256) / 255.0)[None, :, None], (512, 1, 3)).astype(np.float32)
    out, _ = run("poisson_noise", ramp, scale=1.0)
    noise = (out - ramp).astype(np.float64)
    for lo, hi in ((20, 40), (190, 210)):
        level = ramp[0, lo:hi, 0].mean()
        assert noise[:, lo:hi].var() == pytest.approx(level / 256, rel=0.1)
    doubled, _ = run("poisson_noise", ramp, scale=2.0)
    assert (doubled - ramp)[:, 20:40].std() == pytest.approx(2 * noise[:, 20:40].std(), rel=0.05)


def test_salt_and_pepper_amount():
    out, _ = run("salt_pepper_noise", FLAT, amount=0.1)
    changed = out[..., 0] != 0.5
    assert changed.mean() == pytest.approx(0.1, abs=0.01)
    assert set(np.unique(out[changed][:, 0])) == {0.0, 1.0}


@pytest.mark.parametrize("fmt, name", [("JPEG", "jpeg"), ("WEBP", "webp")])
def test_compressed_size_falls_with_quality(fmt, name):
    img = _img((128, 128, 3))
    sizes = [len(encode(img, format=fmt, quality=q)) for q in (95, 75, 50, 25, 10)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 2 * sizes[-1]
    err = {q: np.abs(op(name, quality=q).apply(img, quality=q) - img).mean() for q in (10, 95)}
    assert err[10] > err[95] > 0


def test_grayscale_and_gamma():
    img = _img()
    g, _ = run("grayscale", img)
    np.testing.assert_array_equal(g[..., 0], g[..., 1])
    np.testing.assert_allclose(g[..., 0], img @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    out, _ = run("gamma", img, gamma=2.0, exposure=1.0)
    np.testing.assert_allclose(out, img.astype(np.float64) ** 2, atol=1e-6)
    bright, _ = run("gamma", img, exposure=2.0)
    assert bright.mean() > img.mean()


def test_crops_to_a_multiple_of_the_scale():
    img = _img((66, 70, 3))
    assert op("mod_crop", multiple=4).apply(img, multiple=4).shape == (64, 68, 3)
    c = op("center_crop", multiple=4).apply(img, multiple=4, size=0)
    assert c.shape == (64, 68, 3)
    np.testing.assert_array_equal(c, img[1:65, 1:69])
    assert op("center_crop", multiple=8, size=40).apply(img, multiple=8, size=40).shape == (
        40,
        40,
        3,
    )


def test_second_order_is_replayable_and_reaches_the_lr_size():
    img = _img((96, 96, 3))
    o = op("second_order", scale=4)
    seen_kinds = set()
    for seed in range(12):
        params = o.sample(np.random.default_rng(seed))
        lr = o.apply(img, **params)
        assert lr.shape == (24, 24, 3)
        np.testing.assert_array_equal(lr, o.apply(img.copy(), **params))
        seen_kinds.update(st["noise"]["kind"] for st in params["stages"])
        for st in params["stages"]:
            if st["blur"] is not None:
                assert np.asarray(st["blur"]["kernel"]).shape == (21, 21)
                assert np.sum(st["blur"]["kernel"]) == pytest.approx(1.0, abs=1e-12)
    assert seen_kinds == {"gaussian", "poisson"}
