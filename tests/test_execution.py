"""Issue 10: the same audit in this process, in worker processes and on Ray gives identical results."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import audit_in_process, run_cli

#: A batch-sensitive model (its outputs depend on the LRs beside them), several variants, small
#: batches and shards: identical results need identical batches, whatever runs them.
SETUP = dict(
    model="srf_test_plugins:BatchSensitive",
    samples=3,
    variants=3,
    batch_size=2,
    shard_size=2,
    metrics=("psnr", "lr_psnr"),
    save_images="all",
)


@pytest.fixture(scope="module")
def local_run(tiny_dataset, tmp_path_factory):
    return audit_in_process(tiny_dataset, tmp_path_factory.mktemp("exec") / "local", **SETUP)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == 4 * 3 * 3
    pd.testing.assert_frame_equal(a, b)


def test_worker_processes_give_the_results_of_one_process(local_run, tiny_dataset, tmp_path):
    run, results = audit_in_process(tiny_dataset, tmp_path / "pool", workers=2, **SETUP)
    _same(local_run[1], results)
    # Images written by the driver from what the workers sent: the same files.
    for rel in results.output_path.dropna():
        assert (run.run_dir / rel).read_bytes() == (local_run[0].run_dir / rel).read_bytes()
    from srforensics.ledger import LEDGER_NAME, Ledger

    # The LR parameters are stored as this process stores them.
    digests = []
    for r in (local_run[0], run):
        with Ledger(r.run_dir / LEDGER_NAME) as ledger:
            digests.append(ledger.lr_digests())
    assert digests[0] and digests[0] == digests[1]


def test_loader_processes_give_the_results_of_one_process(local_run, tiny_dataset, tmp_path):
    run, results = audit_in_process(tiny_dataset, tmp_path / "loaders", loaders=1, **SETUP)
    _same(local_run[1], results)
    for rel in results.output_path.dropna():
        assert (run.run_dir / rel).read_bytes() == (local_run[0].run_dir / rel).read_bytes()
    from srforensics.ledger import LEDGER_NAME, Ledger

    # The LR parameters the loader process encoded are stored as this process stores them.
    digests = []
    for r in (local_run[0], run):
        with Ledger(r.run_dir / LEDGER_NAME) as ledger:
            digests.append(ledger.lr_digests())
    assert digests[0] and digests[0] == digests[1]


def test_parameters_encoded_ahead_are_stored_as_they_are(tmp_path):
    """A loader process encodes an LR's parameters (``to_json``); the ledger stores that text
    unchanged, and stores anything else as ``to_json`` would have encoded it."""
    import numpy as np

    from srforensics.ledger import Ledger, StoredJSON, to_json

    params = [{"kernel": np.full((2, 2), 0.25), "sigma": np.float32(1.5)}, {"quality": 40}]
    assert to_json(params) == '[{"kernel":[[0.25,0.25],[0.25,0.25]],"sigma":1.5},{"quality":40}]'
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for variant, stored in enumerate((params, to_json(params), StoredJSON('{"as":"given"}'))):
            ledger.put_lr(
                record_id="r", variant=variant, params=stored, lr_sha256="0" * 64,
                lr_path=None, outputs=[],
            )  # fmt: skip
        texts = [t for (t,) in ledger.conn.execute("SELECT params FROM lrs ORDER BY variant")]
    assert texts == [to_json(params), to_json(params), '{"as":"given"}']
    assert all(type(t) is str for t in texts)


def _items(pipe):
    every = {v: list(range(pipe.config.study.samples)) for v in range(pipe.variants)}
    return [(0, i, rec, every) for i, rec in enumerate(pipe.records)]


def _assert_same_load(a, b) -> None:
    import numpy as np

    from srforensics.ledger import to_json

    assert (a.idx, a.rec, a.status, a.error, a.sha, a.hr_sha) == (
        b.idx, b.rec, b.status, b.error, b.sha, b.hr_sha
    )  # fmt: skip
    assert a.hr_params == b.hr_params
    assert (a.hr is None) == (b.hr is None)
    if a.hr is not None:
        assert np.array_equal(a.hr, b.hr)
    assert len(a.lrs) == len(b.lrs)
    for x, y in zip(a.lrs, b.lrs, strict=True):
        assert (x.variant, x.todo, x.error, x.lr_sha) == (y.variant, y.todo, y.error, y.lr_sha)
        assert x.params == y.params and np.array_equal(x.lr, y.lr)
        assert x.params_json == y.params_json
        if x.error is None:  # encoded where it was made, as the ledger would encode it
            assert x.params_json == to_json(x.params)


def test_a_loader_process_loads_exactly_what_this_process_would(tiny_dataset, tmp_path):
    """The faces protocol (MTCNN detection, alignment, blur, noise, JPEG) on two faces, a
    photograph without one and a corrupt file: every array and every reason is the same, and
    every record came from the loader process."""
    import shutil

    from workloads import make_faces

    from srforensics.run.executors import Loaders
    from srforensics.run.pipeline import AuditConfig, Pipeline
    from srforensics.runtime import torch_threads

    root = make_faces(tmp_path / "ds", 2)
    for name in ("coffee.png", "broken.png"):
        shutil.copy(tiny_dataset / name, root / name)
    config = AuditConfig.from_options(
        protocol="faces", dataset=str(root), samples=2, variants=2, identity="off"
    )
    pipe = Pipeline(config)
    with Loaders(config.to_dict(), processes=1, share=False) as loaders:
        assert loaders.wait_ready(pipe.protocol.sha256, timeout=300)
        got = list(loaders.iterate(_items(pipe), pipe))
        assert loaders.failure is None and loaders.ready and loaders.loaded_here == 0
    assert len(got) == 4
    statuses = set()
    # With the audit's torch thread count, as the audit loads (MTCNN's convolutions may round
    # differently with another count: on AVX-512 machines they do).
    with torch_threads(config.execution.threads):
        for (_, loaded), (_, idx, rec, pending) in zip(got, _items(pipe), strict=True):
            _assert_same_load(loaded, pipe.load(idx, rec, pending))
            statuses.add(loaded.status)
    assert statuses == {"ok", "no_face", "failed"}


#: Full-reference metrics whose reference features a loader computes (fidelity, pyiqa splits
#: without weight files), one it does not (a plug-in's, not marked), and a no-reference one.
FEATURE_METRICS = ("psnr", "ssim_rgb", "lr_psnr_hr", "fsim", "vif", "gmsd", "piqe")


def test_a_loader_process_computes_the_reference_features_this_process_would(tmp_path):
    """On the CPU a loader process computes the HR's reference features of each metric marked
    ``loader_features``: the same tensors, bit for bit, with the same strides and offset, as
    this process computes; the pipeline takes them (keyed to its own metrics) instead of
    computing them, and computes the others itself."""
    import torch
    from workloads import make_faces

    from srforensics.images import to_tensor
    from srforensics.run.executors import Loaders
    from srforensics.run.pipeline import AuditConfig, Pipeline
    from srforensics.runtime import torch_threads

    root = make_faces(tmp_path / "ds", 2)
    metrics = (*FEATURE_METRICS, "srf_test_plugins:CountedReference")
    config = AuditConfig.from_options(
        protocol="faces", dataset=str(root), samples=2, identity="off", metrics=metrics
    )
    pipe = Pipeline(config)
    assert set(pipe.parts.feature_keys) == set(FEATURE_METRICS) - {"piqe"}
    with Loaders(config.to_dict(), processes=1, share=False) as loaders:
        assert loaders.wait_ready(pipe.protocol.sha256, timeout=300)
        got = [loaded for _, loaded in loaders.iterate(_items(pipe), pipe)]
        assert loaders.loaded_here == 0
    with torch_threads(config.execution.threads):
        for loaded in got:
            assert loaded.status == "ok" and loaded.features_s > 0
            assert set(loaded.features) == set(pipe.parts.feature_keys)
            hr_t = to_tensor(loaded.hr)
            taken_before = pipe.features_taken
            taken = pipe.reference_features(hr_t, loaded.features)
            assert pipe.features_taken - taken_before == len(pipe.parts.feature_keys)
            here = pipe.reference_features(hr_t)
            assert set(taken) == set(here) == set(pipe.parts.feature_keys) | {metrics[-1]}
            for name, features in here.items():
                for a, b in zip(taken[name], features, strict=True):
                    assert (a.dtype, a.shape, a.stride(), a.storage_offset()) == (
                        b.dtype, b.shape, b.stride(), b.storage_offset()
                    )  # fmt: skip
                    assert torch.equal(a, b), name
            # Features under another metric's key are not taken: computed here.
            wrong = {n: ("0" * 64, f) for n, (_, f) in loaded.features.items()}
            taken_before = pipe.features_taken
            pipe.reference_features(hr_t, wrong)
            assert pipe.features_taken == taken_before


def test_an_audit_takes_its_loaders_reference_features_and_gives_the_same_results(
    tiny_dataset, tmp_path, monkeypatch
):
    """With loaders ready from the first record, the reference features of a metric marked
    ``loader_features`` are computed there (the features carry the process id; the first
    record, which the audit loads itself rather than wait for it, aside), the others here, a
    reference whose features fail is still that input's note, and the results are those of
    the audit without loaders, column for column."""
    import os

    import srf_test_plugins

    from srforensics.run.executors import loaders as execution

    where, counted = "srf_test_plugins:WhereFeatures", "srf_test_plugins:CountedReference"
    setup = dict(
        metrics=("psnr", "ssim_rgb", "fsim", where, counted),
        samples=2,
        variants=2,
        model="srf_test_plugins:NoisyModel",
    )
    srf_test_plugins.CountedReference.references.clear()
    srf_test_plugins.WhereFeatures.seen.clear()
    local, expected = audit_in_process(tiny_dataset, tmp_path / "local", **setup)
    assert set(srf_test_plugins.WhereFeatures.seen) == {os.getpid()}
    assert local.timing.loader_metrics_s == 0
    iterate = execution.Loaders.iterate

    def when_ready(self, items, pipe):  # the CLI's loaders are ready before its first record
        assert self.wait_ready(pipe.protocol.sha256, timeout=300)
        return iterate(self, items, pipe)

    monkeypatch.setattr(execution.Loaders, "iterate", when_ready)
    srf_test_plugins.CountedReference.references.clear()
    srf_test_plugins.WhereFeatures.seen.clear()
    run, results = audit_in_process(tiny_dataset, tmp_path / "loaders", loaders=1, **setup)
    seen = srf_test_plugins.WhereFeatures.seen
    loader = set(seen) - {os.getpid()}
    assert len(loader) == 1  # the loader's: the second and third readable records' outputs
    assert seen.count(loader.pop()) == 8 and seen.count(os.getpid()) == 4  # 2 variants x 2
    assert len(srf_test_plugins.CountedReference.references) == 3  # here: not marked
    assert run.timing.loader_metrics_s > 0
    assert "loader processes' reference features" in run.timing.describe()
    pd.testing.assert_frame_equal(results, expected)
    assert results.loc[results.record_id == "astronaut.png", counted].isna().all()


def test_helper_processes_import_what_building_the_metrics_imports():
    """The fork server imports each metric's module and the slow imports it names (pyiqa's)
    once, rather than each loader process on its start."""
    from srforensics.run.config import AuditConfig
    from srforensics.run.executors.processes import _metric_imports

    assert _metric_imports(AuditConfig.from_options(protocol="bicubic-x4", metrics=["psnr"])) == (
        "srforensics.metrics.fidelity",
    )
    got = _metric_imports(AuditConfig.from_options(protocol="faces"))  # the protocol's metrics
    assert got == ("srforensics.metrics.fidelity", "srforensics.metrics.quality", "pyiqa")
    assert (
        _metric_imports(AuditConfig.from_options(protocol="bicubic-x4", metrics=["no-such"])) == ()
    )


@pytest.mark.parametrize("processes, ahead, share", [(1, 3, True), (2, 2, True), (2, 4, False)])
def test_records_loaded_ahead_are_those_this_process_loads(tmp_path, processes, ahead, share):
    """Whatever loads each record (this process while the loaders start, or a loader, with
    sharing or without, one process or two), every record is loaded once, in order, with the
    arrays and reasons this process gives."""
    from workloads import make_photos

    from srforensics.run.executors import Loaders
    from srforensics.run.pipeline import AuditConfig, Pipeline

    root = make_photos(tmp_path / "ds", 10, size=64)
    config = AuditConfig.from_options(protocol="bicubic-x4", dataset=str(root), samples=1)
    pipe = Pipeline(config)
    with Loaders(config.to_dict(), processes=processes, ahead=ahead, share=share) as loaders:
        got = list(loaders.iterate(_items(pipe), pipe))
        assert loaders.failure is None
    assert [n for n, _ in got] == [0] * 10 and [r.idx for _, r in got] == list(range(10))
    for (_, loaded), (_, idx, rec, pending) in zip(got, _items(pipe), strict=True):
        _assert_same_load(loaded, pipe.load(idx, rec, pending))


def test_an_audit_with_two_loaders_and_full_batches_gives_the_results_of_one_process(
    tiny_dataset, tmp_path
):
    """Records loaded by two processes while this one runs batches of four LRs: the ledger's
    results are those of the audit that loads every record itself."""
    setup = dict(SETUP, batch_size=4)
    _, expected = audit_in_process(tiny_dataset, tmp_path / "here", **setup)
    _, results = audit_in_process(tiny_dataset, tmp_path / "loaders", loaders=2, **setup)
    _same(expected, results)


@pytest.mark.parametrize(
    "protocol, reason",
    [("bicubic-x2", "protocol file differs"), ("no-such-protocol", "BrokenProcessPool")],
)
def test_failed_loader_processes_leave_the_loading_here(tiny_dataset, protocol, reason, caplog):
    """Loaders whose protocol is not the run's, or that cannot start: the records are loaded
    here, with the same results, and the failure is logged once."""
    from dataclasses import replace

    from srforensics.run.executors import Loaders
    from srforensics.run.pipeline import AuditConfig, Pipeline

    config = AuditConfig.from_options(protocol="bicubic-x4", dataset=str(tiny_dataset), samples=1)
    pipe = Pipeline(config)
    with Loaders(
        replace(config, study=replace(config.study, protocol=protocol)).to_dict(), processes=1
    ) as loaders:
        with caplog.at_level("WARNING", logger="srforensics"):
            assert not loaders.wait_ready(pipe.protocol.sha256, timeout=300)
            got = list(loaders.iterate(_items(pipe), pipe))
        assert loaders.failure is not None and reason in loaders.failure
    assert loaders.loaded_here == 4
    assert sum("loader processes stopped" in r.message for r in caplog.records) == 1
    for (_, loaded), (_, idx, rec, pending) in zip(got, _items(pipe), strict=True):
        _assert_same_load(loaded, pipe.load(idx, rec, pending))


def test_helper_processes_take_the_environment_of_the_audit_that_starts_them(
    tiny_dataset, monkeypatch, tmp_path
):
    """Helpers are forked from a fork server that lives as long as this process; the weights
    cache and the like are read from the environment, so each helper takes the environment
    of the audit that starts it, not the server's."""
    import os

    from srforensics.run.executors import Workers
    from srforensics.run.pipeline import AuditConfig, worker_pipeline

    config = AuditConfig.from_options(
        protocol="bicubic-x4", dataset=str(tiny_dataset), workers=1
    ).to_dict()
    monkeypatch.setenv("SRFORENSICS_CACHE", str(tmp_path / "first"))
    with Workers(
        config, processes=1, start=worker_pipeline
    ) as first:  # starts the server if none runs yet
        assert first.pool.submit(os.getenv, "SRFORENSICS_CACHE").result() == str(tmp_path / "first")
    monkeypatch.setenv("SRFORENSICS_CACHE", str(tmp_path / "second"))
    with Workers(config, processes=1, start=worker_pipeline) as second:
        assert second.pool.submit(os.getenv, "SRFORENSICS_CACHE").result() == str(
            tmp_path / "second"
        )


