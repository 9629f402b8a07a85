"""MTCNN detection and alignment on real faces bundled with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

from srforensics.faces import NoFaceFound
from srforensics.faces.align import FaceAlign, template
from srforensics.images import to_uint8


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


def _torch_area(pixels, size, box=None):
    """torch's area resize (``interpolate(mode="area")``), as facenet-pytorch's
    ``imresample`` calls it, of uint8 images (N, H, W, 3) or of one box (row, col, h, w)
    of image ``box[0]``, normalised as MTCNN takes it."""
    import torch
    from torch.nn.functional import interpolate

    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().contiguous()
    if box is not None:
        i, r, c, h, w = box
        x = x[i : i + 1, :, r : r + h, c : c + w]
    return (interpolate(x, size=size, mode="area") - 127.5) * 0.0078125


def _check_area_resizes(pixels, sizes, boxes, crop_size):
    from srforensics.faces.mtcnn import _Pixels

    table = _Pixels(pixels)
    which = list(range(len(pixels)))
    for size in sizes:
        assert np.array_equal(table.level(which, size), _torch_area(pixels, size)), size
    inds, y, x, h, w = (np.array(v) for v in zip(*boxes, strict=True))
    # facenet's pad gives 1-based, inclusive rows y..ey and columns x..ex.
    crops = table.crops(inds, y + 1, y + h, x + 1, x + w, crop_size)
    expected = np.concatenate([_torch_area(pixels, (crop_size,) * 2, b) for b in boxes])
    assert np.array_equal(crops, expected)
    return table


def test_area_resizes_from_the_summed_area_table_are_torchs_to_the_bit():
    """Pyramid levels and R-Net / O-Net crops from the summed-area table against torch's own
    area resize: equal bit for bit (exact integer sums, divided as torch divides), on random
    and saturated 8-bit images, odd sizes, boxes on the borders; bins over 2**24 / 255
    pixels go to torch itself; the table is added up two ways (a few small images, one
    large one) and is int64 where int32 would overflow."""
    from srforensics.faces.mtcnn import pyramid_scales

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (3, 97, 131, 3), dtype=np.uint8)
    sizes = [(int(97 * s + 1), int(131 * s + 1)) for s in pyramid_scales(97, 131, 20)]
    boxes = [(int(rng.integers(3)), 0, 0, 97, 131), (2, 90, 120, 7, 11), (1, 5, 7, 1, 1)]
    boxes += [
        (
            int(rng.integers(3)),
            int(r),
            int(c),
            int(rng.integers(1, 98 - r)),
            int(rng.integers(1, 132 - c)),
        )
        for r, c in rng.integers(0, 90, (40, 2))
    ]
    for crop_size in (24, 48):
        _check_area_resizes(pixels, sizes, boxes, crop_size)
    # One output from 300 x 300 pixels: a bin of 90000 > 65793, torch's float32 sum rounds.
    big = np.full((1, 300, 300, 3), 255, dtype=np.uint8)
    big[0, ::7] = rng.integers(0, 256, (43, 300, 3), dtype=np.uint8)
    _check_area_resizes(big, [(1, 1), (2, 3)], [(0, 0, 0, 300, 300)], 1)
    # A photograph's size (the table added up row after row).
    photo = rng.integers(0, 256, (1, 1000, 1100, 3), dtype=np.uint8)
    sizes = [(601, 661), (int(1000 * 0.0301 + 1), int(1100 * 0.0301 + 1))]
    table = _check_area_resizes(photo, sizes, [(0, 0, 0, 1000, 1100), (0, 990, 3, 10, 12)], 48)
    assert table.table.dtype == np.int32
    # 2900 x 3000 saturated pixels: sums beyond int32.
    huge = np.full((1, 2900, 3000, 3), 255, dtype=np.uint8)
    table = _check_area_resizes(huge, [(13, 14)], [(0, 0, 0, 2900, 3000), (0, 7, 9, 50, 60)], 24)
    assert table.table.dtype == np.int64


def _photos(realfaces, names):
    from PIL import Image

    return [np.asarray(Image.open(realfaces / "identities" / n).convert("RGB")) for n in names]


def _channels_last_reference(rgb):
    """facenet-pytorch's own ``MTCNN.detect`` with the detector's channels-last networks."""
    import torch
    from PIL import Image

    from srforensics.faces.mtcnn import _detector

    with torch.no_grad():
        boxes, probs, points = _detector(20).detect(Image.fromarray(rgb), landmarks=True)
    return np.asarray(boxes, float), np.asarray(probs, float), np.asarray(points, float)


@pytest.mark.parametrize("name", ["obama_1.jpg", "kit_harington_2.jpg", "alex_lacamoire_1.png"])
def test_cascade_gives_what_facenet_pytorchs_detect_gives(realfaces, name):
    """The cascade of srforensics.faces.mtcnn against facenet-pytorch's ``MTCNN.detect`` on
    the same networks: measured equal to the bit; tolerance 1e-4 px for float reordering."""
    from srforensics.faces.align import detect_faces

    (rgb,) = _photos(realfaces, [name])
    boxes, probs, points = _channels_last_reference(rgb)
    faces = detect_faces(rgb)
    assert len(faces) == len(boxes) >= 1
    np.testing.assert_allclose([f["box"] for f in faces], boxes, atol=1e-4)
    np.testing.assert_allclose([f["landmarks"] for f in faces], points, atol=1e-4)
    np.testing.assert_allclose([f["prob"] for f in faces], probs, atol=1e-6)


def test_a_batch_of_equal_images_finds_what_each_alone_finds(astronaut):
    """Outputs of one LR go through the cascade together: the same faces as one by one
    (tolerance 1e-3 px: a batched convolution may sum in another order)."""
    from srforensics.faces.mtcnn import detect_batch

    rng = np.random.default_rng(0)
    crop = astronaut[20:276, 120:376]
    noisy = [np.clip(crop + rng.normal(0, 0.03, crop.shape), 0, 1) for _ in range(3)]
    images = [*noisy, astronaut, np.zeros((8, 8, 3))]  # two sizes, and one too small for a face
    batched = detect_batch(images)
    alone = [detect_batch([img])[0] for img in images]
    assert [len(f) for f in batched] == [len(f) for f in alone]
    assert all(len(f) >= 1 for f in batched[:4]) and batched[4] == []
    for b, a in zip(batched, alone, strict=True):
        for fb, fa in zip(b, a, strict=True):
            np.testing.assert_allclose(fb["box"], fa["box"], atol=1e-3)
            np.testing.assert_allclose(fb["landmarks"], fa["landmarks"], atol=1e-3)


def test_bounded_search_finds_the_full_searchs_largest_face(realfaces, astronaut):
    """The alignment's bounded search against the full pyramid's largest face (facenet's
    ``MTCNN.detect``, select_largest) on real photographs: measured equal, tolerance 1e-4 px."""
    from skimage import data

    from srforensics.faces.mtcnn import search_largest_face

    names = ["obama_3.jpg", "biden_2.jpg", "rose_leslie_2.jpg"]
    camera = np.repeat(data.camera()[..., None], 3, -1)
    for rgb in [*_photos(realfaces, names), camera]:
        boxes, _, points = _channels_last_reference(rgb)
        faces, search = search_largest_face(rgb)
        np.testing.assert_allclose(faces[0]["box"], boxes[0], atol=1e-4)
        np.testing.assert_allclose(faces[0]["landmarks"], points[0], atol=1e-4)
        assert search["from_face"] == pytest.approx(min(rgb.shape[:2]) / 12, abs=1e-3)
    # Large portraits are found without the finest levels; camera's 55 px face, under twice
    # 512 / 12 px, is looked for again on the full pyramid.
    assert search["full"] is True
    assert search_largest_face(_photos(realfaces, names[:1])[0])[1]["full"] is False


def test_bounded_search_falls_back_to_the_full_pyramid_for_a_small_face(astronaut):
    """A 70 px face on a 1200 px canvas: under the coarse search's 100 px, found by the full
    search (the face the full pyramid finds on the same canvas)."""
    from skimage.transform import resize

    from srforensics.faces.align import detect_faces
    from srforensics.faces.mtcnn import search_largest_face

    canvas = np.zeros((1200, 1200, 3))
    canvas[500:640, 500:640] = resize(astronaut[0:256, 120:376], (140, 140))
    faces, search = search_largest_face(canvas)
    assert search == {"from_face": 100.0, "full": True}
    full = detect_faces(canvas)
    assert len(faces) == len(full) >= 1
    np.testing.assert_allclose(faces[0]["box"], full[0]["box"], atol=1e-4)
    x1, y1, x2, y2 = faces[0]["box"]
    assert 500 < x1 < x2 < 640 and 480 < y1 < y2 < 660


def test_faces_found_in_outputs_is_what_facenet_finds_in_each(astronaut):
    """``face_detected`` for one LR's outputs (one batch, coarse levels first) against
    facenet-pytorch's ``MTCNN.detect`` on each output alone: aligned faces, noisy ones,
    photographs without a face, and a face under a quarter of the side (found by the full
    search)."""
    from skimage import data
    from skimage.transform import resize

    from srforensics.faces.mtcnn import detect_batch, faces_found

    rng = np.random.default_rng(1)
    face = resize(astronaut[0:256, 120:376], (128, 128))
    small = np.zeros((128, 128, 3))
    small[44:84, 44:84] = resize(face, (40, 40))  # a face box of about 13 px
    groups = [
        [np.clip(face + rng.normal(0, s, face.shape), 0, 1) for s in (0.0, 0.05, 0.1, 0.2)],
        [resize(img / 255.0, (128, 128)) for img in (data.coffee(), data.chelsea(), data.rocket())],
        [small, small[::-1].copy()],
    ]
    for group in groups:
        expected = [_channels_last_reference(to_uint8(img))[0].ndim == 2 for img in group]
        assert faces_found(group) == expected
    # The small face: missed by the coarse levels, found by the full search.
    assert detect_batch([small], from_face=32.0) == [[]] and faces_found([small]) == [True]
    assert not any(faces_found(groups[1]))
    # Images of several sizes: each size searched on its own bound.
    assert faces_found([astronaut, groups[1][0], face, small]) == [True, False, True, True]


def test_candidates_without_a_pixel_are_dropped_before_r_net(astronaut):
    """A candidate box wholly outside its image has no crop: dropped (facenet-pytorch leaves
    it out of its crops and then fails on the mismatch), the others scored as alone."""
    import torch

    from srforensics.faces.mtcnn import _Cascade

    def stage2(boxes):  # a fresh cascade each time: R-Net's answers are kept per cascade
        cascade = _Cascade([to_uint8(astronaut)], 20)
        return cascade._stage2(boxes, torch.zeros(len(boxes), dtype=torch.long))

    inside = torch.tensor([[180.0, 60.0, 290.0, 200.0, 0.9]])
    outside = torch.tensor([[-90.0, -80.0, -40.0, -30.0, 0.95]])
    alone, both = stage2(inside.clone()), stage2(torch.cat([outside, inside]))
    assert len(alone[0]) == 1  # Eileen Collins' face passes R-Net
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])
    assert len(stage2(outside.clone())[0]) == 0
