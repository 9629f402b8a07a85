from __future__ import annotations

import subprocess
import sys

from conftest import run_cli

HEAVY = ("torch", "pyiqa", "numpy", "pandas", "matplotlib", "facenet_pytorch", "skimage", "scipy")


def test_help_imports_no_heavy_library():
    # `srforensics --help` must stay fast: the CLI imports torch, pyiqa & co. only when a
    # command needs them. (Its wall time is measured by the benchmark, not asserted here.)
    code = (
        "import sys, contextlib, io\n"
        "from srforensics import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    for sub in ('audit', 'models', 'protocols', 'metrics', 'report'):\n"
        "        try:\n"
        "            cli.main([sub, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_has_help():
    for args in (
        ["--help"],
        ["audit", "--help"],
        ["models", "list", "--help"],
        ["protocols", "show", "--help"],
        ["metrics", "list", "--help"],
        ["report", "--help"],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "usage:" in proc.stdout


def test_models_list():
    proc = run_cli("models", "list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {
        "nearest",
        "bilinear",
        "bicubic",
        "lanczos",
        "nullspace",
        "realesrgan-x4plus",
        "imdn-x4",
    } <= set(names)
    assert {"tta", "mc-dropout", "input-noise"} <= set(names)
    # The systems users know by name, each with how it runs and where its weights come from.
    for system in ("SRCNN", "SRGAN", "ESRGAN"):
        line = next(x for x in proc.stdout.splitlines() if x.startswith(system + " "))
        assert "architecture" in line and "weights:" in line
    assert "srcnn" in proc.stdout and run_cli("models").stdout == proc.stdout


def test_protocols_list_and_show():
    proc = run_cli("protocols", "list")
    assert proc.returncode == 0 and "faces" in proc.stdout and "bicubic-x4" in proc.stdout
    from srforensics.degradations.protocol import load_protocol

    proc = run_cli("protocols", "show", "faces")
    assert (
        proc.returncode == 0
        and load_protocol("faces").sha256 in proc.stdout
        and "face_align" in proc.stdout
    )
    proc = run_cli("protocols", "show", "facez")
    assert proc.returncode == 2 and "did you mean 'faces'" in proc.stderr


def test_metrics_list_shows_kind_direction_and_availability(tmp_path):
    import os

    env = dict(os.environ, TORCH_HOME=str(tmp_path))  # no weights there
    proc = run_cli("metrics", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert rows["psnr"].split()[1:4] == ["FR", "higher", "usable"]
    assert rows["gmsd"].split()[1:3] == ["FR", "lower"]
    assert rows["piqe"].split()[1] == "NR"
    assert rows["lr_psnr"].split()[1] == "LR"
    assert "unavailable" in rows["lpips"] and "LPIPS_v0.1_alex" in rows["lpips"]


def test_report_rerenders_a_finished_run(tiny_run):
    out, _ = tiny_run
    before = (out / "report.html").read_text()
    proc = run_cli("report", str(out))
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == str(out / "report.html")
    assert proc.stdout.startswith("report SHA-256: ")  # re-sealed
    assert (out / "report.html").read_text() == before
    proc = run_cli("report", str(out / "nope"))
    assert proc.returncode == 2 and "not a run folder" in proc.stderr


def test_audit_options_come_from_the_configuration_and_are_documented():
    """Each option of ``srforensics audit`` is a field of one of AuditConfig's groups, written
    once there."""
    import contextlib
    import io
    from dataclasses import fields

    from conftest import REPO

    from srforensics.cli import build_parser
    from srforensics.run.config import GROUPS
    from srforensics.run.options import flag_of, given_options

    parser = build_parser()
    documented = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    optioned = [f for g in GROUPS.values() for f in fields(g) if "option" in f.metadata]
    assert len(optioned) >= 35
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        parser.parse_args(["audit", "--help"])
    for f in optioned:
        flag = flag_of(f, f.metadata["option"])
        assert flag in help_text.getvalue() and f"`{flag}" in documented, flag
    args = parser.parse_args(["audit", "--samples", "2", "--model-arg", "k=1", "--allow-downloads"])
    assert given_options(args, GROUPS) == {
        "samples": 2,
        "model_args": {"k": 1},
        "sampler_args": {},
        "allow_downloads": True,
    }


def test_an_audit_configuration_is_made_in_groups_from_option_names():
    """``from_options`` takes the CLI's option names and puts each in its group; an unknown
    name is refused with the nearest ones; ``to_dict``/``from_dict`` round-trip."""
    import pytest

    from srforensics.errors import SRForensicsError
    from srforensics.run.config import AuditConfig, IdentityConfig, StudyConfig

    config = AuditConfig.from_options(model="nearest", samples=3, identity="off", workers=2)
    assert config.study == StudyConfig(model="nearest", samples=3)
    assert config.identity == IdentityConfig(mode="off")
    assert config.execution.workers == 2
    assert AuditConfig.from_dict(config.to_dict()) == config
    flat = {"model": "nearest", "samples": 3, "identity": "off", "workers": 2, "command": None}
    assert AuditConfig.from_dict(flat) == config  # a config.json with every option at the top
    with pytest.raises(SRForensicsError, match=r"sampels \(did you mean samples"):
        AuditConfig.from_options(sampels=3)
    with pytest.raises(SRForensicsError, match="--samples must be at least 1"):
        AuditConfig.from_options(samples=0)
