"""Checkpoints as models: spandrel detects the architecture of a state dict.

Every checkpoint here is made by the test: a randomly initialised network from spandrel's
own architecture classes, saved as a state dict. The reference output is spandrel's own
model called on the same input.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import audit_tiny, run_cli

from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.models import load_model


def _save(net, path):
    torch.manual_seed(0)
    state = net.state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _nets():
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    return [
        ("ESRGAN", 4, ".pth", ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=2, scale=4)),
        ("RealESRGAN Compact", 2, ".safetensors", Compact(num_feat=16, num_conv=4, upscale=2)),
        ("SPAN", 3, ".pth", SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=3)),
    ]


@pytest.mark.parametrize("arch, scale, suffix, net", _nets(), ids=lambda v: str(v)[:20])
def test_a_checkpoint_runs_as_its_detected_architecture(arch, scale, suffix, net, tmp_path):
    path = _save(net, tmp_path / f"model{suffix}")
    model = load_model(str(path))
    card = model.card()
    assert model.scale == scale and card.weights_sha256 == sha256_file(path)
    assert card.version.startswith(f"{arch} x{scale}") and "spandrel" in card.description
    assert "not reported by spandrel" in card.licence  # none is made up
    lr = torch.rand(2, 3, 12, 10)
    out = model.upscale(lr, scale=scale)
    with torch.no_grad():  # spandrel's inference clamps to [0, 1], as the reference code does
        expected = net.eval()(lr).clamp(0, 1)
    assert out.shape == (2, 3, 12 * scale, 10 * scale)
    assert torch.equal(out, expected.float())


def test_an_audit_of_a_checkpoint_records_its_architecture_and_hash(tiny_dataset, tmp_path):
    from spandrel.architectures.ESRGAN import ESRGAN

    path = _save(ESRGAN(num_filters=16, num_blocks=2, scale=4), tmp_path / "esrgan.pth")
    out = tmp_path / "run"
    proc = audit_tiny(tiny_dataset, out, model=str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["weights_sha256"] == sha256_file(path)
    assert m["model"]["version"].startswith("ESRGAN x4")
    assert [w["loaded_as"] for w in m["weights"]] == ["torch.load(weights_only=True)"]
    assert "ESRGAN" in (out / "report.html").read_text()


def test_a_state_dict_spandrel_does_not_know_is_one_clear_error(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(SRForensicsError, match="recognises no architecture.*ESRGAN.*plug-in"):
        load_model(str(path))
    proc = run_cli(
        "audit", "--model", str(path), "--protocol", "bicubic-x4", "--out", str(tmp_path / "r")
    )
    assert proc.returncode == 2 and "spandrel recognises no architecture" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_checkpoint_that_needs_full_unpickling_is_refused(tmp_path):
    """A file ``torch.load(weights_only=True)`` refuses (it names a Python object) is not
    unpickled unless the user trusts it."""
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(x=1)}, path)
    with pytest.raises(SRForensicsError, match="--trust-weights"):
        load_model(str(path))


def test_torchscript_files_still_load_as_torchscript(tmp_path):
    class Up(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")

    path = tmp_path / "scripted.pth"
    torch.jit.script(Up()).save(str(path))
    model = load_model(str(path))
    assert model.card().version == "torchscript"


def test_a_deterministic_checkpoint_gets_its_spread_from_a_sampler_the_report_names(
    tiny_dataset, tmp_path
):
    from spandrel.architectures.ESRGAN import ESRGAN

    path = _save(ESRGAN(num_filters=16, num_blocks=2, scale=4), tmp_path / "esrgan.pth")
    out = tmp_path / "run"
    proc = audit_tiny(
        tiny_dataset, out, "--sampler", "input-noise", "--sampler-arg", "sigma=4", model=str(path)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["sampler"] == "input-noise" and m["model"]["sampler_args"] == {"sigma": 4}
    html = (out / "report.html").read_text()
    assert "made by the sampler <strong>input-noise</strong>" in html and "sigma = 4" in html
    assert "noise the evidence could have carried anyway" in html
    import pandas as pd

    res = pd.read_parquet(out / "results.parquet")
    ok = res[res.status == "ok"]
    assert (ok.groupby(["record_id", "variant"]).output_sha256.nunique() == 2).all()


@pytest.mark.slow
def test_a_face_restoration_checkpoint_runs_on_the_faces_protocol(tmp_path):
    """GFPGAN (spandrel's architecture, random weights): the aligned 32 px LR is restored at
    512 px and resized to the 128 px output; the card says how, and what licence is known."""
    import pandas as pd
    from spandrel.architectures.GFPGAN import GFPGAN

    from srforensics.models import load_model

    torch.manual_seed(0)
    net = GFPGAN(
        out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
        sft_half=True,
    )  # fmt: skip  # the configuration spandrel detects GFPGAN v1.3/v1.4 files as
    path = _save(net, tmp_path / "GFPGANv1.4-random.pth")
    model = load_model(str(path))
    assert model.scale is None and model.face_size == 512
    lr = torch.rand(1, 3, 32, 32)
    out = model.sample(lr, scale=4, n=1, seeds=[[0]])
    assert out.shape == (1, 1, 3, 128, 128) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="square, aligned face crop"):
        model.upscale(torch.rand(1, 3, 32, 40), scale=4)
    card = model.card()
    assert "face restoration" in card.version and "512 px" in card.description

    out_dir = tmp_path / "run"
    proc = run_cli(
        "audit", "--model", str(path), "--protocol", "faces", "--variants", "1", "--samples", "1",
        "--metrics", "psnr,lr_psnr", "--identity", "off", "--breakdown-boot", "0",
        "--out", str(out_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pd.read_parquet(out_dir / "results.parquet")
    assert set(res[res.status == "ok"].record_id) == {"astronaut", "camera"}
    assert res[res.status == "ok"].psnr.notna().all()
    html = (out_dir / "report.html").read_text()
    assert "GFPGAN face restoration at 512 px" in html and "model GFPGANv1.4-random" in html


def test_codeformer_from_the_extra_architectures_carries_its_non_commercial_licence(tmp_path):
    """spandrel_extra_arches (the face-restoration extra) is found without changing spandrel's
    own registry; CodeFormer's S-Lab licence is on the card, stated as non-commercial."""
    import spandrel
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    from srforensics.models import load_model

    path = _save(CodeFormer(), tmp_path / "codeformer.pth")
    before = {a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures()}
    model = load_model(str(path))
    assert {a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures()} == before
    assert "CodeFormer" not in before and model.face_size == 512 and model.scale is None
    card = model.card()
    assert card.licence == "S-Lab License 1.0 (CodeFormer): non-commercial use only"


def test_a_non_commercial_model_licence_is_stated_plainly_in_the_report(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    proc = audit_tiny(tiny_dataset, out, model="srf_test_plugins:NonCommercial")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (out / "report.html").read_text()
    assert (
        "<strong>The model non-commercial-bicubic</strong> is licensed\n  "
        "<strong>Example Licence 1.0: non-commercial use only</strong>"
    ) in html
