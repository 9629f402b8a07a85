"""The report's histograms: one axes per thread, reused, draws what a new figure draws."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
from PIL import Image

from srforensics.report.figures import distribution


def _fresh(kwargs: dict) -> str:
    """``distribution(**kwargs)`` in a new thread: its own, new figure."""
    out = []
    t = threading.Thread(target=lambda: out.append(distribution(**kwargs)))
    t.start()
    t.join()
    return out[0]


def test_a_reused_histogram_is_the_png_of_a_new_figure():
    rng = np.random.default_rng(0)
    draws = [
        dict(values=rng.normal(size=1024).tolist(), title="psnr", higher_is_better=True),
        dict(values=[float("nan")], title="empty", higher_is_better=False),  # the text branch
        dict(
            values=(rng.normal(size=300) * 0.01 + 0.9).tolist(), title="ssim", higher_is_better=True
        ),
        dict(values=[3.0], title="one", higher_is_better=False),
        dict(
            values=(rng.gamma(2.0, 40.0, size=64) - 3).tolist(),
            title="piqe",
            higher_is_better=False,
        ),
    ]
    draws.append(draws[0])  # the same histogram again, after the others
    reused = [distribution(**kw) for kw in draws]  # one axes, in this thread
    assert reused == [_fresh(kw) for kw in draws]
    assert len(set(reused)) == len(draws) - 1  # the first and last are the same histogram
    png = Image.open(io.BytesIO(base64.b64decode(reused[0].split(",", 1)[1])))
    assert png.format == "PNG" and png.size == (420, 240)


def test_a_figure_png_has_the_pixels_of_matplotlibs_own_png():
    """Figures are encoded at a faster zlib level than Pillow's default: other bytes, the
    same picture. Reference: the same figure saved by matplotlib with its defaults."""
    from matplotlib.figure import Figure

    from srforensics.report.figures import _figure_png

    fig = Figure(figsize=(4.2, 2.4))
    ax = fig.add_subplot()
    ax.hist(np.random.default_rng(1).normal(size=500), bins=20)
    ax.set_title("a histogram")
    ours = base64.b64decode(_figure_png(fig).split(",", 1)[1])
    theirs = io.BytesIO()
    fig.savefig(theirs, format="png", dpi=100, metadata={"Software": None})
    with Image.open(io.BytesIO(ours)) as a, Image.open(theirs) as b:
        assert a.size == b.size == (420, 240)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
