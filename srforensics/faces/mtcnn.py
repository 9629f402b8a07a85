"""MTCNN's cascade (Zhang et al. 2016) as facenet-pytorch runs it, for a batch of images.

facenet-pytorch's ``detect_face`` is followed step for step — the same networks and weights,
the same image pyramid, thresholds, non-maximum suppressions and box regressions — with
three changes in how the work is laid out, none in what is computed:

- every area resize (the pyramid's levels, the 24 and 48 px crops of stages two and three)
  is read from the images' summed-area table (:class:`_Pixels`): torch's values to the bit,
  four lookups per output value for all boxes at once instead of one ``interpolate`` call
  per box and level;
- images of equal size go through the cascade together, as facenet's own list input does;
- a search of more pyramid levels after a first one (:func:`search_largest_face`,
  :func:`faces_found`) reuses the P-Net boxes of the levels already searched
  (:class:`_Cascade`).

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


#: The largest bin (pixels) of an area resize whose float32 running sum of 8-bit values is
#: exact (every partial sum under 2**24): up to it, :class:`_Pixels` gives torch's values.
_EXACT_BIN = (1 << 24) // 255


def _bins(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive-pooling bins of ``length`` pixels into ``size``, from ``start``: the
    first and one-past-last pixel of each output, (K, size) each."""
    o = np.arange(size)
    first = start[:, None] + (o * length[:, None]) // size
    end = start[:, None] + ((o + 1) * length[:, None] + size - 1) // size
    return first, end


def _summed_area(pixels: np.ndarray) -> np.ndarray:
    """The summed-area table of uint8 images (N, H, W, 3): (N, 3, H + 1, W + 1), zeros in
    its first row and column, int32 where the sums fit, else int64.

    The sums are integers, the same whichever way they are added: torch's ``cumsum`` is
    the quicker for a few small images, numpy row after row for a large one (a cumulative
    sum down the rows of a large array is several times slower in either library)."""
    import torch
    from torch.nn.functional import pad

    n, h, w = pixels.shape[:3]
    big = h * w * 255 >= 2**31
    if n * h * w <= 1 << 20:
        dtype = torch.int64 if big else torch.int32
        planes = pad(torch.from_numpy(pixels).permute(0, 3, 1, 2).to(dtype), (1, 0, 1, 0))
        return planes.cumsum(2, dtype=dtype).cumsum(3, dtype=dtype).numpy()
    table = np.zeros((n, 3, h + 1, w + 1), np.int64 if big else np.int32)
    table[:, :, 1:, 1:] = pixels.transpose(0, 3, 1, 2)
    np.cumsum(table, axis=3, out=table)
    for row in range(1, h + 1):
        table[:, :, row] += table[:, :, row - 1]
    return table


def _normalised(pixels):
    """facenet's ``(x - 127.5) * 0.0078125``, the same two operations, in place."""
    pixels -= 127.5
    pixels *= 0.0078125
    return pixels


