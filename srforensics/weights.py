"""Weight files: name -> URL, SHA-256, licence; the cache; import, fetch, verify; safe loading.

A weight file is used only when its SHA-256 matches the one registered for its
name (or given in a model spec). Files come into the cache by ``fetch`` (where
there is network) or ``import`` (air-gapped), both verifying the hash. Loading
never unpickles arbitrary objects: ``torch.load(..., weights_only=True)`` or
safetensors.

The cache folder is ``$SRFORENSICS_CACHE/weights`` when that variable is set,
else ``$XDG_CACHE_HOME/srforensics/weights`` (``~/.cache/srforensics/weights``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file


class WeightsError(SRForensicsError):
    """Missing, unknown, altered or unloadable weights; the message says what to do."""


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: where it comes from and the SHA-256 it must have."""

    name: str
    file_name: str
    url: str
    sha256: str
    licence: str
    source: str
    description: str = ""
    size: int | None = None


_REGISTRY: dict[str, WeightSpec] = {}


def register_weights(spec: WeightSpec) -> None:
    if spec.name in _REGISTRY:
        raise ValueError(f"weights {spec.name!r} are already registered")
    if len(spec.sha256) != 64 or any(c not in "0123456789abcdef" for c in spec.sha256):
        raise ValueError(f"weights {spec.name!r}: sha256 must be 64 lowercase hex digits")
    _REGISTRY[spec.name] = spec


def registered() -> Iterator[WeightSpec]:
    yield from (_REGISTRY[k] for k in sorted(_REGISTRY))


