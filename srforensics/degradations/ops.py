"""Built-in degradation operators. Images: float32 ``(H, W, 3)`` in [0, 1].

Every operator draws its parameters in ``sample(rng)`` and applies them in a
pure ``apply(img, **params)``. Randomness inside an operator (a noise field)
comes from a ``seed`` drawn into its parameters; blur operators record the
kernel they use, and ``apply`` convolves with exactly that kernel.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from srforensics.degradations import kernels as K
from srforensics.degradations.base import Degradation, Field, HRStep, ProtocolError
from srforensics.images import quantize, to_uint8
from srforensics.resize import METHODS, imresize

# PIL: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

_THETA = Field(float, default=0.0, low=-360.0, high=360.0, doc="rotation in degrees")
_SIGMA = Field(float, low=0.01, high=50.0, doc="standard deviation along the axis, px")
_KERNEL_SIZE = Field(int, default=21, low=3, high=101, random=False)
_BORDER = Field(
    str,
    default="reflect",
    choices=tuple(K.BORDERS),
    random=False,
    doc="how the image is extended at its edges",
)


def _seeded(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    params["seed"] = int(rng.integers(2**63 - 1))
    return params


# -- blur ------------------------------------------------------------------------------
class KernelBlur(Degradation):
    """Base of blur operators: ``kernel(**params)`` builds the kernel recorded in the params."""

    def __init__(self, *, where: str = "", **spec: Any) -> None:
        super().__init__(where=where, **spec)
        size = self.spec.get("kernel_size")
        if size is not None and size % 2 == 0:
            raise ProtocolError(f"{where or self.name}.kernel_size: must be odd, got {size}")

    def kernel(self, **params: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        params = super().sample(rng)
        shape = {k: v for k, v in params.items() if k != "border"}
        params["kernel"] = self.kernel(**shape).tolist()
        return params

    def apply(
        self, img: np.ndarray, *, kernel: list, border: str = "reflect", **_: Any
    ) -> np.ndarray:
        return K.convolve(img, kernel, border)


class GaussianBlur(KernelBlur):
    """Isotropic Gaussian blur of standard deviation ``sigma`` px."""

    name = "gaussian_blur"
    fields = {
        "sigma": Field(float, low=0.01, high=50.0, doc="standard deviation in pixels"),
        "kernel_size": _KERNEL_SIZE,
        "border": _BORDER,
    }

    def kernel(self, *, sigma: float, kernel_size: int) -> np.ndarray:
        return K.gaussian(kernel_size, sigma)


class AnisoGaussianBlur(KernelBlur):
    """Anisotropic Gaussian blur: ``sigma_x``, ``sigma_y`` (px) rotated by ``theta`` degrees."""

    name = "aniso_gaussian_blur"
    fields = {
        "sigma_x": _SIGMA,
        "sigma_y": _SIGMA,
        "theta": _THETA,
        "kernel_size": _KERNEL_SIZE,
        "border": _BORDER,
    }

    def kernel(self, *, sigma_x, sigma_y, theta, kernel_size) -> np.ndarray:
        return K.gaussian(kernel_size, sigma_x, sigma_y, math.radians(theta))


class _ShapedBlur(KernelBlur):
    """A Real-ESRGAN kernel shape with exponent ``beta`` over the anisotropic Gaussian's fields."""

    shape: ClassVar[Callable[..., np.ndarray]]
    fields = {**AnisoGaussianBlur.fields, "beta": Field(float, low=0.1, high=10.0)}

    def kernel(self, *, sigma_x, sigma_y, theta, beta, kernel_size) -> np.ndarray:
        return type(self).shape(kernel_size, sigma_x, sigma_y, math.radians(theta), beta)


class GeneralizedGaussianBlur(_ShapedBlur):
    """Generalised Gaussian blur ``exp(-d^β / 2)`` (Real-ESRGAN); β < 1 heavier tails, β > 1 flatter."""

    name = "generalized_gaussian_blur"
    shape = staticmethod(K.generalized_gaussian)


class PlateauBlur(_ShapedBlur):
    """Plateau-shaped blur ``1 / (1 + d^β)`` (Real-ESRGAN)."""

    name = "plateau_blur"
    shape = staticmethod(K.plateau)


class MotionBlur(KernelBlur):
    """Linear motion blur: ``length`` px at ``angle`` degrees (counter-clockwise from the x axis)."""

    name = "motion_blur"
    fields = {
        "length": Field(float, low=1.0, high=101.0),
        "angle": Field(float, low=-360.0, high=360.0),
        "kernel_size": Field(int, default=31, low=3, high=101, random=False),
        "border": _BORDER,
    }

    def kernel(self, *, length, angle, kernel_size) -> np.ndarray:
        return K.motion(kernel_size, length, angle)


