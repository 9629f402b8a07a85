"""Architectures with the public key layouts, model specs, TorchScript and entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO, audit_tiny, cli_env, run_cli

from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.models import load_model
from srforensics.models.archs import EDSR, IMDN, SRCNN, MSRResNet, RRDBNet
from srforensics.weights import WeightsError

ARCHS = [
    ("rrdbnet", RRDBNet, {"scale": 4, "num_block": 2, "num_feat": 16}, 4),
    ("rrdbnet", RRDBNet, {"scale": 2, "num_block": 1, "num_feat": 16}, 2),
    ("msrresnet", MSRResNet, {"num_block": 2, "num_feat": 16, "upscale": 4}, 4),
    ("msrresnet", MSRResNet, {"num_block": 2, "num_feat": 16, "upscale": 3}, 3),
    ("edsr", EDSR, {"num_block": 2, "num_feat": 16, "upscale": 4}, 4),
    ("edsr", EDSR, {"num_block": 2, "num_feat": 16, "upscale": 3}, 3),
    ("imdn", IMDN, {"nf": 64, "num_modules": 6, "upscale": 4}, 4),
    ("imdn", IMDN, {"nf": 64, "num_modules": 6, "upscale": 2}, 2),
    ("srcnn", SRCNN, {"upscale": 3}, 3),
]

# Keys of the public release files (first and last), as BasicSR / the IMDN repository save them.
PUBLIC_KEYS = {
    "rrdbnet": (
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "conv_up2.weight",
        "conv_last.bias",
    ),
    "msrresnet": ("conv_first.weight", "body.0.conv1.weight", "upconv1.weight", "conv_last.bias"),
    "edsr": (
        "conv_first.weight",
        "body.0.conv1.weight",
        "conv_after_body.weight",
        "upsample.0.weight",
    ),
    "imdn": (
        "fea_conv.weight",
        "IMDB1.c1.weight",
        "IMDB6.cca.conv_du.2.bias",
        "c.0.weight",
        "LR_conv.weight",
        "upsampler.0.weight",
    ),
    "srcnn": ("conv1.weight", "conv2.weight", "conv3.bias"),
}


def basicsr_rrdbnet(state: dict) -> dict:
    """spandrel's ESRGAN keys renamed to BasicSR's RRDBNet layout, that of Real-ESRGAN's files
    (basicsr/archs/rrdbnet_arch.py: conv_first, body.N.rdbK.convM, conv_body, conv_up1/2,
    conv_hr, conv_last)."""
    import re

    blocks = max(int(k.split(".")[3]) for k in state if k.startswith("model.1.sub.") and "RDB" in k)
    fixed = {"model.0": "conv_first", f"model.1.sub.{blocks + 1}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}  # fmt: skip
    out = {}
    for k, v in state.items():
        stem, param = k.rsplit(".", 1)
        m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0", stem)
        out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{param}" if m else f"{fixed[stem]}.{param}"] = v
    return out


def _spec(tmp_path, arch, args, scale, state, *, sha=None, wrap="module"):
    weights = tmp_path / f"{arch}-x{scale}.pth"
    if wrap == "module":
        torch.save({f"module.{k}": v for k, v in state.items()}, weights)  # as DataParallel saves
    else:
        torch.save({"params_ema": state}, weights)  # as BasicSR saves
    spec = tmp_path / f"{arch}-x{scale}.yaml"
    spec.write_text(
        f"name: test-{arch}\nversion: t1\narchitecture: {arch}\nargs: {dict(args)}\nscale: {scale}\n"
        f"weights:\n  file: {weights.name}\n  url: https://example.org/{weights.name}\n"
        f"  sha256: {sha or sha256_file(weights)}\nlicence: CC0\nsource: tests\n"
    )
    return spec


@pytest.mark.parametrize("arch, cls, args, scale", ARCHS)
def test_public_key_layout_loads_and_gives_the_right_size(arch, cls, args, scale, tmp_path):
    torch.manual_seed(0)
    net = cls(**args).eval()
    # The state dict as the public release files hold it (BasicSR's layout for RRDBNet).
    state = basicsr_rrdbnet(net.state_dict()) if arch == "rrdbnet" else net.state_dict()
    for key in PUBLIC_KEYS[arch]:
        assert key in state, key
    spec = _spec(tmp_path, arch, args, scale, state, wrap="module" if scale != 2 else "params_ema")
    model = load_model(str(spec))
    lr = torch.rand(1, 3, 12, 10)
    out = model.sample(lr, scale=scale, n=2, seeds=[[0, 1]])
    assert out.shape == (1, 2, 3, 12 * scale, 10 * scale)
    with torch.no_grad():
        assert torch.allclose(
            out[0, 0], net(lr)[0], atol=1e-6
        )  # the loaded weights are the saved ones
    card = model.card()
    assert (
        card.weights_sha256 == sha256_file(tmp_path / f"{arch}-x{scale}.pth")
        and card.licence == "CC0"
    )


def test_srcnn_is_three_convolutions_on_the_bicubic_upscaled_lr():
    """SRCNN's 9-5-5 layers (Dong et al. 2014) take the LR upscaled by the MATLAB bicubic
    resize: the network equals those three convolutions applied by hand."""
    import torch.nn.functional as F

    from srforensics.resize import imresize_tensor

    torch.manual_seed(0)
    net = SRCNN(upscale=2).eval()
    assert [c.kernel_size for c in (net.conv1, net.conv2, net.conv3)] == [(9, 9), (5, 5), (5, 5)]
    assert (net.conv1.out_channels, net.conv2.out_channels) == (64, 32)
    lr = torch.rand(1, 3, 10, 12)
    up = imresize_tensor(lr, 2)
    by_hand = F.conv2d(
        F.relu(F.conv2d(F.relu(F.conv2d(up, net.conv1.weight, net.conv1.bias, padding=4)),
                        net.conv2.weight, net.conv2.bias, padding=2)),
        net.conv3.weight, net.conv3.bias, padding=2,
    )  # fmt: skip
    with torch.no_grad():
        assert torch.allclose(net(lr), by_hand, atol=1e-6) and by_hand.shape[-2:] == (20, 24)


def test_wrong_sha256_is_refused(tmp_path):
    net = IMDN(upscale=4)
    spec = _spec(tmp_path, "imdn", {"upscale": 4}, 4, net.state_dict(), sha="1" * 64)
    with pytest.raises(WeightsError, match="refusing to use it"):
        load_model(str(spec))


def test_mismatched_architecture_is_a_clear_error(tmp_path):
    net = MSRResNet(num_block=2, num_feat=16, upscale=4)
    spec = _spec(
        tmp_path, "msrresnet", {"num_block": 3, "num_feat": 16, "upscale": 4}, 4, net.state_dict()
    )
    with pytest.raises(
        WeightsError, match=r"does not fit MSRResNet: 4 missing key\(s\) \['body.2.conv1.bias'"
    ):
        load_model(str(spec))


def test_esrgan_original_key_names_are_converted():
    net = RRDBNet(num_block=1, num_feat=8)
    basicsr = basicsr_rrdbnet(net.state_dict())
    renamed = {}
    for k, v in basicsr.items():
        k = k.replace("conv_body", "trunk_conv")
        k = ("RRDB_trunk." + k[5:] if k.startswith("body.") else k).replace(".rdb", ".RDB")
        k = (
            k.replace("conv_up1", "upconv1")
            .replace("conv_up2", "upconv2")
            .replace("conv_hr", "HRconv")
        )
        renamed[k] = v
    assert "RRDB_trunk.0.RDB1.conv1.weight" in renamed and "HRconv.weight" in renamed
    for layout in (basicsr, renamed, net.state_dict()):
        converted = RRDBNet.convert_keys(layout)
        assert converted.keys() == net.state_dict().keys()
        assert all(torch.equal(converted[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("scale", [4, 2])
def test_rrdbnet_is_spandrels_esrgan_bit_for_bit(scale):
    """The model-spec architecture runs what spandrel loads from the same file."""
    from spandrel import ModelLoader

    torch.manual_seed(0)
    net = RRDBNet(scale=scale, num_feat=16, num_block=2).eval()
    descriptor = ModelLoader().load_from_state_dict(basicsr_rrdbnet(net.state_dict()))
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == scale
    lr = torch.rand(2, 3, 12, 16)
    with torch.no_grad():
        assert torch.equal(net(lr), descriptor.model.eval()(lr))


def test_presets_need_their_registered_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SRFORENSICS_CACHE", str(tmp_path))
    for name in ("realesrgan-x4plus", "realesrgan-x2plus", "imdn-x2", "imdn-x3", "imdn-x4"):
        with pytest.raises(WeightsError, match="are missing"):
            load_model(name)


def test_a_model_spec_audits_end_to_end(tmp_path, tiny_dataset):
    net = IMDN(upscale=4)
    spec = _spec(tmp_path, "imdn", {"upscale": 4}, 4, net.state_dict())
    proc = audit_tiny(tiny_dataset, tmp_path / "run", model=str(spec))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == sha256_file(tmp_path / "imdn-x4.pth")
    assert manifest["model"]["weights_origin"].startswith("model spec")


def test_torchscript_file_audits_end_to_end(tmp_path, tiny_dataset):
    class Up(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(
                x, scale_factor=4.0, mode="bilinear", align_corners=False
            )

    path = tmp_path / "up4.pt"
    torch.jit.script(Up()).save(str(path))
    proc = audit_tiny(tiny_dataset, tmp_path / "run", model=str(path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pandas as pd

    res = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert (res[res.record_id != "broken.png"].status == "ok").all()
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    # A state dict with the same suffix is a checkpoint: spandrel is asked for its architecture.
    with pytest.raises(SRForensicsError, match="spandrel recognises no architecture"):
        load_model(str(plain))


def test_plugin_class_in_a_temp_module(tmp_path, tiny_dataset):
    (tmp_path / "my_sr_plugin.py").write_text(
        textwrap.dedent(
            """
        import torch
        from srforensics.models import SRModel

        class Doubler(SRModel):
            name = "doubler"

            def __init__(self, *, device="cpu", dtype="float32", gain=1.0):
                super().__init__(device=device, dtype=dtype)
                self.gain = gain

            def upscale(self, lr, *, scale):
                return torch.nn.functional.interpolate(lr, scale_factor=scale, mode="nearest") * self.gain
        """
        )
    )
    env = cli_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    proc = audit_tiny(
        tiny_dataset,
        tmp_path / "run",
        "--model-arg",
        "gain=0.5",
        model="my_sr_plugin:Doubler",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["config"]["study"][
        "model_args"
    ] == {"gain": 0.5}


@pytest.mark.slow
def test_entry_point_from_an_installed_package(tmp_path, tiny_dataset):
    pkg = tmp_path / "pkg"
    (pkg / "ep_sr_models").mkdir(parents=True)
    (pkg / "ep_sr_models" / "__init__.py").write_text(
        "from srforensics.models.interpolation import Bicubic\n\n"
        "class SharpBicubic(Bicubic):\n    name = 'sharp-bicubic'\n"
    )
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "ep-sr-models"
        version = "0.1"

        [project.entry-points."srforensics.models"]
        sharp-bicubic = "ep_sr_models:SharpBicubic"
        """
        )
    )
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(pkg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = cli_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    listing = run_cli("models", "list", env=env)
    assert "sharp-bicubic" in listing.stdout and "entry point (ep-sr-models)" in listing.stdout
    proc = audit_tiny(tiny_dataset, tmp_path / "run", model="sharp-bicubic", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert REPO.is_dir()
