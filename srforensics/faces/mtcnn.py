"""MTCNN's cascade (Zhang et al. 2016) as facenet-pytorch runs it, for a batch of images.

facenet-pytorch's ``detect_face`` is followed step for step — the same networks and weights,
the same image pyramid, thresholds, non-maximum suppressions and box regressions — with
three changes in how the work is laid out, none in what is computed:

- the pyramid's area resize runs on a contiguous float copy of the images (facenet resizes
  a permuted view, the same sums read with a stride, about 1.5 times slower on the CPU);
- the crops of stages two and three are resized in one call per crop size rather than one
  per box (``adaptive_avg_pool2d`` over a stack of equal crops is the same sums);
- images of equal size go through the cascade together, as facenet's own list input does.

The networks are the channels-last ones of :func:`_detector`. Boxes, probabilities and
landmarks are those of ``MTCNN.detect`` with the same networks, to the bit, on the
photographs of tests/test_faces.py. :func:`search_largest_face` adds a bounded search for
the one face an alignment needs.

torch, torchvision and facenet_pytorch are imported in the functions that use them: the
CLI's ``--help`` and ``metrics list`` import this module's callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from srforensics.images import to_uint8

#: facenet-pytorch's defaults (``MTCNN(thresholds=..., factor=...)``).
THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709


@lru_cache(maxsize=2)
def _detector(min_face_size: int):
    """MTCNN, its weights channels-last.

    A convolution's output takes its weights' memory layout, so the whole cascade runs
    channels-last: torch's CPU max-pooling is 5 to 15 times faster on it than on
    contiguous tensors, and detection takes half the time (the protocol's main cost).
    Boxes and landmarks agree with the contiguous network's to about 3e-5 px (sums in
    another order; tests/test_faces.py).
    """
    import torch
    from facenet_pytorch import MTCNN

    detector = MTCNN(keep_all=True, min_face_size=min_face_size, device="cpu")
    return detector.to(memory_format=torch.channels_last)


def pyramid_scales(h: int, w: int, min_face_size: int) -> list[float]:
    """The scales of MTCNN's image pyramid: 12 / ``min_face_size``, then times 0.709 while
    the shorter side stays at least 12 px (facenet's loop, to the float)."""
    m = 12.0 / min_face_size
    minl = min(h, w) * m
    scales, scale = [], m
    while minl >= 12:
        scales.append(scale)
        scale *= FACTOR
        minl *= FACTOR
    return scales


def _resized_crops(imgs, inds, y, ey, x, ex, size: int):
    """Each box's crop of its image, area-resized to ``size``², in box order; crops of one
    size are resized in one call."""
    import torch
    from torch.nn.functional import interpolate

    keep = [k for k in range(len(y)) if ey[k] > (y[k] - 1) and ex[k] > (x[k] - 1)]
    shapes: dict[tuple[int, int], list[int]] = {}
    for k in keep:
        shapes.setdefault((int(ey[k] - y[k] + 1), int(ex[k] - x[k] + 1)), []).append(k)
    out = torch.empty(len(keep), 3, size, size, dtype=imgs.dtype)
    where = {k: i for i, k in enumerate(keep)}
    for ks in shapes.values():
        crops = torch.stack(
            [imgs[int(inds[k]), :, (y[k] - 1) : ey[k], (x[k] - 1) : ex[k]] for k in ks]
        )
        out[[where[k] for k in ks]] = interpolate(crops, size=(size, size), mode="area")
    return (out - 127.5) * 0.0078125


def _stage1(net, imgs, min_face_size: int, from_face: float | None = None):
    """P-Net over the pyramid: candidate boxes (x1, y1, x2, y2, score) and their images.

    ``from_face``: skip the pyramid's levels that look for faces smaller than this (px);
    the other levels are those of the full pyramid, unchanged."""
    import torch
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox
    from torch.nn.functional import interpolate
    from torchvision.ops.boxes import batched_nms

    h, w = imgs.shape[2:4]
    boxes, image_inds = [], []
    for scale in pyramid_scales(h, w, min_face_size):
        if from_face is not None and 12.0 / scale < from_face:
            continue
        im_data = interpolate(imgs, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
        reg, probs = net((im_data - 127.5) * 0.0078125)
        found, inds = generateBoundingBox(reg, probs[:, 1], scale, THRESHOLDS[0])
        pick = batched_nms(found[:, :4], found[:, 4], inds, 0.5)
        boxes.append(found[pick])
        image_inds.append(inds[pick])
    if not boxes:
        return torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)
    boxes, image_inds = torch.cat(boxes), torch.cat(image_inds)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ]
    ).permute(1, 0)
    return boxes, image_inds


