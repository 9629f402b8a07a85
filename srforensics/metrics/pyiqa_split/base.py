"""The interface of a split, and how closely it must reproduce pyiqa's own call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

#: Largest relative difference from pyiqa's own call accepted by :func:`split_for`'s check.
#: pyiqa's VIF in float32 itself varies by up to 3e-5 between batch sizes (its batched
#: eigendecompositions); a changed formula differs by far more.
CHECK_RTOL = 1e-4


class _Split:
    """The reference's features (``reference``) and the output's score (``score``)."""

    arch: ClassVar[str]
    #: Side of the check's test image (px): large enough for the architecture.
    check_size: ClassVar[int] = 48

    def __init__(self, net: Any) -> None:
        self.net = net

    def reference(self, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise NotImplementedError

    def score(self, out: torch.Tensor, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover
