"""The ``SRModel`` plug-in contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelCard:
    """What the manifest and report record about a model."""

    name: str
    version: str = "unversioned"
    weights_sha256: str | None = None
    licence: str = "unknown"
    source: str = "unknown"
    stochastic: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SRModel:
    """Base class of super-resolution models.

    A subclass sets ``name``, ``scale`` (None: any integer scale) and
    ``stochastic``, and implements either :meth:`upscale` (deterministic models)
    or :meth:`sample` (models that give different outputs for different seeds).
    Constructor options arrive as keyword arguments (``--model-arg key=value``).
    """

    name: ClassVar[str] = "model"
    scale: ClassVar[int | None] = None
    stochastic: ClassVar[bool] = False
    version: ClassVar[str] = "unversioned"
    licence: ClassVar[str] = "unknown"
    source: ClassVar[str] = "unknown"

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device

    def upscale(self, lr: torch.Tensor, *, scale: int) -> torch.Tensor:
        """One output per input: ``[B, 3, h, w]`` -> ``[B, 3, h*scale, w*scale]``."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither upscale() nor sample()"
        )

    def sample(
        self,
        lr: torch.Tensor,
        *,
        scale: int,
        n: int,
        seeds: Sequence[int],
        context: Sequence[Mapping[str, Any]] | None = None,
    ) -> torch.Tensor:
        """``n`` plausible outputs per input.

        Parameters
        ----------
        lr : Tensor
            ``[B, 3, h, w]`` float in [0, 1].
        scale : int
            Upscaling factor.
        n : int
            Outputs per input.
        seeds : sequence of int
            One seed per sample; the same seed must give the same output.
        context : sequence of mapping, optional
            Per LR, its degradation parameters and the record's attributes.

        Returns
        -------
        Tensor
            ``[B, n, 3, h*scale, w*scale]`` float in [0, 1].
        """
        if len(seeds) != n:
            raise ValueError(f"expected {n} seeds, got {len(seeds)}")
        out = self.upscale(lr, scale=scale)
        return out.unsqueeze(1).expand(-1, n, -1, -1, -1)

    def card(self) -> ModelCard:
        return ModelCard(
            name=self.name,
            version=self.version,
            licence=self.licence,
            source=self.source,
            stochastic=self.stochastic,
            description=(type(self).__doc__ or "").strip().splitlines()[0]
            if type(self).__doc__
            else "",
        )
