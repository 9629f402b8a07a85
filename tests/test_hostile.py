"""Issue 9: hostile and broken input, faulty models, weights that need unpickling, no network.

Every bad record gets a per-record error with a reason, and the run goes on.
"""

from __future__ import annotations

import csv
import io
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import audit_in_process, run_cli
from PIL import Image

ODD = "ünï cödé 'q' <b>.png"


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing ``width x height`` pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def make_hostile(root: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    root.mkdir(parents=True)
    Image.fromarray(rgb).save(root / "ok.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.jpg").write_text("not an image at all")
    (root / "bomb.png").write_bytes(bomb_png(60000, 60000))
    Image.fromarray((rng.random((32, 32)) * 65535).astype(np.uint16)).save(root / "sixteen.png")
    Image.fromarray(rgb[..., 0]).save(root / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((32, 32), 128, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    rotated = Image.fromarray(rgb[:, :24])
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated.save(root / "exif.jpg", exif=exif)
    Image.fromarray(rgb[:3, :3]).save(root / "tiny.png")
    Image.fromarray(np.tile(rgb, (7, 7, 1))).save(root / "big.png")  # 224x224, over --max-pixels
    Image.fromarray(rgb).save(root / ODD)
    outside = root.parent / "outside"
    outside.mkdir()
    Image.fromarray(rgb).save(outside / "secret.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    rows = [
        ("ok.png", "ok", "s1", "a"),
        ("truncated.png", "truncated", "s2", "b"),
        ("text.jpg", "text", "s3", "a"),
        ("bomb.png", "bomb", "s4", "b"),
        ("sixteen.png", "sixteen", "s5", "a"),
        ("gray.png", "gray", "s6", "b"),
        ("rgba.png", "rgba", "s7", "a"),
        ("palette.png", "palette", "s8", "b"),
        ("cmyk.jpg", "cmyk", "s9", "a"),
        ("exif.jpg", "exif", "s10", ""),  # missing attribute value
        ("tiny.png", "tiny", "s11", "a"),
        ("big.png", "big", "s12", "b"),
        (ODD, ODD, "s13", ""),
        ("link.png", "link", "s14", "a"),
        ("../outside/secret.png", "dotdot", "s15", "b"),
        ("gray.png", "ok", "s16", "a"),  # duplicate id
    ]
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "id", "subject", "group"])
        w.writerows(rows)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    make_hostile(base / "data")
    before = _snapshot(base)
    run, results = audit_in_process(
        base / "data", base / "run", max_pixels=20000, breakdown_boot=50, save_images="all"
    )
    return base, before, run, results


def _records(run) -> dict[str, tuple[str, str | None]]:
    import sqlite3

    with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
        return {r: (s, e) for r, s, e in db.execute("SELECT record_id, status, error FROM records")}


@pytest.mark.parametrize(
    ("record_id", "reason"),
    [
        ("truncated", "corrupt or truncated image"),
        ("text", "not a readable image"),
        ("bomb", "refused as a decompression bomb"),
        ("big", "over the limit of 20000"),
        ("tiny", "smaller than the scale factor 4"),
        ("link", "points outside the dataset root"),
        ("dotdot", "points outside the dataset root"),
        ("ok (duplicate 2)", "duplicate record id 'ok'"),
    ],
)
def test_each_bad_record_fails_alone_with_its_reason(hostile_run, record_id, reason):
    _, _, run, results = hostile_run
    status, error = _records(run)[record_id]
    assert status == "failed" and reason in error
    rows = results[results.record_id == record_id]
    assert len(rows) == 1 and (rows.status == "failed").all()


@pytest.mark.parametrize(
    "record_id", ["ok", "sixteen", "gray", "rgba", "palette", "cmyk", "exif", ODD]
)
def test_every_readable_mode_is_audited(hostile_run, record_id):
    _, _, run, results = hostile_run
    assert _records(run)[record_id] == ("ok", None)
    row = results[results.record_id == record_id].iloc[0]
    assert row.status == "ok" and np.isfinite(row.psnr)


def test_exif_orientation_is_applied_before_the_audit(hostile_run):
    base, _, run, results = hostile_run
    from srforensics.images import read_image

    row = results[results.record_id == "exif"].iloc[0]
    hr, _ = read_image(run.run_dir / row.hr_path)
    assert hr.shape[:2] == (24, 32)  # stored 32 rows x 24 columns, displayed rotated


def test_inputs_are_never_modified_and_nothing_is_written_beside_them(hostile_run):
    base, before, _, _ = hostile_run
    after = {k: v for k, v in _snapshot(base).items() if not k.startswith("run/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("run/")}


def test_missing_attribute_values_stay_missing(hostile_run):
    _, _, run, results = hostile_run
    assert results.loc[results.record_id == "exif", "group"].isna().all()
    bd = pd.read_parquet(run.run_dir / "breakdown.parquet")
    groups = set(bd[bd.feature == "group"].group)
    assert groups == {"a", "b"}  # no invented "None" or "nan" group


def test_odd_names_are_text_in_the_report(hostile_run):
    _, _, run, _ = hostile_run
    html = (run.run_dir / "report.html").read_text()
    assert "ünï cödé &#39;q&#39; &lt;b&gt;.png" in html and "<b>.png" not in html


def test_cli_output_escapes_control_characters(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    (root / "evil\x1b[2J\u202ename.png").symlink_to(tmp_path / "elsewhere.png")
    proc = run_cli("datasets", "validate", str(root))
    assert proc.returncode == 1
    assert "refused:" in proc.stdout and "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "evil\\x1b[2J\\u202ename.png" in proc.stdout


# -- faulty models ---------------------------------------------------------------------------
def test_a_hanging_model_times_out_per_batch_and_the_run_goes_on(
    tiny_dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv("SRF_SLEEP", "5")
    run, results = audit_in_process(
        tiny_dataset,
        tmp_path / "run",
        model="srf_test_plugins:SlowNoisy",
        model_timeout=0.5,
        batch_size=2,
    )
    readable = results[results.record_id != "broken.png"]
    assert (readable.status == "failed").all()
    assert readable.error.str.contains(r"model timed out after 0.5 s \(--model-timeout\)").all()
    assert (run.run_dir / "report.html").is_file()


def test_model_timeout_lets_a_fast_model_finish(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SRF_SLEEP", "0")
    _, results = audit_in_process(
        tiny_dataset, tmp_path / "run", model="srf_test_plugins:SlowNoisy", model_timeout=30
    )
    assert (results[results.record_id != "broken.png"].status == "ok").all()


# -- weights -----------------------------------------------------------------------------------
class _Pickled:
    """Not a tensor: torch.load(weights_only=True) refuses to unpickle it."""

    def __init__(self, state):
        self.state = state


def _spec_with_pickled_weights(tmp_path: Path) -> Path:
    import torch

    from srforensics.models.archs import MSRResNet

    torch.manual_seed(0)
    net = MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=4)
    weights = tmp_path / "pickled.pth"
    torch.save({"params": net.state_dict(), "extra": _Pickled(1)}, weights)
    spec = tmp_path / "model.yaml"
    from srforensics.images import sha256_file

    spec.write_text(
        "name: tiny-msrresnet\nversion: t1\narchitecture: msrresnet\nscale: 4\n"
        "args: {num_feat: 8, num_block: 1, upscale: 4}\n"
        f"weights:\n  file: {weights.name}\n  url: https://example.org/{weights.name}\n"
        f"  sha256: {sha256_file(weights)}\nlicence: CC0\nsource: tests\n"
    )
    return spec


def test_weights_that_need_unpickling_are_refused_unless_trusted(tiny_dataset, tmp_path):
    spec = _spec_with_pickled_weights(tmp_path)
    proc = run_cli("audit", "--model", str(spec), "--protocol", "bicubic-x4", "--dataset",
                   str(tiny_dataset), "--samples", "1", "--metrics", "psnr", "--out", str(tmp_path / "r1"))  # fmt: skip
    assert proc.returncode == 2
    assert "weights_only=True" in proc.stderr and "--trust-weights" in proc.stderr
    assert not (tmp_path / "r1").exists()

    run, results = audit_in_process(
        tiny_dataset, tmp_path / "r2", model=str(spec), trust_weights=True
    )
    assert (results[results.record_id != "broken.png"].status == "ok").all()
    import json

    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["trust_weights"] is True
    (w,) = manifest["weights"]
    assert w["path"].endswith("pickled.pth") and "trusted by --trust-weights" in w["loaded_as"]
    from srforensics.images import sha256_file

    assert w["sha256"] == sha256_file(tmp_path / "pickled.pth")
    assert "--trust-weights" in (run.run_dir / "report.html").read_text()


# -- network -------------------------------------------------------------------------------------
def test_an_audit_makes_no_network_connection(tiny_dataset, tmp_path, monkeypatch):
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network blocked by the test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    _, results = audit_in_process(
        tiny_dataset, tmp_path / "run", metrics=("psnr", "lpips", "niqe"), save_images="report"
    )
    assert attempts == []
    assert (results[results.record_id != "broken.png"].status == "ok").all()


def test_a_hostile_run_id_cannot_leave_the_footers_css_string():
    """The print footer puts the run id (from a folder name) in a CSS string: quotes, `<`,
    backslashes and newlines are CSS escapes, so it can end neither the string nor <style>."""
    from srforensics.report.render import css_string

    out = str(css_string('x"; } </style><script>alert(1)</script>\\\n'))
    inner = out[1:-1]
    assert out[0] == out[-1] == '"' and not set('"<>\n;{}') & set(inner.replace("\\", ""))
    assert "\\00003c " in inner and "\\000022 " in inner