class DefocusBlur(KernelBlur):
    """Defocus blur: a uniform disk of ``radius`` px."""

    name = "defocus_blur"
    fields = {
        "radius": Field(float, low=0.5, high=50.0),
        "kernel_size": _KERNEL_SIZE,
        "border": _BORDER,
    }

    def kernel(self, *, radius, kernel_size) -> np.ndarray:
        return K.defocus(kernel_size, radius)


class SincFilter(KernelBlur):
    """Circular lowpass (sinc) filter with cutoff in rad/px: ringing and overshoot artefacts."""

    name = "sinc_filter"
    fields = {
        "cutoff": Field(float, low=0.1, high=math.pi),
        "kernel_size": _KERNEL_SIZE,
        "border": _BORDER,
    }

    def kernel(self, *, cutoff, kernel_size) -> np.ndarray:
        return K.sinc(kernel_size, cutoff)

    def apply(
        self, img: np.ndarray, *, kernel: list, border: str = "reflect", **_: Any
    ) -> np.ndarray:
        return np.clip(K.convolve(img, kernel, border), 0.0, 1.0)


# -- resampling ------------------------------------------------------------------------
class Downscale(Degradation):
    """Downscale by an integer factor with the MATLAB-compatible resize (counts toward the scale)."""

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


class Resize(Degradation):
    """Resize by ``factor`` (output ``ceil(size * factor)``), or to ``height`` x ``width`` px.

    An intermediate resampling with the MATLAB-compatible resize: it does not
    count toward the protocol's scale.
    """

    name = "resize"
    fields = {
        "factor": Field(float, default=0.0, low=0.0, high=8.0, doc="0: use height and width"),
        "height": Field(int, default=0, low=0, high=65536),
        "width": Field(int, default=0, low=0, high=65536),
        "method": Field(str, default="bicubic", choices=METHODS),
    }

    def __init__(self, *, where: str = "", **spec: Any) -> None:
        super().__init__(where=where, **spec)
        has_factor = "factor" in spec
        has_size = "height" in spec and "width" in spec
        if has_factor == has_size or (("height" in spec) != ("width" in spec)):
            raise ProtocolError(
                f"{where or self.name}: give either 'factor', or both 'height' and 'width'"
            )

    def apply(
        self, img: np.ndarray, *, factor: float, height: int, width: int, method: str
    ) -> np.ndarray:
        if factor > 0:
            out = imresize(img, factor, method=method)
        else:
            out = imresize(img, size=(height, width), method=method)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


