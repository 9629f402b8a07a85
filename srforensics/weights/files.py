"""Weight files: name -> URL, SHA-256, licence; the cache; import, fetch, verify."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file
from srforensics.weights.policy import _TRUST_PICKLES, weights_policy

__all__ = [
    "CacheEntry",
    "Target",
    "Verify",
    "WeightSpec",
    "WeightsError",
    "cache_dir",
    "cached_path",
    "check_plain_tensors",
    "check_sha256",
    "check_spec",
    "fetch",
    "for_metric",
    "import_file",
    "package_dir",
    "register_weights",
    "registered",
    "require",
    "spec",
    "target_dir",
    "torch_hub_dir",
    "verification",
    "verify_cache",
]

# torch, safetensors: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


class WeightsError(SRForensicsError):
    """Missing, unknown, altered or unloadable weights; the message says what to do."""


Target = Literal["srforensics", "pyiqa", "torch-hub", "torch-checkpoints", "package"]
Verify = Literal["sha256", "prefix", "none"]


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: where it comes from, where it goes, and how it is verified.

    ``verify``: ``sha256`` (the full hash is known), ``prefix`` (only the 8-hex SHA-256
    prefix that the torch.hub naming convention puts in the file name is known, and
    ``sha256`` holds it; torch.hub checks the same prefix, which identifies the file
    but cannot authenticate it, so such a file is used only when it also loads with
    ``weights_only=True``), or ``none`` (no hash is published; allowed only for
    numeric MATLAB ``.mat`` files, which load without running code). ``target`` is the folder the file must be in: srforensics' cache,
    pyiqa's (``$TORCH_HOME/hub/pyiqa``), torch.hub's (``$TORCH_HOME/hub/checkpoints``) or,
    for ``package``, the folder ``package`` (``"dist_module/sub/folder"``) of an installed
    Python package that ships the file (found without importing the package).
    ``metrics`` names the pyiqa metrics that need the file.
    """

    name: str
    file_name: str
    url: str
    sha256: str | None
    licence: str
    source: str
    description: str = ""
    size: int | None = None
    verify: Verify = "sha256"
    target: Target = "srforensics"
    metrics: tuple[str, ...] = ()
    package: str | None = None
    #: The distribution to install when the package is missing (``pip install ...``).
    requirement: str | None = None


_REGISTRY: dict[str, WeightSpec] = {}
_HEX = set("0123456789abcdef")


def register_weights(spec: WeightSpec) -> None:
    if spec.name in _REGISTRY:
        raise ValueError(f"weights {spec.name!r} are already registered")
    digits = {"sha256": 64, "prefix": 8, "none": 0}[spec.verify]
    if digits and (not spec.sha256 or len(spec.sha256) != digits or set(spec.sha256) - _HEX):
        raise ValueError(f"weights {spec.name!r}: sha256 must be {digits} lowercase hex digits")
    if spec.verify == "none" and not spec.file_name.endswith(".mat"):
        raise ValueError(f"weights {spec.name!r}: only numeric .mat files may go unverified")
    if (spec.target == "package") != bool(spec.package):
        raise ValueError(f"weights {spec.name!r}: target 'package' and a package go together")
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


def target_dir(target: Target) -> Path:
    if target == "srforensics":
        return cache_dir()
    hub = torch_hub_dir()
    if target == "torch-checkpoints":  # facenet-pytorch's own folder: $TORCH_HOME/checkpoints
        return hub.parent / "checkpoints"
    return hub / ("pyiqa" if target == "pyiqa" else "checkpoints")


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, where pyiqa and torchvision look: without importing torch
    (seconds) when it is not imported yet, by torch's own rule: ``$TORCH_HOME/hub``, else
    ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``. Once torch is imported its
    answer is used, so a ``torch.hub.set_dir`` is honoured."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir())
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(home) / "hub"


def package_dir(package: str) -> Path | None:
    """The folder ``"module/sub/folder"`` of an installed package, or None when it is not
    installed. The package is found, not imported (its ``__init__`` may not import)."""

    top, _, sub = package.partition("/")
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / sub


def cached_path(s: WeightSpec) -> Path:
    if s.target == "package":
        folder = package_dir(s.package or "")
        return (folder or Path(f"<{s.package}: not installed>")) / s.file_name
    return target_dir(s.target) / s.file_name


def for_metric(metric: str) -> list[WeightSpec]:
    """Registered files that the pyiqa metric ``metric`` needs."""
    return [s for s in registered() if metric in s.metrics]


def verification(s: WeightSpec) -> str:
    return {
        "sha256": "full SHA-256",
        "prefix": "SHA-256 prefix in the file name, and a weights_only=True load",
        "none": "none (no published hash; numeric .mat file)",
    }[s.verify]


def _missing_message(s: WeightSpec) -> str:
    if s.target == "package":
        return (
            f"weights {s.name!r} are missing: they ship in the Python package that provides "
            f"{s.package}, which is not installed here. Install it with 'pip install "
            f"{s.requirement or s.package.split('/')[0]}' (it comes with srforensics' default "
            "dependencies)"
        )
    return (
        f"weights {s.name!r} are missing: {s.file_name} is not in {cached_path(s).parent}. Download it from "
        f"{s.url} and run 'srforensics weights import {s.file_name}', or run "
        f"'srforensics weights fetch {s.name}' on a machine with network access"
    )


def require(name: str) -> Path:
    """The verified cached file of registered weights ``name``."""
    s = spec(name)
    path = cached_path(s)
    if not path.is_file():
        raise WeightsError(_missing_message(s))
    check_spec(path, s)
    return path


