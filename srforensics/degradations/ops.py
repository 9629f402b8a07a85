"""Built-in degradation operators. Images: float32 ``(H, W, 3)`` in [0, 1]."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from srforensics.degradations.base import Degradation, Field, HRStep, ProtocolError
from srforensics.resize import METHODS, imresize


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """Normalised isotropic 2-D Gaussian kernel of odd ``size``."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


class GaussianBlur(Degradation):
    """Isotropic Gaussian blur; the kernel is ``kernel_size`` square, borders reflected."""

    name = "gaussian_blur"
    fields = {
        "sigma": Field(float, low=0.0, high=50.0, doc="standard deviation in pixels"),
        "kernel_size": Field(int, default=21, low=3, high=101, random=False),
    }

    def __init__(self, *, where: str = "", **spec: Any) -> None:
        super().__init__(where=where, **spec)
        if self.spec["kernel_size"] % 2 == 0:
            raise ProtocolError(
                f"{where or self.name}.kernel_size: must be odd, got {self.spec['kernel_size']}"
            )

    def apply(self, img: np.ndarray, *, sigma: float, kernel_size: int) -> np.ndarray:
        from scipy.ndimage import correlate

        if sigma <= 0:
            return np.asarray(img, dtype=np.float32).copy()
        k = gaussian_kernel(sigma, kernel_size)
        out = np.stack(
            [
                correlate(img[..., c].astype(np.float64), k, mode="reflect")
                for c in range(img.shape[2])
            ],
            axis=2,
        )
        return out.astype(np.float32)


class Downscale(Degradation):
    """Downscale by an integer factor with the MATLAB-compatible resize."""

    name = "downscale"
    fields = {
        "scale": Field(int, low=1, high=16, random=False),
        "method": Field(str, default="bicubic", choices=METHODS, random=False),
    }

    def scale_factor(self) -> int:
        return int(self.spec["scale"])

    def apply(self, img: np.ndarray, *, scale: int, method: str) -> np.ndarray:
        h, w = img.shape[:2]
        if h < scale or w < scale:
            raise ValueError(f"image {w}x{h} is smaller than the scale factor {scale}")
        return imresize(img, size=(h // scale, w // scale), method=method).astype(np.float32)


class GaussianNoise(Degradation):
    """Additive Gaussian noise; ``sigma`` in 8-bit units; colour or grey (same on all channels)."""

    name = "gaussian_noise"
    fields = {
        "sigma": Field(float, low=0.0, high=255.0, doc="standard deviation, 8-bit units"),
        "gray": Field(bool, default=False),
    }

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        params = super().sample(rng)
        params["seed"] = int(rng.integers(2**63 - 1))
        return params

    def apply(self, img: np.ndarray, *, sigma: float, gray: bool, seed: int) -> np.ndarray:
        noise_rng = np.random.default_rng(seed)
        shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
        noise = noise_rng.standard_normal(shape) * (sigma / 255.0)
        return np.clip(img + noise, 0.0, 1.0).astype(np.float32)


class JPEG(Degradation):
    """JPEG compression with Pillow (libjpeg), 4:2:0 chroma subsampling, at ``quality``."""

    name = "jpeg"
    fields = {"quality": Field(int, low=1, high=100)}

    def apply(self, img: np.ndarray, *, quality: int) -> np.ndarray:
        from PIL import Image

        from srforensics.images import to_uint8

        buf = io.BytesIO()
        Image.fromarray(to_uint8(img), mode="RGB").save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


class ModCrop(HRStep):
    """Crop the HR to a multiple of ``multiple`` (top-left anchored, as BasicSR ``mod_crop``)."""

    name = "mod_crop"
    fields = {"multiple": Field(int, low=1, high=64, random=False)}

    def apply(self, img: np.ndarray, *, multiple: int) -> np.ndarray:
        h, w = img.shape[:2]
        if h < multiple or w < multiple:
            raise ValueError(f"image {w}x{h} is smaller than the scale factor {multiple}")
        return img[: h - h % multiple, : w - w % multiple]
