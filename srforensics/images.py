"""Image I/O, colour conversion, quantisation and hashing.

Conventions: images in memory are ``float32`` arrays ``(H, W, 3)`` in [0, 1]
(RGB); tensors are ``(B, 3, H, W)``. Y is BT.601 as MATLAB ``rgb2ycbcr``
(range [16, 235] on the 8-bit scale), the SR evaluation convention.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.limits import DEFAULT_MAX_PIXELS

# PIL, torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch


# MATLAB rgb2ycbcr, rows for Y (inputs in [0, 1], output on the 8-bit scale).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


class ImageError(SRForensicsError):
    """An input file that cannot be read as an image (corrupt, too large, not an image)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to RGB ``float32`` in [0, 1].

    EXIF orientation is applied; grayscale, palette, RGBA (alpha dropped),
    CMYK and 16-bit images are converted. Raises :class:`ImageError` on
    anything that is not a readable image within ``max_pixels``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; "
                        "raise the pixel limit if the file is trusted"
                    )
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise ImageError(
                        f"an animated image of {frames} frames: extract the frame to audit "
                        "into a still image (PNG)"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                arr = _to_rgb_array(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown format, or not an image at all)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None
    if not np.isfinite(arr).all():
        raise ImageError("image contains non-finite values")
    return arr


def _to_rgb_array(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        a = np.clip(a / peak, 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        a = np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2).astype(np.float32)
    if mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if mode in ("P", "PA", "LA") else im.convert("RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Read an image file: ``(RGB float32 array, SHA-256 of the file bytes)``.

    Only a regular file is opened: a named pipe or a device would block the read (or never
    end), so it is refused from its ``stat``, before any ``open``."""

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "not a regular file"
            raise ImageError(f"{path} is {kind}; only regular image files are read")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_image(data, max_pixels=max_pixels), sha256_bytes(data)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """8-bit levels of an image (or a stack) in [0, 1]: ``x * 255`` rounded half to even and
    clipped, as BasicSR ``tensor2img``. The product is formed in float64, where it is exact
    (a float32 times 255 needs 32 significant bits), so the rounding is never off by one."""
    levels = np.multiply(img, 255.0, dtype=np.float64)
    np.rint(levels, out=levels)
    np.clip(levels, 0, 255, out=levels)
    return levels.astype(np.uint8)


def from_uint8(levels: np.ndarray) -> np.ndarray:
    """8-bit levels as float32 in [0, 1]: ``k / 255`` correctly rounded (for each of the 256
    levels the same float32 as ``float32(float64(k) / 255)``)."""
    return levels.astype(np.float32) / np.float32(255)


def quantize(img: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels (half to even, as numpy/torch) and clip, as BasicSR ``tensor2img``; float32 in [0, 1]."""
    return from_uint8(to_uint8(img))


def encode_png(img: np.ndarray) -> bytes:
    """Encode an RGB image in [0, 1] as 8-bit PNG bytes (deterministic).

    zlib level 3, not Pillow's default 6: on 128 px SR outputs it encoded in 1.3 ms instead
    of 3.8, into files 1% larger (13.3 KiB instead of 13.2). PNG is lossless at any level.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img), mode="RGB").save(
        buf, format="PNG", optimize=False, compress_level=3
    )
    return buf.getvalue()


def pixel_sha256(img: np.ndarray) -> str:
    """SHA-256 of an image's 8-bit pixels (shape included), independent of file encoding."""
    return levels_sha256(to_uint8(img))


def levels_sha256(levels: np.ndarray) -> str:
    """:func:`pixel_sha256` of an image already as 8-bit levels (:func:`to_uint8`)."""
    h = hashlib.sha256(f"{levels.shape}".encode())
    h.update(np.ascontiguousarray(levels).tobytes())
    return h.hexdigest()


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as MATLAB ``rgb2ycbcr``: RGB in [0, 1] -> Y in [16, 235] (float64)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    wr, wg, wb = _Y_WEIGHTS
    return rgb[..., 0] * wr + rgb[..., 1] * wg + rgb[..., 2] * wb + _Y_OFFSET


def tensor_rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Tensor version of :func:`rgb_to_y`: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 1, H, W)``."""
    wr, wg, wb = _Y_WEIGHTS
    return (x[:, 0:1] * wr + x[:, 1:2] * wg + x[:, 2:3] * wb) + _Y_OFFSET


def to_tensor(imgs: np.ndarray | list[np.ndarray], *, dtype=None) -> torch.Tensor:
    """``(H, W, 3)`` or a list of them -> ``(B, 3, H, W)`` float tensor."""
    import torch

    arr = np.stack(imgs) if isinstance(imgs, list) else np.asarray(imgs)
    if arr.ndim == 3:
        arr = arr[None]
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    return t.to(dtype or torch.float32)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` -> ``(H, W, 3)``, or ``(B, 3, H, W)`` -> ``(B, H, W, 3)`` float32."""
    a = t.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))
