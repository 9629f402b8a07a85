"""Case review of one evidence image, no ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import CHROMIUM_FLAGS, run_cli

from srforensics.images import read_image, sha256_file


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("evidence") / "cam 01 <img src=x onerror=alert(1)>.png"
    Image.fromarray(data.astronaut()[30:222:4, 140:332:4]).save(path)  # a 48 px face
    return path


def test_review_of_a_stochastic_model(evidence, tmp_path):
    out = tmp_path / "review"
    proc = run_cli(
        "review", str(evidence), "--model", "nullspace", "--samples", "4", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(out / "review.html")
    review = json.loads((out / "review.json").read_text())
    assert review["input"]["sha256"] == sha256_file(evidence)
    assert len(review["outputs"]) == 4 and len({o["sha256"] for o in review["outputs"]}) == 4
    assert all(
        o["consistent"] and o["lr_psnr"] >= 45 for o in review["outputs"]
    )  # nullspace: by construction
    assert review["pixel_std_mean"] > 0 and "piqe" in review["outputs"][0]
    for o in review["outputs"]:
        img, _ = read_image(out / o["file"])
        assert img.shape == (192, 192, 3)
    html = (out / "review.html").read_text()
    assert (
        "<img src=x onerror=alert(1)>" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    )
    assert "These images are not evidence" in html


def test_review_of_a_deterministic_model_shows_no_spread(evidence, tmp_path):
    proc = run_cli(
        "review",
        str(evidence),
        "--model",
        "bicubic",
        "--samples",
        "3",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    review = json.loads((tmp_path / "r" / "review.json").read_text())
    # One output drawn, not three identical copies; the console and the page say why.
    assert review["pixel_std_mean"] == 0 and len(review["outputs"]) == 1
    assert "bicubic is deterministic" in proc.stderr and "--sampler" in proc.stderr
    assert "its 3 outputs would be identical" in (tmp_path / "r" / "review.html").read_text()


def test_review_warns_when_outputs_disagree_on_identity(evidence, tmp_path):
    proc = run_cli(
        "review",
        str(evidence),
        "--model",
        "srf_test_plugins:LoudNoise",
        "--samples",
        "6",
        "--face",
        "--face-embedder",
        "srf_test_plugins:ColourEmbedder",
        "--id-threshold",
        "0.999",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    review = json.loads((tmp_path / "r" / "review.json").read_text())
    face = review["face"]
    assert face["stability_min"] < 0.999
    assert any("disagree on identity" in w for w in face["warnings"])
    html = (tmp_path / "r" / "review.html").read_text()
    assert 'role="alert"' in html and "disagree on identity" in html


def test_review_without_face_weights_says_why(evidence, tmp_path):
    from conftest import cli_env

    env = cli_env(TORCH_HOME=str(tmp_path / "torch"), SRFORENSICS_CACHE=str(tmp_path / "cache"))
    proc = run_cli(
        "review", str(evidence), "--samples", "2", "--face-embedder", "facenet-vggface2",
        "--out", str(tmp_path / "r"), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    face = json.loads((tmp_path / "r" / "review.json").read_text())["face"]
    assert "20180402-114759-vggface2.pt" in face["identity_unavailable"]
    assert "identity agreement unavailable" in proc.stderr  # said on the console too


def test_review_bad_input(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    proc = run_cli("review", str(bad), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "not a readable image" in proc.stderr


def test_review_in_headless_chromium_and_print_to_pdf(chromium, evidence, tmp_path):
    out = tmp_path / "r"
    assert (
        run_cli(
            "review", str(evidence), "--model", "nullspace", "--samples", "3", "--out", str(out)
        ).returncode
        == 0
    )
    profile = tmp_path / "profile"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    uri = (out / "review.html").as_uri()
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", uri], capture_output=True, text=True, timeout=120
    ).stdout
    from conftest import open_in_chromium

    _, console, requests = open_in_chromium(chromium, out / "review.html", tmp_path)
    assert console == [] and requests == []
    for section in ('id="input"', 'id="agreement"', 'id="outputs"', 'id="provenance"'):
        assert section in dom
    assert dom.count("<img") == 2 + 3  # input, std map, outputs
    pdf = tmp_path / "review.pdf"
    subprocess.run(
        [chromium, *flags, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    assert shutil.which("chromium") or chromium


def test_review_pdf_carries_the_evidence_hash_on_every_page(chromium, evidence, tmp_path):
    from conftest import cli_env

    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    out = tmp_path / "r"
    proc = run_cli(
        "review", str(evidence), "--model", "nullspace", "--samples", "3", "--pdf",
        "--out", str(out), env=cli_env(SRFORENSICS_CHROMIUM=chromium),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    sha = json.loads((out / "review.json").read_text())["input"]["sha256"]
    text = subprocess.run(
        ["pdftotext", "-layout", str(out / "review.pdf"), "-"], capture_output=True, text=True
    ).stdout
    pages = text.count("\f") or 1
    assert text.count(f"evidence SHA-256 {sha}") >= pages - 1 and "page 1 of" in text
    assert "PDF SHA-256" in proc.stdout
