"""Any SR checkpoint as a model: spandrel detects the architecture from the state dict.

A ``.pth``/``.pt``/``.ckpt`` state dict or a ``.safetensors`` file is read safely
(:func:`srforensics.weights.load_state_dict`: safetensors, or
``torch.load(weights_only=True)``; a pickle that needs more only with
``--trust-weights``), then `spandrel <https://github.com/chaiNNer-org/spandrel>`_
(the loader of chaiNNer and ComfyUI) recognises its architecture, scale and channels
from the keys and shapes alone. The card names the architecture, the scale and the
file's SHA-256; spandrel reports no licence, so the card says so instead of guessing.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from srforensics import weights as W
from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.models.base import ModelCard, SRModel
from srforensics.resize import imresize_tensor

# spandrel, spandrel_extra_arches, torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

#: Suffixes of files that hold a state dict (a ``.pt``/``.pth`` may also be TorchScript).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (its zip holds compiled ``code/``), not a
    ``torch.save`` state dict (whose zip holds only ``data.pkl`` and tensors)."""
    if path.suffix.lower() == ".safetensors" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(
            n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl")
            for n in z.namelist()
        )


#: Licences published with the reference releases of architectures whose checkpoints are
#: mostly those releases' weights; any other architecture's licence is the file's source's.
ARCHITECTURE_LICENCES = {
    "GFPGAN": "Apache-2.0 (TencentARC GFPGAN release): check where this file came from",
    "CodeFormer": "S-Lab License 1.0 (CodeFormer): non-commercial use only",
}


def registry():
    """spandrel's architectures, and those of ``spandrel_extra_arches`` when it is installed
    (``pip install "srforensics[face-restoration]"``: CodeFormer and others, several under
    non-commercial licences). A copy: spandrel's own registry is left as it is."""
    from spandrel import MAIN_REGISTRY

    reg = MAIN_REGISTRY.copy()
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return reg
    reg.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return reg


def known_architectures() -> list[str]:
    return sorted({a.architecture.name for a in registry().architectures()})


class CheckpointModel(SRModel):
    """An SR checkpoint whose architecture spandrel detects; deterministic (use a sampler
    for a spread of outputs)."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> None:
        import torch

        super().__init__(device=device, dtype=dtype)
        path = Path(path)
        try:
            import spandrel
        except ImportError:
            raise SRForensicsError(
                f"{path}: reading a checkpoint's architecture needs spandrel: pip install spandrel"
            ) from None
        self.sha256 = sha256_file(path)
        state = W.load_state_dict(path, sha256=self.sha256)
        try:
            desc = spandrel.ModelLoader(device="cpu", registry=registry()).load_from_state_dict(
                state
            )
        except spandrel.UnsupportedModelError:
            raise SRForensicsError(
                f"{path}: spandrel recognises no architecture in this state dict. It knows "
                f"{', '.join(known_architectures())}. For another architecture, write a model "
                "class (the plug-in guide, docs/plugins.md) or a model spec YAML"
            ) from None
        except Exception as exc:  # a recognised architecture whose weights do not fit it
            raise SRForensicsError(
                f"{path}: spandrel could not build the model ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.purpose not in (
            "SR",
            "FaceSR",
        ):
            raise SRForensicsError(
                f"{path}: spandrel finds a {desc.architecture.name} model for "
                f"{getattr(desc, 'purpose', 'another task')}, not super-resolution"
            )
        if (desc.input_channels, desc.output_channels) != (3, 3):
            raise SRForensicsError(
                f"{path}: the {desc.architecture.name} model takes {desc.input_channels} and "
                f"gives {desc.output_channels} channel(s); srforensics audits RGB models"
            )
        if dtype == "float16" and not desc.supports_half:
            raise SRForensicsError(f"{desc.architecture.name} does not support float16")
        if dtype == "bfloat16" and not desc.supports_bfloat16:
            raise SRForensicsError(f"{desc.architecture.name} does not support bfloat16")
        self.descriptor = desc.to(device).eval()
        self.descriptor.model.to(self.torch_dtype)
        self.descriptor.model.requires_grad_(False)
        self.name = path.stem  # type: ignore[misc]
        self.scale = int(desc.scale)  # type: ignore[misc]
        #: A face-restoration model (spandrel's purpose "FaceSR", scale 1: GFPGAN,
        #: RestoreFormer) restores an aligned face at its own size: the size it is run at.
        self.face_size: int | None = None
        if desc.purpose == "FaceSR" and desc.scale == 1:
            req = desc.size_requirements
            self.face_size = max(int(req.minimum or 0), int(req.multiple_of or 0)) or 512
            self.scale = None  # type: ignore[misc]  # any: the output is resized to the scale
        self.architecture = desc.architecture.name
        self.tags = list(desc.tags)
        self.path = path
        self._torch = torch

    def upscale(self, lr, *, scale):
        if self.face_size is not None:
            return self._restore_face(lr, scale=scale)
        if scale != self.scale:
            raise ValueError(f"{self.architecture} checkpoint upscales x{self.scale}, not x{scale}")
        with self._torch.no_grad():
            out = self.descriptor(lr.to(self.device, self.torch_dtype)).float()
        return out

    def _restore_face(self, lr, *, scale: int):
        """The LR (an aligned face crop) resized to the model's face size with MATLAB bicubic,
        restored, and resized to ``scale`` times the LR with MATLAB bicubic (antialiased)."""

        h, w = lr.shape[-2:]
        if h != w:
            raise ValueError(
                f"{self.architecture} restores a square, aligned face crop; this LR is {w}x{h} "
                "(audit it under a faces protocol)"
            )
        size = (self.face_size, self.face_size)
        with self._torch.no_grad():
            x = imresize_tensor(lr.float(), size=size, method="bicubic").clamp(0, 1)
            out = self.descriptor(x.to(self.device, self.torch_dtype)).float()
            out = imresize_tensor(out.cpu(), size=(h * scale, w * scale), method="bicubic")
        return out.clamp(0, 1)

    def card(self) -> ModelCard:
        if self.face_size is not None:
            what = (
                f"{self.architecture} face restoration, architecture detected by spandrel: the LR "
                f"(an aligned face crop) resized to {self.face_size} px with MATLAB bicubic, "
                "restored, and resized to the output size with MATLAB bicubic. Trained on "
                "aligned faces: run it under a faces protocol, which makes that crop"
            )
            version = f"{self.architecture} face restoration at {self.face_size} px"
        else:
            what = (
                f"{self.architecture} ×{self.scale}, architecture detected by spandrel; outputs "
                "clamped to [0, 1] by spandrel's inference, as in the architectures' reference code"
            )
            version = f"{self.architecture} x{self.scale}"
        return ModelCard(
            name=self.name,
            version=version + (f" ({', '.join(self.tags)})" if self.tags else ""),
            weights_sha256=self.sha256,
            licence=ARCHITECTURE_LICENCES.get(
                self.architecture,
                f"not reported by spandrel for {self.architecture}: check where the checkpoint "
                "came from",
            ),
            source=str(self.path),
            description=what,
            weights_origin="user-supplied",
        )
