"""Models built from an architecture and a weight file: presets, model spec YAML, TorchScript.

A model spec YAML names everything needed to rebuild a published model::

    name: edsr-m-x4
    version: official
    architecture: edsr              # rrdbnet, msrresnet, edsr, imdn (or module:Class)
    args: {num_feat: 64, num_block: 16, upscale: 4}
    scale: 4
    weights:
      file: EDSR_Mx4_f64b16_DIV2K_official-0c287733.pth   # next to the spec, or in the cache
      url: https://...              # where it comes from (shown when it is missing)
      sha256: <64 hex digits>       # required: a file with another hash is refused
    licence: Apache-2.0
    source: https://github.com/XPixelGroup/BasicSR
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from srforensics.errors import SRForensicsError, check_fields
from srforensics.images import sha256_file
from srforensics.models.base import ModelCard, SRModel
from srforensics.models.names import ARCHITECTURES
from srforensics.weights import (
    WeightsError,
    cache_dir,
    load_state_dict,
    log_weights_file,
    require,
    spec,
)

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def build_network(architecture: str, args: Mapping[str, Any]):
    cls = ARCHITECTURES.get(architecture)
    try:
        return cls(**dict(args))
    except TypeError as exc:
        raise SRForensicsError(
            f"architecture {architecture!r} does not take {dict(args)}: {exc}"
        ) from None


def load_into(net, state: Mapping[str, Any], *, source: str) -> None:
    """Strict ``load_state_dict`` after the architecture's own key conversion; clear errors."""
    convert = getattr(net, "convert_keys", None)
    state = convert(dict(state)) if convert else dict(state)
    result_missing = sorted(set(net.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(net.state_dict()))
    if result_missing or unexpected:
        raise WeightsError(
            f"{source} does not fit {type(net).__name__}: {len(result_missing)} missing key(s) "
            f"{result_missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}; check the architecture arguments"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{source} does not fit {type(net).__name__}: {str(exc).splitlines()[1:2]}"
        ) from None


class NetworkModel(SRModel):
    """A torch network with weights; deterministic (wrap with a sampler for a spread)."""

    architecture: ClassVar[str] = ""
    arch_args: ClassVar[Mapping[str, Any]] = {}
    weights: ClassVar[str | None] = None  # a registered weights name

    def __init__(self, *, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(device=device, dtype=dtype)
        s = spec(self.weights) if self.weights else None
        path = require(self.weights) if self.weights else None
        self._setup(self.architecture, self.arch_args, path, s.sha256 if s else None)
        self._card = ModelCard(
            name=self.name,
            version=self.version,
            weights_sha256=s.sha256 if s else None,
            licence=s.licence if s else self.licence,
            source=s.source if s else self.source,
            description=s.description if s else "",
            weights_origin="registered",
        )

    def _setup(self, architecture, args, path: Path | None, sha256: str | None) -> None:
        import torch

        self.net = build_network(architecture, args)
        if path is not None:
            load_into(self.net, load_state_dict(path, sha256=sha256), source=str(path))
        self.net.eval().requires_grad_(False)
        self.net.to(torch.device(self.device), self.torch_dtype)

    def upscale(self, lr, *, scale):
        import torch

        if self.scale is not None and scale != self.scale:
            raise ValueError(f"{self.name} upscales x{self.scale}, not x{scale}")
        with torch.no_grad():
            return self.net(lr.to(self.device, self.torch_dtype)).float()

    def card(self) -> ModelCard:
        return self._card


class RealESRGANx4plus(NetworkModel):
    """Real-ESRGAN x4plus: RRDBNet (23 blocks) trained with the second-order degradation (GAN)."""

    name = "realesrgan-x4plus"
    scale = 4
    version = "v0.1.0"
    architecture = "rrdbnet"
    arch_args = {
        "num_in_ch": 3,
        "num_out_ch": 3,
        "scale": 4,
        "num_feat": 64,
        "num_block": 23,
        "num_grow_ch": 32,
    }
    weights = "realesrgan-x4plus"


class RealESRGANx2plus(RealESRGANx4plus):
    """Real-ESRGAN x2plus: RRDBNet (23 blocks, pixel-unshuffle input), GAN."""

    name = "realesrgan-x2plus"
    scale = 2
    version = "v0.2.1"
    arch_args = {**RealESRGANx4plus.arch_args, "scale": 2}
    weights = "realesrgan-x2plus"


class IMDNx4(NetworkModel):
    """IMDN x4 (Hui et al. 2019), lightweight, trained on bicubic DIV2K."""

    name = "imdn-x4"
    scale = 4
    version = "official"
    architecture = "imdn"
    arch_args = {"in_nc": 3, "nf": 64, "num_modules": 6, "out_nc": 3, "upscale": 4}
    weights = "imdn-x4"


class IMDNx3(IMDNx4):
    """IMDN x3 (Hui et al. 2019), trained on bicubic DIV2K."""

    name = "imdn-x3"
    scale = 3
    arch_args = {**IMDNx4.arch_args, "upscale": 3}
    weights = "imdn-x3"


class IMDNx2(IMDNx4):
    """IMDN x2 (Hui et al. 2019), trained on bicubic DIV2K."""

    name = "imdn-x2"
    scale = 2
    arch_args = {**IMDNx4.arch_args, "upscale": 2}
    weights = "imdn-x2"


_SPEC_FIELDS = {
    "name",
    "version",
    "architecture",
    "args",
    "scale",
    "weights",
    "licence",
    "source",
    "description",
}


class SpecModel(NetworkModel):
    """A model described by a model spec YAML (see the module docstring)."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> None:
        SRModel.__init__(self, device=device, dtype=dtype)
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SRForensicsError(
                f"cannot read model spec {path}: {str(exc).splitlines()[0]}"
            ) from None
        if not isinstance(data, Mapping):
            raise SRForensicsError(f"{path}: a model spec is a YAML mapping")
        check_fields(data, _SPEC_FIELDS, str(path))
        for key in ("architecture", "scale", "weights"):
            if key not in data:
                raise SRForensicsError(f"{path}: missing required field {key!r}")
        w = data["weights"]
        if not isinstance(w, Mapping) or not w.get("file") or not w.get("sha256"):
            raise SRForensicsError(
                f"{path}: 'weights' needs 'file' and 'sha256' (the hash you trust)"
            )
        file = Path(str(w["file"])).expanduser()
        candidates = [file] if file.is_absolute() else [path.parent / file, cache_dir() / file.name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = " or ".join(str(c) for c in candidates)
            raise WeightsError(
                f"{path}: weights file {file.name} not found (looked in {where}); download it"
                + (f" from {w['url']}" if w.get("url") else "")
                + " and place it next to the spec"
            )
        self.name = str(data.get("name", path.stem))  # type: ignore[misc]
        self.scale = int(data["scale"])  # type: ignore[misc]
        self.version = str(data.get("version", "unversioned"))  # type: ignore[misc]
        self._setup(str(data["architecture"]), data.get("args") or {}, found, str(w["sha256"]))
        self._card = ModelCard(
            name=self.name,
            version=self.version,
            weights_sha256=str(w["sha256"]).lower(),
            licence=str(data.get("licence", "unknown")),
            source=str(data.get("source", w.get("url", "unknown"))),
            description=str(data.get("description", f"model spec {path.name}")),
            weights_origin=f"model spec {path}",
        )


class TorchScriptModel(SRModel):
    """A TorchScript archive: ``[B, 3, h, w]`` in [0, 1] -> ``[B, 3, h*s, w*s]``; deterministic."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> None:
        import torch

        super().__init__(device=device, dtype=dtype)
        path = Path(path)
        try:
            self.net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise SRForensicsError(
                f"{path} is not a TorchScript archive ({type(exc).__name__}); for a plain state dict, "
                "write a model spec YAML that names its architecture"
            ) from None
        self.net.eval()
        self.net.to(self.torch_dtype)
        self.name = path.stem  # type: ignore[misc]
        self.sha256 = sha256_file(path)
        log_weights_file(path, how="torch.jit.load", sha256=self.sha256)

    def upscale(self, lr, *, scale):
        import torch

        with torch.no_grad():
            out = self.net(lr.to(self.device, self.torch_dtype)).float()
        if out.shape[-2:] != (lr.shape[-2] * scale, lr.shape[-1] * scale):
            raise ValueError(f"TorchScript model returned {tuple(out.shape)} for x{scale}")
        return out

    def card(self) -> ModelCard:
        return ModelCard(
            name=self.name,
            version="torchscript",
            weights_sha256=self.sha256,
            description="TorchScript archive",
            weights_origin="user-supplied",
        )
