"""The benchmark (``benchmarks/bench.py``): it runs, writes its JSON and measures what it says.

Smoke tests only: its targets are checked by the full benchmark (docs/performance.md),
never by timed tests.
"""

from __future__ import annotations

import importlib.util

from conftest import REPO

BENCH = REPO / "benchmarks" / "bench.py"


def _glibc() -> bool:
    import platform
    import sys

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _load_bench():
    spec = importlib.util.spec_from_file_location("srforensics_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_writes_its_json(tmp_path):
    """Smoke test only: the targets are checked by the full benchmark (docs/performance.md)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["overhead_ratio"] > 0 and data["complete"] is True
    assert {"throughput", "memory", "workers", "metrics", "cli_help_s", "machine"} <= set(data)
    assert all(t["in_run_ratio"] > 1 for t in data["throughput"])  # wall > model + metrics
    assert all(0 < t["vs_bare_model"] < 1 for t in data["throughput"])  # the model alone is faster
    assert {t["batch_size"] for t in data["throughput"]} == {8}  # the audit's default
    from srforensics.degradations.protocol import load_protocol

    costs = data["metrics"]["metrics"]  # each default metric of faces, alone
    assert list(costs) == list(load_protocol("faces").metrics)
    assert all(
        r["ms_per_output_batch_8"] > 0 and r["ms_per_output_batch_64"] > 0 for r in costs.values()
    )
    assert all(
        ("reference_features_ms" in r) == (n not in {"lr_psnr", "piqe", "niqe", "brisque"})
        for n, r in costs.items()
    )
    b = data["breakdown"]  # 8 faces × 2 variants × 1 output, with two sensitive attributes
    assert b["outputs"] == 16 and 0 < b["breakdown_s"] < b["wall_s"]


def test_the_benchmark_measures_the_parts_asked_for(tmp_path):
    import json
    import subprocess
    import sys

    def bench(*args):
        return subprocess.run(
            [sys.executable, str(BENCH), "--quick", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = tmp_path / "help.json"
    proc = bench("--parts", "help", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["parts"] == ["help"] and data["cli_help_s"] > 0
    assert not {"throughput", "breakdown", "memory", "workers"} & set(data)
    assert data["overhead_ratio"] is None
    if _glibc():  # tuned as the CLI tunes its process
        assert "M_MMAP_THRESHOLD=33554432" in data["machine"]["allocator"]
    out = tmp_path / "detection.json"
    proc = bench("--parts", "detection", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(out.read_text())["detection"]
    # The detector's answers against facenet-pytorch's own per-image call (no speed here).
    assert d["max_landmark_difference_px"] <= 1e-3 and d["max_box_difference_px"] <= 1e-3
    assert d["outputs_same_faces_found"] is True and d["hr_speedup"] > 0
    assert d["no_face_outputs_found"] == 0 and d["no_face_record_speedup"] > 0
    proc = bench("--parts", "throughput,gpu", "--out", str(tmp_path / "x.json"))
    assert (
        proc.returncode == 2
        and "--parts takes some of throughput, end_to_end, breakdown" in proc.stderr
    )
    assert not (tmp_path / "x.json").exists()


def test_the_benchmark_measures_the_audit_process_not_the_one_that_starts_it():
    """The peak RSS is the audit process's own high-water mark: Linux carries
    ``getrusage``'s ``ru_maxrss`` over fork and exec, so a probe started by a large process
    (here this one, holding 1 GiB more) would report the starter's size."""
    import numpy as np

    bench = _load_bench()

    held = np.ones(2**30 // 8)  # 1 GiB, touched
    _, rss = bench._audit_process(["protocols", "list"], baseline=False)
    assert held.sum() == held.size
    # A Python process that imported srforensics's CLI: tens of MiB, far from 1 GiB.
    assert 10 < rss["peak_rss_mib"] < 512
    assert 0 <= rss["audit_growth_mib"] <= rss["peak_rss_mib"]
