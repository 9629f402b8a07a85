"""``--device cuda`` against the same audit on the CPU. Runs only where torch sees a CUDA device
(``pytest -m gpu``); skipped elsewhere, CI included.

The LRs are made on the CPU in both runs (degradation is the protocol's, not the device's), so
they must be byte-identical. Model outputs and metrics are computed on the GPU in one run and
on the CPU in the other: float32 kernels differ in summation order (and cuDNN convolutions may
use TF32), so an output can differ by one 8-bit level in some pixels, and every score by as
much as that moves it. The tolerances below bound that, per column.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from srforensics.run.pipeline import AuditConfig, run_audit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

KEYS = ["record_id", "variant", "sample"]
RRDB = "workloads:RandomRRDBNet"  # tests/workloads.py
#: Largest |cuda - cpu| allowed per column (psnr-like in dB, id_angle in degrees, the rest on
#: their own scales). Measured on an H100 (torch 2.11, cuDNN 9.19, TF32 convolutions allowed,
#: as torch's default): ``bicubic`` gave bit-identical outputs and differences of at most
#: 6e-7 (vif) and 8e-6 (piqe); the random RRDBNet, whose outputs all differed in some pixels,
#: at most 1e-5 dB, 1.1e-4 (fsim), 7e-6 (gmsd), 0.047 (piqe, a block-thresholded score),
#: 3e-8 (id_cosine) and 9e-5 degrees. The tolerances are ten to a hundred times those.
TOLERANCE = {
    "psnr": 1e-3,
    "psnr_rgb": 1e-3,
    "lr_psnr": 1e-3,
    "lr_psnr_hr": 1e-3,
    "ssim": 1e-4,
    "ssim_rgb": 1e-4,
    "fsim": 1e-3,
    "vif": 1e-4,
    "gmsd": 1e-4,
    "piqe": 0.5,
    "id_cosine": 1e-6,
    "id_angle": 1e-3,
}


def _audit(tmp_path, device: str, model: str, face_weights, **how) -> tuple[pd.DataFrame, dict]:
    run = run_audit(
        AuditConfig.from_options(
            **how,
            model=model,
            protocol="faces",
            samples=2,
            device=device,
            face_weights=str(face_weights),
            id_threshold=0.5,
            breakdown_boot=0,
            save_images="none",
            out=str(tmp_path / device),
        )
    )
    results = pd.read_parquet(run.run_dir / "results.parquet").sort_values(KEYS)
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    return results.reset_index(drop=True), manifest


def differences(cpu: pd.DataFrame, cuda: pd.DataFrame) -> dict[str, float]:
    """Largest |cuda - cpu| of each numeric column both runs scored (NaN where only one did)."""
    out = {}
    for col in TOLERANCE:
        a, b = cpu[col].to_numpy(float), cuda[col].to_numpy(float)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            out[col] = float("nan")
        elif np.isnan(a).all():
            continue
        else:
            out[col] = float(np.nanmax(np.abs(a - b)))
    return out


@pytest.mark.parametrize("model", ["bicubic", RRDB])
def test_a_cuda_audit_scores_as_the_cpu_audit(model, face_weights, tmp_path):
    cpu, cpu_manifest = _audit(tmp_path, "cpu", model, face_weights)
    cuda, manifest = _audit(tmp_path, "cuda", model, face_weights)

    assert manifest["device"] == "cuda" and cpu_manifest["device"] == "cpu"
    gpu = manifest["environment"]["cuda"]
    assert gpu["device_name"] == torch.cuda.get_device_name()
    assert isinstance(gpu["cudnn_allow_tf32"], bool)
    assert "cuda" not in cpu_manifest["environment"]

    assert cpu[KEYS + ["status", "seed", "lr_sha256"]].equals(
        cuda[KEYS + ["status", "seed", "lr_sha256"]]
    ), "the LRs, seeds and statuses must not depend on the device"
    assert (cuda.status == "ok").sum() > 0
    ok = cuda.status == "ok"
    same_outputs = float((cpu.output_sha256[ok] == cuda.output_sha256[ok]).mean())
    diffs = differences(cpu, cuda)
    print(
        f"\n{model}: ok outputs bit-identical to the CPU's: {same_outputs:.3f}; max |diff| {diffs}"
    )
    over = {c: d for c, d in diffs.items() if not d <= TOLERANCE[c]}
    assert not over, f"cuda differs from cpu by more than the tolerance: {over} (all: {diffs})"
    assert cuda.loc[ok, "face_detected"].equals(cpu.loc[ok, "face_detected"])


@pytest.fixture(scope="module")
def local_cuda_run(face_weights, tmp_path_factory) -> pd.DataFrame:
    return _audit(tmp_path_factory.mktemp("local"), "cuda", RRDB, face_weights)[0]


@pytest.mark.parametrize(
    "how", [dict(workers=2), dict(executor="ray", workers=2)], ids=["workers", "ray"]
)
def test_cuda_workers_and_ray_give_the_results_of_a_local_cuda_run(
    how, local_cuda_run, face_weights, tmp_path
):
    """Issue 10: local, multi-worker and Ray runs of the same audit give identical results
    columns, on the GPU too. With one GPU and two Ray actors, each actor asks for half of it
    (``gpu_share``): whole GPUs would leave the second actor unplaced, and the run waiting."""
    if how.get("executor") == "ray":
        pytest.importorskip("ray")
    results, manifest = _audit(tmp_path, "cuda", RRDB, face_weights, **how)
    assert manifest["device"] == "cuda"
    assert (results.status == "ok").sum() > 0
    pd.testing.assert_frame_equal(local_cuda_run, results)
