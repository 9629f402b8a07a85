"""The face matcher that installs with the package: dlib's ResNet descriptor.

Reference values: dlib's published operating point (Euclidean distance 0.6,
http://dlib.net/face_recognition.py.html) and the cosine identity
``cos = 1 - d^2 / (2 n^2)`` for two vectors of norm ``n`` at distance ``d``. Real
photographs: ../shared/realfaces (15 photographs of 6 people; skipped when absent).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, run_cli

from srforensics.errors import SRForensicsError
from srforensics.faces.embed import DLIB_OPERATING_POINT, DlibResNet, choose_embedder
from srforensics.faces.identity import IdentityScorer, pair_scores, unit_rows


@pytest.fixture(scope="module")
def dlib_matcher():
    return DlibResNet()


@pytest.fixture(scope="module")
def identity_crops(realfaces):
    """Each photograph's faces-protocol crop (128 px, padding 0.2) and its landmarks."""
    from srforensics.faces.align import FaceAlign
    from srforensics.images import read_image

    align = FaceAlign(size=128, padding=0.2)
    rows = list(csv.DictReader(open(realfaces / "identities" / "labels.csv")))
    out = []
    for r in rows:
        img, _ = read_image(realfaces / "identities" / r["file"])
        params = align.fit(img)
        out.append((align.apply(img, **params), align.points(params), r["subject"]))
    return out


def test_the_operating_point_is_dlibs_distance_as_a_cosine():
    """0.6 at norm 1.42: 1 - 0.36 / (2 * 1.42^2) = 0.9107; at norm 1 it would be 0.82."""
    assert DLIB_OPERATING_POINT.cosine == pytest.approx(1 - 0.36 / (2 * 1.42**2), abs=5e-4)
    assert "0.82" in DLIB_OPERATING_POINT.derivation and "0.6" in DLIB_OPERATING_POINT.published


def test_genuine_pairs_score_above_impostors_on_real_photographs(dlib_matcher, identity_crops):
    """On the 15 real photographs of 6 people, the matcher ranks every genuine pair above
    every impostor pair (AUC 1.0 here; asserted >= 0.95), and the card's threshold sits
    between them for most pairs. The descriptors' mean norm is the 1.42 the operating
    point's cosine is derived from."""
    from sklearn.metrics import roc_auc_score

    raw = np.concatenate(
        [dlib_matcher.embed(_tensor(c), landmarks=p[None]).numpy() for c, p, _ in identity_crops]
    )
    norms = np.linalg.norm(raw, axis=1)
    assert norms.mean() == pytest.approx(1.42, abs=0.05)
    subjects = [s for _, _, s in identity_crops]
    genuine, impostor = pair_scores(unit_rows(raw, embedder="dlib"), subjects)
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    auc = roc_auc_score(labels, np.r_[genuine, impostor])
    print(
        f"dlib-resnet-v1 on realfaces/identities: AUC {auc:.3f}, {len(genuine)} genuine, {len(impostor)} impostor pairs"
    )
    assert auc >= 0.95
    t = DLIB_OPERATING_POINT.cosine
    assert (genuine >= t).mean() >= 0.8 and (impostor < t).mean() >= 0.95


def test_landmarks_of_the_crop_come_from_the_alignment(identity_crops):
    """The faces protocol's crop carries MTCNN's landmarks mapped by its matrix, which lie
    near the ArcFace template it was aligned to (a least-squares fit: a few pixels)."""
    from srforensics.faces.align import template

    for _, points, _ in identity_crops:
        assert np.abs(points - template(128, 0.2)).max() < 8


def test_embeddings_are_normalised_and_zero_vectors_refused():
    """A plug-in that returns vectors of any length gets their true cosine (numpy's), never
    a clipped dot product; a zero or NaN vector is an error naming the embedder."""
    v = np.array([[3.0, 4.0, 0.0], [0.0, 2.0, 2.0]])
    u = unit_rows(v, embedder="lab")
    expected = v[0] @ v[1] / (np.linalg.norm(v[0]) * np.linalg.norm(v[1]))
    assert u[0] @ u[1] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(SRForensicsError, match="'lab' returned 1 zero or non-finite"):
        unit_rows(np.array([[1.0, 0.0], [0.0, 0.0]]), embedder="lab")
    with pytest.raises(SRForensicsError, match=r"must return \(B, D\)"):
        unit_rows(np.ones(3), embedder="lab")


def test_scorer_without_a_matcher_still_finds_faces(identity_crops):
    crop = identity_crops[0][0]
    scores, embs, lr = IdentityScorer(None).score_lr(None, [crop, np.zeros_like(crop)])
    assert [s["face_detected"] for s in scores] == [1.0, 0.0] and embs is None and lr == {}


def test_auto_prefers_facenet_when_its_weights_are_cached(face_weights, tmp_path, monkeypatch):
    """The automatic choice takes FaceNet VGGFace2 when its verified file is in the cache,
    else dlib; a name is taken as asked."""
    from srforensics import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert choose_embedder("auto")[0] == "dlib-resnet-v1"
    target = W.cached_path(W.spec("facenet-vggface2"))
    target.parent.mkdir(parents=True)
    target.write_bytes(face_weights.read_bytes())  # not the release: refused, so dlib again
    name, why = choose_embedder("auto")
    assert name == "dlib-resnet-v1" and "facenet-vggface2" in why
    assert choose_embedder("dlib") == ("dlib-resnet-v1", "asked for by name")


