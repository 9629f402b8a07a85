"""Conventions, consistency, diversity, per-input aggregates, weighted pyiqa metrics."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_fresh_python

from srforensics.images import quantize, to_tensor
from srforensics.metrics import MetricConfig, build_metric
from srforensics.metrics.diversity import mse_maps, ntire_diversity, pixel_std
from srforensics.resize import imresize


def _hr(size=64):
    from skimage import data

    return quantize(data.astronaut()[100 : 100 + size, 150 : 150 + size] / 255.0)


def test_pyiqa_psnr_agrees_with_ours_on_the_same_convention():
    # Same crops, same 8-bit images: pyiqa's psnr on Y of YCbCr vs ours, within 1e-4 dB.
    import pyiqa

    hr = _hr()
    out = quantize(np.clip(imresize(imresize(hr, 0.25), 4.0), 0, 1))
    ours = build_metric("psnr", MetricConfig(scale=4, crop_border=0))(
        to_tensor(out), to_tensor(hr)
    ).item()
    theirs = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert theirs(to_tensor(out), to_tensor(hr)).item() == pytest.approx(ours, abs=1e-4)


def test_ntire_diversity_hand_computed():
    # Three 2x2 distance maps, worked by hand:
    #   means 0.5, 0.75, 0.875 -> global best = 0.5 (the first output);
    #   pixel-wise minima [[0, 0], [0, 0.5]] -> local best = 0.125;
    #   score = (0.5 - 0.125) / 0.5 * 100 = 75.
    maps = np.array([[[0, 1], [0, 1]], [[1, 0], [1, 1]], [[1, 1], [1, 0.5]]], dtype=float)
    assert ntire_diversity(maps) == pytest.approx(75.0)
    assert ntire_diversity(np.stack([maps[0]] * 3)) == 0.0  # identical outputs


def test_diversity_zero_for_identical_outputs_and_positive_for_nullspace():
    hr = _hr()
    same = np.stack([hr + 0.01] * 3)
    assert ntire_diversity(mse_maps(np.clip(same, 0, 1), hr)) == 0.0
    assert pixel_std(same).max() == 0.0
    from srforensics.models import load_model

    lr = to_tensor(quantize(imresize(hr, 0.25)))
    outs = load_model("nullspace").sample(lr, scale=4, n=4, seeds=[[1, 2, 3, 4]])[0]
    images = np.stack([quantize(o.permute(1, 2, 0).numpy()) for o in outs])
    assert ntire_diversity(mse_maps(images, hr)) > 0
    assert pixel_std(images).mean() > 0


def test_mse16_maps_are_box_filtered_squared_error():
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(0)
    ref = rng.random((20, 24, 3))
    outs = rng.random((2, 20, 24, 3))
    expected = uniform_filter(((outs[1] - ref) ** 2).mean(axis=-1), size=16, mode="reflect")
    np.testing.assert_allclose(mse_maps(outs, ref)[1], expected, atol=1e-12)


def test_lr_psnr_consistent_output_and_one_pixel_shift():
    from srforensics.models import load_model

    hr = _hr()
    lr = to_tensor(quantize(imresize(hr, 0.25)))
    consistent = load_model("nullspace", args={"sigma": 0.0}).sample(lr, scale=4, n=1, seeds=[[0]])[
        0
    ]
    consistent = to_tensor(quantize(consistent[0].permute(1, 2, 0).numpy()))
    metric = build_metric("lr_psnr", MetricConfig(scale=4))
    good = metric(consistent, None, lr=lr).item()
    shifted = metric(torch.roll(consistent, shifts=1, dims=-1), None, lr=lr).item()
    assert good >= 45 and shifted < good - 10
    hr_variant = build_metric("lr_psnr_hr", MetricConfig(scale=4))(consistent, to_tensor(hr)).item()
    assert hr_variant > 40  # both downscaled the same way; differ only by the LR's rounding


def test_per_input_worst_best_mean_and_flags(tiny_dataset, tmp_path):
    from srforensics.run.pipeline import AuditConfig, run_audit

    run = run_audit(
        AuditConfig.from_options(
            model="srf_test_plugins:NoisyModel",
            model_args={"amplitude": 0.1},
            protocol="bicubic-x4",
            dataset=str(tiny_dataset),
            samples=4,
            metrics=("psnr", "gmsd", "lr_psnr"),
            save_images="all",
            out=str(tmp_path / "r"),
        )
    )
    res = pd.read_parquet(run.run_dir / "results.parquet")
    per = pd.read_parquet(run.run_dir / "per_input.parquet")
    ok = res[res.status == "ok"]
    for rid, g in ok.groupby("record_id"):
        row = per[per.record_id == rid].iloc[0]
        assert row.psnr_worst == g.psnr.min() and row.psnr_best == g.psnr.max()
        assert row.gmsd_worst == g.gmsd.max()  # lower is better
        assert row.psnr_mean == pytest.approx(g.psnr.mean())
        assert row.diversity > 0 and row.pixel_std_mean > 0
        assert row.diversity_note == "distance maps: mse16"
        assert (run.run_dir / row.std_map_path).is_file()
    # Noise of sigma 0.1 cannot survive downscaling unchanged: every output is inconsistent.
    assert ok.inconsistent.all() and (ok.lr_psnr < 45).all()
    assert per[per.n_ok > 0].n_inconsistent.eq(4).all()
    assert per[per.record_id == "broken.png"].n_ok.item() == 0
    html = run.report.read_text()
    # Worded by what was measured (NTIRE's 45 dB rule, kept as such).
    html = " ".join(html.split())
    assert "they are not inverses of the assumed" in html and "Worst case per input" in html
    assert "cannot be traced to the evidence" in html and "does not support" not in html


def test_an_interpolators_inconsistency_is_not_called_invented_content(tiny_run):
    """bicubic adds no content: its low LR-PSNR is reported as its smoothing, not invention."""
    res = pd.read_parquet(tiny_run[0] / "results.parquet")
    html = " ".join((tiny_run[0] / "report.html").read_text().split())
    if res.inconsistent.any():
        assert "adds no content of its own" in html
    assert "cannot be traced to the evidence" not in html


def test_weighted_metric_unavailable_then_imported_then_runs(tmp_path):
    # In a fresh process with an empty TORCH_HOME (pyiqa fixes its cache folder at import).
    code = textwrap.dedent(
        f"""
        import torch, pyiqa
        from srforensics import weights as W
        from srforensics.images import sha256_file
        from srforensics.metrics import MetricConfig, MetricUnavailable, build_metric
        from pyiqa.archs.cnniqa_arch import CNNIQA

        reason = build_metric.__globals__["METRICS"].get("pyiqa:cnniqa").unavailable_reason()
        print("BEFORE", reason)
        torch.manual_seed(0)
        good = {str(tmp_path)!r} + "/CNNIQA_koniq10k-e6f14c91.pth"
        torch.save({{"params": CNNIQA(pretrained=None).state_dict()}}, good)
        # The test's file stands in for the published one: register its hash in its place.
        real = W._REGISTRY.pop("pyiqa-cnniqa-koniq")
        W.register_weights(W.WeightSpec(real.name, real.file_name, real.url, sha256_file(good), real.licence,
                                        real.source, verify="sha256", target="pyiqa", metrics=real.metrics))
        bad = {str(tmp_path)!r} + "/other/CNNIQA_koniq10k-e6f14c91.pth"
        import os; os.makedirs(os.path.dirname(bad))
        torch.save({{"params": CNNIQA(pretrained=None).state_dict()}}, bad)
        try:
            W.import_file(bad)
        except W.WeightsError as e:
            print("REFUSED", e)
        W.import_file(good)
        metric = build_metric("pyiqa:cnniqa", MetricConfig(scale=4))
        score = metric(torch.rand(2, 3, 64, 64))
        print("SCORES", score.tolist())
        """
    )
    lines = run_fresh_python(code, tmp_path)
    assert lines["BEFORE"].startswith("CNNIQA_koniq10k-e6f14c91.pth: weight file(s) not in")
    assert "matches no registered weights" in lines["REFUSED"]
    scores = eval(lines["SCORES"])  # noqa: S307 - our own output
    assert len(scores) == 2 and all(np.isfinite(scores))


def test_prefix_verified_entries_refuse_a_file_that_does_not_match_its_name(tmp_path, monkeypatch):
    from srforensics import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = tmp_path / "DISTS_weights-f5e65c96.pth"
    fake.write_bytes(b"not the published file")
    with pytest.raises(W.WeightsError, match="does not start with f5e65c96"):
        W.import_file(fake)


@pytest.mark.slow
def test_diversity_uses_lpips_spatial_maps_once_lpips_weights_are_present(tmp_path):
    # Stand-ins for the LPIPS and AlexNet files (random weights, registered with their own hashes
    # in place of the published ones), in a fresh TORCH_HOME, in a fresh process.
    code = textwrap.dedent(
        f"""
        import numpy as np, torch, torchvision
        from srforensics import weights as W
        from srforensics.images import sha256_file
        from srforensics.metrics.diversity import distance_backend, ntire_diversity
        from pyiqa.archs.lpips_arch import LPIPS

        print("BEFORE", distance_backend("auto")[0])
        torch.manual_seed(0)

        def stand_in(name, path):
            real = W._REGISTRY.pop(name)
            W.register_weights(W.WeightSpec(real.name, real.file_name, real.url, sha256_file(path), real.licence,
                                            real.source, verify="sha256", target=real.target, metrics=real.metrics))
            W.import_file(path)

        alex = {str(tmp_path)!r} + "/alexnet-owt-7be5be79.pth"
        torch.save(torchvision.models.alexnet().state_dict(), alex)
        stand_in("torchvision-alexnet", alex)  # first: building LPIPS loads the backbone
        lin = {str(tmp_path)!r} + "/LPIPS_v0.1_alex-df73285e.pth"
        lpips = LPIPS(pretrained=False)
        # LPIPS's linear layers are non-negative (trained with clamping); so are the stand-in's.
        torch.save({{k: v.abs() for k, v in lpips.state_dict().items() if k.startswith("lin")}}, lin)
        stand_in("pyiqa-lpips-alex", lin)
        name, maps_of = distance_backend("auto")
        rng = np.random.default_rng(0)
        ref = rng.random((64, 64, 3)).astype(np.float32)
        outs = np.clip(ref[None] + rng.normal(0, 0.1, (3, 64, 64, 3)), 0, 1).astype(np.float32)
        maps = maps_of(outs, ref)
        print("AFTER", name, maps.shape, float(maps.min()) >= 0, ntire_diversity(maps) >= 0)
        # The HR's LPIPS features once (split), the maps those of pyiqa's own call.
        x, r = torch.from_numpy(outs).permute(0, 3, 1, 2), torch.from_numpy(ref).permute(2, 0, 1)
        direct = maps_of._metric(x, r.expand(3, -1, -1, -1)).reshape(3, 64, 64).double().numpy()
        print("SPLIT", type(maps_of._split).__name__, np.allclose(maps, direct, rtol=1e-5, atol=1e-7))
        """
    )
    lines = run_fresh_python(code, tmp_path)
    assert lines["BEFORE"] == "mse16"
    assert lines["AFTER"] == "lpips (3, 64, 64) True True"
    assert lines["SPLIT"] == "LPIPSSplit True"


def test_short_named_pyiqa_metrics_declare_what_pyiqa_says():
    """The metadata declared for ``metrics list`` (no pyiqa import) is pyiqa's own."""
    from srforensics.metrics import METRICS
    from srforensics.metrics.quality import PyIQAFactory, pyiqa_configs, weight_files

    configs = pyiqa_configs()
    checked = 0
    for name in METRICS.names():
        factory = METRICS.get(name)
        if not isinstance(factory, PyIQAFactory) or factory.known is None:
            continue
        cfg = configs[factory.pyiqa_name]
        known = factory.known
        assert known.metric_mode == cfg["metric_mode"], name
        assert known.lower_better == bool(cfg.get("lower_better", False)), name
        assert known.score_range == cfg["score_range"], name
        assert known.weight_free == (not weight_files(factory.pyiqa_name)), name
        checked += 1
    assert checked >= 10


