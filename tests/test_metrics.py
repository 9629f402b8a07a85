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
from srforensics.metrics.fidelity_ops import psnr
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


def _refs_and_outputs(size=64):
    """Two references (astronaut, camera crops) and outputs of each: 3 of the first, 2 of the
    second (noise of three strengths, a 3x3 box blur, a bicubic down-and-up)."""
    from skimage import data

    rng = np.random.default_rng(5)
    refs = [
        quantize(data.astronaut()[:size, 180 : 180 + size] / 255.0),
        quantize(np.repeat(data.camera()[40 : 40 + size, 200 : 200 + size, None], 3, 2) / 255.0),
    ]

    def noisy(img, s):
        return quantize(np.clip(img + rng.normal(0, s, img.shape), 0, 1))

    def blurred(img):
        t = torch.nn.functional.avg_pool2d(to_tensor(img), 3, stride=1, padding=1)
        return quantize(t[0].permute(1, 2, 0).numpy())

    down_up = imresize(imresize(refs[1], scale=0.5), scale=2.0)
    outs = [noisy(refs[0], 0.01), noisy(refs[0], 0.05), blurred(refs[0])]
    outs += [noisy(refs[1], 0.03), quantize(np.clip(down_up, 0, 1))]
    return refs, outs, [3, 2]


@pytest.mark.parametrize("name", ["psnr", "ssim", "psnr_rgb", "ssim_rgb", "lr_psnr_hr"])
def test_reference_features_give_the_scores_of_the_reference_itself(name):
    """srforensics's own metrics: the same float64 operations whether the reference's share is
    computed per output or once per reference and repeated (see ``repeat_features``): equal."""
    from srforensics.metrics.base import repeat_features

    refs, outs, counts = _refs_and_outputs()
    metric = build_metric(name, MetricConfig(scale=4))
    per_output = to_tensor([refs[0]] * 3 + [refs[1]] * 2)
    features = [metric.reference_features(to_tensor(r)) for r in refs]
    once = metric.score_features(to_tensor(outs), repeat_features(features, counts))
    assert torch.equal(once, metric(to_tensor(outs), per_output))


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("fsim", 128),
        ("vif", 128),
        ("gmsd", 128),
        ("ms_ssim", 192),  # five scales of an 11 px window need 176 px
        ("pyiqa:ssim", 128),  # Y channel
        ("pyiqa:ssimc", 128),  # RGB: another setting of the same architecture
        ("pyiqa:nlpd", 128),
        ("pyiqa:cw_ssim", 128),  # float64
        ("pyiqa:mad", 128),
        ("pyiqa:vsi", 128),  # float64
    ],
)
def test_pyiqa_metrics_split_into_reference_and_output_match_pyiqa(name, size):
    """pyiqa's FSIM, VIF, GMSD, MS-SSIM, SSIM, NLPD, CW-SSIM, MAD and VSI computed in two steps (the reference's
    features once, then each output) against pyiqa's own call with the reference per output.
    Reference: pyiqa itself (``pyiqa.create_metric(name)``); tolerance 1e-4 relative: float32
    arithmetic on other batch shapes (pyiqa's own VIF varies by up to 3e-5 between batch
    sizes; SSIM and MS-SSIM compute in float64)."""
    import pyiqa

    from srforensics.metrics.base import repeat_features

    refs, outs, counts = _refs_and_outputs(size)
    metric = build_metric(name, MetricConfig(scale=4))
    features = [metric.reference_features(to_tensor(r)) for r in refs]
    assert features[0] is not None, "the split did not pass its check against pyiqa"
    once = metric.score_features(to_tensor(outs), repeat_features(features, counts))
    expected = pyiqa.create_metric(name.removeprefix("pyiqa:"), device="cpu")(
        to_tensor(outs), to_tensor([refs[0]] * 3 + [refs[1]] * 2)
    )
    np.testing.assert_allclose(once.numpy(), expected.double().reshape(-1).numpy(), rtol=1e-4)
    assert len(set(once.tolist())) == 5  # five different distortions, five different scores
    assert "computed once per input" in metric.info()["description"]


def test_a_split_that_does_not_reproduce_pyiqa_is_not_used(monkeypatch):
    """A pyiqa architecture whose numbers differ from the split's (another pyiqa version, say)
    is called whole: the metric has no reference features and keeps pyiqa's numbers."""
    from pyiqa.archs.fsim_arch import FSIM

    from srforensics.metrics import pyiqa_split
    from srforensics.metrics.pyiqa_split import FSIMSplit, split_for

    changed = type("FSIM", (FSIM,), {"forward": lambda self, x, y: FSIM.forward(self, x, y) ** 2})
    assert isinstance(split_for(FSIM()), FSIMSplit)
    assert split_for(changed()) is None
    assert split_for(torch.nn.Identity()) is None  # no split for that architecture

    class Off(FSIMSplit):  # a split that no longer reproduces pyiqa
        def score(self, out, features):
            return super().score(out, features) * 0.99

    monkeypatch.setitem(pyiqa_split.SPLITS, "FSIM", Off)
    metric = build_metric("fsim", MetricConfig(scale=4))
    refs, outs, _ = _refs_and_outputs()
    assert metric.reference_features(to_tensor(refs[0])) is None
    assert "once per input" not in metric.info()["description"]
    whole = FSIM()(to_tensor(outs[:3]), to_tensor([refs[0]] * 3)).double()
    assert torch.equal(metric(to_tensor(outs[:3]), to_tensor([refs[0]] * 3)), whole)


