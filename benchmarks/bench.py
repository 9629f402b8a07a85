"""Benchmark: throughput, toolkit overhead, memory with dataset size, worker speed-up.

    python benchmarks/bench.py [--quick] --out FILE.json

Workloads are generated (nothing is downloaded): face images made from the two
faces scikit-image ships (astronaut, camera) by random shifts, zooms, flips and
colour changes, and photographic crops of its other sample images.

- ``throughput``: the ``faces`` protocol with its default metrics, N outputs
  per LR, for ``bicubic`` and a small RRDBNet with seeded random weights (on
  ``--device cuda``: RRDBNet at ESRGAN's size and the small one), at each ``--batch-size``;
  outputs per second of the whole audit (report included), the fastest of nine
  runs (one with ``--quick``; two for the audit without loaders). The audits use
  ``--loaders`` (default 1 on a machine with two or more CPUs: decoding,
  degradation and, on the CPU, the HRs' reference features in another process); a
  bicubic audit without loaders is measured beside them.
- ``overhead_ratio``: audit wall time / (model sampling time + metric time),
  both measured alone on the same tensors in the same process (same LRs, same
  model batches, same outputs; the metrics as the audit computes them: each
  HR's reference features once, then its outputs). Each audit is bracketed by its parts measured
  right before it (after the previous, identical, audit) and right after it, and
  divided by their mean: a paired measure, as this shared machine's speed drifts
  by a quarter within minutes; the figure is the median over the nine audits
  (the median of five moved by up to 0.06 between benchmarks of the same code). The
  process is warm: one small audit per model runs first (imports, first calls);
  the loader processes start with each audit, as they do in the CLI, but forked
  from a fork server that the warm-up audits started (in the CLI it starts with
  the audit). This process's allocator is tuned as the CLI tunes its own
  (:func:`srforensics.runtime.tune_allocator`). The protocol's own work (face
  detection, degradation), also measured alone, is reported beside it. The
  top-level value is the largest over the models, with ``--loaders``. With
  loaders the ratio can be below 1: the reference features (a quarter to a third
  of the metric time of the ``faces`` protocol's default metrics) are then computed
  in the loader process, beside the model and the scores, while the denominator
  counts them as this process computes them alone.
- ``vs_bare_model``: the audit's outputs per second over the bare model's: the model's
  seconds alone on the same batches (outputs back on the CPU) over the audit's wall time,
  bracketed as the overhead ratio; the median.
- ``in_run_ratio``: the same audits' wall time / (model time + metric time
  measured inside each audit, :class:`srforensics.run.pipeline.RunTiming`, the
  loaders' seconds on reference features included): no drift between numerator
  and denominator, but the metrics are timed while the loader processes run
  beside them, not alone; the median over the nine audits, with each audit's
  ``own_s`` (srforensics's own seconds) and timing.
- ``breakdown``: the share of an audit's wall time spent on the per-group breakdowns,
  the disparities and the identity rates with their record-level intervals (1000
  replicates, the default): ``bicubic`` on ``faces``, 200 generated faces with two
  sensitive attributes (5 and 2 groups, from a ``labels.csv``), 2 variants × 2 outputs each (800
  outputs), in this process after the throughput's warm-up (imports are not in the
  wall time, so the share is larger than in a fresh ``srforensics audit``). The seconds
  are :attr:`srforensics.run.pipeline.RunTiming.breakdown_s`.
- ``memory``: peak RSS of an audit of R and 10 R records, each in a fresh
  process (its own high-water mark, ``VmHWM``), and the peak's growth above
  the RSS after imports.
- ``workers``: wall time with 1, 2 and 4 worker processes (one torch thread
  each, the default) on a CPU-bound protocol (``realistic-x4``: second-order
  blur, resize, noise and JPEG; 256 crops of 288 px, 4 variants: about 60 s on
  one worker here), the fastest of two runs each (interleaved), and whether
  all results are identical. Each is a fresh ``srforensics audit`` process,
  timed whole: interpreter start and its imports included, and nothing else
  (the memory probe's baseline imports, pyiqa's 5 s among them, are not
  made: these audits use srforensics's own PSNR). Loading the
  pipeline in the driver and in each worker (a few seconds) is not parallel, so
  shorter audits gain less.
- ``end_to_end``: the audit's wall time over that of the loop a user would write by hand
  (the same records, MTCNN once per HR, the degradation, the model, the metrics and, with
  identity, the matcher), both fresh processes timed whole, on ``faces`` with ``nullspace``
  (every output distinct), identity off and on.
- ``ssim``: SSIM in the SR convention against scikit-image's, pairs per second on one thread
  (from scratch, and against reference statistics computed once), and the largest
  difference of the values.
- ``detection``: face detection as the ``faces`` protocol runs it (the HR's largest face by
  a bounded search; one LR's outputs in one batch) against facenet-pytorch's
  ``MTCNN.detect`` called per image, on one thread, and how far their answers differ.
- ``metrics``: each of the ``faces`` protocol's default metrics alone, on ``--device``: its
  time per output scoring batches of 8 and of 64 distinct outputs of 128 px against one
  HR's reference features, and the time of those features for one HR (the audit computes
  them once per input); the best of five.
- ``cli_help_s``, ``metrics_list_s``: ``srforensics --help`` and ``srforensics metrics list``
  in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

# The workloads are the tests' generators (tests/workloads.py): the benchmark measures what
# the tests check. Audits it starts in other processes find them through PYTHONPATH.
_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(_TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(_TESTS), os.environ.get("PYTHONPATH")) if p
)
from workloads import make_faces, make_photos  # noqa: E402

#: The random RRDBNet, as a model target.
RRDB = "workloads:RandomRRDBNet"
#: RRDBNet at ESRGAN's size (64 features, 23 blocks), random weights: measured on a GPU.
RRDB_ESRGAN = "workloads:ESRGANSizeRRDBNet"

#: What the benchmark can measure (``--parts``), in the order it measures them.
PARTS = (
    "throughput",
    "end_to_end",
    "breakdown",
    "memory",
    "workers",
    "ssim",
    "detection",
    "metrics",
    "help",
)


def _warm_up() -> None:
    """Import what any audit imports once per process, so that it is not counted as audit time."""
    import facenet_pytorch  # noqa: F401
    import pyiqa  # noqa: F401
    import torch  # noqa: F401


def component_times(run_dir: Path, config) -> dict[str, float]:
    """Model, metric and protocol time, measured alone on the run's own LRs, batches and outputs."""
    import torch

    from srforensics.images import read_image, to_tensor
    from srforensics.ledger import LEDGER_NAME, Ledger
    from srforensics.metrics.diversity import ntire_diversity, pixel_std
    from srforensics.recompute import call_model, model_context, output_images
    from srforensics.run.pipeline import Pipeline
    from srforensics.run.scoring import metric_batches, metric_scores
    from srforensics.runtime import heap_frozen, torch_threads

    pipe = Pipeline(config)
    times = {"model_s": 0.0, "metrics_s": 0.0, "protocol_s": 0.0}
    prepared: dict[str, np.ndarray] = {}  # the audit prepares each HR once, so does this
    hr_tensors: dict[str, Any] = {}  # and turns it into a tensor once
    features: dict[str, dict[str, object]] = {}  # and computes its reference features once
    # Under the audit's collector settings: a full collection of the loaded heap (a quarter
    # of a second) is not model or metric time, and would inflate this at random.
    with (
        Ledger(run_dir / LEDGER_NAME) as ledger,
        torch_threads(config.execution.threads),
        heap_frozen(),
    ):
        for batch in range(ledger.next_batch()):
            members = ledger.batch(batch)
            lrs, hrs, seeds, contexts = [], [], [], []
            for rid, v, samples in members:
                rec, lr_row = ledger.record(rid), ledger.lr(rid, v)
                t = time.perf_counter()
                if rid not in prepared:
                    img, _ = read_image(rec["path"])
                    t = time.perf_counter()
                    prepared[rid] = pipe.protocol.prepare(img)[0]
                hr = prepared[rid]
                lr = pipe.protocol.apply(hr, lr_row["params"])
                times["protocol_s"] += time.perf_counter() - t
                rows = {r["sample"]: r for r in ledger.outputs_of(rid, v)}
                seeds.append([int(rows[s]["seed"]) for s in samples])
                contexts.append(model_context(rid, v, lr_row["params"], rec["attributes"]))
                lrs.append(to_tensor(lr).to(pipe.device))
                hrs.append(hr)
                if rid not in features:
                    hr_tensors[rid] = to_tensor(hr).to(pipe.device)
                    t = time.perf_counter()
                    features[rid] = pipe.reference_features(hr_tensors[rid])
                    times["metrics_s"] += time.perf_counter() - t
            t = time.perf_counter()
            call = call_model(
                pipe.parts.model, lrs, scale=pipe.parts.scale, seeds=seeds, contexts=contexts
            )
            times["model_s"] += time.perf_counter() - t
            checked = [output_images(o, tolerance=1.0) for o in call.outputs]  # as the audit
            unique = [list({c.sha256: c.image for c in ch}.values()) for ch in checked]
            rids = [rid for rid, _, _ in members]
            hr_ts = [hr_tensors[rid] for rid in rids]
            for group, counts, batch_t, ref, lr_t in metric_batches(
                unique, hr_ts, lrs, pipe.device
            ):
                t = time.perf_counter()
                with torch.no_grad():
                    for metric in pipe.parts.metrics:
                        per_lr = [features[rids[i]].get(metric.name) for i in group]
                        metric_scores(metric, batch_t, ref, lr_t, counts, per_lr)
                times["metrics_s"] += time.perf_counter() - t
            for b, hr in enumerate(hrs):
                t = time.perf_counter()
                stack = np.stack([c.image for c in checked[b]])
                pixel_std(stack)
                ntire_diversity(pipe.parts.distance(stack, hr))
                times["metrics_s"] += time.perf_counter() - t
    return times


