"""The ``SRModel`` plug-in contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from srforensics.errors import SRForensicsError

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")


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
    sampler: str | None = None
    sampler_args: Mapping[str, Any] = field(default_factory=dict)
    weights_origin: str | None = None  # "registered", "model spec", "user-supplied", ...
    #: With a sampler: what the spread of its outputs means.
    sampler_spread: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sampler_args"] = dict(self.sampler_args)
        return d


def check_seeds(seeds: Sequence[Sequence[int]], batch: int, n: int) -> None:
    """``seeds[b][s]`` is the seed of output ``s`` of LR ``b``."""
    if len(seeds) != batch or any(len(row) != n for row in seeds):
        raise ValueError(
            f"expected seeds for {batch} LR(s) x {n} sample(s), got {[len(r) for r in seeds]}"
        )


class SRModel:
    """Base class of super-resolution models.

    A subclass sets ``name``, ``scale`` (None: any integer scale) and
    ``stochastic``, and implements either :meth:`upscale` (deterministic models)
    or :meth:`sample` (models that give different outputs for different seeds).
    Constructor options arrive as keyword arguments (``--model-arg key=value``);
    every model accepts ``device`` and ``dtype``.
    """

    name: ClassVar[str] = "model"
    scale: ClassVar[int | None] = None
    stochastic: ClassVar[bool] = False
    version: ClassVar[str] = "unversioned"
    licence: ClassVar[str] = "unknown"
    source: ClassVar[str] = "unknown"

    def __init__(self, *, device: str = "cpu", dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise SRForensicsError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.device = device
        self.dtype = dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

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
        seeds: Sequence[Sequence[int]],
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
        seeds : sequence of sequences of int
            ``seeds[b][s]`` is the seed of output ``s`` of input ``b``; the same LR
            and seed must give the same output, whatever else is in the batch.
        context : sequence of mapping, optional
            Per LR, its degradation parameters and the record's attributes.

        Returns
        -------
        Tensor
            ``[B, n, 3, h*scale, w*scale]`` float, nominally in [0, 1].
        """
        check_seeds(seeds, lr.shape[0], n)
        out = self.upscale(lr, scale=scale)
        return out.unsqueeze(1).expand(-1, n, -1, -1, -1)

    def card(self) -> ModelCard:
        doc = (type(self).__doc__ or "").strip()
        return ModelCard(
            name=self.name,
            version=self.version,
            licence=self.licence,
            source=self.source,
            stochastic=self.stochastic,
            description=doc.splitlines()[0] if doc else "",
        )
