"""The report opened in a real headless browser, offline."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import CHROMIUM_FLAGS, open_in_chromium

FLAGS = CHROMIUM_FLAGS


def _chromium(chromium, tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_is_self_contained(tiny_run):
    html = (tiny_run[0] / "report.html").read_text()
    srcs = re.findall(r'\bsrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<(link|script)[^>]+(href|src)=", html)
    assert "PolyForm-Noncommercial-1.0.0" in html


def test_report_renders_in_headless_chromium(chromium, tiny_run, tmp_path):
    report = tiny_run[0] / "report.html"
    proc = _chromium(
        chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", report.as_uri()
    )
    dom = proc.stdout
    assert "Super-resolution audit" in dom, proc.stderr[-2000:]
    # Summary rows, one per metric, and the failed record listed with its reason.
    for metric in ("psnr", "ssim", "psnr_rgb", "ssim_rgb", "lr_psnr", "fsim"):
        assert re.search(rf'<th scope="row"[^>]*>{metric}\b', dom)
    assert "broken.png" in dom
    # 6 distribution figures, and 3 examples of HR + LR + spread map + 2 outputs.
    assert dom.count('alt="distribution of') == 6
    examples = dom[dom.index('id="examples"') : dom.index('id="protocol"')]
    assert (
        examples.count('alt="HR of')
        == examples.count('alt="LR of')
        == examples.count('alt="per-pixel standard deviation of')
        == 3
    )
    assert examples.count('alt="output ') == 3 * 2
    # Worst cases: bicubic is deterministic, so only consistency ranks the LRs (no spread).
    galleries = dom[dom.index('id="galleries"') : dom.index('id="examples"')]
    assert "Least consistent with the evidence" in galleries
    assert "Highest spread" not in galleries
    assert galleries.count('alt="HR of') == 3 and galleries.count('alt="output ') == 3 * 2
    assert (
        dom.count('alt="per-group means with confidence intervals"') >= 2
    )  # attributes group, lighting
    assert "spread across outputs" in dom and "Worst case per input" in dom

    shot = tmp_path / "report.png"
    proc = _chromium(
        chromium, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()
    )
    assert shot.is_file(), proc.stderr[-2000:]
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10  # text, tables and images, not a blank page


@pytest.mark.parametrize("field", ["record_id"])
def test_report_escapes_hostile_text(field, tiny_dataset, tmp_path):
    # A record id with markup must appear as text, never as HTML (Jinja2 autoescape).
    import shutil

    from srforensics.run.pipeline import AuditConfig, run_audit

    root = tmp_path / "ds"
    root.mkdir()
    shutil.copy(tiny_dataset / "coffee.png", root / "coffee.png")
    (root / "metadata.csv").write_text("path,id\ncoffee.png,<script>alert(1)</script>\n")
    run = run_audit(
        AuditConfig.from_options(
            protocol="bicubic-x4",
            dataset=str(root),
            samples=1,
            metrics=("psnr",),
            out=str(tmp_path / "run"),
        )
    )
    html = run.report.read_text()
    assert (
        "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    )


def test_the_browser_checks_catch_errors_and_requests(chromium, tmp_path):
    # Negative control: a page that requests a remote image and throws must be caught.
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="http://127.0.0.1:9/x.png"><script>nope();</script></body></html>'
    )
    _, console, requests = open_in_chromium(chromium, page, tmp_path)
    assert any("nope is not defined" in c for c in console)
    assert requests == ["http://127.0.0.1:9/x.png"]


def test_reports_load_with_no_console_errors_and_no_requests(chromium, tiny_run, tmp_path):
    from srforensics.replay import preview_protocol

    sheet = preview_protocol(
        "bicubic-x4",
        tiny_run[0]
        / "images"
        / next(p.name for p in (tiny_run[0] / "images").iterdir())
        / "hr.png",
        tmp_path / "preview",
    )
    for page in (tiny_run[0] / "report.html", sheet):
        dom, console, requests = open_in_chromium(chromium, page, tmp_path)
        assert "</html>" in dom
        assert console == [] and requests == [], (page, console, requests)


def test_worst_case_table_fits_the_page_on_screen_and_in_print(chromium, tiny_run, tmp_path):
    """The per-input table (a column per metric, then diversity, spread and n_inconsistent)
    is no wider than the page in a 900 px window, and its last columns reach the PDF."""
    import shutil

    html = (tiny_run[0] / "report.html").read_text()
    probe = tmp_path / "probe.html"
    measure = (
        "<script>window.onload=()=>{const t=document.querySelector('table.per-input');"
        "document.body.setAttribute('data-fit',"
        "String(t.getBoundingClientRect().right<=document.documentElement.clientWidth));}"
        "</script></body>"
    )
    probe.write_text(html.replace("</body>", measure))
    dom = _chromium(
        chromium, tmp_path, "--window-size=900,1000", "--virtual-time-budget=5000",
        "--dump-dom", probe.as_uri(),
    ).stdout  # fmt: skip
    assert 'data-fit="true"' in dom
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    pdf = tmp_path / "report.pdf"
    _chromium(chromium, tmp_path, f"--print-to-pdf={pdf}", (tiny_run[0] / "report.html").as_uri())
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True
    ).stdout
    section = text[text.index("Worst case per input") :][:1500]
    # Narrow columns wrap their header ("n_inconsiste" / "nt"); a cut column is not printed.
    assert "diversity" in section and "n_inconsiste" in section


def test_report_pdf_for_the_case_file(chromium, tiny_dataset, tmp_path):
    """`report --pdf` prints report.pdf with headless Chromium: each page's footer carries the
    page number, the run id and the manifest's SHA-256; the verdict is in it; the PDF is
    sealed (verify checks it), and an edit to it is caught."""
    import json
    import shutil

    from conftest import audit_tiny, cli_env, run_cli

    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    gates = tmp_path / "gates.yaml"
    gates.write_text(
        "gates:\n  - {name: psnr-floor, metric: psnr, statistic: mean, op: '>=', value: 10}\n"
    )
    out = tmp_path / "run"
    assert audit_tiny(tiny_dataset, out, "--gates", str(gates)).returncode == 0
    env = cli_env(SRFORENSICS_CHROMIUM=chromium)
    proc = run_cli("report", str(out), "--pdf", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pdf = out / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and "PDF SHA-256" in proc.stdout
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True
    ).stdout
    manifest = json.loads((out / "manifest.json").read_text())
    digest = json.loads((out / "seal.json").read_text())["manifest_sha256"]
    pages = text.count("\f") or 1
    assert "Verdict: all gates passed" in text
    assert (
        text.count(f"srforensics run {manifest['run_id']} · manifest SHA-256 {digest}") >= pages - 1
    )
    assert f"page 1 of {pages}" in text
    assert run_cli("verify", str(out)).returncode == 0
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 1
    pdf.write_bytes(bytes(data))
    proc = run_cli("verify", str(out))
    assert proc.returncode == 1 and "FAIL altered: report.pdf" in proc.stdout


def test_pdf_without_chromium_says_how_to_install_it(tiny_run, tmp_path):
    import shutil

    from conftest import cli_env, run_cli

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run[0], run_dir)
    bare = tmp_path / "bin"  # a PATH with no browser on it (the CLI runs as sys.executable)
    bare.mkdir()
    env = cli_env(PATH=str(bare), SRFORENSICS_CHROMIUM="")
    proc = run_cli("report", str(run_dir), "--pdf", env=env)
    assert proc.returncode == 2 and "apt-get install -y chromium" in proc.stderr
    assert "Traceback" not in proc.stderr