class _Pixels:
    """Images of one size as the cascade reads them, with their summed-area table.

    torch's area resize (``interpolate(mode="area")``, adaptive average pooling) sums each
    output's bin in float32 and divides the sum by the bin's height, then by its width.
    With 8-bit values every such sum is an integer, exact in any order while the bin holds
    at most ``_EXACT_BIN`` pixels; so the table's integer sums, four lookups per output,
    divided the same way, are torch's values to the bit (tests/test_faces.py checks
    boxes and pyramid levels against ``interpolate``). A resize with a larger bin (the
    coarsest levels of images of several thousand pixels) is torch's own.
    """

    def __init__(self, pixels: np.ndarray):
        self.n, self.h, self.w = pixels.shape[:3]
        self._uint8 = pixels
        self.table = _summed_area(pixels)  # (N, 3, H + 1, W + 1)

    def _floats(self, which):
        import torch

        return torch.from_numpy(self._uint8[which]).permute(0, 3, 1, 2).float().contiguous()

    def level(self, which: list[int], size: tuple[int, int]):
        """Images ``which`` area-resized to ``size`` (h, w), normalised as P-Net takes them."""
        import torch
        from torch.nn.functional import interpolate

        zero = np.zeros(1, dtype=np.int64)
        (r0,), (r1,) = _bins(zero, np.array([self.h]), size[0])
        (c0,), (c1,) = _bins(zero, np.array([self.w]), size[1])
        kh, kw = r1 - r0, c1 - c0
        if kh.max() * kw.max() > _EXACT_BIN:
            out = interpolate(self._floats(which), size=size, mode="area")
        else:
            t = self.table if list(which) == list(range(self.n)) else self.table[which]
            rows = np.take(t, r1, axis=2) - np.take(t, r0, axis=2)
            sums = np.take(rows, c1, axis=3) - np.take(rows, c0, axis=3)
            out = torch.from_numpy(sums.astype(np.float32))
            out /= torch.from_numpy(kh.astype(np.float32))[:, None]
            out /= torch.from_numpy(kw.astype(np.float32))
        return _normalised(out)

    def crops(self, inds, y, ey, x, ex, size: int):
        """Each box's crop (rows ``y``..``ey``, columns ``x``..``ex``, 1-based and inclusive,
        as facenet's ``pad`` gives them, each holding a pixel) of image ``inds``,
        area-resized to ``size``² and normalised."""
        import torch
        from torch.nn.functional import interpolate

        inds, y, ey, x, ex = (np.asarray(v, dtype=np.int64) for v in (inds, y, ey, x, ex))
        r0, r1 = _bins(y - 1, ey - y + 1, size)
        c0, c1 = _bins(x - 1, ex - x + 1, size)
        kh, kw = (r1 - r0).astype(np.float32), (c1 - c0).astype(np.float32)
        # Flat indices into the table: (image, channel, row) then column.
        w1 = self.w + 1
        planes = (inds[:, None] * 3 + np.arange(3)) * (self.h + 1)  # (K, 3)
        top = ((planes[:, :, None] + r0[:, None, :]) * w1)[..., None]  # (K, 3, size, 1)
        bottom = ((planes[:, :, None] + r1[:, None, :]) * w1)[..., None]
        left, right = c0[:, None, None, :], c1[:, None, None, :]
        flat = self.table.reshape(-1)
        sums = flat[bottom + right] - flat[top + right] - flat[bottom + left] + flat[top + left]
        out = sums.astype(np.float32)
        out /= kh[:, None, :, None]
        out /= kw[:, None, None, :]
        out = torch.from_numpy(out)
        large = np.flatnonzero(kh.max(axis=1) * kw.max(axis=1) > _EXACT_BIN)
        for k in large:  # bins whose float32 sums round: torch's own resize
            crop = self._floats([inds[k]])[:, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]]
            out[k] = interpolate(crop, size=(size, size), mode="area")[0]
        return _normalised(out)


def _searchable(h: int, w: int, min_face_size: int) -> bool:
    """Whether an image of h x w can hold a face: its shorter side at least the smallest
    face looked for and P-Net's 12 px window."""
    return min(h, w) >= max(12, min_face_size)


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
        if _searchable(h, w, min_face_size):
            faces = _Cascade([images[i] for i in idx], min_face_size).search(
                range(len(idx)), from_face
            )
            for i, f in zip(idx, faces, strict=True):
                found[i] = f
    return found


