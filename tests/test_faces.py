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


def test_channels_last_detector_finds_what_facenet_pytorchs_default_finds():
    """The detector runs channels-last for speed; the reference is facenet-pytorch's own
    MTCNN, as constructed by default (contiguous). Tolerance: 0.01 px on boxes and
    landmarks, 1e-5 on probabilities (the layouts sum in different orders, in float32)."""
    import torch
    from facenet_pytorch import MTCNN
    from PIL import Image
    from skimage import data

    from srforensics.faces.align import detect_faces

    reference = MTCNN(keep_all=True, min_face_size=20, device="cpu")
    for rgb in (data.astronaut(), np.repeat(data.camera()[..., None], 3, -1)):
        with torch.no_grad():
            boxes, probs, points = reference.detect(Image.fromarray(rgb), landmarks=True)
        faces = detect_faces((rgb / 255.0).astype(np.float32))
        assert len(faces) == len(boxes) >= 1
        np.testing.assert_allclose([f["box"] for f in faces], np.asarray(boxes, float), atol=0.01)
        np.testing.assert_allclose(
            [f["landmarks"] for f in faces], np.asarray(points, float), atol=0.01
        )
        np.testing.assert_allclose([f["prob"] for f in faces], np.asarray(probs, float), atol=1e-5)
