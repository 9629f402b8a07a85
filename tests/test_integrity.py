"""Issue 9: chain of custody (manifest hashes, verify), run-folder lock, crash safety."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import audit_in_process, cli_env, run_cli

from srforensics.images import sha256_file


@pytest.fixture(scope="module")
def noisy_run(tiny_dataset, tmp_path_factory):
    """A finished stochastic run: 2 variants, 3 samples, 2 LRs per model call, images kept."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    run, _ = audit_in_process(
        tiny_dataset,
        out,
        model="srf_test_plugins:NoisyModel",
        samples=3,
        variants=2,
        batch_size=2,
        metrics=("psnr", "lr_psnr"),
        save_images="all",
    )
    return run


def _copy(run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run.run_dir, dst)
    return dst


def _verify(run_dir, *args):
    return run_cli("verify", str(run_dir), *args)


def test_manifest_names_every_file_weight_and_the_ledger_content(noisy_run):
    manifest = json.loads((noisy_run.run_dir / "manifest.json").read_text())
    saved = sorted(
        p.relative_to(noisy_run.run_dir).as_posix()
        for p in (noisy_run.run_dir / "images").rglob("*.png")
    )
    assert saved and set(saved) <= set(manifest["files"])
    assert {"config.json", "results.parquet", "results.csv", "per_input.parquet"} <= set(
        manifest["files"]
    )
    for rel, digest in manifest["files"].items():
        assert sha256_file(noisy_run.run_dir / rel) == digest
    assert all(i["sha256"] for i in manifest["inputs"] if i["record_id"] != "broken.png")
    assert {"records", "outputs", "scores", "lrs", "batches"} <= set(
        manifest["ledger_content_sha256"]
    )
    # The format `verify` checks earlier runs against: SHA-256 over each row of the table in
    # key order, as compact JSON (bytes as hex) and a newline; formed here with sqlite3 alone.
    import sqlite3

    conn = sqlite3.connect(noisy_run.run_dir / "ledger.sqlite")
    keys = {"outputs": "record_id, variant, sample", "scores": "record_id, variant, sample, metric"}
    for table, key in keys.items():
        h = hashlib.sha256()
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY {key}"):  # noqa: S608
            cells = [c.hex() if isinstance(c, bytes) else c for c in row]
            h.update(json.dumps(cells, separators=(",", ":")).encode() + b"\n")
        assert manifest["ledger_content_sha256"][table] == h.hexdigest()
    conn.close()
    assert manifest["weights"] == [] and manifest["trust_weights"] is False  # bicubic-based model
    # Each LR's parameters (kernels included) by hash: SHA-256 of their canonical JSON
    # (sorted keys, no spaces), formed here from the parsed parameters.
    from srforensics.ledger import LEDGER_NAME, Ledger

    with Ledger(noisy_run.run_dir / LEDGER_NAME) as ledger:
        lrs = ledger.lrs()
    assert len(lrs) == len(manifest["lrs"]) > 0
    for row, lr in zip(manifest["lrs"], lrs, strict=True):
        canonical = json.dumps(lr["params"], sort_keys=True, separators=(",", ":"))
        assert row == {
            "record_id": lr["record_id"],
            "variant": lr["variant"],
            "lr_sha256": lr["lr_sha256"],
            "params_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        }
    # The manifest's own hash, printed at the end of the run, is shown in the report.
    assert noisy_run.manifest_sha256 == sha256_file(noisy_run.run_dir / "manifest.json")
    assert noisy_run.manifest_sha256 in (noisy_run.run_dir / "report.html").read_text()


def test_verify_passes_on_a_fresh_run(noisy_run):
    proc = _verify(noisy_run.run_dir, "--full", "--expect-manifest", noisy_run.manifest_sha256)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified: everything matches" in proc.stdout
    batches = int(proc.stdout.split("recomputed: ")[1].split(" of ")[0])
    assert (
        batches >= 3
        and f"recomputed: {batches} of {batches} model batch(es), 18 output(s)" in proc.stdout
    )
    # Without --full, a seeded sample: the same one every time.
    first, again = (
        _verify(noisy_run.run_dir, "--fraction", "0.2"),
        _verify(noisy_run.run_dir, "--fraction", "0.2"),
    )
    assert first.returncode == 0 and first.stdout == again.stdout
    assert "recomputed: 1 of" in first.stdout


def test_verify_fails_naming_an_output_altered_by_one_byte(noisy_run, tmp_path):
    run_dir = _copy(noisy_run, tmp_path)
    target = sorted((run_dir / "images").rglob("*_s1.png"))[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    proc = _verify(run_dir)
    assert proc.returncode == 1
    rel = target.relative_to(run_dir).as_posix()
    assert f"FAIL altered: {rel}" in proc.stdout


def test_verify_fails_when_a_ledger_value_is_edited(noisy_run, tmp_path):
    run_dir = _copy(noisy_run, tmp_path)
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        db.execute("UPDATE scores SET value = value + 0.01 WHERE metric = 'psnr' AND sample = 0")
    proc = _verify(run_dir)
    assert proc.returncode == 1
    assert "ledger.sqlite table 'scores' differs" in proc.stdout


def test_verify_recomputes_and_catches_an_output_that_does_not_come_back(noisy_run, tmp_path):
    run_dir = _copy(noisy_run, tmp_path)
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:  # a seed that does not make this output
        db.execute(
            "UPDATE outputs SET seed = seed + 1 WHERE record_id = 'coffee.png' AND variant = 1 AND sample = 2"
        )
    proc = _verify(run_dir, "--full")
    assert proc.returncode == 1
    assert "table 'outputs' differs" in proc.stdout
    assert (
        "recompute: coffee.png variant 1" in proc.stdout
        and "output 2: recomputed pixels hash to" in proc.stdout
    )


def test_verify_names_a_changed_input_an_unexpected_file_and_a_wrong_manifest_hash(
    noisy_run, tmp_path, tiny_dataset
):
    run_dir = _copy(noisy_run, tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    moved = tmp_path / "inputs"
    shutil.copytree(tiny_dataset, moved)
    for item in manifest["inputs"]:
        item["path"] = item["path"].replace(str(tiny_dataset), str(moved))
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with open(moved / "coffee.png", "ab") as fh:
        fh.write(b"\0")
    (run_dir / "images" / "planted.png").write_bytes(b"x")
    proc = _verify(run_dir, "--expect-manifest", noisy_run.manifest_sha256)
    assert proc.returncode == 1
    assert "FAIL altered: input coffee.png" in proc.stdout
    assert "FAIL unexpected: images/planted.png" in proc.stdout
    assert f"expected {noisy_run.manifest_sha256}" in proc.stdout


def test_verify_refuses_what_is_not_a_finished_run(tmp_path):
    proc = _verify(tmp_path)
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr


def test_a_second_process_on_the_same_run_folder_is_refused(noisy_run, tmp_path):
    from srforensics.ledger import Ledger
    from srforensics.run.pipeline import run_lock

    run_dir = _copy(noisy_run, tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())  # as a stopped run's
    (run_dir / "manifest.json").write_text(json.dumps(dict(manifest, status="running")))
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        before = ledger.content_digests()
    with run_lock(run_dir):  # this test process holds the run, as a running audit would
        proc = run_cli("audit", "--resume", str(run_dir))
    assert proc.returncode == 2
    assert "is in use by srforensics pid" in proc.stderr and "wait for it to finish" in proc.stderr
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.content_digests() == before
    # Released with its process: the folder can be resumed now.
    assert run_cli("audit", "--resume", str(run_dir)).returncode == 0


def _results(run_dir):
    return pd.read_parquet(run_dir / "results.parquet")


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_results(
    tiny_dataset, tmp_path
):
    """A real audit process is killed (SIGKILL) at seeded random moments, resumed each time,
    and finally finished: its results equal an uninterrupted run's, row for row."""
    args = [
        "audit", "--model", "srf_test_plugins:SlowNoisy", "--protocol", "bicubic-x4",
        "--dataset", str(tiny_dataset), "--samples", "3", "--variants", "4", "--batch-size", "2",
        "--metrics", "psnr,lr_psnr", "--save-images", "all", "--breakdown-boot", "0",
    ]  # fmt: skip
    env = cli_env(SRF_SLEEP="0.15")
    ref_dir = tmp_path / "reference"
    proc = run_cli(*args, "--out", str(ref_dir), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    total = len(_results(ref_dir))

    def committed(run_dir) -> int:
        """Outputs in the ledger, read while the audit writes (WAL allows a reader)."""
        if not (run_dir / "ledger.sqlite").is_file():
            return 0
        try:
            with sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
        except sqlite3.Error:
            return 0

    def working(run_dir, since_ns: int) -> bool:
        """Past start-up: the process has written its "running" manifest."""
        m = run_dir / "manifest.json"
        return m.is_file() and m.stat().st_mtime_ns > since_ns

    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(20261122)
    # Kill points: after a random number of committed outputs (mid-run, between or during
    # model calls), then once more after the last output (exports, galleries, manifest, report);
    # each with a random extra delay.
    targets = [*sorted(int(t) for t in rng.choice(range(1, total), 3, replace=False)), total]
    kills = 0
    for attempt, target in enumerate(targets):
        cmd = (
            [*args, "--out", str(run_dir)] if attempt == 0 else ["audit", "--resume", str(run_dir)]
        )
        since_ns = time.time_ns()
        child = subprocess.Popen([sys.executable, "-m", "srforensics", *cmd], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while (
            not working(run_dir, since_ns) or committed(run_dir) < target
        ) and child.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
    assert kills >= 3  # the run was really interrupted, mid-run and while finishing
    proc = run_cli("audit", "--resume", str(run_dir), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]

    ref, got = _results(ref_dir), _results(run_dir)
    assert not got.duplicated(["record_id", "variant", "sample"]).any()
    pd.testing.assert_frame_equal(got, ref)
    assert _verify(run_dir, "--full").returncode == 0


@pytest.mark.parametrize("helpers", [("--workers", "2"), ("--loaders", "1")])
def test_helper_processes_end_when_the_audit_is_killed(tiny_dataset, tmp_path, helpers):
    """Worker and loader processes end with a ``kill -9`` of the audit that started them: none
    is left waiting on its queue, holding the audit's output pipes (a caller reading them
    would hang)."""
    run_dir = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-m", "srforensics", "audit", "--model", "srf_test_plugins:SlowNoisy",
         "--protocol", "bicubic-x4", "--dataset", str(tiny_dataset), "--samples", "2",
         "--variants", "4", "--batch-size", "1", "--shard-size", "1", "--metrics", "psnr",
         "--save-images", "none", "--breakdown-boot", "0", *helpers, "--out", str(run_dir)],
        env=cli_env(SRF_SLEEP="0.3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    ledger = run_dir / "ledger.sqlite"
    while child.poll() is None:  # until outputs are committed: the helpers are working
        assert time.monotonic() < deadline
        if ledger.is_file():
            with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
                created = db.execute(  # the audit may not have created its tables yet
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outputs'"
                ).fetchone()
                if created and db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]:
                    break
        time.sleep(0.05)
    assert child.poll() is None, "the audit finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    # The pipes reach end-of-file only when every process holding them has ended.
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL


def test_a_ledger_is_created_with_all_its_tables_or_none(tmp_path):
    """The schema is one transaction, so a reader of a ledger being created (a test, a status
    check) never sees some tables and not others. Forced here by an index that takes the name
    of a later table: the statements before it are rolled back with it."""
    from srforensics.errors import SRForensicsError
    from srforensics.ledger import Ledger

    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE other (x)")
        db.execute("CREATE INDEX outputs ON other (x)")  # "outputs" is a table of the schema
    with pytest.raises(SRForensicsError, match="not a readable run ledger"):
        Ledger(path)
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert names == {"other", "outputs"}  # not "meta", "records", ... created before the clash


def test_package_versions_are_importlib_metadatas():
    """The manifest's versions read from the metadata's header: the same as
    ``importlib.metadata.version``, for every tracked distribution (and None for a missing one)."""
    from importlib import metadata

    from srforensics.provenance import TRACKED_PACKAGES, package_versions

    names = (*TRACKED_PACKAGES, "pytest", "no-such-distribution-srf")
    expected = {n: metadata.version(n) for n in names[:-1]}
    assert package_versions(names) == {**expected, "no-such-distribution-srf": None}


def test_the_report_is_sealed_and_verify_catches_any_edit_to_it(noisy_run, tmp_path):
    """seal.json binds report.html to the manifest; verify checks the seal and re-renders the
    report from the ledger and manifest, so a one-byte edit is named twice, an edited or
    missing seal is named, and `srforensics report` re-renders and re-seals."""
    seal = json.loads((noisy_run.run_dir / "seal.json").read_text())
    assert seal["manifest_sha256"] == noisy_run.manifest_sha256
    assert seal["files"]["report.html"] == noisy_run.report_sha256

    run_dir = _copy(noisy_run, tmp_path)
    report = run_dir / "report.html"
    html = report.read_bytes()
    report.write_bytes(html.replace(b"Summary", b"Summarx", 1))  # one byte
    proc = _verify(run_dir)
    assert proc.returncode == 1
    assert "FAIL altered: report.html hashes to" in proc.stdout
    assert "FAIL altered: report.html differs from the report re-rendered" in proc.stdout

    report.write_bytes(html)  # the report back, the seal edited
    sealed = json.loads((run_dir / "seal.json").read_text())
    (run_dir / "seal.json").write_text(json.dumps(dict(sealed, manifest_sha256="0" * 64)))
    proc = _verify(run_dir)
    assert proc.returncode == 1 and "FAIL altered: seal.json seals manifest 000" in proc.stdout

    (run_dir / "seal.json").unlink()
    proc = _verify(run_dir)
    assert proc.returncode == 1 and "FAIL missing: seal.json" in proc.stdout
    proc = run_cli("report", str(run_dir))
    assert proc.returncode == 0 and "report SHA-256:" in proc.stdout
    assert _verify(run_dir).returncode == 0  # re-rendered from the ledger: the same bytes

    (run_dir / "gates.json").write_text("{}")  # a file written after the seal
    proc = _verify(run_dir)
    assert "FAIL unsealed: gates.json is in the run folder but not in seal.json" in proc.stdout


def test_verify_full_recomputes_scores_and_reports_a_deleted_ledger_row(noisy_run, tmp_path):
    """A score forged in the ledger, with the manifest's digests and the seal made to match,
    passes every hash, but `verify --full` scores the recomputed outputs again and names it;
    a deleted output row is reported, not a crash."""
    import sqlite3

    from srforensics.ledger import Ledger
    from srforensics.provenance import read_manifest, write_manifest
    from srforensics.run.seal import write_seal

    run_dir = _copy(noisy_run, tmp_path)
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        rid, variant, sample, value = db.execute(
            "SELECT record_id, variant, sample, value FROM scores WHERE metric = 'psnr' LIMIT 1"
        ).fetchone()
        db.execute(
            "UPDATE scores SET value = ? WHERE record_id = ? AND variant = ? AND sample = ? "
            "AND metric = 'psnr'",
            (value + 3.0, rid, variant, sample),
        )
    manifest = read_manifest(run_dir)
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        manifest["ledger_content_sha256"] = ledger.content_digests()
    write_manifest(run_dir, manifest)
    write_seal(run_dir)  # the report is re-rendered from the forged ledger below
    assert run_cli("report", str(run_dir)).returncode == 0
    full = _verify(run_dir, "--full")
    assert full.returncode == 1, full.stdout
    assert f"output {sample}: psnr recomputes to" in full.stdout and "FAIL rescore:" in full.stdout
    assert full.stdout.count("FAIL") == 1  # every hash matches: only the score is caught

    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        db.execute("DELETE FROM outputs WHERE rowid = (SELECT MIN(rowid) FROM outputs)")
    proc = _verify(run_dir, "--full")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "table 'outputs' differs" in proc.stdout and "a row was deleted" in proc.stdout
