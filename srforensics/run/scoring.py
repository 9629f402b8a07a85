"""Scoring: building the metrics, grouping a model batch's outputs into metric calls, and
the scores of one call (reference features computed once per input)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.images import to_tensor
from srforensics.metrics import METRICS, MetricUnavailable, build_metric
from srforensics.metrics.base import portable_features, repeat_features

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SRForensicsError(
            "--device cuda was asked for, but torch sees no CUDA device; use --device cpu"
        )
    return device


#: On a GPU, the distinct outputs of the LRs of one model batch are scored together, up to
#: this many pixels per call of each metric. One LR's outputs (N = 8) leave the GPU waiting on
#: kernel launches: an H100 scored the ``faces`` protocol's metrics in 7.8 ms per 128 px output
#: 8 at a time and 1.2 ms 64 at a time (docs/performance.md). On the CPU larger calls gain nothing
#: (per output, fsim, ssim_rgb and ssim ran slower 64 at a time), so each LR is scored alone.
#: A call that fails (out of GPU memory, say) is retried one LR at a time.
GPU_METRIC_PIXELS = 1 << 24


def metric_groups(
    counts: Sequence[int], shapes: Sequence[tuple[int, ...]], device: str
) -> list[list[int]]:
    """Which LRs of a model batch are scored together: lists of their indices, in order.

    ``counts``: each LR's distinct outputs; ``shapes``: each LR's HR shape (its outputs'
    too). On ``cuda``, consecutive LRs of one HR shape are grouped while the group has at
    most :data:`GPU_METRIC_PIXELS` output pixels (an LR with more is a group alone);
    elsewhere each LR is a group. LRs with no output to score are in no group.
    """
    groups: list[list[int]] = []
    total, last = 0, None
    for i, (n, shape) in enumerate(zip(counts, shapes, strict=True)):
        if n == 0:
            continue
        size = n * int(np.prod(shape[-2:]))
        if device == "cuda" and groups and shape == last and total + size <= GPU_METRIC_PIXELS:
            groups[-1].append(i)
            total += size
        else:
            groups.append([i])
            total, last = size, shape
    return groups


def metric_batches(
    images: Sequence[Sequence[np.ndarray]], hrs: Sequence[Any], lrs: Sequence[Any], device: str
) -> Iterator[tuple[list[int], list[int], Any, Any, Any]]:
    """The metric calls that score a model batch's LRs, one per group of :func:`metric_groups`.

    ``images``: each LR's outputs to score; ``hrs``, ``lrs``: each LR's ``[1, C, H, W]`` HR
    and LR on ``device``. Yields the group's LR indices, each one's output count, and the
    outputs, their references and their LRs as batches on ``device``.
    """
    for group in metric_groups([len(x) for x in images], [tuple(h.shape) for h in hrs], device):
        counts = [len(images[i]) for i in group]
        batch = to_tensor([img for i in group for img in images[i]]).to(device)
        ref = _expand_cat([hrs[i] for i in group], counts)
        yield group, counts, batch, ref, _expand_cat([lrs[i] for i in group], counts)


def metric_scores(
    metric, batch, ref, lr, counts: Sequence[int], features: Sequence[Any]
) -> list[float]:
    """``metric``'s scores of one :func:`metric_batches` call, one float per output.

    ``features``: per LR of the call, the metric's features of its HR (computed once per
    input by ``metric.reference_features``), the exception computing them raised (raised
    here), or None. The outputs are scored against those features when every LR has them,
    else the metric is called with the references themselves. A metric that returns a
    value count other than one per output has failed (ValueError)."""
    import torch

    for f in features:
        if isinstance(f, BaseException):
            raise f
    if metric.requires_reference and features and all(f is not None for f in features):
        vals = metric.score_features(batch, repeat_features(features, counts), lr=lr)
    else:
        vals = metric(batch, ref if metric.requires_reference else None, lr=lr)
    vals = torch.as_tensor(vals, dtype=torch.float64).reshape(-1).tolist()
    if len(vals) != len(batch):
        raise ValueError(f"returned {len(vals)} values for {len(batch)} outputs")
    return vals


def _expand_cat(tensors: Sequence[Any], counts: Sequence[int]):
    """Each ``[1, C, H, W]`` tensor repeated ``counts[i]`` times, as one batch (a view when one)."""
    import torch

    if len(tensors) == 1:
        return tensors[0].expand(counts[0], -1, -1, -1)
    return torch.cat([t.expand(n, -1, -1, -1) for t, n in zip(tensors, counts, strict=True)])


def build_metrics(
    names: Sequence[str], config, *, loader: bool = False
) -> tuple[list[Any], list[dict[str, Any]], dict[str, str]]:
    """The metrics ``names`` (each named as the user named it), the infos of all of them,
    and why each unavailable one is.

    ``loader``: only those whose reference features a loader process may compute
    (:attr:`~srforensics.metrics.Metric.loader_features`), the others not even built."""

    metrics, infos, unavailable = [], [], {}
    for name in names:
        canonical = METRICS.canonical(name)
        if loader and not getattr(METRICS.get(name), "loader_features", False):
            continue
        try:
            metric = build_metric(name, config)
        except MetricUnavailable as exc:
            infos.append(dict(METRICS.get(name).describe(), name=canonical))
            unavailable[canonical] = str(exc)
            continue
        metric.name = canonical  # type: ignore[misc]  # the column is the name the user gave
        if loader and not (metric.loader_features and metric.requires_reference):
            continue
        metrics.append(metric)
        infos.append(metric.info())
    return metrics, infos, unavailable


def metric_key(metric) -> str:
    """What must agree for a metric built in a loader process to stand for the driver's:
    its class, metadata and configuration (downloads aside: a loader downloads nothing)."""
    c = metric.config
    ident = {
        "class": f"{type(metric).__module__}:{type(metric).__qualname__}",
        "info": metric.info(),
        "config": [c.scale, c.border, str(c.device)],
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def loader_features(metrics: Sequence[tuple[Any, str]], hr: np.ndarray) -> dict[str, Any]:
    """Reference features of ``hr`` for each ``(metric, key)``, ready to cross processes:
    ``{name: (key, portable features)}``. A metric that fails here is left out: the driver
    computes it again, and reports its failure as its own."""
    import torch

    hr_t = to_tensor(hr)
    out: dict[str, Any] = {}
    with torch.no_grad():
        for metric, key in metrics:
            try:
                out[metric.name] = (key, portable_features(metric.reference_features(hr_t)))
            except Exception:
                continue
    return out
