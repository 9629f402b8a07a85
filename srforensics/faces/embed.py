"""Face embedding backends: a registry of embedders; dlib's ResNet and FaceNet built in.

An embedder maps face crops ``(B, 3, H, W)`` (float32, RGB, in [0, 1]) and their five
landmarks ``(B, 5, 2)`` (x, y in the crop's pixels, in MTCNN's order: left eye, right
eye, nose tip, left and right mouth corners) to embeddings ``(B, D)``. Built in:

- ``dlib-resnet-v1``: dlib's ResNet face descriptor, whose public-domain weights install
  with the package (``face_recognition_models``); aligned by dlib's own 5-point
  landmarks and face chip, as dlib's published accuracy was measured.
- ``facenet-vggface2``: FaceNet InceptionResnetV1 trained on VGGFace2 (facenet-pytorch);
  its weights file is fetched or imported (``srforensics weights``).
- ``facenet-casia-webface``: the same network trained on CASIA-WebFace, weights from
  ``--face-weights``.

``auto`` (the default) is ``facenet-vggface2`` when its verified weights are in the cache,
else ``dlib-resnet-v1``: :func:`choose_embedder` says which and why, and the run prints
and records it. Others (ArcFace ONNX, ...) plug in by entry point in group
``srforensics.face_embedders`` or as ``package.module:Class``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from srforensics import weights as W
from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.registry import Registry

# facenet_pytorch, torch, numpy, dlib: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

FACE_EMBEDDERS: Registry[Any] = Registry(
    "face embedder", entry_point_group="srforensics.face_embedders"
)
FACE_EMBEDDERS.register(
    "dlib-resnet-v1",
    "srforensics.faces.embed:DlibResNet",
    aliases=("dlib",),
    description="dlib ResNet face descriptor (public domain; installs with the package)",
)
FACE_EMBEDDERS.register(
    "facenet-vggface2",
    "srforensics.faces.embed:FaceNetVGGFace2",
    aliases=("vggface2",),
    description="FaceNet InceptionResnetV1, VGGFace2 (the default when its weights are cached)",
)
FACE_EMBEDDERS.register(
    "facenet-casia-webface",
    "srforensics.faces.embed:FaceNetCASIA",
    aliases=("casia-webface",),
    description="FaceNet InceptionResnetV1, CASIA-WebFace",
)


#: The automatic choice: the first of these whose weights are at hand.
AUTO = "auto"
AUTO_ORDER = ("facenet-vggface2", "dlib-resnet-v1")


@dataclass(frozen=True)
class OperatingPoint:
    """A verification threshold published with the matcher, as a cosine of unit vectors.

    ``published``: the threshold in the source's own terms; ``cosine``: the same decision
    on the L2-normalised embeddings the identity scores use; ``derivation``: how one
    becomes the other; ``source``: where it is published."""

    cosine: float
    published: str
    derivation: str
    source: str


@dataclass(frozen=True)
class EmbedderCard:
    name: str
    weights_file: str | None
    weights_sha256: str | None
    weights_origin: str  # "registered", "installed package" or "user-supplied"
    licence: str
    source: str
    operating_point: OperatingPoint | None = None
    alignment: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaceEmbedder:
    """Base class of face embedders (the plug-in contract; docs/plugins.md).

    ``__init__(*, weights_file=None, device="cpu")``: ``weights_file`` is the user's
    ``--face-weights`` (None: the embedder's registered weights). Load files through
    :mod:`srforensics.weights` (``require``, ``load_state_dict``, or
    ``log_weights_file`` for other formats) so that each reaches the run's manifest with
    its SHA-256; raise :class:`~srforensics.weights.WeightsError` when they are missing.

    :meth:`embed` takes ``faces`` ``(B, 3, H, W)``, float32 RGB in [0, 1], and ``landmarks``
    ``(B, 5, 2)`` or None (no face was located: the crop is the whole image), and returns a
    ``(B, D)`` tensor; an ``embed(faces)`` without ``landmarks`` gets the crop alone. The identity scores normalise it to unit length; a zero or non-finite
    vector is refused. :meth:`card` describes the weights, licence, source and, where the
    source publishes one, the operating point.
    """

    name: ClassVar[str] = "embedder"
    input_size: ClassVar[int] = 160

    def embed(self, faces, *, landmarks=None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def card(self) -> EmbedderCard:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this embedder cannot load its registered weights here, or None when it can
        (checked without loading the network: the ``auto`` choice asks each in turn)."""
        return None


class FaceNet(FaceEmbedder):
    """facenet-pytorch InceptionResnetV1 (512-d), inputs standardised as ``(x*255 - 127.5) / 128``."""

    weights_name: ClassVar[str | None] = None
    dataset: ClassVar[str] = ""

    def __init__(self, *, weights_file: str | None = None, device: str = "cpu") -> None:
        from facenet_pytorch import InceptionResnetV1

        if weights_file:
            path = Path(weights_file).expanduser()
            if not path.is_file():
                raise SRForensicsError(f"--face-weights {path}: no such file")
            sha, origin = sha256_file(path), "user-supplied"
            state = W.load_state_dict(path)
        elif self.weights_name:
            path = W.require(self.weights_name)
            sha, origin = W.spec(self.weights_name).sha256, "registered"
            state = W.load_state_dict(path)
        else:
            raise W.WeightsError(
                f"no SHA-256 is registered for the {self.dataset} FaceNet weights; give the file with "
                "--face-weights FILE (its hash is recorded as user-supplied)"
            )
        # The released files carry the training classifier (logits.*); embeddings do not use it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.net = InceptionResnetV1(pretrained=None, classify=False).eval()
        missing = sorted(set(self.net.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(self.net.state_dict()))
        if missing or unexpected:
            raise W.WeightsError(
                f"{path} is not an InceptionResnetV1 state dict: {len(missing)} missing key(s) {missing[:3]}, "
                f"{len(unexpected)} unexpected {unexpected[:3]}"
            )
        self.net.load_state_dict(state, strict=True)
        self.net.requires_grad_(False).to(device)
        self.device = device
        self._card = EmbedderCard(
            self.name,
            path.name,
            sha,
            origin,
            "MIT (facenet-pytorch)",
            "https://github.com/timesler/facenet-pytorch",
            alignment="the crop as given, resized to 160 px",
        )

    @classmethod
    def unavailable(cls) -> str | None:

        if not cls.weights_name:
            return f"no SHA-256 is registered for the {cls.dataset} weights"
        try:
            W.require(cls.weights_name)
        except W.WeightsError as exc:
            return str(exc).split(". ")[0]
        return None

    def embed(self, faces, *, landmarks=None):
        """FaceNet takes the crop as it is (resized to 160 px): the faces protocols' crops are
        aligned to the ArcFace template, close to facenet-pytorch's MTCNN crops."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            x = faces.to(self.device, torch.float32)
            if x.shape[-2:] != (self.input_size, self.input_size):
                x = F.interpolate(
                    x,
                    size=(self.input_size, self.input_size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            emb = self.net((x * 255.0 - 127.5) / 128.0)
            return F.normalize(emb.double(), dim=1).cpu()

    def card(self) -> EmbedderCard:
        return self._card


class FaceNetVGGFace2(FaceNet):
    """FaceNet InceptionResnetV1 trained on VGGFace2 (LFW accuracy 0.9965 as published)."""

    name = "facenet-vggface2"
    weights_name = "facenet-vggface2"
    dataset = "VGGFace2"


class FaceNetCASIA(FaceNet):
    """FaceNet InceptionResnetV1 trained on CASIA-WebFace (LFW accuracy 0.9905 as published)."""

    name = "facenet-casia-webface"
    weights_name = None
    dataset = "CASIA-WebFace"


#: dlib's published operating point (dlib 19.3 release notes; dlib.net/face_recognition.py.html:
#: "pairs of faces with a distance below 0.6 are the same person", 99.38% on LFW). Its
#: descriptors are not unit length: on the 15 photographs of shared/realfaces their norm is
#: 1.42 (1.33-1.52; tests/test_identity.py measures it), and two descriptors of norm n at
#: distance d have cosine 1 - d^2 / (2 n^2).
DLIB_DISTANCE = 0.6
DLIB_NORM = 1.42
DLIB_OPERATING_POINT = OperatingPoint(
    cosine=round(1 - DLIB_DISTANCE**2 / (2 * DLIB_NORM**2), 3),
    published="Euclidean distance 0.6 between descriptors (LFW accuracy 99.38%)",
    derivation=(
        "at the descriptors' typical norm 1.42, distance 0.6 is cosine 1 - 0.36/(2*1.42^2) = 0.911; "
        "for unit vectors distance 0.6 would be cosine 1 - 0.36/2 = 0.82"
    ),
    source="http://dlib.net/face_recognition.py.html",
)

#: Side of the face box given to dlib's landmark model, in eye distances, centred on the five
#: landmarks' mean: dlib's frontal face detector's boxes on the 15 shared/realfaces photographs
#: are 2.42 (sd 0.15) eye distances (MTCNN's eye centres) wide, centred within 0.03 of it.
_BOX_PER_EYE_DISTANCE = 2.42


class DlibResNet(FaceEmbedder):
    """dlib's ResNet face descriptor (128-d), aligned as dlib aligns.

    dlib's 5-point landmark model runs in a box derived from the given landmarks (their
    mean, 2.42 eye distances wide: dlib's detector's box), and the face is resampled into
    dlib's 150 px chip with padding 0.25 (``dlib.get_face_chip``), where the descriptor
    was trained. On the shared/realfaces photographs a faces-protocol crop embedded this
    way is within 0.11-0.29 (Euclidean) of dlib's own full-image pipeline, against 0.6
    between people. Without landmarks the whole crop is the box. CPU only (dlib's wheel).
    """

    name = "dlib-resnet-v1"
    input_size = 150

    def __init__(self, *, weights_file: str | None = None, device: str = "cpu") -> None:

        if weights_file:
            raise SRForensicsError(
                "dlib-resnet-v1 reads its registered files from the face_recognition_models "
                "package; --face-weights is for the FaceNet embedders"
            )
        try:
            import dlib
        except ImportError:
            raise W.WeightsError(
                "dlib-resnet-v1 needs dlib: install it with 'pip install dlib-bin' (it comes "
                "with srforensics' default dependencies)"
            ) from None
        paths = {}
        for key in ("dlib-resnet-v1", "dlib-landmarks-5"):
            paths[key] = W.require(key)
            W.log_weights_file(
                paths[key],
                how="full SHA-256; dlib's deserializer",
                sha256=W.spec(key).sha256,
                licence=W.spec(key).licence,
            )
        self._dlib = dlib
        self.landmarker = dlib.shape_predictor(str(paths["dlib-landmarks-5"]))
        self.net = dlib.face_recognition_model_v1(str(paths["dlib-resnet-v1"]))
        spec = W.spec("dlib-resnet-v1")
        self._card = EmbedderCard(
            self.name,
            spec.file_name,
            spec.sha256,
            "installed package",
            f"{spec.licence}; dlib: Boost Software License",
            spec.source,
            operating_point=DLIB_OPERATING_POINT,
            alignment=(
                "dlib 5-point landmarks in a box from the crop's MTCNN landmarks, "
                "dlib face chip 150 px, padding 0.25"
            ),
        )

    @classmethod
    def unavailable(cls) -> str | None:

        if importlib.util.find_spec("dlib") is None:
            return "dlib is not installed (pip install dlib-bin)"
        try:
            for key in ("dlib-resnet-v1", "dlib-landmarks-5"):
                W.require(key)
        except W.WeightsError as exc:
            return str(exc).split(". ")[0]
        return None

    def _box(self, points, shape):
        dlib = self._dlib
        if points is None:
            return dlib.rectangle(0, 0, shape[1] - 1, shape[0] - 1)
        import numpy as np

        pts = np.asarray(points, dtype=np.float64)
        cx, cy = pts.mean(axis=0)
        half = _BOX_PER_EYE_DISTANCE * float(np.linalg.norm(pts[1] - pts[0])) / 2
        return dlib.rectangle(
            int(round(cx - half)),
            int(round(cy - half)),
            int(round(cx + half)),
            int(round(cy + half)),
        )

    def embed(self, faces, *, landmarks=None):
        import numpy as np
        import torch

        images = (faces.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
        images = images.permute(0, 2, 3, 1).numpy()
        out = []
        for i, img in enumerate(images):
            img = np.ascontiguousarray(img)
            box = self._box(None if landmarks is None else landmarks[i], img.shape)
            shape = self.landmarker(img, box)
            chip = self._dlib.get_face_chip(img, shape, size=self.input_size, padding=0.25)
            out.append(np.asarray(self.net.compute_face_descriptor(chip), dtype=np.float64))
        return torch.from_numpy(np.stack(out))

    def card(self) -> EmbedderCard:
        return self._card


def choose_embedder(name: str) -> tuple[str, str]:
    """The embedder ``name`` stands for, and why: ``auto`` takes the first of
    :data:`AUTO_ORDER` whose weights are at hand and verified (:meth:`FaceEmbedder.unavailable`),
    any other name itself."""
    if name != AUTO:
        return FACE_EMBEDDERS.canonical(name), "asked for by name"
    from srforensics.weights import WeightsError

    reasons = []
    for candidate in AUTO_ORDER:
        reason = FACE_EMBEDDERS.get(candidate).unavailable()
        if reason is None:
            why = "auto: the first matcher whose verified weights are here"
            return candidate, why + (f" ({'; '.join(reasons)})" if reasons else "")
        reasons.append(f"{candidate}: {reason}")
    raise WeightsError("no face matcher's weights are here: " + "; ".join(reasons))


def load_embedder(
    name: str, *, weights_file: str | None = None, device: str = "cpu"
) -> FaceEmbedder:
    """The embedder ``name`` (``auto``: see :func:`choose_embedder`; with ``weights_file``,
    ``auto`` means FaceNet VGGFace2, whose file it is)."""
    if name == AUTO:
        name = "facenet-vggface2" if weights_file else choose_embedder(name)[0]
    cls = FACE_EMBEDDERS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, FaceEmbedder)):
        raise SRForensicsError(f"{name!r} is not a srforensics.faces.embed.FaceEmbedder")
    return cls(weights_file=weights_file, device=device)