def test_a_worker_that_cannot_load_the_pipeline_fails_its_shards_with_the_reason(tiny_dataset):
    """Workers load their pipeline as they start; a failure there is raised by their first
    shard (the driver's own pipeline normally fails first, with the same message)."""
    from srforensics.errors import SRForensicsError
    from srforensics.run.executors import Shard, Workers
    from srforensics.run.executors.workers import worker_run
    from srforensics.run.pipeline import AuditConfig, worker_pipeline

    config = AuditConfig.from_options(
        protocol="bicubic-x4", dataset=str(tiny_dataset), workers=1
    ).to_dict()
    with Workers(
        config | {"study": config["study"] | {"model": "no-such-model"}},
        processes=1,
        start=worker_pipeline,
    ) as workers:
        fut = workers.pool.submit(worker_run, Shard(0, (), {}))
        with pytest.raises(SRForensicsError, match="no-such-model"):
            fut.result(timeout=300)


def test_one_worker_process_gives_the_results_of_two(local_run, tiny_dataset, tmp_path):
    """Shards go to whichever worker is free: one worker or two, the results are the same."""
    _, one = audit_in_process(tiny_dataset, tmp_path / "one", workers=1, **SETUP)
    _, two = audit_in_process(tiny_dataset, tmp_path / "two", workers=2, **SETUP)
    _same(one, two)
    _same(local_run[1], one)


def test_shards_cut_the_batches_the_same_way_in_one_process(tiny_dataset, tmp_path, local_run):
    from srforensics.ledger import Ledger

    with Ledger(local_run[0].run_dir / "ledger.sqlite") as ledger:
        members = [ledger.batch(b) for b in range(ledger.next_batch())]
    # 4 records in shards of 2; no batch mixes records of two shards.
    shard_of = {"astronaut.png": 0, "coffee.png": 0, "gray cam.png": 1, "broken.png": 1}
    assert all(len({shard_of[r] for r, _, _ in m}) == 1 for m in members)
    assert max(len(m) for m in members) == 2


def test_ray_executor_gives_the_results_of_a_local_run(local_run, tiny_dataset, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    proc = run_cli(
        "audit", "--model", SETUP["model"], "--protocol", "bicubic-x4", "--dataset", str(tiny_dataset),
        "--samples", "3", "--variants", "3", "--batch-size", "2", "--shard-size", "2",
        "--metrics", "psnr,lr_psnr", "--save-images", "all", "--breakdown-boot", "0",
        "--executor", "ray", "--workers", "2", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = pd.read_parquet(out / "results.parquet")
    _same(local_run[1], results)
    assert run_cli("verify", str(out), "--full").returncode == 0


def test_ray_actors_share_the_gpus_when_there_are_fewer_than_actors():
    """Whole GPUs while there is one per actor; else an even share, floored to Ray's 1e-4
    resolution (a fraction must be in (0, 1]), so every actor is placed; none: a clear error."""
    from srforensics.errors import SRForensicsError
    from srforensics.run.executors import gpu_share

    assert gpu_share(4, 2) == 1.0
    assert gpu_share(2, 2) == 1.0
    assert gpu_share(1, 2) == 0.5
    assert gpu_share(1, 3) == 0.3333
    assert gpu_share(2, 3) == 0.6666
    assert 3 * gpu_share(1, 3) <= 1 and 3 * gpu_share(2, 3) <= 2
    with pytest.raises(SRForensicsError, match="the Ray cluster has no GPU.*--device cpu"):
        gpu_share(0, 2)


def test_bad_executor_settings_are_refused():
    from srforensics.errors import SRForensicsError
    from srforensics.run.pipeline import AuditConfig

    with pytest.raises(SRForensicsError, match="--workers"):
        AuditConfig.from_options(workers=-1)
    with pytest.raises(SRForensicsError, match="--ray-address needs --executor ray"):
        AuditConfig.from_options(ray_address="ray://x:10001")
    with pytest.raises(SRForensicsError, match="--shard-size"):
        AuditConfig.from_options(shard_size=0)
    with pytest.raises(SRForensicsError, match="--loaders is for runs in this process"):
        AuditConfig.from_options(loaders=1, workers=2)
    with pytest.raises(SRForensicsError, match="--loaders must be"):
        AuditConfig.from_options(loaders=-1)


def test_hr_side_work_is_done_once_per_input_never_per_sample(tiny_dataset, tmp_path, monkeypatch):
    """HR preparation (e.g. face detection and alignment) and the HR face embedding run once per
    record, however many variants and samples it has."""
    from srforensics.degradations.protocol import Protocol
    from srforensics.faces.identity import IdentityScorer

    calls = {"fit": 0, "embed_hr": 0}
    prepare, embed = Protocol.prepare, IdentityScorer.embed
    hrs: list = []  # the prepared HRs themselves, to recognise them when they are embedded

    def counting_prepare(self, img, params=None):
        calls["fit"] += params is None  # HR steps fitted (detection), not recorded ones applied
        hr, fitted = prepare(self, img, params)
        hrs.append(hr)
        return hr, fitted

    def counting_embed(self, faces, landmarks=None):
        calls["embed_hr"] += sum(any(f is h for h in hrs) for f in faces)
        return embed(self, faces, landmarks)

    monkeypatch.setattr(Protocol, "prepare", counting_prepare)
    monkeypatch.setattr(IdentityScorer, "embed", counting_embed)
    _, results = audit_in_process(
        tiny_dataset,
        tmp_path / "run",
        model="srf_test_plugins:NoisyModel",
        samples=4,
        variants=3,
        identity="on",
        face_embedder="srf_test_plugins:ColourEmbedder",
    )
    readable = results[results.status == "ok"].record_id.nunique()
    assert readable == 3 and len(results[results.status == "ok"]) == 3 * 3 * 4
    assert calls["fit"] == readable  # the broken file fails before its HR is prepared
    assert calls["embed_hr"] == readable


def test_metrics_may_be_given_as_on_the_command_line():
    """``AuditConfig.from_options(metrics="psnr")`` means the metric psnr, not the metrics p, s, n, r."""
    from srforensics.errors import SRForensicsError
    from srforensics.run.pipeline import AuditConfig

    assert AuditConfig.from_options(metrics="psnr").study.metrics == ("psnr",)
    assert AuditConfig.from_options(metrics="psnr, lr_psnr").study.metrics == ("psnr", "lr_psnr")
    with pytest.raises(SRForensicsError, match="--metrics is empty"):
        AuditConfig.from_options(metrics=" , ")


def test_the_cli_passes_loaders_on(tiny_dataset, tmp_path):
    """``--loaders`` reaches the configuration: with ``--workers`` it is refused, in one line."""
    proc = run_cli(
        "audit", "--model", "bicubic", "--protocol", "bicubic-x4", "--dataset", str(tiny_dataset),
        "--loaders", "1", "--workers", "2", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--loaders is for runs in this process" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("helpers", [{"workers": 1}, {"loaders": 1}])
def test_helpers_draw_the_report_histograms_as_this_process_would(
    tiny_dataset, tmp_path, monkeypatch, helpers
):
    """The histograms are drawn in the helper processes while this one saves galleries and
    tables; the report shows exactly the figures this process draws from the ledger."""
    from srforensics.analysis import with_flags
    from srforensics.ledger import LEDGER_NAME, Ledger
    from srforensics.report import histograms, render_report
    from srforensics.report.figures import distribution
    from srforensics.run.histograms import Histograms

    taken: list[dict[str, str]] = []
    real = Histograms.collect
    monkeypatch.setattr(Histograms, "collect", lambda self: taken.append(real(self)) or taken[-1])
    run, _ = audit_in_process(
        tiny_dataset, tmp_path / "run", samples=2, metrics=("psnr", "lr_psnr"), **helpers
    )
    with Ledger(run.run_dir / LEDGER_NAME) as ledger:
        results, metrics = with_flags(ledger.results()), ledger.metrics()
    wanted = histograms(results, metrics)
    # Collected once (the report reads it key by key, after the rest of the report).
    assert taken and all(t is taken[0] for t in taken)
    assert len(wanted) == 2 and taken[0] == {k: distribution(**kw) for k, kw in wanted.items()}
    html = run.report.read_text()
    assert all(src in html for src in taken[0].values())
    # A figure handed over is used for its own values only (they make its key).
    stale = set(histograms(results.assign(psnr=results["psnr"] + 1), metrics)) - set(wanted)
    (lr_key,) = (k for k, kw in wanted.items() if kw["title"] == "lr_psnr")
    assert len(stale) == 1
    render_report(run.run_dir, drawn={lr_key: "data:,HANDED", stale.pop(): "data:,STALE"})
    html = run.report.read_text()
    assert "data:,HANDED" in html and "data:,STALE" not in html
    assert taken[0][next(k for k in wanted if k != lr_key)] in html  # psnr's, drawn here


class _ThreadHelpers:
    """A stand-in for the helper processes: ``processes`` threads."""

    def __init__(self, processes: int):
        from concurrent.futures import ThreadPoolExecutor

        self.processes = processes
        self.pool = ThreadPoolExecutor(max_workers=processes)

    def submit(self, fn, /, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs)


def _three_histograms():
    import pandas as pd

    from srforensics.report import histograms

    results = pd.DataFrame(
        {
            "status": ["ok"] * 6,
            "psnr": [30.0, 31, 29, 33, 28, 30.5],
            "ssim": [0.9, 0.8] * 3,
            "gmsd": [0.1, 0.12, 0.09, 0.2, 0.15, 0.11],
        }
    )
    metrics = [
        {"name": "psnr", "higher_is_better": True},
        {"name": "ssim", "higher_is_better": True},
        {"name": "gmsd", "higher_is_better": False},
    ]
    wanted = histograms(results, metrics)
    assert len(wanted) == 3
    return results, metrics, wanted


def test_histograms_no_helper_has_started_are_drawn_here():
    """The helpers get one histogram per process at a time. At the end of a run this process
    draws those not handed over yet, and those handed over that no helper has started (the
    helper is busy here); they are the figures a helper draws."""
    import threading

    from srforensics.report.figures import distribution
    from srforensics.run.helpers import Helpers
    from srforensics.run.histograms import Histograms

    results, metrics, wanted = _three_histograms()
    helpers = _ThreadHelpers(1)
    with helpers.pool:
        busy = threading.Event()
        blocker = helpers.pool.submit(busy.wait, 30)  # the helper is busy: nothing has started
        drawing = Histograms(results, metrics, Helpers(loaders=helpers))
        assert len(drawing.futures) == 1  # one per process; the other two wait here
        drawn = drawing.collect(timeout=5)
        busy.set()
        blocker.result()
    assert len(drawing.futures) == 1 and all(f.cancelled() for f in drawing.futures.values())
    assert drawn == {k: distribution(**kw) for k, kw in wanted.items()}
    # Read as a mapping (as the report reads it), it is what was collected, not drawn again.
    assert dict(drawing) == drawn and drawing.collect() is drawn


def test_without_matplotlib_here_the_helpers_draw_every_histogram():
    """Where matplotlib is not loaded in this process (``help_here=False``; a CLI run), it
    waits for the helpers instead of importing it for a figure; it draws what they leave
    only if they stall for ``patience`` seconds."""
    import threading
    import time

    from srforensics.report.figures import distribution
    from srforensics.run.helpers import Helpers
    from srforensics.run.histograms import Histograms

    results, metrics, wanted = _three_histograms()
    expected = {k: distribution(**kw) for k, kw in wanted.items()}
    helpers = _ThreadHelpers(1)
    with helpers.pool:
        drawing = Histograms(results, metrics, Helpers(loaders=helpers))
        assert len(drawing.futures) == 1  # one at a time: the next as it finishes
        drawn = drawing.collect(timeout=30, help_here=False, patience=30)
    assert set(drawing.futures) == set(wanted)  # all three drawn by the helper
    assert all(f.done() and not f.cancelled() for f in drawing.futures.values())
    assert drawn == expected

    helpers = _ThreadHelpers(1)
    with helpers.pool:
        busy = threading.Event()
        blocker = helpers.pool.submit(busy.wait, 30)  # a stalled helper
        drawing = Histograms(results, metrics, Helpers(loaders=helpers))
        t = time.monotonic()
        drawn = drawing.collect(timeout=5, help_here=False, patience=0.3)
        waited = time.monotonic() - t
        busy.set()
        blocker.result()
    assert 0.3 <= waited < 5  # its patience, then it drew them all here
    assert all(f.cancelled() for f in drawing.futures.values())
    assert drawn == expected


def test_helpers_take_the_next_histogram_as_they_finish_one():
    """Free helpers draw every histogram, one after the other, before this process is free."""
    import time

    from srforensics.report.figures import distribution
    from srforensics.run.helpers import Helpers
    from srforensics.run.histograms import Histograms

    results, metrics, wanted = _three_histograms()
    helpers = _ThreadHelpers(2)
    with helpers.pool:
        drawing = Histograms(results, metrics, Helpers(workers=helpers))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # each finished one hands the next over
            futures = list(drawing.futures.values())
            if len(futures) == 3 and all(f.done() for f in futures):
                break
            time.sleep(0.01)
        assert set(drawing.futures) == set(wanted)
        drawn = drawing.collect(timeout=30)
    assert not any(f.cancelled() for f in drawing.futures.values())
    assert drawn == {k: distribution(**kw) for k, kw in wanted.items()}


# -- the C allocator (tune_allocator) ----------------------------------------------------------
def _glibc() -> bool:
    import platform
    import sys

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


needs_glibc = pytest.mark.skipif(not _glibc(), reason="glibc's allocator only")

_MALLINFO = """
import ctypes, sys
from srforensics.runtime import allocator_settings, tune_allocator

class MallInfo2(ctypes.Structure):  # glibc >= 2.33, malloc.h
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    sys.exit(print("no mallinfo2"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
if sys.argv[1] == "cli":
    from srforensics.cli import main
    main(["models", "list"])
elif sys.argv[1] == "tune":
    tune_allocator()
before = libc.mallinfo2().hblkhd  # bytes in blocks malloc has mapped on their own
libc.malloc(8 << 20)
print(allocator_settings(), libc.mallinfo2().hblkhd - before, sep="|")
"""


def _mallinfo(how: str, **env: str) -> tuple[str, int]:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _MALLINFO, how],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()
    if out == "no mallinfo2":
        pytest.skip("glibc older than 2.33 (no mallinfo2)")
    settings, mapped = out.splitlines()[-1].split("|")
    return settings, int(mapped)


@needs_glibc
def test_the_cli_keeps_freed_blocks_of_up_to_32_mib_in_the_heap():
    """glibc maps a fresh 8 MiB block of its own (mallinfo2's ``hblkhd`` grows by it: each
    such block is unmapped when freed, and its pages fault in again when next allocated);
    once tuned, as the CLI tunes its process, it comes from the heap."""
    settings, mapped = _mallinfo("default")
    assert settings == "None" and mapped >= 8 << 20
    for how in ("tune", "cli"):
        settings, mapped = _mallinfo(how)
        assert "M_MMAP_THRESHOLD=33554432" in settings and "M_TRIM_THRESHOLD=134217728" in settings
        assert mapped == 0


@needs_glibc
def test_the_allocator_is_left_alone_where_the_environment_sets_it():
    settings, mapped = _mallinfo("tune", MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert settings == "None" and mapped >= 8 << 20  # the user's 1 MiB threshold holds


@needs_glibc
def test_helper_processes_tune_their_allocator(tiny_dataset):
    """Loaders and workers are srforensics's own processes, tuned as the CLI is."""
    from functools import partial

    from srforensics.run.executors import Loaders, Workers
    from srforensics.run.pipeline import AuditConfig, worker_pipeline
    from srforensics.runtime import allocator_settings

    config = AuditConfig.from_options(
        protocol="bicubic-x4", dataset=str(tiny_dataset), workers=1
    ).to_dict()
    for pool in (Loaders, partial(Workers, start=worker_pipeline)):
        with pool(config, processes=1) as helpers:
            got = helpers.pool.submit(allocator_settings).result(timeout=300)
        assert got is not None and "M_MMAP_THRESHOLD=33554432" in got, pool


def test_helper_processes_freeze_what_they_loaded(tmp_path):
    """A loader process, once ready, and a worker process, once its pipeline is loaded, have
    their heaps frozen (out of the collector's scans: torch's objects, and the rest)."""
    import gc

    from workloads import make_photos

    from srforensics.run.executors import Loaders, Workers
    from srforensics.run.pipeline import AuditConfig, Pipeline, worker_pipeline

    root = make_photos(tmp_path / "ds", 2, size=64)
    config = AuditConfig.from_options(protocol="bicubic-x4", dataset=str(root), samples=1)
    pipe = Pipeline(config)
    with Loaders(config.to_dict(), processes=1) as loaders:
        assert loaders.wait_ready(pipe.protocol.sha256, timeout=300)
        assert loaders.submit(gc.get_freeze_count).result(timeout=60) > 10_000
    with Workers(config.to_dict(), processes=1, start=worker_pipeline) as workers:
        assert workers.submit(gc.get_freeze_count).result(timeout=300) > 10_000