def throughput(
    faces: Path,
    out: Path,
    *,
    model: str,
    samples: int,
    device: str = "cpu",
    loaders: int = 0,
    repeats: int = 1,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The audit ``repeats + 1`` times, each followed by its parts measured alone.

    Every audit gives the same LRs, batches and outputs, so the parts measured after one
    audit are the parts of the next too: audit ``r`` (from the second on) is bracketed by the
    parts measured just before and just after it, and its overhead ratio is its wall time
    over their mean (a shared machine's speed drifts within minutes; a bracket cancels a
    steady drift). The first audit is the first bracket's start. Figures: the median ratio;
    times, the fastest of each (the minimum is the least disturbed)."""
    from srforensics.run.pipeline import AuditConfig, run_audit

    walls, parts_runs, timings = [], [], []
    for r in range(repeats + 1):
        config = AuditConfig.from_options(
            model=model,
            protocol="faces",
            dataset=str(faces),
            samples=samples,
            out=str(out / f"repeat-{r}"),
            identity="off",
            breakdown_boot=0,
            device=device,
            loaders=loaders,
            batch_size=batch_size,
        )
        t = time.perf_counter()
        run = run_audit(config)
        walls.append(time.perf_counter() - t)
        timings.append(run.timing)
        parts_runs.append(component_times(run.run_dir, config))

    def bracket(r: int, keys: tuple[str, ...]) -> float:
        return sum((parts_runs[r - 1][k] + parts_runs[r][k]) / 2 for k in keys)

    core = ("model_s", "metrics_s")
    ratios = [walls[r] / bracket(r, core) for r in range(1, repeats + 1)]
    # The audit's outputs per second over the bare model's: the same model calls on the same
    # batches alone (outputs back on the CPU, as the audit takes them), the model's time
    # over the audit's.
    vs_model = [bracket(r, ("model_s",)) / walls[r] for r in range(1, repeats + 1)]
    with_protocol = [walls[r] / bracket(r, (*core, "protocol_s")) for r in range(1, repeats + 1)]
    in_run = [tm.wall_s / (tm.model_s + tm.metrics_s + tm.loader_metrics_s) for tm in timings[1:]]
    wall = min(walls[1:])
    parts = {k: min(p[k] for p in parts_runs) for k in parts_runs[0]}
    n_out = sum(run.counts.values())
    return {
        "model": model,
        "loaders": loaders,
        "batch_size": batch_size,
        "records": len(list(faces.glob("*.png"))),
        "samples": samples,
        "outputs": n_out,
        "outputs_ok": run.counts.get("ok", 0),
        "metrics": [
            m["name"] for m in json.loads((run.run_dir / "manifest.json").read_text())["metrics"]
        ],
        "unavailable": dict(run.unavailable),
        "repeats": repeats,
        "wall_s_each": [round(w, 3) for w in walls],
        "parts_s_each": [round(p["model_s"] + p["metrics_s"], 3) for p in parts_runs],
        "wall_s": round(wall, 3),
        "outputs_per_s": round(n_out / wall, 2),
        **{k: round(v, 3) for k, v in parts.items()},
        "overhead_ratio_each": [round(r, 3) for r in ratios],
        "overhead_ratio": round(float(np.median(ratios)), 3),
        "overhead_ratio_with_protocol": round(float(np.median(with_protocol)), 3),
        "vs_bare_model_each": [round(v, 3) for v in vs_model],
        "vs_bare_model": round(float(np.median(vs_model)), 3),
        "in_run_ratio_each": [round(r, 3) for r in in_run],
        "in_run_ratio": round(float(np.median(in_run)), 3),
        "own_s_each": [round(tm.own_s, 3) for tm in timings[1:]],
        "timing_each": [
            {k: round(v, 3) for k, v in asdict(tm).items()} | {"own_s": round(tm.own_s, 3)}
            for tm in timings[1:]
        ],
    }


#: Runs ``srforensics`` with the given arguments and prints ``RSS <peak> <baseline>`` (MiB).
#: The peak is the kernel's high-water mark of this process's own memory (``VmHWM``): not
#: ``getrusage``'s ``ru_maxrss``, which Linux carries over ``fork`` and ``exec``, so that a
#: process started by a large one reports the starter's size (the benchmark's, about 1 GiB).
_RSS_PROBE = """
import os, sys
if os.environ.pop("SRFORENSICS_BENCH_BASELINE", "") == "1":
    import pyiqa, torch  # what any audit may import, before the baseline
    import srforensics.run.pipeline
def status(field):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) / 1024 for l in fh if l.startswith(field + ":"))
base = status("VmRSS")
from srforensics.cli import main
rc = main(sys.argv[1:])
print("RSS", status("VmHWM"), base)
sys.exit(rc)
"""


def _audit_process(args: list[str], *, baseline: bool = True) -> tuple[float, dict[str, float]]:
    """An audit in a fresh process: wall seconds, its peak RSS (MiB) and the peak's growth
    above the RSS after imports (Linux: read from ``/proc/self/status``).

    With ``baseline``, the process imports pyiqa, torch and the audit module before it
    takes the RSS baseline, so that the growth excludes them; pyiqa costs about 5 s,
    which a run of srforensics's own metrics does not spend. Without it, the process
    imports what ``srforensics audit`` imports, and its wall time is that command's.
    """
    env = dict(os.environ, SRFORENSICS_BENCH_BASELINE="1" if baseline else "0")
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"audit failed: {proc.stderr[-2000:]}")
    peak, base = (float(x) for x in proc.stdout.split("RSS ")[-1].split()[:2])
    return wall, {
        "peak_rss_mib": round(peak, 1),
        "rss_after_imports_mib": round(base, 1),
        "audit_growth_mib": round(peak - base, 1),
    }


def breakdown_share(tmp: Path, *, records: int, samples: int) -> dict[str, Any]:
    """An audit of ``records`` labelled faces × ``samples`` outputs: the breakdowns' share."""
    from srforensics.run.pipeline import AuditConfig, run_audit

    faces = make_faces(tmp / "faces-labelled", records, seed=3)
    rng = np.random.default_rng(3)
    rows = ["path,subject,race,gender"] + [
        f"face{i:04d}.png,s{i:04d},r{rng.integers(5)},g{rng.integers(2)}" for i in range(records)
    ]
    (faces / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = AuditConfig.from_options(
        model="bicubic",
        protocol="faces",
        dataset=str(faces),
        samples=samples,
        out=str(tmp / "breakdown-run"),
        identity="off",
    )
    t = time.perf_counter()
    run = run_audit(config)
    wall = time.perf_counter() - t
    tm = run.timing
    return {
        "model": "bicubic",
        "protocol": "faces",
        "records": records,
        "samples": samples,
        "outputs": sum(run.counts.values()),
        "sensitive": ["race", "gender"],
        "n_boot": config.outputs.breakdown_boot,
        "wall_s": round(wall, 3),
        "breakdown_s": round(tm.breakdown_s, 3),
        "breakdown_share": round(tm.breakdown_s / tm.wall_s, 4),
    }


def memory(tmp: Path, *, small: int) -> dict[str, Any]:
    photos = make_photos(tmp / "photos-mem", small * 10, size=64, seed=1)
    out: dict[str, Any] = {"protocol": "bicubic-x4", "samples": 2, "metrics": "psnr,lr_psnr"}
    for n in (small, small * 10):
        wall, rss = _audit_process(
            ["audit", "--model", "bicubic", "--protocol", "bicubic-x4", "--dataset", str(photos),
             "--samples", "2", "--metrics", "psnr,lr_psnr", "--save-images", "none",
             "--breakdown-boot", "0", "--limit", str(n), "--out", str(tmp / f"mem-{n}")]
        )  # fmt: skip
        out[f"records_{n}"] = {"wall_s": round(wall, 2), **rss}
    big, little = out[f"records_{small * 10}"], out[f"records_{small}"]
    out["rss_ratio"] = round(big["peak_rss_mib"] / little["peak_rss_mib"], 3)
    out["audit_growth_ratio"] = round(
        big["audit_growth_mib"] / max(little["audit_growth_mib"], 1.0), 3
    )
    return out


def workers(
    tmp: Path, *, n_images: int, size: int, counts: tuple[int, ...], repeats: int = 1
) -> dict[str, Any]:
    photos = make_photos(tmp / "photos-workers", n_images, size=size, seed=2)
    out: dict[str, Any] = {"protocol": "realistic-x4", "records": n_images, "image_px": size}
    runs: dict[int, float] = {}
    for r in range(repeats):  # interleaved, so that a slow spell of the machine hits all counts
        for w in counts:
            wall, rss = _audit_process(
                ["audit", "--model", "bicubic", "--protocol", "realistic-x4", "--dataset", str(photos),
                 "--samples", "1", "--variants", "4", "--metrics", "psnr", "--save-images", "none",
                 "--breakdown-boot", "0", "--workers", str(w), "--shard-size", "4",
                 "--out", str(tmp / f"workers-{w}-{r}")],
                baseline=False,  # the command's own wall time, imports included
            )  # fmt: skip
            runs[w] = min(runs.get(w, wall), wall)
            entry = out.setdefault(f"workers_{w}", {"wall_s_each": []})
            entry["wall_s_each"].append(round(wall, 2))
            entry["wall_s"] = round(runs[w], 2)
            entry["driver_peak_rss_mib"] = rss["peak_rss_mib"]
    for w in counts[1:]:
        out[f"speedup_{w}_vs_1"] = round(runs[1] / runs[w], 3)
    import pandas as pd

    base = pd.read_parquet(tmp / "workers-1-0" / "results.parquet")
    out["identical_results"] = all(
        base.equals(pd.read_parquet(tmp / f"workers-{w}-{r}" / "results.parquet"))
        for w in counts
        for r in range(repeats)
    )
    return out


#: The loop a user would write by hand for the ``faces`` protocol, run as a fresh process:
#: the same records, MTCNN once per HR (the protocol's own HR step), the protocol's
#: degradation, the model, the protocol's default metrics and, with identity, the matcher on
#: the HR and each output and MTCNN on each output (face detected), each called directly;
#: the scores are written as one CSV. What it lacks is what the audit adds: the ledger,
#: hashes, manifest, images, per-input and per-group tables and the report.
_HAND_LOOP = """
import sys, time
t0 = time.perf_counter()
from pathlib import Path
import numpy as np, pandas as pd, torch
from srforensics.degradations.protocol import load_protocol
from srforensics.images import read_image, to_tensor, quantize
from srforensics.metrics import build_metric, MetricConfig
from srforensics.models import load_model
from srforensics.seeding import degradation_rng, model_seed
folder, out, samples, identity = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on"
torch.set_num_threads(1)
protocol = load_protocol("faces")
model = load_model("nullspace")
config = MetricConfig(scale=protocol.scale)
metrics = [build_metric(m, config) for m in protocol.metrics]
if identity:
    from srforensics.faces.align import detect_faces
    from srforensics.faces.embed import load_embedder
    embedder = load_embedder("auto")
rows = []
for path in sorted(folder.glob("*.png")):
    img, _ = read_image(path)
    hr, hr_params = protocol.prepare(img)
    hr_t = to_tensor(hr)
    points = protocol.face_landmarks(hr_params)
    if identity:
        marks = None if points is None else torch.as_tensor(np.asarray(points), dtype=torch.float32)[None]
        ref = torch.nn.functional.normalize(embedder.embed(hr_t, landmarks=marks).double(), dim=1)
    for v in range(protocol.variants):
        lr = protocol.apply(hr, protocol.sample(degradation_rng(protocol.seed, path.name, v)))
        lr_t = to_tensor(lr)
        seeds = [[model_seed(protocol.seed, path.name, v, s) for s in range(samples)]]
        with torch.no_grad():
            outs = model.sample(lr_t, scale=protocol.scale, n=samples, seeds=seeds)[0]
        outs = to_tensor([quantize(o.permute(1, 2, 0).numpy()) for o in outs])
        scores = {m.name: m(outs, hr_t.expand(len(outs), -1, -1, -1), lr=lr_t.expand(len(outs), -1, -1, -1)).tolist() for m in metrics}
        if identity:
            emb = torch.nn.functional.normalize(embedder.embed(outs, landmarks=None if points is None else marks.expand(len(outs), -1, -1)).double(), dim=1)
            scores["id_cosine"] = (emb @ ref[0]).tolist()
            scores["face_detected"] = [float(bool(detect_faces(o.permute(1, 2, 0).numpy()))) for o in outs]
        for s in range(samples):
            rows.append({"record": path.name, "variant": v, "sample": s, **{k: vals[s] for k, vals in scores.items()}})
pd.DataFrame(rows).to_csv(out, index=False)
print(len(rows), time.perf_counter() - t0)
"""


def end_to_end(tmp: Path, *, faces: int, samples: int, repeats: int) -> list[dict[str, Any]]:
    """The audit's wall time over the hand-written loop's (:data:`_HAND_LOOP`), both fresh
    processes timed whole (interpreter start and imports included), on the ``faces``
    protocol with ``nullspace`` (stochastic: every output differs, so the audit cannot score
    one image for N identical outputs, as it does for a deterministic model) and its default
    metrics, with identity on and off; the best of ``repeats`` each, interleaved."""
    folder = make_faces(tmp / "e2e-faces", faces)
    out = []
    for identity in ("off", "on"):
        audit_s, loop_s = [], []
        for r in range(repeats):
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "srforensics", "audit", "--model", "nullspace",
                 "--protocol", "faces", "--dataset", str(folder), "--samples", str(samples),
                 "--identity", identity, "--out", str(tmp / f"e2e-{identity}-{r}")],
                capture_output=True, check=True,
            )  # fmt: skip
            audit_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", _HAND_LOOP, str(folder), str(tmp / f"e2e-{identity}.csv"),
                 str(samples), identity],
                capture_output=True, check=True,
            )  # fmt: skip
            loop_s.append(time.perf_counter() - t)
        out.append(
            {
                "identity": identity,
                "faces": faces,
                "samples": samples,
                "audit_s": round(min(audit_s), 2),
                "hand_loop_s": round(min(loop_s), 2),
                "ratio": round(min(audit_s) / min(loop_s), 3),
            }
        )
    return out


