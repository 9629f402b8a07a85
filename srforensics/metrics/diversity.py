"""Diversity and uncertainty across the N outputs of one LR.

- NTIRE 2021 "Learning the Super-Resolution Space" diversity score: with ``d_i(p)``
  the distance map of output ``i`` to the ground truth,
  ``global_best = min_i mean_p d_i(p)`` (the best single output),
  ``local_best = mean_p min_i d_i(p)`` (the best output at every pixel), and
  ``score = (global_best - local_best) / global_best * 100``. Identical outputs
  score 0; outputs that are good in different places score high.
- Distance maps: LPIPS spatial maps (pyiqa, ``spatial=True``) when LPIPS's weights
  are present, else the squared error averaged over channels and a 16x16 box
  (``mse16``); which one was used is recorded.
- Per-pixel standard deviation across the outputs: its mean, and the map itself
  ("where the model is guessing").
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np

from srforensics.images import to_tensor
from srforensics.metrics.base import repeat_features
from srforensics.metrics.pyiqa_split import split_for
from srforensics.metrics.quality import _import_pyiqa

# scipy, torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

Distance = Literal["auto", "mse16", "lpips"]
#: Per-pixel std shown white in the std-map image (8-bit: about 25 levels).
STD_MAP_WHITE = 0.1


def mse_maps(outputs: np.ndarray, reference: np.ndarray, *, window: int = 16) -> np.ndarray:
    """``(N, H, W, C)`` outputs vs ``(H, W, C)`` reference -> ``(N, H, W)`` box-filtered squared error."""
    from scipy.ndimage import uniform_filter

    err = ((outputs.astype(np.float64) - reference.astype(np.float64)[None]) ** 2).mean(axis=-1)
    return np.stack([uniform_filter(e, size=window, mode="reflect") for e in err])


def ntire_diversity(maps: np.ndarray) -> float:
    """NTIRE diversity score (0-100) from ``(N, H, W)`` distance maps; 0 when no output is better anywhere."""
    maps = np.asarray(maps, dtype=np.float64)
    global_best = float(maps.mean(axis=(1, 2)).min())
    local_best = float(maps.min(axis=0).mean())
    if global_best <= 0:
        return 0.0
    return (global_best - local_best) / global_best * 100.0


def pixel_std(outputs: np.ndarray) -> np.ndarray:
    """Per-pixel standard deviation across ``(N, H, W, C)`` outputs, averaged over channels: ``(H, W)``."""
    return outputs.astype(np.float64).std(axis=0).mean(axis=-1)


def std_map_image(std: np.ndarray) -> np.ndarray:
    """The std map as an RGB image: black = all outputs agree, white = std >= ``STD_MAP_WHITE``."""
    v = np.clip(std / STD_MAP_WHITE, 0.0, 1.0)
    return np.repeat(v[..., None], 3, axis=2).astype(np.float32)


class LPIPSMaps:
    """LPIPS (AlexNet, v0.1) spatial distance maps from pyiqa; built only when its weights are present.

    The reference's LPIPS features are computed once per reference (the last one is kept:
    an input's variants are scored one after another), and each call's outputs are compared
    with them (:mod:`srforensics.metrics.pyiqa_split`)."""

    name = "lpips"

    def __init__(self, device: str = "cpu") -> None:

        self.device = device
        self._metric = _import_pyiqa().create_metric(
            "lpips", as_loss=False, device=device, spatial=True
        )
        self._split = split_for(self._metric.net, device)
        self._last: tuple[bytes, tuple[Any, ...]] | None = None

    def _reference(self, reference: np.ndarray) -> tuple[Any, ...]:

        key = hashlib.sha256(reference.tobytes()).digest() + repr(reference.shape).encode()
        if self._last is None or self._last[0] != key:
            self._last = (key, self._split.reference(to_tensor(reference).to(self.device)))
        return self._last[1]

    def __call__(self, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = to_tensor(list(outputs)).to(self.device)
            if self._split is not None:
                features = repeat_features([self._reference(reference)], [len(outputs)])
                maps = self._split.score(x, features)
            else:
                ref = to_tensor(reference).to(self.device).expand(len(outputs), -1, -1, -1)
                maps = self._metric(x, ref)
        return (
            torch.as_tensor(maps).reshape(len(outputs), *outputs.shape[1:3]).double().cpu().numpy()
        )


def distance_backend(choice: Distance, *, device: str = "cpu"):
    """``(name, function)`` for distance maps; ``auto`` picks LPIPS when its weights are available."""
    if choice in ("auto", "lpips"):
        from srforensics.metrics.quality import missing_weights

        # LPIPS's weight files are registered: checking them needs no pyiqa import (~3 s).
        reason = missing_weights("lpips")
        if reason is None:
            return "lpips", LPIPSMaps(device)
        if choice == "lpips":
            from srforensics.metrics.base import MetricUnavailable

            raise MetricUnavailable(f"LPIPS distance maps for diversity are unavailable: {reason}")
    return "mse16", mse_maps
