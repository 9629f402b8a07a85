"""The ``Metric`` contract and its metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from srforensics.errors import SRForensicsError

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch


class MetricUnavailable(SRForensicsError):
    """A metric that cannot be computed here (missing weights, broken dependency); says why."""


@dataclass(frozen=True)
class MetricConfig:
    """What every metric is built with.

    ``crop_border`` None means "the scale", the SR convention.
    """

    scale: int
    crop_border: int | None = None
    device: str = "cpu"
    allow_downloads: bool = False

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.crop_border is not None and self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")

    @property
    def border(self) -> int:
        return self.scale if self.crop_border is None else self.crop_border


class Metric:
    """Base class of metrics. Inputs are ``(B, 3, H, W)`` float in [0, 1], 8-bit quantised.

    Subclasses set the metadata and implement :meth:`__call__`, returning one
    float64 score per image, shape ``(B,)``.
    """

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    requires_reference: ClassVar[bool] = True
    requires_lr: ClassVar[bool] = False
    score_range: ClassVar[tuple[float, float] | None] = None
    unit: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Whether :meth:`reference_features` depends on nothing but the reference and the
    #: :class:`MetricConfig` (no weight file, no random state), so that the same metric built
    #: in another process computes the same tensors, bit for bit: an audit's loader
    #: processes then compute them ahead, beside the model and the metrics (on the CPU).
    #: False by default; set it only where that holds.
    loader_features: ClassVar[bool] = False

    def __init__(self, config: MetricConfig) -> None:
        self.config = config

    def __call__(
        self, out: torch.Tensor, ref: torch.Tensor | None = None, *, lr: torch.Tensor | None = None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reference_features(self, ref: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """The reference's share of the work, done once per input and reused for every output.

        Parameters
        ----------
        ref : torch.Tensor
            ``(R, 3, H, W)`` references.

        Returns
        -------
        tuple of torch.Tensor or None
            Tensors whose first dimension is ``R``, for :meth:`score_features`; None (the
            default) when the metric has no reference-only work to share, and is then called
            with the reference as ``metric(out, ref, lr=lr)``.
        """
        return None

    def score_features(
        self,
        out: torch.Tensor,
        features: tuple[torch.Tensor, ...],
        *,
        lr: torch.Tensor | None = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Scores of ``out`` ``(B, 3, H, W)`` against :meth:`reference_features`, whose tensors
        are repeated along their first dimension to ``B`` (output ``b``'s reference at ``b``)."""
        raise NotImplementedError

    def score_reference(
        self, out: torch.Tensor, ref: torch.Tensor | None, *, lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``__call__`` of a metric with reference features: ``ref`` (one per output) checked,
        its features computed, ``out`` scored against them."""
        if ref is None:
            raise ValueError(f"{self.name} needs a reference image")
        if out.shape != ref.shape:
            raise ValueError(
                f"{self.name}: output {tuple(out.shape)} and reference {tuple(ref.shape)} differ"
            )
        return self.score_features(out, self.reference_features(ref), lr=lr)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Metadata of the metric (no instance needed): direction, FR/NR, range."""
        return _describe(cls)

    def info(self) -> dict[str, Any]:
        """Metadata recorded in the ledger and shown in the report."""
        return _describe(self)


def _describe(m: Any) -> dict[str, Any]:
    return {
        "name": m.name,
        "higher_is_better": bool(m.higher_is_better),
        "requires_reference": bool(m.requires_reference),
        "requires_lr": bool(m.requires_lr),
        # JSON has no infinity: an unbounded end of the range is null.
        "score_range": [b if math.isfinite(b) else None for b in m.score_range]
        if m.score_range
        else None,
        "unit": m.unit,
        "description": m.description,
    }


def repeat_features(
    features: Sequence[tuple[torch.Tensor, ...]], counts: Sequence[int]
) -> tuple[torch.Tensor, ...]:
    """Several references' :meth:`Metric.reference_features` (each of one reference), the
    ``i``-th repeated ``counts[i]`` times, joined: the features of a batch of outputs whose
    first ``counts[0]`` outputs are of the first reference, and so on (a view when one)."""
    import torch

    def rep(t: torch.Tensor, n: int) -> torch.Tensor:
        return t.expand(n, *t.shape[1:])

    if len(features) == 1:
        return tuple(rep(t, counts[0]) for t in features[0])
    return tuple(
        torch.cat([rep(t, n) for t, n in zip(parts, counts, strict=True)])
        for parts in zip(*features, strict=True)
    )


@dataclass(frozen=True)
class PortableTensor:
    """A CPU tensor as it crosses to another process: its whole storage, with its size,
    strides and offset (a pickled copy of the values alone could come back with other strides,
    and kernels that see another layout may sum in another order)."""

    data: Any  # numpy array: the storage's elements
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int

    @classmethod
    def of(cls, t: torch.Tensor) -> PortableTensor:
        if t.device.type != "cpu" or t.requires_grad or t.is_conj() or t.is_neg():
            raise ValueError(f"cannot carry a {t.device.type} tensor of this kind across processes")
        n = t.untyped_storage().nbytes() // t.element_size()
        whole = t.detach().as_strided((n,), (1,), 0)
        return cls(whole.numpy().copy(), tuple(t.shape), tuple(t.stride()), t.storage_offset())

    def tensor(self) -> torch.Tensor:
        """The tensor: same values, size, strides and offset, in memory torch allocated (with
        torch's alignment, as the original's)."""
        import torch

        src = torch.from_numpy(self.data)
        whole = torch.empty(src.shape, dtype=src.dtype)
        whole.copy_(src)
        return whole.as_strided(self.size, self.stride, self.offset)


def portable_features(features: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """:meth:`Metric.reference_features` in a form that crosses processes (see
    :class:`PortableTensor`); :func:`restore_features` undoes it."""
    import torch

    if features is None:
        return None
    return tuple(PortableTensor.of(f) if isinstance(f, torch.Tensor) else f for f in features)


def restore_features(features: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    if features is None:
        return None
    return tuple(f.tensor() if isinstance(f, PortableTensor) else f for f in features)