def ssim_speed(*, pairs: int = 32, size: int = 128, repeats: int = 5) -> dict[str, Any]:
    """SSIM in the SR convention against scikit-image's, pairs per second on one thread:
    ``pairs`` Y-channel pairs of ``size`` px (8-bit values, the output the HR plus noise),
    cropped by the scale (4) as the audit crops them; the best of ``repeats``. ``ours`` scores
    each pair from scratch, ``ours_reference_features`` against its HR's statistics computed
    once (as an audit scores N outputs of one HR), ``skimage`` is
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255)``. ``max_abs_difference``: the largest difference of the values."""
    import torch
    from skimage.metrics import structural_similarity

    from srforensics.metrics.fidelity_ops import ssim, ssim_features, ssim_reference

    rng = np.random.default_rng(0)
    side = size - 8
    hr = np.round(rng.random((1, 1, side, side)) * 255)
    out = np.clip(hr + rng.normal(0, 8, (pairs, 1, side, side)), 0, 255).round()
    a, b = torch.from_numpy(out), torch.from_numpy(np.repeat(hr, pairs, axis=0))

    def skimage_all():
        return [
            structural_similarity(
                out[i, 0],
                hr[0, 0],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
            )
            for i in range(pairs)
        ]

    def with_features():
        feats = tuple(f.expand(pairs, -1, -1, -1) for f in ssim_reference(b[:1]))
        return ssim_features(a, feats)

    def rate(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return round(pairs / best, 1)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours, sk = ssim(a, b), torch.tensor(skimage_all(), dtype=torch.float64)
        result = {
            "pairs": pairs,
            "size": size,
            "ours_pairs_per_s": rate(lambda: ssim(a, b)),
            "ours_reference_features_pairs_per_s": rate(with_features),
            "skimage_pairs_per_s": rate(skimage_all),
            "max_abs_difference": float((ours - sk).abs().max()),
        }
    finally:
        torch.set_num_threads(threads)
    result["ours_vs_skimage"] = round(result["ours_pairs_per_s"] / result["skimage_pairs_per_s"], 2)
    return result


def metric_costs(*, device: str, batches=(8, 64), repeats: int = 5) -> dict[str, Any]:
    """Each default metric of ``faces`` alone on ``device``: milliseconds per output scoring
    ``batches`` distinct outputs of 128 px against one HR's reference features, and
    milliseconds of those features for the HR; the best of ``repeats`` (after one call)."""
    import torch

    from srforensics.degradations.protocol import load_protocol
    from srforensics.metrics import MetricConfig, build_metric
    from srforensics.run.scoring import repeat_features

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return min(times)

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 128, 128, generator=g).to(device)
    lr1 = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="bicubic")
    out: dict[str, Any] = {}
    with torch.no_grad():
        for name in load_protocol("faces").metrics:
            metric = build_metric(name, MetricConfig(scale=4, device=device))
            row: dict[str, float] = {}
            feats = metric.reference_features(hr) if metric.requires_reference else None
            for b in batches:
                noise = 0.05 * torch.randn(b, 3, 128, 128, generator=g).to(device)
                outs, lr = (hr + noise).clamp(0, 1), lr1.expand(b, -1, -1, -1)
                if feats is not None:
                    reps = repeat_features([feats], [b])
                    s = best(lambda: metric.score_features(outs, reps, lr=lr))  # noqa: B023
                else:
                    ref = hr.expand(b, -1, -1, -1) if metric.requires_reference else None
                    s = best(lambda: metric(outs, ref, lr=lr))  # noqa: B023
                row[f"ms_per_output_batch_{b}"] = round(s / b * 1000, 3)
            if metric.requires_reference:
                ref_s = best(lambda: metric.reference_features(hr))  # noqa: B023
                row["reference_features_ms"] = round(ref_s * 1000, 3)
            out[name] = row
    return {"device": device, "size": 128, "metrics": out}