def check_spec(path: Path, s: WeightSpec) -> str:
    """Verify ``path`` as far as ``s`` allows; raise :class:`WeightsError` if it does not match.

    Returns how the file was vetted, for the run's log. A pickle that a library will
    unpickle itself (``target`` pyiqa or torch-hub), and any file known only by a hash
    prefix, must also pass :func:`check_plain_tensors`.
    """
    if s.verify == "sha256":
        check_sha256(path, s.sha256 or "", what=f"weights {s.name!r}")
        how = "full SHA-256"
    elif s.verify == "prefix":
        actual = sha256_file(path)
        if not actual.startswith(s.sha256 or ""):
            raise WeightsError(
                f"weights {s.name!r}: {path} has SHA-256 {actual}, which does not start with {s.sha256} "
                "as its published file name says; refusing to use it"
            )
        how = "SHA-256 prefix (the full hash is not published)"
    else:
        return "no published hash (numeric .mat file)"
    if s.verify == "prefix" or s.target in ("pyiqa", "torch-hub"):
        how += "; " + check_plain_tensors(path, what=f"weights {s.name!r}")
    return how


def check_plain_tensors(path: str | Path, *, what: str = "weights") -> str:
    """Show that the pickle ``path`` holds only tensors and plain containers, or refuse it.

    ``torch.load(weights_only=True)`` accepts only an allow-list of constructors; a file
    it loads runs nothing else when another library unpickles it fully. A file it refuses
    (it names other Python objects, as a payload must) raises :class:`WeightsError`,
    unless :func:`weights_policy` trusts pickles (``--trust-weights``). Safetensors and
    ``.mat`` files hold no code and pass as they are.
    """
    import torch

    path = Path(path)
    if path.suffix in (".safetensors", ".mat"):
        return f"{path.suffix[1:]} (no code)"
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # mmap needs the zip format; legacy files load without it
            if "mmap" not in str(exc):
                raise
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if _TRUST_PICKLES.get():
            return "needs full unpickling: trusted by --trust-weights"
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(
            f"{what}: {path} does not load with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {first[:200]}); unpickling it fully could run code that "
            "is in it, so it is refused. Use the published file, or, only if you trust where "
            "this one came from, pass --trust-weights (the manifest records it)"
        ) from None
    return "loads with torch.load(weights_only=True)"


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
        check_spec(Path(tmp), s)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def import_file(path: str | Path, *, trust_pickles: bool = False) -> WeightSpec:
    """Copy a local file into the cache, only when it passes its registered entry's checks
    (:func:`check_spec`); ``trust_pickles`` admits a pickle that needs full unpickling."""
    with weights_policy(trust_pickles=trust_pickles):
        return _import_file(Path(path))


def _import_file(src: Path) -> WeightSpec:
    if not src.is_file():
        raise WeightsError(f"cannot import {src}: no such file")
    digest = sha256_file(src)
    match = next(
        (s for s in _REGISTRY.values() if s.verify == "sha256" and s.sha256 == digest), None
    )
    if match is None:  # entries known only by the prefix in their name, or not at all: by file name
        match = next(
            (s for s in _REGISTRY.values() if s.verify != "sha256" and s.file_name == src.name),
            None,
        )
        if match is not None:
            check_spec(src, match)
    if match is not None and match.target == "package":
        raise WeightsError(
            f"{src} is {match.name!r}, which is read from its installed package "
            f"({match.package}), not from the cache: install the package instead"
        )
    if match is None:
        raise WeightsError(
            f"{src} (SHA-256 {digest}) matches no registered weights; 'srforensics weights list' shows "
            "what is known. To use your own file, name it in a model spec YAML with its SHA-256"
        )
    _place(src, match)
    return match


def fetch(name: str, *, timeout: float = 60.0) -> Path:
    """Download registered weights into the cache and verify them (needs network)."""

    s = spec(name)
    dest = cached_path(s)
    if s.target == "package":  # installed by pip with its package, never downloaded here
        if not dest.is_file():
            raise WeightsError(_missing_message(s))
        check_spec(dest, s)
        return dest
    if dest.is_file():
        try:
            check_spec(dest, s)
            return dest
        except WeightsError:
            pass  # replaced below
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
    status: str  # "ok", "altered", "unsafe", "unverified", "unknown"
    name: str | None
    sha256: str
    detail: str = ""


def verify_cache() -> list[CacheEntry]:
    """Re-hash every file in srforensics' cache, and every registered file in pyiqa's and torch.hub's."""
    out = []
    by_file = {s.file_name: s for s in _REGISTRY.values() if s.target == "srforensics"}
    folder = cache_dir()
    paths = (
        [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
        if folder.is_dir()
        else []
    )
    known = [(p, by_file.get(p.name)) for p in paths]
    known += [
        (cached_path(s), s)
        for s in registered()
        if s.target != "srforensics" and cached_path(s).is_file()
    ]
    for path, s in known:
        digest = sha256_file(path)
        detail = ""
        if s is None:
            status = "unknown"
        elif s.verify == "none":
            status, detail = "unverified", verification(s)
        else:
            try:
                detail = check_spec(path, s)
                status = "ok"
            except WeightsError as exc:
                # A hash that matches but a pickle that needs full unpickling: not altered
                # for certain (the full hash is unknown), but not safe to hand to a library.
                status = "unsafe" if "weights_only=True" in str(exc) else "altered"
                detail = str(exc)
        out.append(CacheEntry(path, status, s.name if s else None, digest, detail))
    return out
