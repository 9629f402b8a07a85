"""The fault-injection suite (``pytest -m faults`` runs it and prints its totals).

Hostile weight files, run folders written where they must not be, hostile dataset files,
faulty and seed-ignoring models, tampering, and kill -9 followed by resume.

Hostile weight files:
A weight file known only by the 8-hex SHA-256 prefix in its name (the torch.hub
convention) can be forged: a prefix match is found by brute force in minutes. The
tests stand in for that brute force by registering the planted file's own prefix in
place of the published one, which is what a forged file that matches the real prefix
looks like to the tool. Its payload (a ``__reduce__`` that creates a marker file) must
never run without ``--trust-weights``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import run_fresh_python

from srforensics import weights as W
from srforensics.images import sha256_file

pytestmark = pytest.mark.faults

PAYLOAD = textwrap.dedent(
    """
    import pathlib, torch

    class Payload:
        def __init__(self, marker):
            self.marker = marker

        def __reduce__(self):  # runs on a full unpickle
            return (pathlib.Path.touch, (pathlib.Path(self.marker),))

    def plant(path, marker):
        state = {"conv.weight": torch.zeros(1), "trap": Payload(marker)}
        torch.save({"params": state}, path)
    """
)


def _plant(path: Path, marker: Path) -> None:
    scope: dict = {}
    exec(PAYLOAD, scope)  # noqa: S102 - the test's own payload
    scope["plant"](str(path), str(marker))


@pytest.fixture()
def forged_musiq(tmp_path, monkeypatch):
    """A payload pickle named as MUSIQ's weights, with the registry's prefix made to match it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SRFORENSICS_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "PAYLOAD-RAN"
    real = W._REGISTRY["pyiqa-musiq-koniq"]
    forged = tmp_path / "download" / real.file_name
    forged.parent.mkdir()
    _plant(forged, marker)
    fake = W.WeightSpec(
        real.name,
        real.file_name,
        real.url,
        sha256_file(forged)[:8],
        real.licence,
        real.source,
        verify="prefix",
        target=real.target,
        metrics=real.metrics,
    )
    W._REGISTRY[real.name] = fake
    yield forged, marker, fake
    W._REGISTRY[real.name] = real


def test_a_forged_prefix_file_is_refused_by_import_and_its_payload_never_runs(forged_musiq):
    forged, marker, spec = forged_musiq
    with pytest.raises(W.WeightsError, match=r"weights_only=True.*--trust-weights"):
        W.import_file(forged)
    assert not W.cached_path(spec).exists()
    assert not marker.exists()


def test_a_forged_file_placed_by_hand_is_reported_unsafe_and_the_metric_unavailable(
    forged_musiq,
):
    from srforensics.metrics import MetricConfig, MetricUnavailable, build_metric
    from srforensics.metrics.quality import missing_weights

    forged, marker, spec = forged_musiq
    dest = W.cached_path(spec)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(forged.read_bytes())
    [entry] = [e for e in W.verify_cache() if e.name == spec.name]
    assert entry.status == "unsafe" and "weights_only=True" in entry.detail
    assert "does not load with torch.load(weights_only=True)" in missing_weights("musiq")
    with pytest.raises(MetricUnavailable, match="weights_only=True"):
        build_metric("musiq", MetricConfig(scale=4))
    assert not marker.exists()
    # Trusting pickles lets the file through (the user's call, and it is logged) ...
    with W.weights_policy(trust_pickles=True):
        assert "trusted by --trust-weights" in W.check_spec(dest, spec)
    # ... and the check itself never unpickles it fully.
    assert not marker.exists()


