"""protocols validate | preview | replay, for every shipped protocol."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from conftest import run_cli

from srforensics.degradations.protocol import available_protocols, load_protocol
from srforensics.images import pixel_sha256, read_image


def _astronaut() -> str:
    from srforensics.data import load_dataset

    return str(load_dataset("sample").records[0].path)  # a face: every protocol can use it


@pytest.mark.parametrize("name", sorted(available_protocols()))
def test_every_shipped_protocol_validates_previews_and_replays(name, tmp_path):
    from srforensics.replay import preview_protocol, replay_lr
    from srforensics.run.pipeline import AuditConfig, run_audit

    protocol = load_protocol(name)
    sheet = preview_protocol(name, _astronaut(), tmp_path / "preview")
    params = json.loads((tmp_path / "preview" / "params.json").read_text())
    assert sheet.is_file() and params["protocol_sha256"] == protocol.sha256
    assert len(params["variants"]) == protocol.variants
    for v in params["variants"]:
        png, _ = read_image(tmp_path / "preview" / f"lr_v{v['variant']}.png")
        assert pixel_sha256(png) == v["lr_sha256"]

    run = run_audit(
        AuditConfig.from_options(
            protocol=name,
            dataset="sample",
            limit=1,
            samples=1,
            metrics=("psnr",),
            save_images="none",
            out=str(tmp_path / "run"),
        )
    )
    for variant in range(protocol.variants):
        result = replay_lr(run.run_dir, "astronaut", variant=variant)
        assert result.ok, result


def test_validate_cli(tmp_path):
    proc = run_cli("protocols", "validate", "cctv")
    assert proc.returncode == 0 and load_protocol("cctv").sha256 in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nscale: 4\nsteps:\n  - op: motion_blur\n    length: 500\n    angle: 0\n  - op: downscale\n    scale: 4\n"
    )
    proc = run_cli("protocols", "validate", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"{bad}: steps[0] (motion_blur).length: 500.0 is above the maximum 101.0" in proc.stderr


def test_preview_cli_and_a_protocol_that_needs_a_face(tmp_path):
    proc = run_cli(
        "protocols", "preview", "faces-x8", "--image", _astronaut(), "--out", str(tmp_path / "p")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(tmp_path / "p" / "index.html")
    lr, _ = read_image(tmp_path / "p" / "lr_v0.png")
    assert lr.shape == (16, 16, 3)
    from srforensics.data import load_dataset

    coffee = str(load_dataset("sample").records[3].path)
    proc = run_cli("protocols", "preview", "faces", "--image", coffee, "--out", str(tmp_path / "q"))
    assert proc.returncode == 2 and "no face found" in proc.stderr


def test_replay_cli_detects_tampered_parameters(tmp_path):
    from srforensics.run.pipeline import AuditConfig, run_audit

    run = run_audit(
        AuditConfig.from_options(
            protocol="plates",
            dataset="sample",
            limit=2,
            samples=1,
            metrics=("psnr",),
            save_images="none",
            out=str(tmp_path / "run"),
        )
    )
    proc = run_cli("protocols", "replay", str(run.run_dir), "camera", "--variant", "1")
    assert (
        proc.returncode == 0 and proc.stdout.count("match") == 4 and "MISMATCH" not in proc.stdout
    )
    recorded, replayed = (
        line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.startswith(("recorded by:", "replayed by:"))
    )
    assert recorded == replayed and recorded.startswith("srforensics ")
    with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
        (params,) = db.execute(
            "SELECT params FROM lrs WHERE record_id='camera' AND variant=1"
        ).fetchone()
        p = json.loads(params)
        p[3]["quality"] = 99 if p[3]["quality"] != 99 else 98  # the JPEG quality of that LR
        db.execute(
            "UPDATE lrs SET params=? WHERE record_id='camera' AND variant=1", (json.dumps(p),)
        )
    proc = run_cli("protocols", "replay", str(run.run_dir), "camera", "--variant", "1")
    assert proc.returncode == 1
    assert (
        "parameters (seed): MISMATCH" in proc.stdout
        and "LR SHA-256:        MISMATCH" in proc.stdout
        and "another srforensics" not in proc.stdout  # the same one recorded it
    )
    # Recorded by another version: the replay says so, beside the mismatch.
    manifest_path = run.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["srforensics_version"], manifest["git"] = "0.0.1", {"commit": "0" * 40}
    manifest_path.write_text(json.dumps(manifest))
    proc = run_cli("protocols", "replay", str(run.run_dir), "camera", "--variant", "1")
    assert proc.returncode == 1
    assert f"recorded by:       srforensics 0.0.1 (git {'0' * 40})" in proc.stdout
    assert "note: another srforensics recorded this run" in proc.stdout
    proc = run_cli("protocols", "replay", str(run.run_dir), "nobody")
    assert proc.returncode == 2 and "record 'nobody' is not in the run" in proc.stderr


def test_preview_params_replay_exactly(tmp_path):
    from srforensics.replay import preview_protocol

    preview_protocol("realistic-x4", _astronaut(), tmp_path, variants=1)
    sheet = json.loads((tmp_path / "params.json").read_text())
    p = load_protocol("realistic-x4")
    img, _ = read_image(_astronaut())
    hr, _ = p.prepare(img)
    lr = p.apply(hr, sheet["variants"][0]["params"])  # parameters read back from JSON
    assert pixel_sha256(lr) == sheet["variants"][0]["lr_sha256"]
    assert np.asarray(sheet["variants"][0]["params"][0]["stages"][0]["resize"]["factor"]).ndim == 0
