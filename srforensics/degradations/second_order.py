"""Real-ESRGAN's second-order degradation as one operator.

Wang, Xie, Dong, Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution
with Pure Synthetic Data", ICCVW 2021. Two stages of blur -> resize -> noise ->
JPEG, then a final stage that resizes to the LR size with a sinc filter and
compresses, in random order. The ranges and probabilities are those of the
official ``options/train_realesrnet_x4plus.yml``. Differences, on purpose: all
resizes use srforensics' MATLAB-compatible ``imresize`` (Real-ESRGAN uses
PyTorch ``interpolate``), JPEG uses Pillow with an integer quality (Real-ESRGAN
uses DiffJPEG), and blur borders are reflect-101 (as PyTorch ``reflect``).

Everything random is drawn in :meth:`SecondOrder.sample` (kernels included,
noise as seeds), so :meth:`SecondOrder.apply` is a pure function of the image
and the recorded parameters.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from srforensics.degradations import kernels as K
from srforensics.degradations.base import Degradation, Field
from srforensics.degradations.ops import decode, encode, gaussian_noise, poisson_noise
from srforensics.resize import imresize

KERNEL_KINDS = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
RESIZE_METHODS = ("area", "bilinear", "bicubic")
_FIRST = {
    "blur_prob": 1.0,
    "sigma": (0.2, 3.0),
    "betag": (0.5, 4.0),
    "betap": (1.0, 2.0),
    "sinc_prob": 0.1,
    "resize_prob": (0.2, 0.7, 0.1),  # up, down, keep
    "resize_range": (0.15, 1.5),
    "gaussian_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_range": (0.05, 3.0),
    "gray_prob": 0.4,
    "jpeg_range": (30, 95),
}
_SECOND = {
    **_FIRST,
    "blur_prob": 0.8,
    "sigma": (0.2, 1.5),
    "resize_prob": (0.3, 0.4, 0.3),
    "resize_range": (0.3, 1.2),
    "noise_range": (1.0, 25.0),
    "poisson_range": (0.05, 2.5),
}
STAGES = (_FIRST, _SECOND)
FINAL_SINC_PROB = 0.8
BORDER = "reflect101"


def _pad(k: np.ndarray, size: int) -> np.ndarray:
    p = (size - k.shape[0]) // 2
    return np.pad(k, p) if p > 0 else k


def _beta(rng: np.random.Generator, lo: float, hi: float) -> float:
    # Real-ESRGAN: half the draws below 1, half above.
    return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))


def _sample_kernel(rng: np.random.Generator, st: dict[str, Any], size_max: int) -> dict[str, Any]:
    size = int(rng.choice(np.arange(7, size_max + 1, 2)))
    if rng.random() < st["sinc_prob"]:
        cutoff = float(
            rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        )
        return {
            "kind": "sinc",
            "cutoff": cutoff,
            "size": size,
            "kernel": _pad(K.sinc(size, cutoff), size_max).tolist(),
        }
    kind = str(rng.choice(KERNEL_KINDS, p=KERNEL_PROBS))
    sx = float(rng.uniform(*st["sigma"]))
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else float(rng.uniform(*st["sigma"]))
    theta = 0.0 if iso else float(rng.uniform(-math.pi, math.pi))
    desc: dict[str, Any] = {
        "kind": kind,
        "sigma_x": sx,
        "sigma_y": sy,
        "theta": theta,
        "size": size,
    }
    if kind.startswith("generalized"):
        desc["beta"] = _beta(rng, *st["betag"])
        k = K.generalized_gaussian(size, sx, sy, theta, desc["beta"])
    elif kind.startswith("plateau"):
        desc["beta"] = _beta(rng, *st["betap"])
        k = K.plateau(size, sx, sy, theta, desc["beta"])
    else:
        k = K.gaussian(size, sx, sy, theta)
    desc["kernel"] = _pad(k, size_max).tolist()
    return desc


def _sample_noise(rng: np.random.Generator, st: dict[str, Any]) -> dict[str, Any]:
    gray = bool(rng.random() < st["gray_prob"])
    if rng.random() < st["gaussian_prob"]:
        return {
            "kind": "gaussian",
            "sigma": float(rng.uniform(*st["noise_range"])),
            "gray": gray,
            "seed": int(rng.integers(2**63 - 1)),
        }
    return {
        "kind": "poisson",
        "scale": float(rng.uniform(*st["poisson_range"])),
        "gray": gray,
        "seed": int(rng.integers(2**63 - 1)),
    }


def _apply_noise(img: np.ndarray, n: dict[str, Any]) -> np.ndarray:
    if n["kind"] == "gaussian":
        return gaussian_noise(img, sigma=n["sigma"], gray=n["gray"], seed=n["seed"])
    return poisson_noise(img, scale=n["scale"], gray=n["gray"], seed=n["seed"])


def _resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    return np.clip(imresize(img, size=size, method=method), 0.0, 1.0).astype(np.float32)


class SecondOrder(Degradation):
    """Real-ESRGAN second-order degradation to ``1/scale`` of the HR size (counts toward the scale)."""

    name = "second_order"
    fields = {
        "scale": Field(int, low=1, high=16, random=False),
        "kernel_size": Field(int, default=21, low=7, high=51, random=False),
    }

    def scale_factor(self) -> int:
        return int(self.spec["scale"])

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        size_max = self.spec["kernel_size"] - (1 - self.spec["kernel_size"] % 2)
        stages = []
        for st in STAGES:
            mode = int(rng.choice(3, p=st["resize_prob"]))  # up, down, keep
            lo, hi = st["resize_range"]
            factor = (
                float(rng.uniform(1.0, hi))
                if mode == 0
                else float(rng.uniform(lo, 1.0))
                if mode == 1
                else 1.0
            )
            stages.append(
                {
                    "blur": _sample_kernel(rng, st, size_max)
                    if rng.random() < st["blur_prob"]
                    else None,
                    "resize": {"factor": factor, "method": str(rng.choice(RESIZE_METHODS))},
                    "noise": _sample_noise(rng, st),
                    "jpeg": {
                        "quality": int(rng.integers(st["jpeg_range"][0], st["jpeg_range"][1] + 1))
                    },
                }
            )
        sinc = None
        if rng.random() < FINAL_SINC_PROB:
            size = int(rng.choice(np.arange(7, size_max + 1, 2)))
            cutoff = float(rng.uniform(math.pi / 3, math.pi))
            sinc = {
                "cutoff": cutoff,
                "size": size,
                "kernel": _pad(K.sinc(size, cutoff), size_max).tolist(),
            }
        final = {
            "resize_first": bool(rng.random() < 0.5),
            "method": str(rng.choice(RESIZE_METHODS)),
            "sinc": sinc,
            "jpeg": {
                "quality": int(
                    rng.integers(STAGES[1]["jpeg_range"][0], STAGES[1]["jpeg_range"][1] + 1)
                )
            },
        }
        return {
            "scale": self.spec["scale"],
            "kernel_size": self.spec["kernel_size"],
            "stages": stages,
            "final": final,
        }

    def apply(
        self, img: np.ndarray, *, scale: int, stages: list, final: dict, **_: Any
    ) -> np.ndarray:
        h, w = img.shape[:2]
        out = img.astype(np.float32)
        for i, st in enumerate(stages):
            if st["blur"] is not None:
                out = K.convolve(out, st["blur"]["kernel"], BORDER)
            base_h, base_w = (h, w) if i == 0 else (h / scale, w / scale)
            f = st["resize"]["factor"]
            out = _resize(
                out, (max(1, int(base_h * f)), max(1, int(base_w * f))), st["resize"]["method"]
            )
            out = _apply_noise(out, st["noise"])
            out = decode(encode(out, format="JPEG", quality=st["jpeg"]["quality"]))

        def resize_and_sinc(x: np.ndarray) -> np.ndarray:
            x = _resize(x, (h // scale, w // scale), final["method"])
            if final["sinc"] is not None:
                x = np.clip(K.convolve(x, final["sinc"]["kernel"], BORDER), 0.0, 1.0)
            return x

        def jpeg(x: np.ndarray) -> np.ndarray:
            return decode(encode(x, format="JPEG", quality=final["jpeg"]["quality"]))

        return jpeg(resize_and_sinc(out)) if final["resize_first"] else resize_and_sinc(jpeg(out))