def test_a_split_is_checked_once_per_process_for_each_setting():
    """The check calls pyiqa's own FSIM once per architecture, settings and device in a
    process: a second metric built the same way reuses the verdict; other settings (FSIM's
    ``chromatic``) are checked again."""
    from pyiqa.archs.fsim_arch import FSIM

    from srforensics.metrics.pyiqa_split import FSIMSplit, split_for

    calls = []

    class Counted(FSIM):  # a class of its own: no verdict from earlier tests applies to it
        def forward(self, x, y):
            calls.append(self.fsim.keywords["chromatic"])
            return super().forward(x, y)

    Counted.__name__ = "FSIM"  # the split is looked up by the architecture's class name
    assert isinstance(split_for(Counted()), FSIMSplit)
    assert isinstance(split_for(Counted()), FSIMSplit)
    assert calls == [True]
    assert isinstance(split_for(Counted(chromatic=False)), FSIMSplit)
    assert calls == [True, False]
    split = split_for(Counted())
    assert split.net is not None and calls == [True, False]  # bound to the new instance


def _random_backbone_cache(tmp_path, monkeypatch, build, filename):
    """A temporary TORCH_HOME whose torchvision cache holds a randomly initialised backbone
    under the file name of its published weights (no weights can be downloaded here)."""
    torch.manual_seed(0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(build().state_dict(), tmp_path / "hub" / "checkpoints" / filename)


def _split_and_whole(net, split_cls, size=64):
    """``net``'s split scoring the test outputs (``size`` px) with each reference's features
    computed once, and ``net`` itself called with the reference per output."""
    from srforensics.metrics.base import repeat_features
    from srforensics.metrics.pyiqa_split import split_for

    split = split_for(net)
    assert isinstance(split, split_cls)
    refs, outs, counts = _refs_and_outputs(size)
    with torch.no_grad():
        once = split.score(
            to_tensor(outs), repeat_features([split.reference(to_tensor(r)) for r in refs], counts)
        )
        expected = net(to_tensor(outs), to_tensor([refs[0]] * 3 + [refs[1]] * 2))
    assert once.shape == expected.shape
    return once, expected


def test_dists_split_matches_pyiqa_dists(tmp_path, monkeypatch):
    """DISTS in two steps against pyiqa's own DISTS module on the same randomly initialised
    network (a random VGG16 stands in for the weights, and DISTS's own weights keep pyiqa's
    random start). Reference: pyiqa's ``DISTS.forward``; tolerance 1e-5 relative and 2.4e-7
    absolute: the score is 1 minus a sum near 1 in float32, whose last place is 1.2e-7."""
    import torchvision
    from pyiqa.archs.dists_arch import DISTS

    from srforensics.metrics.pyiqa_split import DISTSSplit

    _random_backbone_cache(tmp_path, monkeypatch, torchvision.models.vgg16, "vgg16-397923af.pth")
    once, expected = _split_and_whole(DISTS(pretrained=False).eval(), DISTSSplit)
    assert once.shape == (5, 1)
    np.testing.assert_allclose(once.numpy(), expected.numpy(), rtol=1e-5, atol=2.4e-7)
    assert len({round(float(v), 9) for v in once.flatten()}) == 5


@pytest.mark.parametrize("spatial", [False, True])
def test_lpips_split_matches_pyiqa_lpips(spatial, tmp_path, monkeypatch):
    """LPIPS (the metric, and the spatial maps of the diversity score) in two steps against
    pyiqa's own LPIPS module on the same randomly initialised network (a random AlexNet
    stands in for the weights). Reference: pyiqa's ``LPIPS.forward``; tolerance 1e-5
    relative."""
    import torchvision
    from pyiqa.archs.lpips_arch import LPIPS

    from srforensics.metrics.pyiqa_split import LPIPSSplit

    _random_backbone_cache(
        tmp_path, monkeypatch, torchvision.models.alexnet, "alexnet-owt-7be5be79.pth"
    )
    net = LPIPS(pretrained=False, spatial=spatial).eval()
    for lin in net.lins:  # LPIPS's linear layers are non-negative (trained with clamping)
        lin.model[-1].weight.data.abs_()
    once, expected = _split_and_whole(net, LPIPSSplit)
    np.testing.assert_allclose(once.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    assert len({round(float(v), 9) for v in once.flatten(1).mean(1)}) == 5


def test_pieapp_split_matches_pyiqa_pieapp():
    """PieAPP in two steps against pyiqa's own PieAPP module on the same randomly
    initialised network (no weights can be downloaded here; the split computes with the
    module's own layers, whatever their weights). 118 px images: 3 x 3 patches of 64 px,
    every 27 px, as pyiqa takes them. Reference: pyiqa's ``PieAPP.forward``; tolerance
    1e-5 relative (float32, other batch shapes)."""
    from pyiqa.archs.pieapp_arch import PieAPP

    from srforensics.metrics.pyiqa_split import PieAPPSplit

    torch.manual_seed(0)
    once, expected = _split_and_whole(PieAPP(pretrained=False).eval(), PieAPPSplit, size=118)
    assert once.shape == (5, 1)
    np.testing.assert_allclose(once.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert len({round(float(v), 6) for v in once.flatten()}) == 5


def test_which_metrics_a_loader_process_may_compute_the_reference_features_of():
    """Only where the features depend on the reference and the configuration alone: the
    fidelity metrics, pyiqa's full-reference metrics with a split and no weight file; not a
    metric with weight files, a no-reference metric, nor any metric that does not say so."""
    from srforensics.metrics import METRICS
    from srforensics.metrics.base import Metric

    cfg = MetricConfig(scale=4)
    for name in ("psnr", "ssim", "psnr_rgb", "ssim_rgb", "lr_psnr_hr", "fsim", "vif", "gmsd"):
        assert METRICS.get(name).loader_features, name
        assert build_metric(name, cfg).loader_features, name
    for name in ("lpips", "dists", "piqe", "niqe", "musiq"):
        assert not METRICS.get(name).loader_features, name
    assert not build_metric("piqe", cfg).loader_features
    assert not build_metric("lr_psnr", cfg).loader_features  # no reference
    assert Metric.loader_features is False  # a plug-in's default


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.rand(2, 3, 8, 8, dtype=torch.float64),
        lambda: torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last),
        lambda: torch.rand(4, 3, 8, 8)[1:3, :, 2:6].transpose(-1, -2),  # a view, offset
        lambda: torch.rand(1, 3, 8, 8).expand(5, -1, -1, -1),  # stride 0
        lambda: torch.polar(torch.rand(3, 8), torch.rand(3, 8)),  # complex
        lambda: torch.arange(6).reshape(2, 3),
    ],
)
def test_features_cross_processes_with_their_values_and_layout(make):
    """Pickled (as a loader sends them), the features come back with the same bits, size,
    strides and offset: kernels given another layout may round differently."""
    import pickle

    from srforensics.metrics.base import portable_features, restore_features

    t = make()
    (back, none) = restore_features(pickle.loads(pickle.dumps(portable_features((t, None)))))
    assert none is None
    assert (back.dtype, back.shape, back.stride(), back.storage_offset()) == (
        t.dtype, t.shape, t.stride(), t.storage_offset()
    )  # fmt: skip
    assert torch.equal(back, t)
    assert back.untyped_storage().data_ptr() % 64 == 0  # torch's alignment, as the original's
    assert restore_features(portable_features(None)) is None


