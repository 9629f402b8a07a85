"""Face detection (facenet-pytorch MTCNN) and 5-point similarity alignment.

The face is found once, on the HR image; the similarity transform that maps its
five landmarks onto a canonical template is recorded, and the same crop is what
the degradation and every output are compared on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from srforensics.degradations.base import Field, HRStep
from srforensics.faces import NoFaceFound
from srforensics.faces.mtcnn import detect_batch, search_largest_face

# torch, facenet_pytorch, PIL, skimage: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

# Canonical 5-point template (left eye, right eye, nose tip, left and right mouth
# corners) of the 112x112 ArcFace crop (Deng et al., InsightFace), in [0, 1].
_TEMPLATE_112 = (
    np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ]
    )
    / 112.0
)


def template(size: int, padding: float) -> np.ndarray:
    """Landmark template for a ``size`` px crop with ``padding`` (fraction of the side) around it."""
    return (_TEMPLATE_112 * (1 - 2 * padding) + padding) * size


def detect_faces(img: np.ndarray, *, min_face_size: int = 20) -> list[dict[str, Any]]:
    """Detect faces in an RGB float image; each: ``box`` (x1, y1, x2, y2), ``prob``, ``landmarks`` (5, 2).

    The faces facenet-pytorch's ``MTCNN.detect`` finds, largest first, computed by
    :func:`srforensics.faces.mtcnn.detect_batch`. An image smaller than ``min_face_size``
    (or MTCNN's 12 px window) holds no face MTCNN can find: the answer is no face (MTCNN
    itself fails on an empty image pyramid)."""
    return detect_batch([img], min_face_size=min_face_size)[0]


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` points onto ``dst``: 3x3."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
    else:  # scikit-image < 0.26
        tform = SimilarityTransform()
        tform.estimate(src, dst)
    return np.asarray(tform.params, dtype=np.float64)


class FaceAlign(HRStep):
    """Detect the largest face (MTCNN), align its 5 landmarks to a template, crop ``size`` px square.

    Pixels outside the source image are black: the crop never invents context.
    """

    name = "face_align"
    needs_face = True
    # facenet_pytorch: about 2 s (it imports torchvision). scikit-image's transform loads
    # lazily, so the modules that hold SimilarityTransform, AffineTransform and warp are
    # named (a tenth of a second: scipy.spatial and more).
    imports = ("facenet_pytorch", "skimage.transform._geometric", "skimage.transform._warps")
    fields = {
        "size": Field(int, default=128, low=16, high=2048, random=False),
        "padding": Field(float, default=0.2, low=0.0, high=0.45, random=False),
        "min_face_size": Field(int, default=20, low=8, high=1024, random=False),
    }

    def fit(self, img: np.ndarray) -> dict[str, Any]:
        smallest = max(12, self.spec["min_face_size"])
        if min(img.shape[:2]) < smallest:
            raise ValueError(
                f"image {img.shape[1]}x{img.shape[0]} is smaller than the smallest face MTCNN "
                f"looks for ({smallest} px): too small for a face protocol"
            )
        faces, search = search_largest_face(img, min_face_size=self.spec["min_face_size"])
        if not faces:
            raise NoFaceFound("MTCNN found no face in the HR image")
        face = faces[0]  # the largest
        dst = template(self.spec["size"], self.spec["padding"])
        matrix = similarity_matrix(np.asarray(face["landmarks"]), dst)
        return {
            "size": self.spec["size"],
            "matrix": matrix.tolist(),
            "box": face["box"],
            "prob": face["prob"],
            "landmarks": face["landmarks"],
            "faces_found": len(faces),
            "search": search,
        }

    def points(self, params) -> np.ndarray:
        """MTCNN's five landmarks mapped into the crop by the alignment's matrix."""
        pts = np.asarray(params["landmarks"], dtype=np.float64)
        matrix = np.asarray(params["matrix"], dtype=np.float64)
        return pts @ matrix[:2, :2].T + matrix[:2, 2]

    def apply(
        self, img: np.ndarray, *, size: int, matrix: list[list[float]], **_: Any
    ) -> np.ndarray:
        from skimage.transform import AffineTransform, warp

        tform = AffineTransform(matrix=np.asarray(matrix, dtype=np.float64))
        out = warp(
            np.asarray(img, dtype=np.float64),
            tform.inverse,
            output_shape=(size, size),
            order=3,
            mode="constant",
            cval=0.0,
            preserve_range=True,
        )
        return np.clip(out, 0.0, 1.0).astype(np.float32)