def _detection_photos(limit: int) -> tuple[list[np.ndarray], str]:
    """Real photographs for the detection part: ``$SRFORENSICS_REALFACES`` or
    ``../shared/realfaces`` beside the checkout when there, else scikit-image's astronaut
    and camera at 512 and 1024 px."""
    from PIL import Image

    sys.path.insert(0, str(_TESTS))
    from conftest import realfaces_dir

    root = realfaces_dir()
    if root is not None:
        files = sorted(
            p
            for p in [*(root / "identities").iterdir(), *(root / "evidence").iterdir()]
            if p.suffix.lower() in (".jpg", ".png")
        )[:limit]
        photos = [np.asarray(Image.open(p).convert("RGB")) for p in files]
        return photos, f"{len(photos)} photographs of {root.name} (identities, evidence)"
    from skimage import data

    base = [data.astronaut(), np.repeat(data.camera()[..., None], 3, -1)]
    photos = base + [np.asarray(Image.fromarray(b).resize((1024, 1024))) for b in base]
    return photos, "scikit-image astronaut and camera at 512 and 1024 px"


def detection_speed(*, photos: int, repeats: int) -> dict[str, Any]:
    """Face detection as the ``faces`` protocol runs it against facenet-pytorch's per-image
    ``MTCNN.detect`` (the same channels-last networks), on one thread, the two in turn,
    the best of ``repeats`` (ten times as many for the outputs): the HR's largest face (:func:`~srforensics.faces.mtcnn.search_largest_face`)
    on real photographs, and the outputs of one LR (4 of 128 px, with a face and without,
    :func:`~srforensics.faces.mtcnn.faces_found`) against a call per output. Agreement: the
    largest difference of the largest face's landmarks and box (px), and whether the
    outputs' faces found are the same."""
    import torch
    from PIL import Image

    from srforensics.faces.mtcnn import _detector, faces_found, search_largest_face

    hrs, source = _detection_photos(photos)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_faces(Path(tmp) / "faces", 4, seed=5)
        with_face = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    from skimage import data

    no_face = [  # scikit-image's coffee, cat and rocket, 128 px
        np.asarray(Image.fromarray(img).resize((128, 128)))
        for img in (data.coffee(), data.chelsea(), data.rocket(), data.coffee()[:, 200:500])
    ]
    mtcnn = _detector(20)

    def facenet(img):
        boxes, _, points = mtcnn.detect(Image.fromarray(img), landmarks=True)
        return boxes, points

    def best(fn, *others, times: int = repeats) -> float | tuple[float, ...]:
        """The best of ``times`` runs of each of ``fn`` and ``others``, run in turn (a
        shared machine's speed drifts between one's runs and the other's)."""
        fns = (fn, *others)
        seconds: list[list[float]] = [[] for _ in fns]
        for _ in range(times):
            for f, s in zip(fns, seconds, strict=True):
                t = time.perf_counter()
                f()
                s.append(time.perf_counter() - t)
        mins = tuple(min(s) for s in seconds)
        return mins if others else mins[0]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            facenet(hrs[0]), search_largest_face(hrs[0])  # first calls
            ref = [facenet(h) for h in hrs]
            ours = [search_largest_face(h) for h in hrs]
            landmarks = max(
                float(np.abs(np.asarray(f[0]["landmarks"]) - r[1][0]).max())
                for (f, _), r in zip(ours, ref, strict=True)
            )
            box = max(
                float(np.abs(np.asarray(f[0]["box"]) - r[0][0]).max())
                for (f, _), r in zip(ours, ref, strict=True)
            )
            same = all(
                faces_found(o) == [facenet(i)[0] is not None for i in o]
                for o in (with_face, no_face)
            )
            hr_facenet, hr_ours = best(
                lambda: [facenet(h) for h in hrs], lambda: [search_largest_face(h) for h in hrs]
            )
            # One LR's outputs take some 20 to 50 ms: ten times the runs.
            out_facenet, out_ours = best(
                lambda: [facenet(o) for o in with_face],
                lambda: faces_found(with_face),
                times=10 * repeats,
            )
            none_facenet, none_ours = best(
                lambda: [facenet(o) for o in no_face],
                lambda: faces_found(no_face),
                times=10 * repeats,
            )
    finally:
        torch.set_num_threads(threads)
    return {
        "hr_images": source,
        "hr_facenet_s": round(hr_facenet, 3),
        "hr_srforensics_s": round(hr_ours, 3),
        "hr_speedup": round(hr_facenet / hr_ours, 2),
        "hr_full_searches": sum(search["full"] for _, search in ours),
        "max_landmark_difference_px": landmarks,
        "max_box_difference_px": box,
        "outputs": "one LR's outputs: 4 generated faces of 128 px; 4 photographs without a face",
        "outputs_facenet_ms": round(out_facenet * 1e3, 1),
        "outputs_srforensics_ms": round(out_ours * 1e3, 1),
        "outputs_speedup": round(out_facenet / out_ours, 2),
        "no_face_outputs_facenet_ms": round(none_facenet * 1e3, 1),
        "no_face_outputs_srforensics_ms": round(none_ours * 1e3, 1),
        "no_face_outputs_speedup": round(none_facenet / none_ours, 2),
        "outputs_same_faces_found": same,
        "no_face_outputs_found": sum(faces_found(no_face)),
        # A record of the faces protocol: one HR, 2 LRs of 4 outputs (from the figures above),
        # with faces in its outputs and without.
        "faces_record_speedup": round(
            (hr_facenet / len(hrs) + 2 * out_facenet) / (hr_ours / len(hrs) + 2 * out_ours), 2
        ),
        "no_face_record_speedup": round(
            (hr_facenet / len(hrs) + 2 * none_facenet) / (hr_ours / len(hrs) + 2 * none_ours), 2
        ),
    }