def _stage2(net, imgs, boxes, image_inds):
    """R-Net on the 24 px crops of the candidates: those it keeps, regressed and squared."""
    import torch
    from facenet_pytorch.models.utils.detect_face import bbreg, pad, rerec
    from torchvision.ops.boxes import batched_nms

    h, w = imgs.shape[2:4]
    boxes = rerec(boxes)
    if not len(boxes):
        return boxes, image_inds
    y, ey, x, ex = pad(boxes, w, h)
    out = net(_resized_crops(imgs, image_inds, y, ey, x, ex, 24))
    score = out[1][:, 1]
    ipass = score > THRESHOLDS[1]
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds, mv = image_inds[ipass], out[0][ipass]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    return rerec(bbreg(boxes[pick], mv[pick])), image_inds[pick]


def _stage3(net, imgs, boxes, image_inds):
    """O-Net on the 48 px crops: boxes, scores and five landmarks of the faces it keeps."""
    import torch
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, pad

    h, w = imgs.shape[2:4]
    if not len(boxes):
        return boxes, image_inds, torch.zeros(0, 5, 2)
    y, ey, x, ex = pad(boxes, w, h)
    out = net(_resized_crops(imgs, image_inds, y, ey, x, ex, 48))
    points, score = out[1].permute(1, 0), out[2][:, 1]
    ipass = score > THRESHOLDS[2]
    points = points[:, ipass]
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds, mv = image_inds[ipass], out[0][ipass]
    w_i = boxes[:, 2] - boxes[:, 0] + 1
    h_i = boxes[:, 3] - boxes[:, 1] + 1
    points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
    points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
    points = torch.stack((points_x, points_y)).permute(2, 1, 0)
    boxes = bbreg(boxes, mv)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
    return boxes[pick], image_inds[pick], points[pick]


def _by_size(images: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """The indices of ``images``, grouped by (height, width)."""
    sizes: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        sizes.setdefault(tuple(np.shape(img)[:2]), []).append(i)
    return sizes


def detect_batch(
    images: Sequence[np.ndarray], *, min_face_size: int = 20, from_face: float | None = None
) -> list[list[dict[str, Any]]]:
    """Faces in each of ``images`` (RGB, float in [0, 1] or uint8); images of one size go
    through the cascade together.

    Returns, per image, its faces largest first (facenet's ``select_largest``), each a dict
    with ``box`` (x1, y1, x2, y2), ``prob`` and ``landmarks`` (5, 2), as
    :func:`srforensics.faces.align.detect_faces` gives them. ``from_face`` (px) leaves out
    the pyramid levels that look for faces smaller than it (see
    :func:`search_largest_face`). An image smaller than ``min_face_size`` (or the 12 px
    window) has no face.
    """
    found: list[list[dict[str, Any]]] = [[] for _ in images]
    for (h, w), idx in _by_size(images).items():
        if min(h, w) >= max(12, min_face_size):
            faces = _cascade([images[i] for i in idx], min_face_size, from_face)
            for i, f in zip(idx, faces, strict=True):
                found[i] = f
    return found


def _cascade(images: Sequence[np.ndarray], min_face_size: int, from_face: float | None):
    """The three stages on images of one size; per image, its faces largest first."""
    import torch

    mtcnn = _detector(min_face_size)
    # uint8 values as floats, channels first and contiguous: what facenet's detect_face
    # computes on (it quantises a PIL image the same way).
    pixels = np.stack(
        [img if img.dtype == np.uint8 else to_uint8(img) for img in map(np.asarray, images)]
    )
    imgs = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().contiguous()
    with torch.no_grad():
        boxes, image_inds = _stage1(mtcnn.pnet, imgs, min_face_size, from_face)
        boxes, image_inds = _stage2(mtcnn.rnet, imgs, boxes, image_inds)
        boxes, image_inds, points = _stage3(mtcnn.onet, imgs, boxes, image_inds)
    boxes, points, image_inds = boxes.numpy(), points.numpy(), image_inds.numpy()
    found = []
    for i in range(len(images)):
        b, p = boxes[image_inds == i], points[image_inds == i]
        order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]
        found.append(
            [
                {
                    "box": [float(v) for v in b[k, :4]],
                    "prob": float(b[k, 4]),
                    "landmarks": p[k].astype(float).tolist(),
                }
                for k in order
            ]
        )
    return found