def test_audit_of_real_photographs_gives_identity_and_swap_rates(realfaces, tmp_path):
    """bicubic on ``faces`` over 15 photographs of 6 people with the default matcher: finite
    identity columns, swap and false-match rates; too few impostor pairs to calibrate at
    FMR 1e-3 (91 < 1000), so the card's published threshold is used and said to be."""
    out = tmp_path / "run"
    proc = run_cli(
        "audit", "--model", "bicubic", "--protocol", "faces",
        "--dataset", str(realfaces / "identities"), "--samples", "1",
        "--metrics", "psnr,lr_psnr", "--out", str(out),
        env=cli_env(TORCH_HOME=str(tmp_path / "torch")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pd.read_parquet(out / "results.parquet")
    ok = res[res.status == "ok"]
    assert len(ok) == 30 and ok.subject.nunique() == 6
    for col in ("id_cosine", "id_angle", "id_verified", "id_swap", "id_false_match"):
        assert ok[col].notna().all() and np.isfinite(ok[col]).all(), col
    m = json.loads((out / "manifest.json").read_text())
    ident = m["identity"]
    assert ident["threshold"]["method"] == "published"
    assert ident["threshold"]["value"] == DLIB_OPERATING_POINT.cosine
    assert "impostor pairs" in ident["threshold_why"]
    for rate in ("id_swap", "id_false_match", "id_verified"):
        r = ident["rates"][rate]
        assert r["n_records"] == 15 and 0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1
    html = (out / "report.html").read_text()
    assert "published operating point" in html and "dlib-resnet-v1" in html


def test_review_shows_identity_agreement_with_the_default_matcher(realfaces, tmp_path):
    """``review`` of the real 240p frame's face with a stochastic sampler: faces found, the
    outputs' identity agreement judged at the matcher's published threshold; with a
    deterministic model one output is drawn, and the run says why."""
    from PIL import Image

    face = tmp_path / "face-240p.png"
    Image.open(realfaces / "evidence" / "obama-240p.jpg").convert("RGB").crop(
        (172, 6, 272, 106)
    ).save(face)
    env = cli_env(TORCH_HOME=str(tmp_path / "torch"))
    proc = run_cli(
        "review", str(face), "--sampler", "input-noise", "--samples", "4",
        "--out", str(tmp_path / "rv"), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "face matcher dlib-resnet-v1" in proc.stderr
    review = json.loads((tmp_path / "rv" / "review.json").read_text())
    f = review["face"]
    assert f["faces_found"] == 4 and f["embedder"]["name"] == "dlib-resnet-v1"
    assert -1 <= f["stability_min"] <= f["stability_mean"] <= 1
    assert f["threshold"] == DLIB_OPERATING_POINT.cosine
    proc = run_cli("review", str(face), "--out", str(tmp_path / "det"), env=env)
    assert proc.returncode == 0 and "deterministic" in proc.stderr
    assert len(json.loads((tmp_path / "det" / "review.json").read_text())["outputs"]) == 1


def _tensor(img):
    from srforensics.images import to_tensor

    return to_tensor([img])


def test_weights_verify_rehashes_the_package_files():
    """``weights verify`` covers the matcher's files in their installed package; a file is
    refused by ``weights import`` there, since the package is where it is read from."""
    from srforensics import weights as W

    entries = {e.name: e for e in W.verify_cache()}
    assert entries["dlib-resnet-v1"].status == "ok"
    assert entries["dlib-landmarks-5"].status == "ok"
    with pytest.raises(W.WeightsError, match="installed package"):
        W.import_file(W.cached_path(W.spec("dlib-landmarks-5")))


def test_review_of_real_240p_evidence_against_the_1080p_frame(realfaces, tmp_path):
    """The evidence example of docs/review.md: the face region of a real 240p frame reviewed with a
    stochastic model, the same region of the real 1080p frame as ``--reference``: every
    output gets RGB PSNR/SSIM and a face similarity to what the camera recorded closer up."""
    from PIL import Image

    low = Image.open(realfaces / "evidence" / "obama-240p.jpg").convert("RGB")
    high = Image.open(realfaces / "evidence" / "obama-1080p.jpg").convert("RGB")
    box = (172, 6, 272, 106)
    f = high.size[0] / low.size[0]
    low.crop(box).save(tmp_path / "face-240p.png")
    high.crop(tuple(round(v * f) for v in box)).save(tmp_path / "face-1080p.png")
    out = tmp_path / "review"
    proc = run_cli(
        "review", str(tmp_path / "face-240p.png"), "--model", "nullspace", "--samples", "4",
        "--reference", str(tmp_path / "face-1080p.png"), "--out", str(out),
        env=cli_env(TORCH_HOME=str(tmp_path / "torch")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    review = json.loads((out / "review.json").read_text())
    ref = review["reference"]
    assert ref["resized_to"] == [400, 400] and ref["size"] == [450, 450]
    for o in review["outputs"]:
        assert 10 < o["psnr_rgb_vs_reference"] < 60 and 0 < o["ssim_rgb_vs_reference"] <= 1
        assert -1 <= o["id_cosine_vs_reference"] <= 1
    ident = ref["identity"]
    print(f"outputs vs the 1080p face: cosine mean {ident['mean']:.3f}, min {ident['min']:.3f}")
    assert ident["matcher"] == "dlib-resnet-v1" and ident["faces"] == 4 and ident["min"] > 0.8
    html = (out / "review.html").read_text()
    assert "Against a real higher-resolution image" in html and 'alt="the reference image"' in html