def cli_seconds(*args: str) -> float:
    """``srforensics ARGS`` in a fresh process, wall seconds."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "srforensics", *args], capture_output=True, check=True)
    return round(time.perf_counter() - t, 3)


def machine() -> dict[str, Any]:
    """The manifest's :func:`~srforensics.provenance.environment` (Python, platform, torch
    threads, allocator settings), with the CPU, the torch version and the GPU, if any."""
    import torch

    from srforensics.provenance import environment
    from srforensics.runtime import allocator_settings

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        **environment(allocator=allocator_settings()),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small workload (a smoke test)")
    parser.add_argument("--out", required=True, metavar="FILE.json")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the throughput audits run their model and metrics (default cpu)",
    )
    parser.add_argument(
        "--loaders",
        type=int,
        default=1 if (os.cpu_count() or 1) > 1 else 0,
        metavar="N",
        help="--loaders of the throughput audits (default 1 with two or more CPUs); a "
        "bicubic audit without loaders is measured beside them",
    )
    parser.add_argument(
        "--batch-size",
        default="8",
        metavar="B[,B]",
        help="--batch-size of the throughput audits, one or several (default 8, the audit's)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        metavar="A,B",
        help=f"what to measure, of {', '.join(PARTS)} (default: all). Only throughput and "
        "metrics use --device: a short GPU lease can measure them alone",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="R",
        help="bracketed audits per model (default 9; 1 with --quick)",
    )
    args = parser.parse_args(argv)
    from srforensics.runtime import tune_allocator

    tune_allocator()  # as the CLI does: the audits measured here are the command's
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"--parts takes some of {', '.join(PARTS)}, got {args.parts!r}")
    try:
        batch_sizes = [int(b) for b in args.batch_size.split(",")]
    except ValueError:
        batch_sizes = []
    if not batch_sizes or min(batch_sizes) < 1:
        parser.error(f"--batch-size takes positive integers, got {args.batch_size!r}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    q = args.quick
    sizes = {
        "faces": 4 if q else 64,
        "samples": 2 if q else 8,
        "repeats": args.repeats or (1 if q else 9),
        "worker_repeats": 1 if q else 2,
        "breakdown_records": 8 if q else 200,
        "breakdown_samples": 1 if q else 2,
        "memory_small": 5 if q else 100,
        "worker_images": 4 if q else 256,
        "worker_px": 64 if q else 288,
        "worker_counts": (1, 2) if q else (1, 2, 4),
    }
    result: dict[str, Any] = {
        "quick": q,
        "device": args.device,
        "parts": parts,
        "complete": False,  # true once every part asked for is measured
        "machine": machine(),
        "sizes": sizes,
        "overhead_ratio": None,
    }
    out_path = Path(args.out)

    def save() -> None:  # after each part: a run cut short keeps what it measured
        out_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    save()
    with tempfile.TemporaryDirectory(prefix="srforensics-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "throughput" in parts:
            _warm_up()
            faces = make_faces(tmp / "faces", sizes["faces"])
            # On a GPU the model is the cost that matters: RRDBNet at ESRGAN's size and the
            # small one; on the CPU, bicubic and the small RRDBNet.
            models = (RRDB_ESRGAN, RRDB) if args.device == "cuda" else ("bicubic", RRDB)
            for i, m in enumerate(() if q else models):
                # warm-up: first calls and lazy loads are not the audit's cost
                throughput(
                    make_faces(tmp / "warm", 2, seed=99),
                    tmp / f"warm-{i}",
                    model=m,
                    samples=2,
                    device=args.device,
                    loaders=args.loaders,
                )
            runs = [(m, args.loaders, b) for b in batch_sizes for m in models]
            if args.loaders and args.device == "cpu":
                runs.append(("bicubic", 0, batch_sizes[0]))
            result["throughput"] = []
            for i, (m, n, b) in enumerate(runs):
                t = throughput(
                    faces,
                    tmp / f"run-{i}",
                    model=m,
                    samples=sizes["samples"],
                    device=args.device,
                    loaders=n,
                    repeats=sizes["repeats"] if n == args.loaders else min(2, sizes["repeats"]),
                    batch_size=b,
                )
                result["throughput"].append(t)
                print(
                    f"measured: {m}, loaders {n}, batch {b}: overhead {t['overhead_ratio']}, "
                    f"vs bare model {t['vs_bare_model']}",
                    flush=True,
                )
                save()
            result["overhead_ratio"] = max(
                t["overhead_ratio"] for t in result["throughput"] if t["loaders"] == args.loaders
            )
            save()
        if "breakdown" in parts:
            _warm_up()
            result["breakdown"] = breakdown_share(
                tmp, records=sizes["breakdown_records"], samples=sizes["breakdown_samples"]
            )
            save()
        if "memory" in parts:
            result["memory"] = memory(tmp, small=sizes["memory_small"])
            save()
        if "workers" in parts:
            result["workers"] = workers(
                tmp,
                n_images=sizes["worker_images"],
                size=sizes["worker_px"],
                counts=sizes["worker_counts"],
                repeats=sizes["worker_repeats"],
            )
            save()
    if "ssim" in parts:
        result["ssim"] = ssim_speed(repeats=1 if args.quick else 5)
        save()
    if "end_to_end" in parts:
        with tempfile.TemporaryDirectory(prefix="srforensics-e2e-") as tmp_name:
            result["end_to_end"] = end_to_end(
                Path(tmp_name), faces=4 if args.quick else 32, samples=2 if args.quick else 4,
                repeats=1 if args.quick else 3,
            )  # fmt: skip
        save()
    if "detection" in parts:
        result["detection"] = detection_speed(
            photos=4 if args.quick else 40, repeats=1 if args.quick else 5
        )
        save()
    if "metrics" in parts:
        result["metrics"] = metric_costs(device=args.device, repeats=1 if args.quick else 5)
        save()
    if "help" in parts:
        result["cli_help_s"] = cli_seconds("--help")
        result["metrics_list_s"] = cli_seconds("metrics", "list")
    result["complete"] = True
    save()
    print_table(result)
    print(f"written: {args.out}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    """The short table ``main`` prints: one line per part measured."""
    sizes = result["sizes"]
    if "throughput" in result:
        print(
            f"{'workload':<44} {'out/s':>8} {'wall s':>8} {'model s':>8} {'metric s':>9} "
            f"{'overhead':>9} {'in run':>7} {'vs model':>9}"
        )
        for t in result["throughput"]:
            name = f"{t['model'].split(':')[-1]} (N={t['samples']}, L{t['loaders']}, B{t['batch_size']})"
            print(
                f"{name:<44} {t['outputs_per_s']:>8} "
                f"{t['wall_s']:>8} {t['model_s']:>8} {t['metrics_s']:>9} {t['overhead_ratio']:>9} "
                f"{t['in_run_ratio']:>7} {t['vs_bare_model']:>9}"
            )
    if "breakdown" in result:
        b = result["breakdown"]
        print(
            f"breakdowns of {b['outputs']} outputs ({b['records']} records): {b['breakdown_s']} s "
            f"of {b['wall_s']} s ({b['breakdown_share'] * 100:.1f}%)"
        )
    if "memory" in result:
        mem = result["memory"]
        small = sizes["memory_small"]
        print(f"peak RSS, {small} vs {small * 10} records: ratio {mem['rss_ratio']}")
    if "workers" in result:
        w = result["workers"]
        speedups = ", ".join(
            f"{k[8:].replace('_vs_', ' vs ')} x{v}"
            for k, v in w.items()
            if k.startswith("speedup_")
        )
        print(f"workers (realistic-x4): {speedups}; identical results: {w['identical_results']}")
    for e in result.get("end_to_end", []):
        print(
            f"end to end (faces, identity {e['identity']}): audit {e['audit_s']} s, hand-written "
            f"loop {e['hand_loop_s']} s, ratio {e['ratio']}"
        )
    if "ssim" in result:
        q = result["ssim"]
        print(
            f"SSIM pairs/s: ours {q['ours_pairs_per_s']} (reference features once "
            f"{q['ours_reference_features_pairs_per_s']}), scikit-image {q['skimage_pairs_per_s']}; "
            f"ratio {q['ours_vs_skimage']}, max difference {q['max_abs_difference']:.1e}"
        )
    if "detection" in result:
        d = result["detection"]
        print(
            f"face detection vs facenet-pytorch per image: HR x{d['hr_speedup']} "
            f"({d['hr_srforensics_s']} vs {d['hr_facenet_s']} s, largest landmark difference "
            f"{d['max_landmark_difference_px']} px), outputs x{d['outputs_speedup']} (without "
            f"a face x{d['no_face_outputs_speedup']}), "
            f"a faces record x{d['faces_record_speedup']} (with outputs without a face "
            f"x{d['no_face_record_speedup']})"
        )
    if "metrics" in result:
        print(
            f"metrics on {result['metrics']['device']} (ms per output, batch 8 / 64; reference features ms):"
        )
        for name, row in result["metrics"]["metrics"].items():
            ref = row.get("reference_features_ms", "-")
            print(
                f"  {name:<12} {row['ms_per_output_batch_8']:>8} / {row['ms_per_output_batch_64']:<8} {ref}"
            )
    if "cli_help_s" in result:
        print(f"srforensics --help: {result['cli_help_s']} s")
        print(f"srforensics metrics list: {result['metrics_list_s']} s")
    print(f"overhead_ratio {result['overhead_ratio']}")


if __name__ == "__main__":
    sys.exit(main())
