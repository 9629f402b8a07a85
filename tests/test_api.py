"""The public Python API: ``srforensics.audit``, ``review``, ``compare``, ``gate``, ``verify``."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

import srforensics
from srforensics import api


def test_the_api_is_the_package_and_keyword_only():
    assert set(api.__all__) <= set(srforensics.__all__)
    for name in ("audit", "review", "compare", "gate", "verify"):
        fn = getattr(srforensics, name)
        assert fn is getattr(api, name) and fn.__doc__ and "Examples" in fn.__doc__
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert len(positional) <= 1  # the run folder at most; the rest keyword-only
    with pytest.raises(AttributeError):
        srforensics.no_such_thing  # noqa: B018


def test_audit_gate_verify_and_open_from_python(tiny_dataset, tmp_path):
    import srforensics.run.pipeline  # noqa: F401  (the module must not hide the function)

    common = dict(
        protocol="bicubic-x4",
        dataset=str(tiny_dataset),
        samples=2,
        metrics=("psnr", "ssim"),
        save_images="none",
        breakdown_boot=0,
    )
    run = srforensics.audit(model="nullspace", out=str(tmp_path / "a"), **common)
    assert run.run_dir == (tmp_path / "a").resolve() and run.report.is_file()
    res = run.results
    assert isinstance(res, pd.DataFrame) and len(res) == run.counts.outputs
    # 4 records (one a corrupt file, whose failure is recorded), 2 outputs each
    assert run.counts.records == res.record_id.nunique() == 4
    assert run.counts.by_status == {"failed": 2, "ok": 6}
    assert len(run.per_input) == res.groupby(["record_id", "variant"]).ngroups  # one row per LR
    assert run.manifest["run_id"] and run.breakdown is None

    again = srforensics.open_run(run.run_dir)
    assert again.manifest_sha256 == run.manifest_sha256
    assert again.report_sha256 == run.report_sha256 and again.counts == run.counts

    gates = tmp_path / "gates.yaml"
    gates.write_text(
        "gates:\n  - {name: psnr-floor, metric: psnr, statistic: mean, op: '>=', value: 10}\n"
    )
    verdicts = srforensics.gate(run.run_dir, gates=gates)
    assert [v.status for v in verdicts] == ["pass"]
    assert srforensics.verify(run.run_dir).ok

    other = srforensics.audit(model="bicubic", out=str(tmp_path / "b"), **common)
    page = srforensics.compare(runs=[run.run_dir, other.run_dir], out=tmp_path / "c.html")
    assert page.is_file() and "nullspace" in page.read_text()
    with pytest.raises(srforensics.SRForensicsError, match="not both"):
        srforensics.audit(config=object(), model="bicubic")


def test_review_from_python(tmp_path):
    from PIL import Image
    from skimage import data

    evidence = tmp_path / "evidence.png"
    Image.fromarray(data.astronaut()[30:222:4, 140:332:4]).save(evidence)
    page = srforensics.review(
        image=evidence, model="nullspace", samples=3, face=False, out=str(tmp_path / "r")
    )
    assert page.report.name == "review.html" and page.report.is_file()
    assert len(page.outputs) == 3 and page.outputs.consistent.all()
    assert page.data["input"]["sha256"]
