"""The README's Python API example, run as a user would copy it."""

from __future__ import annotations

import re

from conftest import REPO


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") : text.index("## Plug-in guide")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    from skimage import data

    from srforensics.images import encode_png

    monkeypatch.chdir(tmp_path)
    (tmp_path / "evidence.png").write_bytes(encode_png(data.astronaut()[40:104, 180:244] / 255.0))
    (tmp_path / "gates.yaml").write_text(
        "gates:\n  - {name: psnr-floor, metric: psnr, statistic: mean, op: '>=', value: 10}\n",
        encoding="utf-8",
    )
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102
    assert scope["status"] == 0 and scope["check"].ok
    assert scope["results"]["status"].eq("ok").any() and scope["page"].report.name == "review.html"
    assert scope["run"].counts.records == 5  # the sample dataset
