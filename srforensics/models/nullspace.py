"""``nullspace``: the HR images the evidence cannot tell apart.

With ``A`` the protocol's deterministic downscale (MATLAB bicubic, antialiased)
and ``A⁺`` its pseudo-inverse, every output is

    x = x₀ + (I − A⁺A) z,    x₀ = up(y) + A⁺(y − A up(y)),

where ``up`` is bicubic upscaling and ``z`` is seeded Gaussian noise of standard
deviation ``sigma``. ``A x₀ = y`` and ``A (I − A⁺A) z = 0``, so every output
downscales back to the LR; clipping to [0, 1] is reconciled by alternating
projections (``iterations``). Its spread is content the LR does not constrain:
whatever a model shows there, the evidence did not.

``A`` is separable, ``A X = A_h X A_wᵀ``, so ``A⁺ = A_h⁺ ⊗ A_w⁺`` and all of it is a
few small matrix products per image.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from srforensics.models.base import SRModel, check_seeds
from srforensics.resize import imresize_tensor, weight_matrix

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


@lru_cache(maxsize=32)
def _operators(big: int, small: int) -> tuple[np.ndarray, np.ndarray]:
    a = weight_matrix(big, small, small / big, "bicubic", True)  # (small, big)
    return a, np.linalg.pinv(a)


class NullSpace(SRModel):
    """Bicubic plus random content from the null space of the downscale: consistent with the LR by construction."""

    name = "nullspace"
    stochastic = True
    version = "1"
    licence = "n/a: no weights"
    source = "srforensics.models.nullspace"

    def __init__(
        self,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        sigma: float = 0.1,
        iterations: int = 20,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        if not 0 <= sigma <= 1:
            raise ValueError(f"sigma must be in [0, 1], got {sigma}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.sigma = float(sigma)
        self.iterations = int(iterations)

    def sample(self, lr, *, scale, n, seeds, context=None):
        import torch

        check_seeds(seeds, lr.shape[0], n)
        y = lr.detach().to("cpu", torch.float64)
        bsz, ch, h, w = y.shape
        big_h, big_w = h * scale, w * scale
        ah, ph = (torch.from_numpy(m.copy()) for m in _operators(big_h, h))
        aw, pw = (torch.from_numpy(m.copy()) for m in _operators(big_w, w))

        def down(x):
            return ah @ x @ aw.T

        def back(r):
            return ph @ r @ pw.T

        x0 = imresize_tensor(y, size=(big_h, big_w), method="bicubic")
        x0 = x0 + back(y - down(x0))
        outs = torch.empty(bsz, n, ch, big_h, big_w, dtype=torch.float64)
        for b in range(bsz):
            for s in range(n):
                g = torch.Generator().manual_seed(int(seeds[b][s]))
                z = torch.randn((ch, big_h, big_w), generator=g, dtype=torch.float64) * self.sigma
                x = x0[b] + z - back(down(z))
                for _ in range(self.iterations):
                    x = x.clamp(0.0, 1.0)
                    x = x + back(y[b] - down(x))
                outs[b, s] = x.clamp(0.0, 1.0)
        return outs.to(torch.float32)