def spec(name: str) -> WeightSpec:
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise WeightsError(f"unknown weights {name!r}{hint} Known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def cache_dir() -> Path:
    root = os.environ.get("SRFORENSICS_CACHE")
    if root:
        return Path(root).expanduser() / "weights"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "srforensics" / "weights"


def cached_path(s: WeightSpec) -> Path:
    return cache_dir() / s.file_name


def _missing_message(s: WeightSpec) -> str:
    return (
        f"weights {s.name!r} are missing: {s.file_name} is not in {cache_dir()}. Download it from "
        f"{s.url} and run 'srforensics weights import {s.file_name}', or run "
        f"'srforensics weights fetch {s.name}' on a machine with network access"
    )


def require(name: str) -> Path:
    """The verified cached file of registered weights ``name``."""
    s = spec(name)
    path = cached_path(s)
    if not path.is_file():
        raise WeightsError(_missing_message(s))
    check_sha256(path, s.sha256, what=f"weights {s.name!r}")
    return path


def check_sha256(path: Path, expected: str, *, what: str) -> str:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsError(
            f"{what}: {path} has SHA-256 {actual}, expected {expected.lower()}; the file is not the "
            "published one (corrupt, truncated or altered): refusing to use it"
        )
    return actual


def _place(src: Path, s: WeightSpec) -> Path:
    dest = cached_path(s)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{s.file_name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        check_sha256(Path(tmp), s.sha256, what=f"weights {s.name!r}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def import_file(path: str | Path) -> WeightSpec:
    """Copy a local file into the cache, only when its SHA-256 matches a registered entry."""
    src = Path(path)
    if not src.is_file():
        raise WeightsError(f"cannot import {src}: no such file")
    digest = sha256_file(src)
    match = next((s for s in _REGISTRY.values() if s.sha256 == digest), None)
    if match is None:
        raise WeightsError(
            f"{src} (SHA-256 {digest}) matches no registered weights; 'srforensics weights list' shows "
            "what is known. To use your own file, name it in a model spec YAML with its SHA-256"
        )
    _place(src, match)
    return match


def fetch(name: str, *, timeout: float = 60.0) -> Path:
    """Download registered weights into the cache and verify them (needs network)."""
    import urllib.request

    s = spec(name)
    dest = cached_path(s)
    if dest.is_file() and sha256_file(dest) == s.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        part = Path(tmp) / s.file_name
        try:
            with urllib.request.urlopen(s.url, timeout=timeout) as resp, open(part, "wb") as fh:
                shutil.copyfileobj(resp, fh, length=1 << 20)
        except OSError as exc:
            raise WeightsError(
                f"cannot download {s.url}: {exc}; without network, download the file elsewhere and run "
                f"'srforensics weights import {s.file_name}'"
            ) from None
        return _place(part, s)


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    status: str  # "ok", "altered", "unknown"
    name: str | None
    sha256: str


def verify_cache() -> list[CacheEntry]:
    """Re-hash every file in the cache against the registry."""
    by_file = {s.file_name: s for s in _REGISTRY.values()}
    out = []
    folder = cache_dir()
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        digest = sha256_file(path)
        s = by_file.get(path.name)
        status = "unknown" if s is None else ("ok" if s.sha256 == digest else "altered")
        out.append(CacheEntry(path, status, s.name if s else None, digest))
    return out


# -- loading ----------------------------------------------------------------------------
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")


def load_state_dict(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a state dict safely: safetensors, or ``torch.load(weights_only=True)``.

    Unwraps the usual containers (BasicSR ``params_ema``/``params``, ``state_dict``)
    and strips the ``module.`` prefix DataParallel leaves.
    """
    import torch

    path = Path(path)
    if sha256 is not None:
        check_sha256(path, sha256, what="weights")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(
                f"{path} is a safetensors file, but the safetensors package is not installed"
            ) from None
        data: Any = load_file(str(path), device="cpu")
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(
                f"{path} cannot be loaded with torch.load(weights_only=True): {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Files that need full unpickling can run "
                "arbitrary code and are refused; convert the file to a plain state dict or safetensors"
            ) from None
    return normalise_state_dict(data, source=str(path))


def normalise_state_dict(data: Any, *, source: str = "weights") -> dict[str, Any]:
    import torch

    for _ in range(3):  # nested containers, e.g. {"state_dict": {"params_ema": ...}}
        if isinstance(data, Mapping) and not any(
            isinstance(v, torch.Tensor) for v in data.values()
        ):
            key = next((k for k in _CONTAINER_KEYS if k in data), None)
            if key is None:
                break
            data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{source} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in data.items()}


# -- published weights -------------------------------------------------------------------
# SHA-256 values of the public release files. They cannot be checked from this
# project's offline build machines; each was cross-checked against independent public
# listings of the same file (RealESRGAN: several; IMDN: one published provenance record).
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_IMDN = "https://github.com/Zheng222/IMDN/raw/master/checkpoints"
for _spec in (
    WeightSpec(
        "realesrgan-x4plus",
        "RealESRGAN_x4plus.pth",
        f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
        "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        "BSD-3-Clause",
        "https://github.com/xinntao/Real-ESRGAN",
        "Real-ESRGAN x4plus (RRDBNet, 23 blocks)",
    ),
    WeightSpec(
        "realesrgan-x2plus",
        "RealESRGAN_x2plus.pth",
        f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        "BSD-3-Clause",
        "https://github.com/xinntao/Real-ESRGAN",
        "Real-ESRGAN x2plus (RRDBNet, 23 blocks)",
    ),
    WeightSpec(
        "imdn-x2",
        "IMDN_x2.pth",
        f"{_IMDN}/IMDN_x2.pth",
        "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x2, bicubic DIV2K",
        2_796_052,
    ),
    WeightSpec(
        "imdn-x3",
        "IMDN_x3.pth",
        f"{_IMDN}/IMDN_x3.pth",
        "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x3, bicubic DIV2K",
        2_830_672,
    ),
    WeightSpec(
        "imdn-x4",
        "IMDN_x4.pth",
        f"{_IMDN}/IMDN_x4.pth",
        "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x4, bicubic DIV2K",
        2_879_112,
    ),
):
    register_weights(_spec)