def test_metrics_list_imports_neither_torch_nor_pyiqa(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from srforensics.cli import main
        assert main(["metrics", "list"]) == 0
        print("imported", sorted(m for m in ("torch", "pyiqa") if m in sys.modules))
        """
    )
    lines = run_fresh_python(code, tmp_path)
    assert lines["imported"] == "[]"
    assert lines["niqe"].split()[-1] == "usable" and lines["fsim"].split()[-1] == "usable"


def test_torch_hub_dir_follows_torch(monkeypatch, tmp_path):
    import subprocess
    import sys

    from srforensics import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    code = "import srforensics.weights as W, sys; print(W.torch_hub_dir()); import torch; print(torch.hub.get_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    first, second = out.stdout.split()
    assert first == second == str(tmp_path / "th" / "hub")
    assert W.torch_hub_dir() == __import__("pathlib").Path(torch.hub.get_dir())


def test_an_audit_without_pyiqa_metrics_does_not_import_pyiqa(tiny_dataset, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from srforensics.cli import main
        status = main(["audit", "--model", "bicubic", "--protocol", "bicubic-x4",
                       "--dataset", {str(tiny_dataset)!r}, "--metrics", "psnr,ssim,lr_psnr",
                       "--samples", "1", "--breakdown-boot", "0", "--out", {str(tmp_path / "r")!r}])
        print("status", status)
        print("imported", "pyiqa" in sys.modules)
        """
    )
    lines = run_fresh_python(code, tmp_path)
    assert lines["status"] == "0" and lines["imported"] == "False"
