from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from srforensics.images import (
    ImageError,
    decode_image,
    encode_png,
    from_uint8,
    levels_sha256,
    pixel_sha256,
    quantize,
    read_image,
    rgb_to_y,
    sha256_file,
    to_uint8,
)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_y_matches_scikit_image_rgb2ycbcr():
    # Reference: skimage.color.rgb2ycbcr (ITU-R BT.601, MATLAB coefficients), exact formula.
    from skimage.color import rgb2ycbcr

    rng = np.random.default_rng(0)
    rgb = rng.random((17, 19, 3))
    np.testing.assert_allclose(rgb_to_y(rgb), rgb2ycbcr(rgb)[..., 0], atol=1e-10)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235.0)


def test_modes_become_rgb_float():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(_png(gray))
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 1], gray / 255.0, atol=1e-7)
    rgba = np.dstack([np.full((4, 4, 3), 200, np.uint8), np.zeros((4, 4), np.uint8)])
    assert decode_image(_png(rgba)).shape == (4, 4, 3)
    sixteen = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000
    buf = io.BytesIO()
    Image.fromarray(sixteen).save(buf, format="PNG")
    out16 = decode_image(buf.getvalue())
    np.testing.assert_allclose(out16[..., 0], sixteen / 65535.0, atol=1e-6)


def test_corrupt_and_non_images_are_refused_with_a_reason():
    good = _png(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError, match="corrupt or truncated|not a readable image"):
        decode_image(good[: len(good) // 2])
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(b"this is a text file pretending to be a png")


def test_pixel_limit():
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(_png(np.zeros((50, 50, 3), np.uint8)), max_pixels=1000)


def test_read_image_hashes_file_bytes(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(_png(np.full((5, 5, 3), 7, np.uint8)))
    img, sha = read_image(p)
    assert sha == sha256_file(p)
    assert img.shape == (5, 5, 3)


def test_quantize_rounds_and_clips_like_basicsr_tensor2img():
    # numpy and torch both round half to even; 0.6/255 -> 1, 2.5/255 -> 2.
    x = np.array([[[-0.1, 0.6 / 255, 2.5 / 255, 1.2]]], dtype=np.float64)
    np.testing.assert_array_equal(np.round(quantize(x) * 255), [[[0, 1, 2, 255]]])
    assert pixel_sha256(quantize(x)) == pixel_sha256(quantize(quantize(x)))


def _basicsr_levels(x: np.ndarray) -> np.ndarray:
    """BasicSR ``tensor2img``'s rounding, written out: ``(x * 255.0).round()`` of the float64
    image, clipped to [0, 255], as uint8."""
    return np.clip(np.round(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def test_8bit_levels_are_exact_for_every_level_and_at_every_rounding_boundary():
    """``to_uint8`` forms ``x * 255`` in float64 (exact for float32 ``x``); ``from_uint8`` gives
    each level's correctly rounded float32, the same as float64 ``k / 255`` rounded to float32."""
    k = np.arange(256)
    np.testing.assert_array_equal(
        from_uint8(k.astype(np.uint8)).view(np.uint32),
        (k / 255.0).astype(np.float32).view(np.uint32),
    )
    # float32 values next to each half-level k + 0.5: float32 arithmetic would misround some.
    halves = ((k[:-1] + 0.5) / 255.0).astype(np.float32)
    near = [np.nextafter(halves, np.float32(-1)), halves, np.nextafter(halves, np.float32(2))]
    rng = np.random.default_rng(0)
    x = np.concatenate([*near, rng.uniform(-0.2, 1.2, 100_000).astype(np.float32)])
    assert x.dtype == np.float32
    np.testing.assert_array_equal(to_uint8(x), _basicsr_levels(x))
    np.testing.assert_array_equal(quantize(x), from_uint8(_basicsr_levels(x)))
    img = x[: 96 * 32 * 3].reshape(96, 32, 3)
    assert levels_sha256(to_uint8(img)) == pixel_sha256(img)


def test_encoded_png_holds_the_8bit_levels_exactly_and_the_same_bytes_each_time():
    from skimage import data

    img = from_uint8(data.astronaut()[100:228, 150:278]) + 0.0009  # not on a level: rounded
    png = encode_png(img)
    assert png == encode_png(img)
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), to_uint8(img))
    assert pixel_sha256(decode_image(png)) == pixel_sha256(img)  # and through our reader
