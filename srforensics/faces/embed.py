"""Face embedding backends: a registry of embedders, FaceNet built in.

An embedder maps aligned face crops ``(B, 3, H, W)`` in [0, 1] to L2-normalised
embeddings ``(B, D)``. Built in: FaceNet InceptionResnetV1 trained on VGGFace2
(``facenet-vggface2``, the default) or CASIA-WebFace (``facenet-casia-webface``),
from facenet-pytorch. Others (ArcFace ONNX, dlib) plug in by entry point in group
``srforensics.face_embedders`` or as ``package.module:Class``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from srforensics.errors import SRForensicsError
from srforensics.registry import Registry

FACE_EMBEDDERS: Registry[Any] = Registry(
    "face embedder", entry_point_group="srforensics.face_embedders"
)
FACE_EMBEDDERS.register(
    "facenet-vggface2",
    "srforensics.faces.embed:FaceNetVGGFace2",
    aliases=("vggface2",),
    description="FaceNet InceptionResnetV1, VGGFace2 (default)",
)
FACE_EMBEDDERS.register(
    "facenet-casia-webface",
    "srforensics.faces.embed:FaceNetCASIA",
    aliases=("casia-webface",),
    description="FaceNet InceptionResnetV1, CASIA-WebFace",
)


@dataclass(frozen=True)
class EmbedderCard:
    name: str
    weights_file: str | None
    weights_sha256: str | None
    weights_origin: str  # "registered" or "user-supplied"
    licence: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaceEmbedder:
    """Base class: set ``name`` and implement :meth:`embed`."""

    name: ClassVar[str] = "embedder"
    input_size: ClassVar[int] = 160

    def embed(self, faces) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def card(self) -> EmbedderCard:  # pragma: no cover - abstract
        raise NotImplementedError


class FaceNet(FaceEmbedder):
    """facenet-pytorch InceptionResnetV1 (512-d), inputs standardised as ``(x*255 - 127.5) / 128``."""

    weights_name: ClassVar[str | None] = None
    dataset: ClassVar[str] = ""

    def __init__(self, *, weights_file: str | None = None, device: str = "cpu") -> None:
        from facenet_pytorch import InceptionResnetV1

        from srforensics import weights as W

        if weights_file:
            path = Path(weights_file).expanduser()
            if not path.is_file():
                raise SRForensicsError(f"--face-weights {path}: no such file")
            sha, origin = W.sha256_file(path), "user-supplied"
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
        )

    def embed(self, faces):
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


def load_embedder(
    name: str, *, weights_file: str | None = None, device: str = "cpu"
) -> FaceEmbedder:
    cls = FACE_EMBEDDERS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, FaceEmbedder)):
        raise SRForensicsError(f"{name!r} is not a srforensics.faces.embed.FaceEmbedder")
    return cls(weights_file=weights_file, device=device)