#: :func:`search_largest_face` looks first for faces at least this share of the image's shorter side.
COARSE_SHARE = 1 / 12


def search_largest_face(
    img: np.ndarray, *, min_face_size: int = 20
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The faces of a search for the largest face in ``img``, largest first (as
    :func:`detect_batch` gives them; empty if none), and how it was searched for.

    The search runs first on the levels of the full pyramid that look for faces of at least
    ``COARSE_SHARE`` of the shorter side (``from_face`` px), which hold a small part of its
    pixels. Its largest face is kept when it is at least twice ``from_face`` wide: a box
    from a skipped level (under ``from_face``, and box regression moves it by a fraction)
    then overlaps it by less than the 0.7 IoU of the non-maximum suppressions, so the
    skipped levels could not have changed it. Otherwise (no face, or a smaller one) the
    full pyramid is searched. One case is not covered: a box inside the face, from a
    skipped level, that O-Net scores higher than the face, would suppress it in the full
    search's "Min" suppression. On the photographs of tests/test_faces.py the answer is the
    full search's exactly (box and landmarks, 0 px). The returned ``search`` dict
    (``from_face``, ``full``: whether the full pyramid was searched) is recorded with the
    alignment; the faces are those of the search that gave the answer (without ``full``,
    those of ``from_face`` px or more).
    """
    from_face = max(float(min_face_size), min(np.shape(img)[:2]) * COARSE_SHARE)
    if from_face > min_face_size:
        found = detect_batch([img], min_face_size=min_face_size, from_face=from_face)[0]
        if found and found[0]["box"][2] - found[0]["box"][0] >= 2 * from_face:
            return found, {"from_face": round(from_face, 3), "full": False}
    found = detect_batch([img], min_face_size=min_face_size)[0]
    return found, {"from_face": round(from_face, 3), "full": True}


#: :func:`faces_found` looks first for faces at least this share of an output's shorter side.
OUTPUT_SHARE = 1 / 4


def faces_found(images: Sequence[np.ndarray], *, min_face_size: int = 20) -> list[bool]:
    """Whether MTCNN finds a face in each of ``images`` (the ``face_detected`` score).

    The images are searched first on the pyramid levels for faces of at least
    ``OUTPUT_SHARE`` of the shorter side (an aligned output's face fills about 60% of it);
    those where that finds nothing are searched on the full pyramid, so a "no face" is
    always the full search's. A face found by the first search is a face the full search
    finds unless a box from a skipped level outscores its candidate in the first
    non-maximum suppression and then fails R-Net or O-Net; on the outputs of
    tests/test_faces.py the two agree.
    """
    found = [False] * len(images)
    for (h, w), todo in _by_size(images).items():
        coarse = min(h, w) * OUTPUT_SHARE
        for bound in (coarse, None) if coarse > min_face_size else (None,):
            faces = detect_batch(
                [images[i] for i in todo], min_face_size=min_face_size, from_face=bound
            )
            for i, f in zip(todo, faces, strict=True):
                found[i] = bool(f)
            todo = [i for i in todo if not found[i]]
            if not todo:
                break
    return found


def settings() -> dict[str, Any]:
    """How faces are detected, as a run's manifest records it."""
    return {
        "detector": "MTCNN (facenet-pytorch networks and weights, channels-last)",
        "thresholds": list(THRESHOLDS),
        "factor": FACTOR,
        "hr_search": (
            "the pyramid levels for faces of at least coarse_share of the shorter side first; "
            "the full pyramid when the largest face found is under twice that width"
        ),
        "coarse_share": COARSE_SHARE,
        "outputs": (
            "the outputs of one LR in one pass: the levels for faces of at least output_share "
            "of the shorter side first; the full pyramid for those where no face is found"
        ),
        "output_share": OUTPUT_SHARE,
    }