def test_a_plain_state_dict_known_by_prefix_passes_and_says_how_it_was_checked(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "plain.pth"
    torch.save({"params": torch.nn.Conv2d(3, 3, 3).state_dict()}, path)
    spec = W.WeightSpec(
        "test-plain-prefix",
        "plain.pth",
        path.as_uri(),
        sha256_file(path)[:8],
        "CC0",
        "tests",
        verify="prefix",
        target="pyiqa",
    )
    how = W.check_spec(path, spec)
    assert how.startswith("SHA-256 prefix") and "loads with torch.load(weights_only=True)" in how


@pytest.mark.slow
def test_the_audit_never_runs_a_forged_weight_file_and_records_why(tmp_path):
    """End to end, in a fresh process as a user runs it: `weights import`, `weights verify`
    and an audit asking for MUSIQ, with the forged file placed where pyiqa looks."""
    root = tmp_path / "data"
    marker = tmp_path / "PAYLOAD-RAN"
    code = PAYLOAD + textwrap.dedent(
        f"""
        import json, pathlib, sys
        import numpy as np
        from PIL import Image
        from srforensics import weights as W
        from srforensics.cli import main
        from srforensics.images import sha256_file

        root = pathlib.Path({str(root)!r}); root.mkdir()
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "a.png")
        real = W._REGISTRY["pyiqa-musiq-koniq"]
        forged = pathlib.Path({str(tmp_path)!r}) / real.file_name
        plant(str(forged), {str(marker)!r})
        W._REGISTRY[real.name] = W.WeightSpec(real.name, real.file_name, real.url,
            sha256_file(forged)[:8], real.licence, real.source, verify="prefix",
            target=real.target, metrics=real.metrics)
        print("IMPORT", main(["weights", "import", str(forged)]))
        dest = W.cached_path(W.spec(real.name)); dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(forged.read_bytes())
        print("VERIFY", main(["weights", "verify"]))
        out = pathlib.Path({str(tmp_path)!r}) / "run"
        code = main(["audit", "--model", "bicubic", "--protocol", "bicubic-x4", "--dataset",
                     str(root), "--samples", "1", "--metrics", "psnr,musiq", "--out", str(out),
                     "--save-images", "none", "--breakdown-boot", "0"])
        print("AUDIT", code)
        print("MANIFEST", json.dumps(json.loads((out / "manifest.json").read_text())))
        """
    )
    lines = run_fresh_python(code, tmp_path)
    assert lines["IMPORT"] == "2" and lines["VERIFY"] == "1" and lines["AUDIT"] == "0"
    assert not marker.exists(), "the forged weight file's payload ran"
    manifest = json.loads(lines["MANIFEST"])
    real_name = W.spec("pyiqa-musiq-koniq").file_name
    assert manifest["trust_weights"] is False
    text = json.dumps(manifest)
    assert "musiq" in text and "weights_only=True" in text
    assert not any(real_name in f["path"] for f in manifest["weights"])
    assert any(
        "musiq" in m and "weights_only=True" in str(why) for m, why in _unavailable(manifest)
    )


def _unavailable(manifest: dict):
    """(metric, reason) pairs of the metrics the manifest says could not be computed."""
    return [(m["name"], m["unavailable"]) for m in manifest["metrics"] if m.get("unavailable")]


def _audit_folder(folder, out, protocol: str) -> None:
    """A one-output PSNR audit of ``folder`` into ``out``, which must finish."""
    from conftest import run_cli

    proc = run_cli(
        "audit", "--protocol", protocol, "--dataset", str(folder), "--metrics", "psnr",
        "--samples", "1", "--breakdown-boot", "0", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- run folders: never written where they should not be ---------------------------------
def test_out_must_be_a_new_or_empty_folder_outside_the_dataset(tiny_dataset, tmp_path):
    """A folder of the user's files, the dataset folder itself (or one inside it), a path
    below a file and an unwritable place are each refused with one line, exit 2; nothing is
    written there."""
    from conftest import run_cli

    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "case.txt").write_text("mine")
    below = tmp_path / "file.txt"
    below.write_text("x")
    cases = {
        str(theirs): "already holds files and no run",
        str(tiny_dataset): "already holds files and no run",  # the dataset folder itself
        str(tiny_dataset / "runs" / "r1"): "inside the dataset folder",
        str(below / "run"): "which is a file",
        "/proc/srforensics-cannot-write-here": "cannot write the run folder",
    }
    for out, said in cases.items():
        proc = run_cli(
            "audit", "--protocol", "bicubic-x4", "--dataset", str(tiny_dataset),
            "--metrics", "psnr", "--samples", "1", "--out", out,
        )  # fmt: skip
        assert proc.returncode == 2 and said in proc.stderr, (out, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr and proc.stderr.count("srforensics: error:") == 1
    assert sorted(p.name for p in theirs.iterdir()) == ["case.txt"]
    assert not (tiny_dataset / "runs").exists()


def test_a_negative_seed_is_one_clear_error(tmp_path):
    from conftest import run_cli

    proc = run_cli("audit", "--seed", "-1", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "--seed must be a whole number from 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_finished_run_is_never_rewritten_and_resume_refuses_changed_inputs(
    tiny_dataset, tmp_path
):
    """--resume of a finished run changes nothing (its printed manifest hash stays valid);
    a stopped run whose protocol file changed since is refused before anything is written."""
    import json
    import shutil

    from conftest import run_cli

    from srforensics.resources import resource_dir

    protocol = tmp_path / "proto.yaml"
    shutil.copy(resource_dir("protocols") / "bicubic-x4.yaml", protocol)
    out = tmp_path / "run"
    args = ["audit", "--protocol", str(protocol), "--dataset", str(tiny_dataset),
            "--metrics", "psnr", "--samples", "1", "--out", str(out)]  # fmt: skip
    assert run_cli(*args).returncode == 0
    before = (out / "manifest.json").read_bytes()
    proc = run_cli("audit", "--resume", str(out))
    assert proc.returncode == 2 and "is a finished run" in proc.stderr
    assert (out / "manifest.json").read_bytes() == before

    manifest = json.loads(before)  # as if the run had stopped after its last commit
    (out / "manifest.json").write_text(json.dumps(dict(manifest, status="running")))
    protocol.write_text(protocol.read_text().replace("variants: 1", "variants: 2"))
    ledger_before = (out / "ledger.sqlite").read_bytes()
    proc = run_cli("audit", "--resume", str(out))
    assert proc.returncode == 2 and "the protocol (its resolved form's SHA-256)" in proc.stderr
    assert (out / "ledger.sqlite").read_bytes() == ledger_before


def test_csv_exports_neutralise_spreadsheet_formulas(tmp_path):
    """A record id such as =HYPERLINK(...) reaches the CSV as text ('=...), never as a
    formula (OWASP, CSV injection); the Parquet export keeps it exactly."""
    import csv

    import pandas as pd
    from conftest import write_png
    from skimage import data

    folder = tmp_path / "data"
    hostile = '=HYPERLINK("http://example.invalid","x")'
    write_png(folder / "a.png", data.astronaut()[:64, :64])
    write_png(folder / "b.png", data.coffee()[:64, :64])
    (folder / "metadata.csv").write_text(
        f'path,id,subject\na.png,"{hostile.replace(chr(34), chr(34) * 2)}",@cmd\nb.png,b,-2+3\n'
    )
    out = tmp_path / "run"
    _audit_folder(folder, out, "bicubic-x4")
    for name in ("results", "per_input"):
        with open(out / f"{name}.csv", newline="") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        assert not any(c.startswith(("=", "+", "@")) for c in cells), name
        assert "'" + hostile in cells
    exact = pd.read_parquet(out / "results.parquet")
    assert hostile in set(exact.record_id) and "@cmd" in set(exact.subject)
    assert "'-2+3" in open(out / "results.csv").read() and exact.psnr.notna().all()


def test_every_file_of_a_dataset_folder_is_a_record_or_named_as_skipped(tmp_path):
    """An animated GIF is a record that fails with its reason (not silently skipped); a
    still GIF is audited; other files are named in the manifest and the report as skipped;
    a named pipe listed in metadata.csv fails its record at once instead of hanging."""
    import json
    import os

    import pandas as pd
    from conftest import run_cli, write_png
    from PIL import Image
    from skimage import data

    folder = tmp_path / "data"
    write_png(folder / "a.png", data.astronaut()[:64, :64])
    Image.fromarray(data.coffee()[:64, :64]).save(folder / "still.gif")
    frames = [Image.fromarray(data.chelsea()[:64, i : i + 64]) for i in (0, 8, 16)]
    frames[0].save(folder / "moving.gif", save_all=True, append_images=frames[1:])
    (folder / "notes.txt").write_text("case notes")
    out = tmp_path / "run"
    args = ["audit", "--protocol", "bicubic-x4", "--metrics", "psnr", "--samples", "1",
            "--breakdown-boot", "0"]  # fmt: skip
    proc = run_cli(*args, "--dataset", str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = pd.read_parquet(out / "results.parquet")
    status = res.groupby("record_id").status.first().to_dict()
    assert status == {"a.png": "ok", "still.gif": "ok", "moving.gif": "failed"}
    assert "animated image of 3 frames" in res[res.record_id == "moving.gif"].error.iloc[0]
    skipped = json.loads((out / "manifest.json").read_text())["dataset"]["skipped"]
    assert skipped == [{"path": "notes.txt", "reason": "not an image file (.txt)"}]
    assert "notes.txt" in (out / "report.html").read_text()

    listed = tmp_path / "listed"
    write_png(listed / "a.png", data.astronaut()[:64, :64])
    os.mkfifo(listed / "pipe.png")
    (listed / "metadata.csv").write_text("path\na.png\npipe.png\n")
    proc = run_cli(*args, "--dataset", str(listed), "--out", str(tmp_path / "r2"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = pd.read_parquet(tmp_path / "r2" / "results.parquet")
    assert "named pipe (FIFO)" in res[res.record_id == "pipe.png"].error.iloc[0]


def test_tiny_images_under_faces_fail_with_a_clear_reason(tmp_path):
    import numpy as np
    import pandas as pd
    from conftest import write_png
    from skimage import data

    folder = tmp_path / "data"
    write_png(folder / "one.png", np.zeros((1, 1, 3), np.uint8))
    write_png(folder / "three.png", np.full((3, 3, 3), 128, np.uint8))
    write_png(folder / "astronaut.png", data.astronaut())
    out = tmp_path / "run"
    _audit_folder(folder, out, "faces")
    res = pd.read_parquet(out / "results.parquet").drop_duplicates("record_id")
    errors = dict(zip(res.record_id, res.error, strict=True))
    assert "image 1x1 is smaller than the smallest face" in errors["one.png"]
    assert "image 3x3 is smaller than the smallest face" in errors["three.png"]
    assert "torch.cat" not in " ".join(str(e) for e in errors.values())
    assert res[res.record_id == "astronaut.png"].status.item() == "ok"


def test_a_model_that_ignores_its_seeds_finishes_and_is_called_unreproducible(tmp_path):
    """The run finishes (the worst-case images it cannot recompute are not shown), the report
    says the outputs are not reproducible from their seeds, and verify fails on them."""
    from conftest import run_cli

    out = tmp_path / "run"
    proc = run_cli(
        "audit", "--model", "srf_test_plugins:IgnoresSeeds", "--protocol", "faces",
        "--samples", "3", "--breakdown-boot", "0", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = " ".join((out / "report.html").read_text().split())
    assert "Not reproducible:" in html and "did not give back the outputs" in html
    proc = run_cli("verify", str(out))
    assert proc.returncode == 1 and "recomputed pixels hash to" in proc.stdout


def test_a_model_that_exits_or_cannot_be_built_gets_one_clear_error(tiny_dataset, tmp_path):
    """SystemExit inside the model stops the run with one error line (exit 2) and a manifest
    that says why (status stopped); a constructor that raises is one line, exit 2."""
    import json

    from conftest import run_cli

    out = tmp_path / "run"
    args = ["audit", "--protocol", "bicubic-x4", "--dataset", str(tiny_dataset),
            "--metrics", "psnr", "--samples", "1", "--breakdown-boot", "0"]  # fmt: skip
    proc = run_cli(*args, "--model", "srf_test_plugins:Exits", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "srforensics: error: the model called sys.exit(3)" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and "sys.exit(3)" in manifest["stopped_because"]
    proc = run_cli(*args, "--model", "srf_test_plugins:BrokenInit", "--out", str(tmp_path / "b"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "could not be created: RuntimeError: cannot find my weights" in proc.stderr
    assert not (tmp_path / "b").exists()


# -- kill -9 at random points, then resume ------------------------------------------------
KILL_TRIALS = [("in this process", ()), ("--loaders 1", ("--loaders", "1")),
               ("--workers 2", ("--workers", "2", "--shard-size", "2"))]  # fmt: skip


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize("label, extra", KILL_TRIALS, ids=[t[0] for t in KILL_TRIALS])
def test_kill_9_then_resume_is_identical_and_opens_no_socket(tiny_dataset, tmp_path, label, extra):
    """Two trials per way of running: an audit is killed (SIGKILL) after a seeded random
    number of committed outputs, resumed to the end, and its results compared with an
    uninterrupted run's, row for row; no process of it opens an internet connection."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import numpy as np
    import pandas as pd
    from conftest import cli_env, count_fault, run_cli

    log = tmp_path / "sockets.log"
    env = cli_env(SRF_SLEEP="0.1", SRF_SOCKET_LOG=str(log))
    args = ["audit", "--model", "srf_test_plugins:SlowNoisy", "--protocol", "bicubic-x4",
            "--dataset", str(tiny_dataset), "--samples", "2", "--variants", "3",
            "--batch-size", "1", "--metrics", "psnr,lr_psnr", "--breakdown-boot", "0", *extra]  # fmt: skip
    ref = tmp_path / "reference"
    assert run_cli(*args, "--out", str(ref), env=env).returncode == 0
    expected = pd.read_parquet(ref / "results.parquet")

    def committed(run_dir) -> int:
        try:
            with sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
        except sqlite3.Error:
            return 0

    rng = np.random.default_rng(abs(hash(label)) % 2**32)
    for trial in range(2):
        run_dir = tmp_path / f"killed-{trial}"
        target = int(rng.integers(1, len(expected)))
        child = subprocess.Popen([sys.executable, "-m", "srforensics", *args, "--out", str(run_dir)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 180
        while child.poll() is None and committed(run_dir) < target:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.2)))
        killed = child.poll() is None
        child.send_signal(signal.SIGKILL) if killed else None
        child.wait()
        resumed = run_cli("audit", "--resume", str(run_dir), env=env)
        same = resumed.returncode == 0 and pd.read_parquet(run_dir / "results.parquet").equals(
            expected
        )
        count_fault(f"kill -9 then resume ({label}): identical to an uninterrupted run", same)
        assert same, resumed.stderr[-2000:]
    no_socket = not log.exists()
    count_fault("audits that opened no internet connection", no_socket)
    assert no_socket, log.read_text()


# -- tampering and faulty models, counted ------------------------------------------------
@pytest.mark.faults
def test_every_tamper_class_is_caught_by_verify(tiny_dataset, tmp_path):
    """One-byte edits to an output PNG, results.parquet, a ledger score, manifest.json,
    config.json, report.html and seal.json: verify names each one."""
    import shutil
    import sqlite3

    from conftest import audit_tiny, count_fault, run_cli

    run = tmp_path / "run"
    assert audit_tiny(tiny_dataset, run).returncode == 0

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))

    def score(path):
        with sqlite3.connect(path / "ledger.sqlite") as db:
            db.execute("UPDATE scores SET value = value + 1e-3 WHERE rowid = 1")

    edits = {
        "output PNG": lambda d: flip(sorted((d / "images").rglob("*_s1.png"))[0]),
        "results.parquet": lambda d: flip(d / "results.parquet"),
        "a score in ledger.sqlite": score,
        "manifest.json": lambda d: (d / "manifest.json").write_text(
            (d / "manifest.json").read_text().replace('"finished"', '"finishee"', 1)
        ),
        "config.json": lambda d: flip(d / "config.json"),
        "report.html": lambda d: flip(d / "report.html"),
        "seal.json": lambda d: (d / "seal.json").write_text(
            (d / "seal.json").read_text().replace('"files"', '"filez"', 1)
        ),
    }
    missed = []
    for what, edit in edits.items():
        copy = tmp_path / what.replace(" ", "_").replace(".", "_")
        shutil.copytree(run, copy)
        edit(copy)
        proc = run_cli("verify", str(copy))
        caught = proc.returncode != 0 and ("FAIL" in proc.stdout or "error" in proc.stderr)
        count_fault("tampered files caught by verify", caught)
        if not caught:
            missed.append(what)
    assert not missed, missed


@pytest.mark.faults
def test_faulty_models_fail_their_records_and_the_run_goes_on(tiny_dataset, tmp_path):
    """A model that raises, returns NaN, the wrong shape, values out of range or too few
    samples for one record: that record's outputs fail with the reason, the others finish."""
    import pandas as pd
    from conftest import audit_in_process, count_fault

    faults = {
        "raise_on": "model failed: RuntimeError",
        "nan_on": "NaN or Inf",
        "shape_on": "model returned shape",
        "overshoot_on": "outside [0, 1]",
        "few_on": "model returned shape",
    }
    for arg, said in faults.items():
        _, res = audit_in_process(
            tiny_dataset, tmp_path / arg, model="srf_test_plugins:Faulty",
            model_args={arg: "coffee.png"}, samples=2, batch_size=1,
        )  # fmt: skip
        bad = res[res.record_id == "coffee.png"]
        good = res[res.record_id.isin(["astronaut.png", "gray cam.png"])]
        held = (
            (bad.status == "failed").all()
            and bad.error.str.contains(said, regex=False).all()
            and (good.status == "ok").all()
            and isinstance(res, pd.DataFrame)
        )
        count_fault("faulty model outputs recorded per record, the run going on", held)
        assert held, (arg, bad[["status", "error"]].to_dict("records"))


def test_the_network_guard_of_the_suite_blocks_and_records(tmp_path):
    """The guard the kill trials rely on really refuses an internet connection."""
    import subprocess
    import sys

    from conftest import cli_env

    log = tmp_path / "sockets.log"
    code = "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(SRF_SOCKET_LOG=str(log)),
                         capture_output=True, text=True).stdout  # fmt: skip
    assert "blocked by the srforensics test suite" in out and "127.0.0.1" in log.read_text()


@pytest.mark.slow
def test_a_full_disk_is_one_error_and_the_run_resumes(tmp_path):
    """On a 2 MiB file system the audit stops with one error line (exit 2); with room again,
    --resume finishes it and verify passes. Needs a tmpfs mount (root)."""
    import subprocess

    from conftest import run_cli

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("mounting a small tmpfs needs root")
    try:
        out = disk / "run"
        proc = run_cli("audit", "--protocol", "bicubic-x4", "--samples", "4",
                       "--save-images", "all", "--out", str(out))  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "srforensics: error: No space left on device" in proc.stderr
        subprocess.run(["mount", "-o", "remount,size=256M", str(disk)], check=True)
        proc = run_cli("audit", "--resume", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert run_cli("verify", str(out)).returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
