"""Weight files: cache, import, fetch, verify, safe loading. Files are made by the tests."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import cli_env, run_cli

from srforensics import weights as W
from srforensics.images import sha256_file


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SRFORENSICS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture()
def test_spec(tmp_path):
    """A registered entry for a small state dict written here (removed afterwards)."""
    net = torch.nn.Conv2d(3, 3, 3)
    path = tmp_path / "tiny.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    spec = W.WeightSpec("test-tiny", "tiny.pth", path.as_uri(), sha256_file(path), "CC0", "tests")
    W.register_weights(spec)
    yield spec, path, net
    W._REGISTRY.pop(spec.name)


def test_cache_folder_follows_the_environment(cache):
    assert W.cache_dir() == cache


def test_import_then_require_then_tamper(cache, test_spec):
    spec, path, _ = test_spec
    assert W.import_file(path) is spec
    assert W.require("test-tiny") == cache / "tiny.pth"
    (cache / "tiny.pth").write_bytes(b"\x00" * 10)
    with pytest.raises(W.WeightsError, match="refusing to use it"):
        W.require("test-tiny")
    statuses = {e.path.name: e.status for e in W.verify_cache() if e.path.parent == cache}
    assert statuses == {"tiny.pth": "altered"}


def test_import_refuses_files_matching_no_entry(cache, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not weights")
    with pytest.raises(W.WeightsError, match="matches no registered weights"):
        W.import_file(junk)
    assert not cache.exists() or not any(cache.iterdir())


def test_fetch_verifies_what_it_downloads(cache, test_spec, tmp_path):
    spec, path, _ = test_spec
    assert W.fetch("test-tiny") == cache / "tiny.pth"  # a file:// URL: no network needed
    bad = W.WeightSpec("test-bad", "bad.pth", path.as_uri(), "0" * 64, "CC0", "tests")
    W.register_weights(bad)
    try:
        with pytest.raises(W.WeightsError, match="expected 0000"):
            W.fetch("test-bad")
        assert not (cache / "bad.pth").exists()
    finally:
        W._REGISTRY.pop("test-bad")


def test_missing_weights_message_names_file_url_and_import_command(cache):
    with pytest.raises(W.WeightsError) as err:
        W.require("realesrgan-x4plus")
    msg = str(err.value)
    assert (
        "RealESRGAN_x4plus.pth" in msg and "https://github.com/xinntao/Real-ESRGAN/releases" in msg
    )
    assert "srforensics weights import" in msg


def test_load_state_dict_unwraps_and_strips_module_prefix(test_spec):
    spec, path, net = test_spec
    state = W.load_state_dict(path, sha256=spec.sha256)
    assert set(state) == set(net.state_dict())
    with pytest.raises(W.WeightsError, match="expected"):
        W.load_state_dict(path, sha256="f" * 64)


class Evil:
    def __reduce__(self):
        return (print, ("this would run at unpickling",))


def test_pickles_that_need_full_unpickling_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"x": Evil()}, fh)
    with pytest.raises(W.WeightsError, match="weights_only=True"):
        W.load_state_dict(path)


def test_safetensors_files_load(tmp_path):
    from safetensors.torch import save_file

    net = torch.nn.Conv2d(3, 4, 1)
    path = tmp_path / "w.safetensors"
    save_file(net.state_dict(), str(path))
    state = W.load_state_dict(path)
    assert torch.equal(state["weight"], net.weight)


def test_weights_cli(tmp_path):
    env = cli_env(SRFORENSICS_CACHE=str(tmp_path / "c"))
    proc = run_cli("weights", "list", env=env)
    assert proc.returncode == 0 and "realesrgan-x4plus" in proc.stdout and "missing" in proc.stdout
    junk = tmp_path / "RealESRGAN_x4plus.pth"
    junk.write_bytes(b"junk")
    proc = run_cli("weights", "import", str(junk), env=env)
    assert proc.returncode == 2 and "matches no registered weights" in proc.stderr
    proc = run_cli(
        "audit",
        "--model",
        "realesrgan-x4plus",
        "--protocol",
        "bicubic-x4",
        "--out",
        str(tmp_path / "run"),
        env=env,
    )
    assert (
        proc.returncode == 2 and "srforensics weights import RealESRGAN_x4plus.pth" in proc.stderr
    )
    (tmp_path / "c" / "weights").mkdir(parents=True)
    (tmp_path / "c" / "weights" / "RealESRGAN_x4plus.pth").write_bytes(b"junk")  # planted by hand
    proc = run_cli("weights", "verify", env=env)
    assert proc.returncode == 1 and proc.stdout.startswith("altered")
    proc = run_cli("weights", "fetch", "nonexistent", env=env)
    assert proc.returncode == 2 and "unknown weights 'nonexistent'" in proc.stderr
