"""Metrics: a registry of metric factories, each called with a :class:`MetricConfig`.

Built in: ``psnr``/``ssim`` (Y, crop border = scale), ``psnr_rgb``/``ssim_rgb``,
``lr_psnr``; pyiqa metrics by short name or as ``pyiqa:<name>``. Third-party
metrics join through the ``srforensics.metrics`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.metrics.base import Metric, MetricConfig, MetricUnavailable
from srforensics.registry import Registry

METRICS: Registry[Any] = Registry("metric", entry_point_group="srforensics.metrics")
for _name, _target in [
    ("psnr", "srforensics.metrics.fidelity:PSNRY"),
    ("ssim", "srforensics.metrics.fidelity:SSIMY"),
    ("psnr_rgb", "srforensics.metrics.fidelity:PSNRRGB"),
    ("ssim_rgb", "srforensics.metrics.fidelity:SSIMRGB"),
    ("lr_psnr", "srforensics.metrics.fidelity:LRPSNR"),
    ("lr_psnr_hr", "srforensics.metrics.fidelity:LRPSNRHR"),
    ("fsim", "srforensics.metrics.quality:fsim"),
    ("vif", "srforensics.metrics.quality:vif"),
    ("gmsd", "srforensics.metrics.quality:gmsd"),
    ("ms_ssim", "srforensics.metrics.quality:ms_ssim"),
    ("piqe", "srforensics.metrics.quality:piqe"),
    ("lpips", "srforensics.metrics.quality:lpips"),
    ("niqe", "srforensics.metrics.quality:niqe"),
    ("dists", "srforensics.metrics.quality:dists"),
    ("brisque", "srforensics.metrics.quality:brisque"),
    ("musiq", "srforensics.metrics.quality:musiq"),
]:
    METRICS.register(_name, _target)
METRICS.register_prefix("pyiqa", "srforensics.metrics.quality:pyiqa_factory")

DEFAULT_METRICS = ("psnr", "ssim", "psnr_rgb", "ssim_rgb", "lr_psnr")


def run_metric_names(chosen, protocol_metrics) -> tuple[str, ...]:
    """A run's metric names: those chosen (``--metrics``), else its protocol's, else
    :data:`DEFAULT_METRICS`."""
    return tuple(chosen or protocol_metrics or DEFAULT_METRICS)


def build_metric(name: str, config: MetricConfig) -> Metric:
    """Build a metric by name; raises :class:`MetricUnavailable` with the reason if it cannot run."""
    factory = METRICS.get(name)
    if not callable(factory):
        raise SRForensicsError(f"metric {name!r} resolves to {factory!r}, which cannot be called")
    metric = factory(config)
    if not isinstance(metric, Metric):
        raise SRForensicsError(f"metric {name!r} did not build a srforensics.metrics.Metric")
    return metric


def describe_metric(name: str) -> dict[str, Any]:
    """Metadata of a metric by name, without building it (pyiqa's are read from its config)."""
    factory = METRICS.get(name)
    describe = getattr(factory, "describe", None)
    if describe is None:
        raise SRForensicsError(f"metric {name!r} has no metadata (no describe())")
    info = dict(describe())
    info["name"] = METRICS.canonical(name)
    check = getattr(factory, "unavailable_reason", None)
    info["unavailable"] = check() if check else None
    return info


__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Metric",
    "MetricConfig",
    "MetricUnavailable",
    "build_metric",
    "describe_metric",
    "run_metric_names",
]
