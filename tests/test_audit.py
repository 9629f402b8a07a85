"""End-to-end audits through the real CLI, on generated datasets."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_METRICS, audit_in_process, audit_tiny, cli_env, run_cli

from srforensics import weights as W
from srforensics.degradations.protocol import load_protocol
from srforensics.images import sha256_file

METRICS = TINY_METRICS.split(",")
#: What must be identical between two runs of the same audit: ids, seeds, hashes and scores.
IDENTITY_COLUMNS = [
    "record_id",
    "variant",
    "sample",
    "status",
    "seed",
    "lr_sha256",
    "output_sha256",
    *METRICS,
]


def test_run_folder_contents(tiny_run, tiny_dataset):
    out, proc = tiny_run
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(out / "report.html") and Path(lines[-1]).is_file()
    timing = next(line for line in lines if line.startswith("time: "))
    assert re.fullmatch(
        r"time: [\d.]+ s: loading [\d.]+ s, model [\d.]+ s, metrics [\d.]+ s, identity [\d.]+ s, "
        r"breakdowns [\d.]+ s, protocol in "
        r"this process [\d.]+ s, srforensics [\d.]+ s \(\d+%\)",
        timing,
    ), timing
    assert "100%" in proc.stderr  # the progress bar ran to the end
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute(
            "SELECT record_id, status, error FROM outputs ORDER BY record_id, sample"
        ).fetchall()
    assert len(rows) == 4 * 1 * 2  # records x variants x samples
    failed = [r for r in rows if r[1] == "failed"]
    assert {r[0] for r in failed} == {"broken.png"}
    assert all("not a readable image" in r[2] or "corrupt" in r[2] for r in failed)
    assert sum(r[1] == "ok" for r in rows) == 6

    pq = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    assert len(pq) == len(csv) == 8
    expected_head = [
        "record_id",
        "subject",
        "group",
        "lighting",
        "variant",
        "sample",
        "status",
        "error",
        *METRICS[: METRICS.index("lr_psnr") + 1],
        "inconsistent",  # the LR-PSNR < 45 dB flag follows the LR-PSNR column
        *METRICS[METRICS.index("lr_psnr") + 1 :],
    ]
    assert list(pq.columns[: len(expected_head)]) == expected_head
    assert {"hr_path", "lr_path", "output_path", "lr_sha256", "output_sha256", "seed"} <= set(
        pq.columns
    )
    ok = pq[pq.status == "ok"]
    assert ok[METRICS].notna().all().all()
    for rel in pd.concat([ok.hr_path, ok.lr_path, ok.output_path]):
        assert (out / rel).is_file()

    manifest = json.loads((out / "manifest.json").read_text())
    for key in (
        "run_id",
        "config",
        "protocol",
        "inputs",
        "packages",
        "seeds",
        "started_at",
        "finished_at",
        "git",
        "model",
    ):
        assert key in manifest
    proto = load_protocol("bicubic-x4")
    assert (
        manifest["protocol"]["sha256"] == proto.sha256
        and manifest["protocol"]["text"] == proto.text
    )
    hashes = {i["record_id"]: i["sha256"] for i in manifest["inputs"]}
    assert hashes["coffee.png"] == sha256_file(tiny_dataset / "coffee.png")
    assert manifest["packages"]["torch"] and manifest["packages"]["pyiqa"]
    assert manifest["config"]["study"]["samples"] == 2
    assert manifest["face_detection"] is None  # bicubic-x4 looks for no face
    assert manifest["config"]["study"]["metrics"] == METRICS


def test_psnr_ssim_equal_scikit_image_on_the_saved_pngs(tiny_run):
    # Reference: scikit-image on the PNG files the run saved, Y of rgb2ycbcr, crop 4 (= scale).
    from skimage.color import rgb2ycbcr
    from skimage.io import imread
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out, _ = tiny_run
    ok = pd.read_parquet(out / "results.parquet").query("status == 'ok'")
    for _, row in ok.iterrows():
        hr = rgb2ycbcr(imread(out / row.hr_path) / 255.0)[4:-4, 4:-4, 0]
        sr = rgb2ycbcr(imread(out / row.output_path) / 255.0)[4:-4, 4:-4, 0]
        assert row.psnr == pytest.approx(peak_signal_noise_ratio(hr, sr, data_range=255), abs=1e-6)
        ssim = structural_similarity(
            hr, sr, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert row.ssim == pytest.approx(ssim, abs=1e-6)


def test_same_audit_twice_gives_identical_results(tiny_run, tiny_dataset, tmp_path):
    first, _ = tiny_run
    proc = audit_tiny(tiny_dataset, tmp_path / "again")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = pd.read_parquet(first / "results.parquet")
    b = pd.read_parquet(tmp_path / "again" / "results.parquet")
    pd.testing.assert_frame_equal(a[IDENTITY_COLUMNS], b[IDENTITY_COLUMNS])
    assert (
        a.lr_sha256.dropna().tolist() == b.lr_sha256.dropna().tolist() and a.lr_sha256.notna().any()
    )


def test_resume_after_a_hard_stop_computes_only_what_is_missing(tiny_run, tiny_dataset, tmp_path):
    log = tmp_path / "calls.log"
    out = tmp_path / "stopped"
    model = "srf_test_plugins:CountingBicubic"
    env = cli_env(SRF_CALL_LOG=str(log), SRF_DIE_AFTER="2")
    # With a loader process: it dies with the audit, and the resumed run (the recorded
    # configuration) starts another.
    proc = audit_tiny(
        tiny_dataset, out, "--batch-size", "1", "--loaders", "1", model=model, env=env
    )
    assert proc.returncode == 9  # died inside the third model call
    with sqlite3.connect(out / "ledger.sqlite") as db:
        done = db.execute("SELECT COUNT(*) FROM outputs WHERE status = 'ok'").fetchone()[0]
    assert done == 4  # two LRs x two samples were committed before the stop
    assert not (out / "report.html").exists()

    proc = run_cli("audit", "--resume", str(out), env=cli_env(SRF_CALL_LOG=str(log)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = log.read_text().splitlines()
    assert len(calls) == 4  # 3 before the stop (the last one died) + 1 to finish
    assert calls[3].split()[0] == calls[2].split()[0]  # the resumed call is the one that died

    resumed = pd.read_parquet(out / "results.parquet")
    full = pd.read_parquet(tiny_run[0] / "results.parquet")
    pd.testing.assert_frame_equal(resumed[IDENTITY_COLUMNS], full[IDENTITY_COLUMNS])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [h["resumed"] for h in manifest["history"]] == [False, True]


def test_existing_run_folder_is_not_overwritten(tiny_run, tiny_dataset):
    out, _ = tiny_run
    proc = audit_tiny(tiny_dataset, out)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_failing_and_nan_models_are_recorded_and_the_run_goes_on(tiny_dataset, tmp_path):
    from srforensics.run.pipeline import AuditConfig, run_audit

    base = dict(
        protocol="bicubic-x4",
        dataset=str(tiny_dataset),
        metrics=("psnr",),
        samples=3,
        save_images="none",
    )
    run = run_audit(
        AuditConfig.from_options(
            model="srf_test_plugins:Crashing", out=str(tmp_path / "crash"), **base
        )
    )
    res = pd.read_parquet(run.run_dir / "results.parquet")
    good = res[res.record_id != "broken.png"]
    assert (good.status == "failed").all()
    assert good.error.str.contains("model failed: RuntimeError: weights exploded").all()
    assert run.report.is_file()

    run = run_audit(
        AuditConfig.from_options(
            model="srf_test_plugins:NoisyModel",
            model_args={"nan_every": 2},
            out=str(tmp_path / "nan"),
            **base,
        )
    )
    res = pd.read_parquet(run.run_dir / "results.parquet")
    nan_rows = res[res.error.fillna("").str.contains("NaN")]
    assert len(nan_rows) and (nan_rows.seed % 2 == 0).all() and (nan_rows.status == "failed").all()
    ok = res[res.status == "ok"]
    assert len(ok) and ok.psnr.notna().all()
    # A stochastic model: different seeds, different outputs.
    assert ok.groupby("record_id").output_sha256.nunique().max() > 1


def test_unavailable_metric_is_recorded_not_dropped(tiny_dataset, tmp_path):
    run, res = audit_in_process(tiny_dataset, tmp_path / "r", metrics=("psnr", "pyiqa:pieapp"))
    assert "pyiqa:pieapp" in res.columns and res["pyiqa:pieapp"].isna().all()
    with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
        query = "SELECT unavailable FROM metrics WHERE name = 'pyiqa:pieapp'"
        reason = db.execute(query).fetchone()[0]
    assert "weight file" in reason
    html = run.report.read_text()
    assert "pyiqa:pieapp" in html and "unavailable" in html


def test_a_value_that_cannot_be_computed_is_recorded_with_its_reason(tiny_dataset, tmp_path):
    # pyiqa's MS-SSIM needs at least 161 px; the tiny dataset's HRs are 64 px.
    run, _ = audit_in_process(tiny_dataset, tmp_path / "r", metrics=("psnr", "ms_ssim"))
    res = pd.read_parquet(run.run_dir / "results.parquet").query("status == 'ok'")
    assert res.ms_ssim.isna().all() and res.psnr.notna().all()
    with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
        notes = db.execute("SELECT DISTINCT note FROM scores WHERE metric = 'ms_ssim'").fetchall()
    assert len(notes) == 1 and notes[0][0].startswith("ms_ssim could not be computed: RuntimeError")
    assert "ms_ssim could not be computed" in run.report.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", "bicubc"), "did you mean 'bicubic'"),
        (("--protocol", "nope"), "unknown protocol 'nope'"),
        (("--dataset", "/no/such/folder"), "unknown dataset '/no/such/folder'"),
        (("--metrics", "psnr,ssimm"), "did you mean 'ssim'"),
        (("--samples", "0"), "--samples must be at least 1"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message, tmp_path):
    proc = run_cli("audit", "--out", str(tmp_path / "x"), *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("srforensics: error:") and message in err[0]


def test_bad_protocol_file_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscale: 4\nsteps:\n  - op: downscale\n    scale: [4\n")
    proc = run_cli("audit", "--protocol", str(bad), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "invalid YAML" in proc.stderr and str(bad) in proc.stderr


@pytest.mark.slow
def test_quick_start_faces_on_the_sample_dataset(tmp_path):
    """The README's quick start, word for word, in an empty working folder."""
    proc = run_cli("audit", "--model", "bicubic", "--protocol", "faces", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = Path(proc.stdout.strip().splitlines()[-1])
    assert report.is_file() and report.name == "report.html"
    run_dir = report.parent
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.endswith("-bicubic-faces")
    res = pd.read_parquet(run_dir / "results.parquet")
    # 5 records x 2 variants x 4 samples; astronaut and camera have faces.
    assert len(res) == 40
    assert set(res[res.status == "ok"].record_id) == {"astronaut", "camera"}
    assert set(res[res.status == "no_face"].record_id) == {"chelsea", "coffee", "rocket"}
    ok = res[res.status == "ok"]
    assert ok.psnr.between(15, 40).all() and ok.fsim.notna().all()
    # NIQE and BRISQUE with the parameters that ship with the package (no download).
    assert ok.niqe.between(0, 100).all() and ok.brisque.between(-10, 150).all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # How the faces were found, and each HR's search beside its alignment.
    assert manifest["face_detection"]["coarse_share"] == pytest.approx(1 / 12)
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        rows = db.execute("SELECT hr_params FROM records WHERE status = 'ok'").fetchall()
    searches = [s["search"] for (p,) in rows for s in json.loads(p) if "search" in s]
    assert searches and all(set(s) == {"from_face", "full"} for s in searches)
    shipped = {Path(w["path"]).name: w["sha256"] for w in manifest["weights"]}
    assert shipped["niqe_pris_params.npz"] == W.spec("niqe-pristine").sha256
    assert shipped["brisque_live_allmodel"] == W.spec("brisque-live").sha256
    # The model is deterministic: its 4 outputs per LR are one image.
    assert (ok.groupby(["record_id", "variant"]).output_sha256.nunique() == 1).all()
    html = report.read_text()
    assert "deterministic" in html and "PolyForm-Noncommercial-1.0.0" in html
    assert "brisque_live_allmodel</th><td>LIVE/UT Austin release notice" in html


def test_metric_groups_join_lrs_of_one_shape_on_a_gpu_only():
    from srforensics.run.scoring import GPU_METRIC_PIXELS, metric_groups

    shape = (1, 3, 512, 512)  # 2**18 pixels per output
    per_lr = GPU_METRIC_PIXELS // (8 * 512 * 512)  # LRs of 8 outputs that fit in one call
    counts = [8] * (per_lr + 1)
    assert metric_groups(counts, [shape] * len(counts), "cpu") == [[i] for i in range(len(counts))]
    assert metric_groups(counts, [shape] * len(counts), "cuda") == [
        list(range(per_lr)),
        [per_lr],
    ]
    # No outputs to score: in no group. Another HR shape: a new group. Too large: alone.
    other, huge = (1, 3, 256, 256), (1, 3, 8192, 8192)
    assert metric_groups([2, 0, 2, 2, 1, 1], [shape, shape, shape, other, huge, shape], "cuda") == [
        [0, 2],
        [3],
        [4],
        [5],
    ]


def test_lrs_scored_together_score_as_each_alone(tiny_dataset, tmp_path, monkeypatch):
    """What a GPU run does (several LRs' outputs in one metric call), forced on the CPU: the
    same scores and notes as each LR scored alone, and a metric's failure on one LR is
    narrowed down to that LR (its reference is the only one the plug-in metric refuses)."""
    import numpy as np
    import srf_test_plugins

    import srforensics.run.scoring as scoring

    metrics = (
        *TINY_METRICS.split(","),
        "lr_psnr_hr",
        "gmsd",
        "vif",
        "srf_test_plugins:BrightRefFails",
    )
    calls = srf_test_plugins.BrightRefFails.calls
    runs = {}
    real = scoring.metric_groups
    for mode in ("alone", "together"):
        if mode == "together":
            monkeypatch.setattr(scoring, "metric_groups", lambda c, s, d: real(c, s, "cuda"))
        calls.clear()
        run, res = audit_in_process(
            tiny_dataset,
            tmp_path / mode,
            metrics=metrics,
            samples=2,
            model="srf_test_plugins:NoisyModel",
        )
        with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
            notes = db.execute(
                "SELECT record_id, variant, sample, metric, note FROM scores ORDER BY 1, 2, 3, 4"
            ).fetchall()
        runs[mode] = (res, notes, list(calls))
    (alone, notes_alone, calls_alone), (together, notes_together, calls_together) = runs.values()
    # Three readable images, one LR each, one model batch; two distinct outputs per LR.
    assert calls_alone == [2, 2, 2]
    assert calls_together == [6, 2, 2, 2]  # the batch fails on the astronaut: each LR alone
    pd.testing.assert_frame_equal(alone, together, check_exact=True)
    assert notes_alone == notes_together
    col = together.set_index("record_id")["srf_test_plugins:BrightRefFails"]
    assert col["astronaut.png"].isna().all() and col.drop("astronaut.png").dropna().size == 4
    bad = {
        n for r, _, _, m, n in notes_together if m.startswith("srf_test") and r == "astronaut.png"
    }
    assert bad == {
        "srf_test_plugins:BrightRefFails could not be computed: ValueError: a reference is too bright"
    }
    assert np.isfinite(together.query("status == 'ok'").vif).all()


def test_the_model_and_metrics_load_with_the_runs_thread_count(tiny_dataset, tmp_path):
    """Everything the run computes, loading included (a model's first calls, pyiqa's split
    checks), uses ``--threads``: loading with this process's count would compete with the
    helper processes starting meanwhile. The count is restored after the run."""
    import srf_test_plugins
    import torch

    from srforensics.runtime import torch_threads

    srf_test_plugins.ThreadsAtLoad.loads.clear()
    with torch_threads(2):
        audit_in_process(
            tiny_dataset, tmp_path / "r", model="srf_test_plugins:ThreadsAtLoad", threads=1
        )
        assert torch.get_num_threads() == 2
    assert srf_test_plugins.ThreadsAtLoad.loads == [1]


@pytest.mark.parametrize("loaders", [0, 1])
def test_each_output_is_made_with_the_seed_of_the_documented_scheme(
    loaders, tiny_dataset, tmp_path
):
    """The ledger's seed of every output is ``model_seed(run_seed, record, variant, sample)``
    (the manifest's scheme), whether its record was loaded here or by a loader process."""
    from srforensics.seeding import model_seed

    run, results = audit_in_process(
        tiny_dataset,
        tmp_path / "r",
        protocol="realistic-x4",  # two variants
        samples=3,
        loaders=loaders,
        batch_size=1,
    )
    run_seed = json.loads((run.run_dir / "manifest.json").read_text())["seeds"]["run_seed"]
    ok = results[results.status == "ok"]
    assert len(ok) == 3 * 2 * 3  # three readable images, two variants, three samples
    expected = [
        model_seed(run_seed, r.record_id, int(r.variant), int(r.sample)) for r in ok.itertuples()
    ]
    assert ok.seed.astype("int64").tolist() == expected
    assert len(set(expected)) == len(expected)


def test_the_collector_pauses_while_loading_and_spares_what_was_loaded_during_the_run(
    tiny_dataset, tmp_path
):
    """Loading (imports, the pipeline) runs without automatic collections; the run runs with
    them, the objects that existed when it started frozen (out of the collector's scans),
    and unfrozen after. A caller's own frozen heap is left frozen."""
    import gc

    import srf_test_plugins

    watcher = srf_test_plugins.CollectorWatcher
    watcher.seen.clear()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    audit_in_process(tiny_dataset, tmp_path / "r", model="srf_test_plugins:CollectorWatcher")
    (load, *calls) = watcher.seen
    assert load[:2] == ("load", False)  # loading: no automatic collection
    assert calls and all(on and frozen > 10_000 for _, on, frozen in calls)
    assert gc.isenabled() and gc.get_freeze_count() == 0  # as they were

    gc.freeze()
    try:
        kept = gc.get_freeze_count()
        audit_in_process(tiny_dataset, tmp_path / "r2", model="srf_test_plugins:CollectorWatcher")
        # The caller's freeze is not undone (unfrozen, the count would be 0; frozen
        # objects that are freed leave it, so it can shrink a little).
        assert gc.get_freeze_count() > kept // 2
    finally:
        gc.unfreeze()


def test_a_run_reports_where_its_time_went(tiny_dataset, tmp_path, monkeypatch):
    """``AuditRun.timing`` separates the model's and the metrics' seconds from the rest: a
    model that sleeps 0.1 s per call and a metric that sleeps 0.05 s per call are found where
    they belong, each within what the run took; a worker run, whose records other processes
    compute, has no timing."""
    monkeypatch.setenv("SRF_SLEEP", "0.1")
    run, res = audit_in_process(
        tiny_dataset,
        tmp_path / "r",
        model="srf_test_plugins:SlowNoisy",
        metrics=("psnr", "srf_test_plugins:Sleepy"),
        samples=2,
        batch_size=1,
        breakdown_boot=200,
    )
    t = run.timing
    calls = res[res.status == "ok"].groupby(["record_id", "variant"]).ngroups  # one per LR
    assert calls == 3
    assert 0.1 * calls <= t.model_s < 0.1 * calls + 0.5
    assert 0.05 * calls <= t.metrics_s < 0.05 * calls + 0.5
    assert t.identity_s == 0.0 and t.protocol_s > 0  # read and degraded here (no loaders)
    assert t.own_s > 0
    assert 0 < t.loading_s < t.wall_s
    assert t.breakdown_s > 0  # the breakdowns of the dataset's group and lighting
    assert t.wall_s == pytest.approx(
        t.loading_s
        + t.model_s
        + t.metrics_s
        + t.identity_s
        + t.breakdown_s
        + t.protocol_s
        + t.own_s
    )
    workers, _ = audit_in_process(tiny_dataset, tmp_path / "w", workers=1)
    assert workers.timing is None


def test_reference_features_are_computed_once_per_input(tiny_dataset, tmp_path, monkeypatch):
    """A full-reference metric's share of the work on the HR (``reference_features``) is done
    once per input, never per variant or sample, alone or with LRs scored together; its
    scores equal the same formula computed with the reference per output, and a failure while
    computing the features is that input's note, not the run's end."""
    import srf_test_plugins

    import srforensics.run.scoring as scoring

    counted, direct = "srf_test_plugins:CountedReference", "srf_test_plugins:BrightRefFails"
    real = scoring.metric_groups
    for mode in ("alone", "together"):
        if mode == "together":
            monkeypatch.setattr(scoring, "metric_groups", lambda c, s, d: real(c, s, "cuda"))
        srf_test_plugins.CountedReference.references.clear()
        run, res = audit_in_process(
            tiny_dataset,
            tmp_path / mode,
            metrics=("psnr", "ssim", direct, counted),
            samples=4,
            variants=3,
            batch_size=4,
            model="srf_test_plugins:NoisyModel",
        )
        refs = srf_test_plugins.CountedReference.references
        # 3 readable inputs x 3 variants x 4 distinct outputs: the features of each HR once.
        res = res[res.status == "ok"]
        assert len(res) == 36 and res.psnr.notna().all()
        assert len(refs) == 3 and len(set(refs)) == 3
        col = res.set_index("record_id")[counted]
        assert col["astronaut.png"].isna().all() and col.drop("astronaut.png").notna().all()
        pd.testing.assert_series_equal(res[counted], res[direct], check_names=False)
        with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
            notes = db.execute(
                "SELECT DISTINCT record_id, note FROM scores WHERE metric = ? AND note IS NOT NULL",
                (counted,),
            ).fetchall()
        assert notes == [
            (
                "astronaut.png",
                f"{counted} could not be computed: ValueError: a reference is too bright",
            )
        ]


def test_a_metric_that_returns_too_few_values_is_recorded_as_failed(tiny_dataset, tmp_path):
    run, res = audit_in_process(
        tiny_dataset,
        tmp_path / "r",
        metrics=("psnr", "srf_test_plugins:OneValue"),
        samples=2,
        model="srf_test_plugins:NoisyModel",
    )
    ok = res[res.status == "ok"]
    assert len(ok) == 6 and ok.psnr.notna().all() and ok["srf_test_plugins:OneValue"].isna().all()
    with sqlite3.connect(run.run_dir / "ledger.sqlite") as db:
        query = "SELECT DISTINCT note FROM scores WHERE metric = 'srf_test_plugins:OneValue'"
        notes = db.execute(query).fetchall()
    assert notes == [
        (
            "srf_test_plugins:OneValue could not be computed: ValueError: returned 1 values for 2 outputs",
        )
    ]
