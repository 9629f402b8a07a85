"""Identity preservation with a randomly initialised InceptionResnetV1 (no network)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, run_cli

from srforensics.analysis import identity_rates
from srforensics.faces.identity import (
    InsufficientPairs,
    calibrate_threshold,
    cosine_angle,
    misidentification,
    pair_scores,
)


def faces_audit(out, *extra, env=None):
    """``audit --protocol faces --metrics psnr --samples 1`` into ``out``, plus ``extra`` options."""
    return run_cli(
        "audit",
        "--protocol",
        "faces",
        "--metrics",
        "psnr",
        "--samples",
        "1",
        *extra,
        "--out",
        str(out),
        env=env,
    )


@pytest.fixture(scope="module")
def face_crop():
    from skimage import data

    from srforensics.faces.align import FaceAlign

    img = (data.astronaut() / 255.0).astype(np.float32)
    step = FaceAlign()
    return step.apply(img, **step.fit(img))


def test_identical_images_give_cosine_one_and_heavy_blur_lowers_it(face_weights, face_crop):
    from srforensics.degradations.kernels import convolve, gaussian
    from srforensics.faces.embed import load_embedder
    from srforensics.faces.identity import IdentityScorer

    scorer = IdentityScorer(
        load_embedder("facenet-vggface2", weights_file=str(face_weights)), detect=False
    )
    hr = scorer.embed([face_crop])[0]
    assert np.linalg.norm(hr) == pytest.approx(1.0, abs=1e-9)  # L2-normalised
    blurred = convolve(face_crop, gaussian(31, 6.0))
    scores, _, stability = scorer.score_lr(hr, [face_crop, face_crop.copy(), blurred])
    assert scores[0]["id_cosine"] == pytest.approx(1.0, abs=1e-6) and scores[0]["id_angle"] < 0.1
    assert scores[2]["id_cosine"] < scores[0]["id_cosine"] - 1e-7
    assert stability["id_stability_min"] < stability["id_stability_mean"] <= 1.0


def test_cosine_angle_formula():
    assert cosine_angle(1.0) == 0.0 and cosine_angle(0.0) == pytest.approx(90.0)
    assert cosine_angle(-1.0) == pytest.approx(180.0) and cosine_angle(0.5) == pytest.approx(60.0)


def test_misidentification_on_a_constructed_gallery():
    e = np.eye(4)
    gallery = np.stack([e[0], e[1], e[2]])  # subjects A, B, C: one orthogonal embedding each
    subjects = ["A", "B", "C"]

    def unit(v):
        v = np.asarray(v, dtype=float)
        return v / np.linalg.norm(v)

    outputs = {
        ("a1", 0, 0): unit([1, 0.1, 0, 0]),  # A, close to A: neither swap nor false match
        ("a2", 0, 0): unit([0.2, 1, 0, 0]),  # A, nearest B (cos 0.98): swap and false match
        ("a3", 0, 0): unit(
            [1, 0.9, 0, 0]
        ),  # A, nearest A, but B at cos 0.67 > 0.6: false match only
        ("b1", 0, 0): unit(
            [0, 0, 0, 1]
        ),  # B, orthogonal to all: nearest is a tie at 0 -> not B? see below
        ("c1", 0, 0): unit([0, 0, 1, 0.2]),  # C, close to C
        ("x1", 0, 0): unit([1, 0, 0, 0]),  # no subject: not scored
    }
    own = {
        ("a1", 0, 0): "A",
        ("a2", 0, 0): "A",
        ("a3", 0, 0): "A",
        ("b1", 0, 0): "B",
        ("c1", 0, 0): "C",
        ("x1", 0, 0): None,
    }
    res = misidentification(outputs, own, gallery, subjects, threshold=0.6)
    swaps = {k for k, v in res.items() if v["id_swap"] == 1.0}
    false_matches = {k for k, v in res.items() if v["id_false_match"] == 1.0}
    # b1 scores 0 against every subject; the first subject (A) wins the tie -> a swap, not a match.
    assert swaps == {("a2", 0, 0), ("b1", 0, 0)}
    assert false_matches == {("a2", 0, 0), ("a3", 0, 0)}
    assert res[("x1", 0, 0)] == {"id_swap": None, "id_false_match": None}
    no_threshold = misidentification(outputs, own, gallery, subjects, threshold=None)
    assert all(v["id_false_match"] is None for v in no_threshold.values())


def test_threshold_calibration_reproduces_the_asked_fmr():
    # Synthetic scores: impostors N(0.1, 0.12), genuines N(0.7, 0.1). A threshold calibrated on
    # 200 000 impostors at FMR 1e-3 gives, on 200 000 fresh impostors, an FMR within sampling error
    # (binomial standard error of each estimate: sqrt(1e-3 / 2e5) = 7e-5; tolerance 4e-4).
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.7, 0.1, 5000)
    t = calibrate_threshold(genuine, rng.normal(0.1, 0.12, 200_000), fmr=1e-3)
    fresh = rng.normal(0.1, 0.12, 200_000)
    assert (fresh >= t.value).mean() == pytest.approx(1e-3, abs=4e-4)
    # The analytic threshold of N(0.1, 0.12) at 1e-3 is 0.1 + 3.0902 * 0.12 = 0.4708.
    assert t.value == pytest.approx(0.4708, abs=0.01)
    assert t.method == "calibrated" and t.n_impostor == 200_000 and 0 <= t.fnmr < 0.01
    with pytest.raises(InsufficientPairs, match="needs at least 1000 impostor pairs"):
        calibrate_threshold(genuine, rng.normal(size=999), fmr=1e-3)


def test_pair_scores_split_genuine_and_impostor():
    e = np.eye(3)[[0, 0, 1]]
    genuine, impostor = pair_scores(e, ["A", "A", "B"])
    assert genuine.tolist() == [1.0] and impostor.tolist() == [0.0, 0.0]


def test_identity_rates_resample_records():
    values = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    records = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    df = pd.DataFrame({"status": ["ok"] * 8, "record_id": records, "id_swap": values})
    r = identity_rates(df, seed=1)["id_swap"]
    assert r["rate"] == 0.5 and 0 <= r["ci_low"] < 0.5 < r["ci_high"] <= 1
    assert (r["n_records"], r["n_outputs"], r["ci_method"]) == (4, 8, "bootstrap")
    # A rate of 1 in every record: the bootstrap is a point, so the Wilson score interval on
    # 3 records: z = 1.96, p = 1 -> lower bound n / (n + z^2) = 3 / 6.8415 = 0.4385.
    ones = pd.DataFrame({"status": "ok", "record_id": list("aabbcc"), "id_swap": 1.0})
    r = identity_rates(ones)["id_swap"]
    assert r["ci_method"] == "wilson" and r["ci_high"] == 1.0
    assert r["ci_low"] == pytest.approx(3 / (3 + 1.959964**2), abs=1e-6)


def test_audit_with_lab_weights_on_the_sample_faces(face_weights, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "audit",
        "--model",
        "bicubic",
        "--protocol",
        "faces",
        "--metrics",
        "psnr,lr_psnr",
        "--samples",
        "2",
        "--face-weights",
        str(face_weights),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pd.read_parquet(out / "results.parquet")
    ok = res[res.status == "ok"]
    for col in ("id_cosine", "id_angle", "face_detected", "id_swap"):
        assert ok[col].notna().all(), col
    assert ok.id_cosine.between(-1, 1).all() and (ok.face_detected == 1).all()
    # Two subjects give 1 impostor pair: no calibration at FMR 1e-3 -> verification unavailable.
    assert ok.id_verified.isna().all()
    with sqlite3.connect(out / "ledger.sqlite") as db:
        reason = dict(db.execute("SELECT name, unavailable FROM metrics").fetchall())["id_verified"]
    assert "needs at least 1000 impostor pairs" in reason and "--id-threshold" in reason
    per = pd.read_parquet(out / "per_input.parquet")
    assert per[per.n_ok > 0].id_stability_mean.notna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    from srforensics.images import sha256_file

    assert manifest["identity"]["embedder"]["weights_origin"] == "user-supplied"
    assert manifest["identity"]["embedder"]["weights_sha256"] == sha256_file(face_weights)
    assert set(manifest["identity"]["rates"]) >= {"id_swap", "face_detected"}
    html = (out / "report.html").read_text()
    assert "user-supplied" in html and sha256_file(face_weights) in html
    assert 'alt="identity similarity against LR-consistency, one point per output"' in html

    # With a given threshold, verification and false matches are scored.
    proc = faces_audit(
        tmp_path / "given", "--face-weights", str(face_weights), "--id-threshold", "0.5"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pd.read_parquet(tmp_path / "given" / "results.parquet")
    assert res[res.status == "ok"].id_verified.notna().all()
    m = json.loads((tmp_path / "given" / "manifest.json").read_text())
    assert m["identity"]["threshold"] == {
        "value": 0.5,
        "method": "given",
        "fmr": None,
        "n_genuine": None,
        "n_impostor": None,
        "fnmr": None,
        "source": None,
    }


def test_without_facenet_weights_the_matcher_that_installs_with_the_package_is_used(tmp_path):
    """``auto``: FaceNet's file is not in the cache, so dlib's ResNet (installed with the
    package) is the matcher; the choice and its reason are printed and recorded."""
    env = cli_env(TORCH_HOME=str(tmp_path / "torch"), SRFORENSICS_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "run"
    proc = faces_audit(out, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = next(line for line in proc.stderr.splitlines() if "face matcher" in line)
    assert "dlib-resnet-v1" in said and "20180402-114759-vggface2.pt" in said
    m = json.loads((out / "manifest.json").read_text())
    assert m["identity"]["choice"]["used"] == "dlib-resnet-v1"
    assert m["identity"]["embedder"]["weights_sha256"] == (
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
    )  # face_recognition_models 0.3.0's file, as registered
    logged = {Path(w["path"]).name: w["sha256"] for w in m["weights"]}
    assert {
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    } <= set(logged)
    res = pd.read_parquet(out / "results.parquet")
    faces = res[(res.status == "ok") & res.record_id.isin(["astronaut", "camera"])]
    assert len(faces) and faces.id_cosine.between(-1, 1).all() and faces.id_angle.notna().all()
    # The README's quick start: verification and swaps too, at the published operating point.
    assert faces.id_verified.notna().all() and faces.id_swap.notna().all()
    assert m["identity"]["threshold"]["method"] == "published"


def test_without_the_asked_matchers_weights_identity_is_unavailable_but_faces_are_found(tmp_path):
    """``--face-embedder facenet-vggface2`` without its file: the identity scores are
    unavailable with what to do, and MTCNN's face finding (weights in facenet-pytorch) is
    still reported."""
    env = cli_env(TORCH_HOME=str(tmp_path / "torch"), SRFORENSICS_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "run"
    proc = faces_audit(out, "--face-embedder", "facenet-vggface2", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pd.read_parquet(out / "results.parquet")
    ok = res[res.status == "ok"]
    assert res.id_cosine.isna().all() and ok.psnr.notna().all()
    assert ok[ok.record_id.isin(["astronaut", "camera"])].face_detected.eq(1.0).all()
    with sqlite3.connect(out / "ledger.sqlite") as db:
        unavailable = dict(db.execute("SELECT name, unavailable FROM metrics").fetchall())
    assert unavailable["face_detected"] is None
    reason = unavailable["id_cosine"]
    assert "20180402-114759-vggface2.pt" in reason
    assert "srforensics weights import 20180402-114759-vggface2.pt" in reason
    warning = next(line for line in proc.stderr.splitlines() if "id_cosine" in line)
    assert (
        warning.startswith("srforensics: warning: id_cosine, id_angle")
        and "weights import" in warning
    )
    html = (out / "report.html").read_text().split('<section id="provenance">')[0]
    # One note for the five identity metrics, and the identity section's own sentence.
    assert html.count("20180402-114759-vggface2.pt is not in") == 2
    assert 'rowspan="5"' in html
    listing = run_cli("weights", "list", env=env)
    assert "facenet-vggface2" in listing.stdout and "missing" in listing.stdout


def test_a_file_that_is_not_the_release_is_refused_by_import(face_weights, tmp_path):
    env = cli_env(TORCH_HOME=str(tmp_path / "torch"), SRFORENSICS_CACHE=str(tmp_path / "cache"))
    named = tmp_path / "20180402-114759-vggface2.pt"
    named.write_bytes(face_weights.read_bytes())
    proc = run_cli("weights", "import", str(named), env=env)
    assert proc.returncode == 2 and "matches no registered weights" in proc.stderr


def test_unknown_face_embedder_is_a_user_error(tmp_path):
    proc = faces_audit(tmp_path / "r", "--face-embedder", "arcfacce")
    assert proc.returncode == 2 and "unknown face embedder 'arcfacce'" in proc.stderr
