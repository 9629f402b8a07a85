"""protocols/, datasets/ and reports/ ship inside the wheel and are found there."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.mark.slow
def test_wheel_ships_resources_and_finds_them(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(tmp_path.glob("srforensics-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "srforensics/_resources/protocols/faces.yaml",
        "srforensics/_resources/protocols/bicubic-x4.yaml",
        "srforensics/_resources/datasets/sample.yaml",
        "srforensics/_resources/reports/audit.html.j2",
        "srforensics/_resources/reports/style.css",
        "srforensics/metrics/params/niqe_pris_params.npz",
        "srforensics/metrics/params/brisque_live_allmodel",
        "srforensics/metrics/params/NOTICE.md",
    ):
        assert expected in names
    assert any(n.endswith("entry_points.txt") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import srforensics.resources as r, srforensics.degradations.protocol as p;"
        "print(r.resource_dir('protocols'));"
        "print(sorted(p.available_protocols()));"
        "print(r.resource_dir('reports'));"
        "import srforensics.weights as W; print(W.require('niqe-pristine'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == str(site / "srforensics" / "_resources" / "protocols")
    assert "'faces'" in lines[1]
    assert lines[2].startswith(str(site))
    assert lines[3] == str(site / "srforensics" / "metrics" / "params" / "niqe_pris_params.npz")


def test_the_licences_page_lists_what_every_report_lists():
    """docs/licences.md and the report's licence table (provenance.DEPENDENCY_LICENCES) agree,
    pyiqa's non-commercial licence first; every declared dependency has a licence."""
    import re
    import tomllib

    from conftest import REPO

    from srforensics.provenance import DEPENDENCY_LICENCES

    page = (REPO / "docs" / "licences.md").read_text(encoding="utf-8")
    table = page[page.index("## Dependencies") : page.index("## Weight and parameter files")]
    rows = dict(re.findall(r"^\| (\w[\w.-]*) \| (.+) \|$", table, re.M)[1:])  # skip the header
    assert rows == DEPENDENCY_LICENCES
    assert next(iter(rows)) == "pyiqa" and "Non" in rows["pyiqa"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert declared <= {k.lower() for k in DEPENDENCY_LICENCES}, declared - set(DEPENDENCY_LICENCES)
    assert project["license"] == "Apache-2.0" and (REPO / "LICENSE").is_file()
