"""Turning a deterministic model into a sampler; each wraps any :class:`SRModel`.

- ``tta``: output ``s`` is the model applied to the LR under dihedral transform
  ``s mod 8`` (flips and 90° rotations), transformed back. The spread is how much
  the model's answer depends on the orientation of the evidence: zero for a model
  equivariant to flips, and not a probability distribution.
- ``mc-dropout``: channel dropout with probability ``p`` after every convolution
  but the last, kept on at inference, seeded per output. For networks trained
  with dropout this approximates Bayesian sampling (Gal & Ghahramani 2016); for
  networks trained without it, the spread shows sensitivity to internal
  perturbation, not a posterior.
- ``input-noise``: the model applied to the LR plus seeded Gaussian noise of
  ``sigma`` (8-bit units). The spread is how much outputs change under noise the
  evidence could have carried anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from srforensics.errors import SRForensicsError
from srforensics.models.base import ModelCard, SRModel, check_seeds
from srforensics.models.names import SAMPLERS

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


class Sampler(SRModel):
    """Base of samplers: wraps ``base`` and gives ``n`` outputs that may differ."""

    stochastic = True
    options: ClassVar[tuple[str, ...]] = ()
    #: What the spread of its outputs means, for the report.
    spread: ClassVar[str] = ""

    def __init__(self, base: SRModel, **options: Any) -> None:
        super().__init__(device=base.device, dtype=base.dtype)
        self.base = base
        self.scale = base.scale  # type: ignore[misc]
        self.args = dict(options)

    def card(self) -> ModelCard:
        c = self.base.card()
        doc = (type(self).__doc__ or "").strip().splitlines()[0]
        return replace(
            c,
            stochastic=True,
            description=f"{c.description} | sampler {self.name}: {doc}",
            sampler=self.name,
            sampler_args=self.args,
            sampler_spread=self.spread,
        )


def _dihedral(x, t: int, *, inverse: bool = False):
    import torch

    k, flip = t % 4, t >= 4
    if inverse:
        x = torch.rot90(x, -k, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if flip else x
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, k, dims=(-2, -1))


class TTA(Sampler):
    """The 8 dihedral transforms of the LR (flips, rotations) as outputs, transformed back."""

    name = "tta"
    spread = (
        "how much the model's answer depends on the orientation of the evidence (flips and "
        "90-degree rotations); zero for a model equivariant to them; not a probability distribution"
    )

    def sample(self, lr, *, scale, n, seeds, context=None):
        import torch

        check_seeds(seeds, lr.shape[0], n)
        by_transform: dict[int, torch.Tensor] = {}
        outs = []
        for s in range(n):
            t = s % 8
            if t not in by_transform:
                up = self.base.upscale(_dihedral(lr, t), scale=scale)
                by_transform[t] = _dihedral(up, t, inverse=True)
            outs.append(by_transform[t])
        return torch.stack(outs, dim=1)


class InputNoise(Sampler):
    """The model applied to the LR plus seeded Gaussian noise (``sigma`` in 8-bit units)."""

    name = "input-noise"
    options = ("sigma",)
    spread = "how much the outputs change under noise the evidence could have carried anyway"

    def __init__(self, base: SRModel, *, sigma: float = 2.0) -> None:
        super().__init__(base, sigma=sigma)
        if not 0 <= float(sigma) <= 255:
            raise SRForensicsError(f"input-noise sigma must be in [0, 255], got {sigma}")
        self.sigma = float(sigma)

    def sample(self, lr, *, scale, n, seeds, context=None):
        import torch

        check_seeds(seeds, lr.shape[0], n)
        outs = []
        for s in range(n):
            noisy = []
            for b in range(lr.shape[0]):
                g = torch.Generator().manual_seed(int(seeds[b][s]))
                noise = torch.randn(lr.shape[1:], generator=g) * (self.sigma / 255.0)
                noisy.append((lr[b].cpu() + noise).clamp(0.0, 1.0))
            outs.append(self.base.upscale(torch.stack(noisy).to(lr.device), scale=scale))
        return torch.stack(outs, dim=1)


class MCDropout(Sampler):
    """Channel dropout with probability ``p`` after each convolution but the last, on at inference."""

    name = "mc-dropout"
    options = ("p",)
    spread = (
        "for a network trained with dropout, approximate Bayesian sampling; for one trained "
        "without it, sensitivity to internal perturbation, not a posterior"
    )

    def __init__(self, base: SRModel, *, p: float = 0.1) -> None:
        import torch

        super().__init__(base, p=p)
        net = getattr(base, "net", None)
        if not isinstance(net, torch.nn.Module):
            raise SRForensicsError(
                f"mc-dropout needs a model with a torch network (.net); {base.name!r} has none"
            )
        if not 0 < float(p) < 1:
            raise SRForensicsError(f"mc-dropout p must be in (0, 1), got {p}")
        self.p = float(p)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        if len(convs) < 2:
            raise SRForensicsError(f"mc-dropout needs at least two convolutions in {base.name!r}")
        self._convs = convs[:-1]

    def _hook(self, module, inputs, output):
        import torch.nn.functional as F

        return F.dropout2d(output, self.p, training=True)

    def sample(self, lr, *, scale, n, seeds, context=None):
        import torch

        check_seeds(seeds, lr.shape[0], n)
        handles = [c.register_forward_hook(self._hook) for c in self._convs]
        try:
            rows = []
            for b in range(lr.shape[0]):
                outs = []
                for s in range(n):
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(seeds[b][s]))
                        outs.append(self.base.upscale(lr[b : b + 1], scale=scale)[0])
                rows.append(torch.stack(outs))
        finally:
            for h in handles:
                h.remove()
        return torch.stack(rows)


def wrap(model: SRModel, sampler: str, options: Mapping[str, Any]) -> SRModel:
    cls = SAMPLERS.get(sampler)
    unknown = sorted(set(options) - set(getattr(cls, "options", ())))
    if unknown:
        allowed = ", ".join(getattr(cls, "options", ())) or "no options"
        raise SRForensicsError(f"sampler {sampler!r} takes {allowed}, not {', '.join(unknown)}")
    try:
        return cls(model, **dict(options))
    except TypeError as exc:
        raise SRForensicsError(
            f"cannot create sampler {sampler!r} with {dict(options)}: {exc}"
        ) from None