def test_features_that_cannot_cross_processes_are_refused():
    from srforensics.metrics.base import PortableTensor

    with pytest.raises(ValueError, match="across processes"):
        PortableTensor.of(torch.rand(2, requires_grad=True))
    with pytest.raises(ValueError, match="across processes"):
        PortableTensor.of(torch.polar(torch.rand(2), torch.rand(2)).conj())


def test_ssim_a_few_images_at_a_time_matches_scikit_image_image_by_image():
    """The CPU path filters a few images at a time (chunks smaller than the batch here), from
    scratch and against reference statistics computed once; each image's SSIM is
    scikit-image's ``structural_similarity`` (Gaussian window, sigma 1.5, population
    covariance, the same valid region) within 1e-9, averaged over channels."""
    import torch
    from skimage.metrics import structural_similarity

    from srforensics.metrics.fidelity_ops import ssim, ssim_features, ssim_reference

    rng = np.random.default_rng(3)
    hr = np.round(rng.random((1, 3, 150, 170)) * 255)
    out = np.clip(hr + rng.normal(0, 12, (7, 3, 150, 170)), 0, 255).round()
    a, b = torch.from_numpy(out), torch.from_numpy(hr)
    expected = [
        np.mean([
            structural_similarity(
                out[i, c], hr[0, c], gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=255,
            )
            for c in range(3)
        ])
        for i in range(7)
    ]  # fmt: skip
    np.testing.assert_allclose(ssim(a, b.expand(7, -1, -1, -1)).numpy(), expected, atol=1e-9)
    feats = tuple(f.expand(7, -1, -1, -1) for f in ssim_reference(b))
    np.testing.assert_allclose(ssim_features(a, feats).numpy(), expected, atol=1e-9)
