"""nullspace, the samplers, batching invariance, and faulty models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import audit_in_process

from srforensics.errors import SRForensicsError
from srforensics.images import quantize, to_tensor
from srforensics.models import load_model
from srforensics.resize import imresize


def _lr(size=32):
    from skimage import data

    hr = quantize(data.astronaut()[100 : 100 + 4 * size, 150 : 150 + 4 * size] / 255.0)
    return to_tensor(quantize(imresize(hr, 0.25)))


def _run(tiny_dataset, tmp_path, name="r", **kw):
    kw = {"samples": 4, "metrics": ("psnr", "lr_psnr"), **kw}
    run, res = audit_in_process(tiny_dataset, tmp_path / name, **kw)
    return run, res[res.record_id != "broken.png"]


def test_nullspace_outputs_differ_and_each_fits_the_lr(tiny_dataset, tmp_path):
    run, res = _run(tiny_dataset, tmp_path, model="nullspace")
    assert (res.status == "ok").all()
    assert (res.groupby("record_id").output_sha256.nunique() == 4).all()  # N outputs differ
    assert (res.lr_psnr >= 45).all(), res.lr_psnr.min()  # NTIRE's consistency threshold
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["model"]["stochastic"] is True


def test_nullspace_spread_is_where_the_image_has_detail():
    lr = _lr()
    out = load_model("nullspace").sample(lr, scale=4, n=6, seeds=[list(range(6))])[0]
    std = out.std(dim=0).mean(dim=0)  # per-pixel spread over the outputs
    assert float(std.mean()) > 0.01
    flat = torch.zeros_like(lr) + 0.5  # a flat mid-grey LR: spread only from the injected content
    same_seed = load_model("nullspace").sample(lr, scale=4, n=2, seeds=[[7, 7]])[0]
    assert torch.equal(same_seed[0], same_seed[1])
    assert (
        load_model("nullspace", args={"sigma": 0.0})
        .sample(flat, scale=4, n=2, seeds=[[1, 2]])
        .std(1)
        .max()
        < 1e-6
    )


def test_tta_identical_for_a_flip_equivariant_model_and_not_otherwise():
    lr = _lr(16)
    eq = load_model("nearest", sampler="tta").sample(lr, scale=4, n=8, seeds=[list(range(8))])[0]
    assert all(torch.equal(eq[0], eq[k]) for k in range(8))
    blocky = load_model("srf_test_plugins:Blocky", sampler="tta").sample(
        lr, scale=4, n=8, seeds=[list(range(8))]
    )[0]
    assert len({blocky[k].numpy().tobytes() for k in range(8)}) > 1
    assert torch.equal(
        blocky[0], load_model("srf_test_plugins:Blocky").upscale(lr, scale=4)[0]
    )  # t=0: identity


def _tiny_network_model(tmp_path):
    from srforensics.images import sha256_file
    from srforensics.models.archs import IMDN

    torch.manual_seed(0)
    w = tmp_path / "imdn.pth"
    torch.save(IMDN(upscale=4).state_dict(), w)
    spec = tmp_path / "imdn.yaml"
    spec.write_text(
        f"architecture: imdn\nargs: {{upscale: 4}}\nscale: 4\nweights: {{file: imdn.pth, sha256: {sha256_file(w)}}}\n"
    )
    return str(spec)


def test_mc_dropout_is_seeded_and_needs_a_network(tmp_path):
    spec = _tiny_network_model(tmp_path)
    model = load_model(spec, sampler="mc-dropout", sampler_args={"p": 0.2})
    lr = _lr(8)
    a = model.sample(lr, scale=4, n=3, seeds=[[1, 2, 3]])
    b = model.sample(lr, scale=4, n=3, seeds=[[1, 2, 3]])
    assert torch.equal(a, b) and not torch.equal(a[0, 0], a[0, 1])
    plain = load_model(spec).upscale(lr, scale=4)
    assert not torch.equal(a[0, 0], plain[0])
    assert torch.equal(model.base.upscale(lr, scale=4), plain)  # the dropout hooks are gone again
    with pytest.raises(SRForensicsError, match="mc-dropout needs a model with a torch network"):
        load_model("bicubic", sampler="mc-dropout")
    with pytest.raises(SRForensicsError, match="takes p, not sigma"):
        load_model(spec, sampler="mc-dropout", sampler_args={"sigma": 1})


def test_input_noise_spread_grows_with_sigma():
    lr = _lr(8)
    small = load_model("bicubic", sampler="input-noise", sampler_args={"sigma": 1}).sample(
        lr, scale=4, n=4, seeds=[[1, 2, 3, 4]]
    )
    big = load_model("bicubic", sampler="input-noise", sampler_args={"sigma": 8}).sample(
        lr, scale=4, n=4, seeds=[[1, 2, 3, 4]]
    )
    assert 0 < float(small.std(1).mean()) < float(big.std(1).mean())


def test_sampler_is_recorded_in_the_manifest(tiny_dataset, tmp_path):
    run, res = _run(tiny_dataset, tmp_path, model="nearest", sampler="tta", samples=8)
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["model"]["sampler"] == "tta" and manifest["config"]["study"]["sampler"] == "tta"
    assert (res.groupby("record_id").output_sha256.nunique() == 1).all()


def test_batch_size_does_not_change_any_output(tiny_dataset, tmp_path):
    _, one = _run(
        tiny_dataset, tmp_path, name="b1", model="srf_test_plugins:NoisyModel", batch_size=1
    )
    _, many = _run(
        tiny_dataset, tmp_path, name="b8", model="srf_test_plugins:NoisyModel", batch_size=8
    )
    cols = ["record_id", "variant", "sample", "seed", "output_sha256", "psnr"]
    pd.testing.assert_frame_equal(
        one[cols].reset_index(drop=True), many[cols].reset_index(drop=True)
    )
    assert one.output_sha256.nunique() == len(one)


def test_a_faulty_model_fails_only_its_own_rows(tiny_dataset, tmp_path):
    args = {"raise_on": "coffee.png", "nan_on": "astronaut.png", "overshoot_on": ""}
    _, res = _run(
        tiny_dataset, tmp_path, model="srf_test_plugins:Faulty", model_args=args, batch_size=8
    )
    by = res.groupby("record_id")
    assert (
        by.get_group("coffee.png").error == "model failed: RuntimeError: cannot handle coffee.png"
    ).all()
    assert (by.get_group("astronaut.png").error == "model output contains NaN or Inf").all()
    assert (
        by.get_group("gray cam.png").status == "ok"
    ).all()  # batched with the faulty ones, still fine
    assert set(res[res.status == "failed"].record_id) == {"coffee.png", "astronaut.png"}


def test_values_far_outside_the_range_fail_with_the_reason(tiny_dataset, tmp_path):
    args = {"overshoot_on": "gray cam.png"}
    _, res = _run(tiny_dataset, tmp_path, model="srf_test_plugins:Faulty", model_args=args)
    bad = res[res.record_id == "gray cam.png"]
    assert (bad.status == "failed").all()
    assert bad.error.str.startswith(
        "model output outside [0, 1] beyond the tolerance 0.1: min -"
    ).all()
    assert (res[res.record_id != "gray cam.png"].status == "ok").all()
    np.testing.assert_array_equal(res[res.status == "ok"].psnr.notna(), True)