# -- noise -----------------------------------------------------------------------------
def gaussian_noise(img: np.ndarray, *, sigma: float, gray: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
    return np.clip(img + rng.standard_normal(shape) * (sigma / 255.0), 0.0, 1.0).astype(np.float32)


def poisson_noise(img: np.ndarray, *, scale: float, gray: bool, seed: int) -> np.ndarray:
    """Real-ESRGAN ``add_poisson_noise``: counts ``Poisson(img * v) / v`` with ``v`` = 2^ceil(log2(levels)),
    the noise (their difference from ``img``) scaled by ``scale``; grey noise is computed on luma."""
    rng = np.random.default_rng(seed)
    base = img.astype(np.float64)
    if gray:
        base = (base @ np.array([0.299, 0.587, 0.114]))[..., None]
    levels = 2 ** math.ceil(math.log2(max(len(np.unique(np.round(base * 255))), 2)))
    noise = rng.poisson(np.clip(base, 0, 1) * levels) / levels - base
    return np.clip(img + noise * scale, 0.0, 1.0).astype(np.float32)


class GaussianNoise(Degradation):
    """Additive Gaussian noise; ``sigma`` in 8-bit units; colour, or grey (same on all channels)."""

    name = "gaussian_noise"
    fields = {
        "sigma": Field(float, low=0.0, high=255.0, doc="standard deviation, 8-bit units"),
        "gray": Field(bool, default=False),
    }

    def sample(self, rng):
        return _seeded(super().sample(rng), rng)

    def apply(self, img, *, sigma, gray, seed):
        return gaussian_noise(img, sigma=sigma, gray=gray, seed=seed)


class PoissonNoise(Degradation):
    """Signal-dependent (shot) noise, Real-ESRGAN's formulation; ``scale`` multiplies the noise."""

    name = "poisson_noise"
    fields = {"scale": Field(float, low=0.0, high=10.0), "gray": Field(bool, default=False)}

    def sample(self, rng):
        return _seeded(super().sample(rng), rng)

    def apply(self, img, *, scale, gray, seed):
        return poisson_noise(img, scale=scale, gray=gray, seed=seed)


class SpeckleNoise(Degradation):
    """Multiplicative noise ``img + img * n``, ``n ~ N(0, sigma²)`` (scikit-image 'speckle')."""

    name = "speckle_noise"
    fields = {"sigma": Field(float, low=0.0, high=2.0)}

    def sample(self, rng):
        return _seeded(super().sample(rng), rng)

    def apply(self, img, *, sigma, seed):
        n = np.random.default_rng(seed).standard_normal(img.shape) * sigma
        return np.clip(img + img * n, 0.0, 1.0).astype(np.float32)


class SaltPepperNoise(Degradation):
    """Impulse noise: a fraction ``amount`` of pixels set to white (salt) or black (pepper)."""

    name = "salt_pepper_noise"
    fields = {
        "amount": Field(float, low=0.0, high=1.0),
        "salt_vs_pepper": Field(float, default=0.5, low=0.0, high=1.0),
    }

    def sample(self, rng):
        return _seeded(super().sample(rng), rng)

    def apply(self, img, *, amount, salt_vs_pepper, seed):
        rng = np.random.default_rng(seed)
        hit = rng.random(img.shape[:2]) < amount
        salt = rng.random(img.shape[:2]) < salt_vs_pepper
        out = img.copy()
        out[hit & salt] = 1.0
        out[hit & ~salt] = 0.0
        return out.astype(np.float32)


# -- compression -----------------------------------------------------------------------
def encode(img: np.ndarray, *, format: str, quality: int) -> bytes:
    """Encode an image with Pillow (JPEG: libjpeg, 4:2:0; WebP: libwebp, lossy) at ``quality``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img), mode="RGB").save(buf, format=format, quality=int(quality))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


class JPEG(Degradation):
    """JPEG compression with Pillow (libjpeg), 4:2:0 chroma subsampling, at ``quality``."""

    name = "jpeg"
    fields = {"quality": Field(int, low=1, high=100)}

    def apply(self, img, *, quality):
        return decode(encode(img, format="JPEG", quality=quality))


class WebP(Degradation):
    """Lossy WebP compression with Pillow (libwebp) at ``quality``."""

    name = "webp"
    fields = {"quality": Field(int, low=1, high=100)}

    def apply(self, img, *, quality):
        return decode(encode(img, format="WEBP", quality=quality))


# -- colour and values -----------------------------------------------------------------
class Grayscale(Degradation):
    """Convert to grey (BT.601 luma ``0.299 R + 0.587 G + 0.114 B``), kept as 3 equal channels."""

    name = "grayscale"
    fields = {}

    def apply(self, img):
        y = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.repeat(y[..., None], 3, axis=2).astype(np.float32)


class Gamma(Degradation):
    """Exposure and gamma: ``clip(exposure * img) ** gamma``."""

    name = "gamma"
    fields = {
        "gamma": Field(float, default=1.0, low=0.1, high=10.0),
        "exposure": Field(float, default=1.0, low=0.0, high=10.0),
    }

    def apply(self, img, *, gamma, exposure):
        return np.power(np.clip(img.astype(np.float64) * exposure, 0.0, 1.0), gamma).astype(
            np.float32
        )


class Quantize(Degradation):
    """Round to 8-bit levels, as an image saved in between would be (e.g. MATLAB ``uint8``)."""

    name = "quantize"
    fields = {}

    def apply(self, img):

        return quantize(img)


# -- HR geometry -----------------------------------------------------------------------
class ModCrop(HRStep):
    """Crop the HR to a multiple of ``multiple`` (top-left anchored, as BasicSR ``mod_crop``)."""

    name = "mod_crop"
    fields = {"multiple": Field(int, low=1, high=64, random=False)}
    keeps_points = True  # anchored at the top left

    def apply(self, img: np.ndarray, *, multiple: int) -> np.ndarray:
        h, w = img.shape[:2]
        if h < multiple or w < multiple:
            raise ValueError(f"image {w}x{h} is smaller than the scale factor {multiple}")
        return img[: h - h % multiple, : w - w % multiple]


class CenterCrop(HRStep):
    """Centre crop: to ``size`` px square when given, then to a multiple of ``multiple``."""

    name = "center_crop"
    fields = {
        "multiple": Field(int, default=1, low=1, high=64, random=False),
        "size": Field(int, default=0, low=0, high=65536, random=False, doc="0: keep the size"),
    }

    def apply(self, img: np.ndarray, *, multiple: int, size: int) -> np.ndarray:
        h, w = img.shape[:2]
        th, tw = (min(h, size), min(w, size)) if size else (h, w)
        th, tw = th - th % multiple, tw - tw % multiple
        if th < 1 or tw < 1:
            raise ValueError(f"image {w}x{h} is smaller than the scale factor {multiple}")
        top, left = (h - th) // 2, (w - tw) // 2
        return img[top : top + th, left : left + tw]