class _Cascade:
    """MTCNN's three stages on images of one size, searched on some of the pyramid's levels
    or on all of them.

    P-Net's boxes are kept per level and image once computed (they depend on that level of
    that image alone), so a search of more levels after a first one runs P-Net only on the
    levels it adds; R-Net and O-Net run on each search's candidates.
    """

    def __init__(self, images: Sequence[np.ndarray], min_face_size: int):
        # uint8 values: what facenet's detect_face computes on (it quantises a PIL image the
        # same way).
        pixels = np.stack(
            [img if img.dtype == np.uint8 else to_uint8(img) for img in map(np.asarray, images)]
        )
        self.pixels = _Pixels(pixels)
        self.nets = _detector(min_face_size)
        self.scales = pyramid_scales(self.pixels.h, self.pixels.w, min_face_size)
        self._levels: list[list[tuple[set[int], Any, Any]]] = [[] for _ in self.scales]
        self._rnet: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def search(self, which: Sequence[int], from_face: float | None = None) -> list[list[dict]]:
        """Faces of images ``which``, per image largest first; ``from_face`` (px) leaves out
        the levels that look for smaller faces."""
        import torch

        levels = [
            j for j, s in enumerate(self.scales) if from_face is None or 12.0 / s >= from_face
        ]
        with torch.no_grad():
            boxes, inds = self._stage1(list(which), levels)
            boxes, inds = self._stage2(boxes, inds)
            boxes, inds, points = self._stage3(boxes, inds)
        boxes, points, inds = boxes.numpy(), points.numpy(), inds.numpy()
        found = []
        for i in which:
            b, p = boxes[inds == i], points[inds == i]
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

    def _level(self, j: int, which: list[int]):
        """P-Net's boxes on level ``j`` of images ``which`` after the level's suppression
        (facenet's first loop), and their images; computed for the images not done yet."""
        import torch
        from facenet_pytorch.models.utils.detect_face import generateBoundingBox
        from torchvision.ops.boxes import batched_nms

        chunks, scale = self._levels[j], self.scales[j]
        done = set().union(*(images for images, _, _ in chunks))
        todo = [i for i in which if i not in done]
        if todo:
            size = (int(self.pixels.h * scale + 1), int(self.pixels.w * scale + 1))
            reg, probs = self.nets.pnet(self.pixels.level(todo, size))
            found, inds = generateBoundingBox(reg, probs[:, 1], scale, THRESHOLDS[0])
            pick = batched_nms(found[:, :4], found[:, 4], inds, 0.5)
            chunks.append((set(todo), found[pick], torch.as_tensor(todo)[inds[pick]]))
        want = set(which)
        for images, found, inds in chunks:
            if images <= want:
                yield found, inds
            elif images & want:
                keep = torch.isin(inds, torch.as_tensor(sorted(want)))
                yield found[keep], inds[keep]

    def _stage1(self, which: list[int], levels: list[int]):
        """Candidates (x1, y1, x2, y2, score) over the levels, and their images."""
        import torch
        from torchvision.ops.boxes import batched_nms

        if not levels:
            return torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)
        parts = [part for j in levels for part in self._level(j, which)]
        boxes, image_inds = zip(*parts, strict=True)
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

    def _with_pixels(self, boxes, image_inds):
        """The boxes that hold a pixel of their image, their images, and their rows and
        columns as facenet's ``pad`` gives them (1-based, inclusive). facenet-pytorch leaves
        the others out of its crops and then fails on the mismatch; here they are dropped."""
        import torch
        from facenet_pytorch.models.utils.detect_face import pad

        y, ey, x, ex = pad(boxes, self.pixels.w, self.pixels.h)
        keep = (ey > y - 1) & (ex > x - 1)
        if not keep.all():
            boxes, image_inds = boxes[torch.from_numpy(keep)], image_inds[torch.from_numpy(keep)]
            y, ey, x, ex = y[keep], ey[keep], x[keep], ex[keep]
        return boxes, image_inds, (y, ey, x, ex)

    def _stage2(self, boxes, image_inds):
        """R-Net on the 24 px crops of the candidates: those it keeps, regressed and squared.
        R-Net's answer for a crop is kept: a later search runs it on new crops only."""
        import torch
        from facenet_pytorch.models.utils.detect_face import bbreg, rerec
        from torchvision.ops.boxes import batched_nms

        boxes = rerec(boxes)
        if not len(boxes):
            return boxes, image_inds
        boxes, image_inds, (y, ey, x, ex) = self._with_pixels(boxes, image_inds)
        if not len(boxes):
            return boxes, image_inds
        keys = list(
            zip(image_inds.tolist(), y.tolist(), ey.tolist(), x.tolist(), ex.tolist(), strict=True)
        )
        new = [k for k, key in enumerate(keys) if key not in self._rnet]
        if new:
            inds = image_inds.numpy()[new]
            reg, prob = self.nets.rnet(
                self.pixels.crops(inds, y[new], ey[new], x[new], ex[new], 24)
            )
            self._rnet.update(
                zip([keys[k] for k in new], zip(reg, prob[:, 1], strict=True), strict=True)
            )
        mv = torch.stack([self._rnet[key][0] for key in keys])
        score = torch.stack([self._rnet[key][1] for key in keys])
        ipass = score > THRESHOLDS[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds, mv = image_inds[ipass], mv[ipass]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        return rerec(bbreg(boxes[pick], mv[pick])), image_inds[pick]

    def _stage3(self, boxes, image_inds):
        """O-Net on the 48 px crops: boxes, scores and five landmarks of the faces it keeps."""
        import torch
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

        boxes, image_inds, (y, ey, x, ex) = self._with_pixels(boxes, image_inds)
        if not len(boxes):
            return boxes, image_inds, torch.zeros(0, 5, 2)
        out = self.nets.onet(self.pixels.crops(image_inds.numpy(), y, ey, x, ex, 48))
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
    if not _searchable(*np.shape(img)[:2], min_face_size):
        return [], {"from_face": round(from_face, 3), "full": True}
    cascade = _Cascade([img], min_face_size)
    if from_face > min_face_size:
        (found,) = cascade.search([0], from_face)
        if found and found[0]["box"][2] - found[0]["box"][0] >= 2 * from_face:
            return found, {"from_face": round(from_face, 3), "full": False}
    (found,) = cascade.search([0])
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
    for (h, w), idx in _by_size(images).items():
        if not _searchable(h, w, min_face_size):
            continue
        cascade = _Cascade([images[i] for i in idx], min_face_size)
        coarse = min(h, w) * OUTPUT_SHARE
        todo = list(range(len(idx)))
        for bound in (coarse, None) if coarse > min_face_size else (None,):
            for k, f in zip(todo, cascade.search(todo, bound), strict=True):
                found[idx[k]] = bool(f)
            todo = [k for k in todo if not found[idx[k]]]
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
