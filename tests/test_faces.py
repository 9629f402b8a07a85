"""MTCNN detection and alignment on real faces bundled with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

from srforensics.faces import NoFaceFound
from srforensics.faces.align import FaceAlign, template


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return (data.astronaut() / 255.0).astype(np.float32)


def test_face_found_and_landmarks_land_on_template(astronaut):
    step = FaceAlign(size=128, padding=0.2)
    params = step.fit(astronaut)
    assert params["prob"] > 0.99
    x1, y1, x2, y2 = params["box"]
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 220  # Eileen Collins' face, upper middle
    m = np.asarray(params["matrix"])
    lm = np.c_[np.asarray(params["landmarks"]), np.ones(5)] @ m.T
    # A similarity fit of 5 points: residuals of a few pixels at most.
    assert np.abs(lm[:, :2] - template(128, 0.2)).max() < 6
    crop = step.apply(astronaut, **params)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.float32
    np.testing.assert_array_equal(crop, step.apply(astronaut, **params))


def test_no_face_raises_no_face_found():
    from skimage import data

    with pytest.raises(NoFaceFound):
        FaceAlign().fit((data.coffee() / 255.0).astype(np.float32))
