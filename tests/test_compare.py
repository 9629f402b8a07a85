"""srforensics compare: runs side by side, refusing runs not on the same footing."""

from __future__ import annotations

from conftest import audit_tiny, open_in_chromium, run_cli


def test_compare_two_models(tiny_run, tiny_dataset, tmp_path, chromium):
    other = tmp_path / "nearest"
    assert audit_tiny(tiny_dataset, other, model="nearest", breakdowns=True).returncode == 0
    out = tmp_path / "compare.html"
    proc = run_cli("compare", str(tiny_run[0]), str(other), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = out.read_text()
    assert "bicubic" in html and "nearest" in html and "Not on the same footing" not in html
    assert html.count('alt="bicubic output of') == html.count('alt="nearest output of') == 3
    assert 'id="groups"' in html  # both runs have per-group breakdowns (attributes group, lighting)
    dom, console, requests = open_in_chromium(chromium, out, tmp_path)
    assert 'id="metrics"' in dom and console == [] and requests == []


def test_compare_two_runs_of_one_model_labels_them_by_run(tiny_run, tiny_dataset, tmp_path):
    """Two bicubic runs: each column and chart series is named by its run folder as well,
    and the per-group charts (one series per run) are kept."""
    again = tmp_path / "again"
    assert audit_tiny(tiny_dataset, again, breakdowns=True).returncode == 0
    out = tmp_path / "compare.html"
    proc = run_cli("compare", str(tiny_run[0]), str(again), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = out.read_text()
    first = f"bicubic ({tiny_run[0].name})"
    assert first in html and "bicubic (again)" in html
    assert 'id="groups"' in html and "for each run" in html


def test_compare_refuses_runs_on_different_protocols(tiny_run, tiny_dataset, tmp_path):
    other = tmp_path / "x2"
    proc = run_cli(
        "audit",
        "--protocol",
        "bicubic-x2",
        "--dataset",
        str(tiny_dataset),
        "--samples",
        "1",
        "--metrics",
        "psnr",
        "--out",
        str(other),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("compare", str(tiny_run[0]), str(other), "--out", str(tmp_path / "c.html"))
    assert (
        proc.returncode == 2
        and "different protocol" in proc.stderr
        and "--allow-mismatch" in proc.stderr
    )
    proc = run_cli(
        "compare",
        str(tiny_run[0]),
        str(other),
        "--out",
        str(tmp_path / "c.html"),
        "--allow-mismatch",
    )
    assert proc.returncode == 0 and "Not on the same footing" in (tmp_path / "c.html").read_text()
