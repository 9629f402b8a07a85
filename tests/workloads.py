"""Generated workloads: face crops and photographs from scikit-image's samples, and a small
RRDBNet with seeded random weights. The tests build their datasets from these, and the
benchmark (``benchmarks/bench.py``) measures the same workloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srforensics.models.base import ModelCard, SRModel

#: Face boxes (row, col, size) in scikit-image's astronaut and camera images.
_FACES = {"astronaut": (10, 140, 190), "camera": (40, 180, 150)}


class RandomRRDBNet(SRModel):
    """A small RRDBNet (ESRGAN's generator: 16 features, 2 blocks) with seeded random weights."""

    name = "random-rrdbnet"
    num_feat = 16
    num_block = 2
    scale = 4
    version = "random-init"
    source = "tests/workloads.py"

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> None:
        import torch

        from srforensics.models.archs import RRDBNet

        super().__init__(device=device, dtype=dtype)
        torch.manual_seed(seed)
        self.net = RRDBNet(
            num_in_ch=3, num_out_ch=3, scale=4, num_feat=self.num_feat, num_block=self.num_block
        )
        self.net.eval().to(device, self.torch_dtype)

    def upscale(self, lr, *, scale):
        import torch

        with torch.no_grad():
            return self.net(lr.to(self.device, self.torch_dtype)).float().clamp(0, 1)

    def card(self) -> ModelCard:
        return ModelCard(name=self.name, version=self.version, source=self.source, licence="n/a")


class ESRGANSizeRRDBNet(RandomRRDBNet):
    """RRDBNet x4 at ESRGAN's published size (64 features, 23 blocks, 16.7 M parameters) with
    seeded random weights: the cost of a real ESRGAN or Real-ESRGAN checkpoint."""

    name = "random-rrdbnet-esrgan-size"
    num_feat = 64
    num_block = 23


def make_faces(folder: Path, n: int, *, size: int = 128, seed: int = 0) -> Path:
    """``n`` face images of ``size`` px from the faces scikit-image ships, each jittered."""
    from PIL import Image, ImageEnhance
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = {"astronaut": data.astronaut(), "camera": data.camera()}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = ("astronaut", "camera")[i % 2]
        img = sources[name]
        r, c, s = _FACES[name]
        zoom = rng.uniform(1.1, 1.5)
        side = int(s * zoom)
        r0 = int(np.clip(r + s / 2 - side / 2 + rng.integers(-12, 13), 0, img.shape[0] - side))
        c0 = int(np.clip(c + s / 2 - side / 2 + rng.integers(-12, 13), 0, img.shape[1] - side))
        crop = Image.fromarray(img[r0 : r0 + side, c0 : c0 + side]).convert("RGB")
        crop = crop.resize((size, size), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
        crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.7, 1.3))
        crop.save(folder / f"face{i:04d}.png")
    return folder


def make_photos(folder: Path, n: int, *, size: int, seed: int = 0) -> Path:
    """``n`` random ``size`` px crops of scikit-image's colour sample photographs."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = sources[i % len(sources)]
        r = int(rng.integers(0, img.shape[0] - size))
        c = int(rng.integers(0, img.shape[1] - size))
        Image.fromarray(img[r : r + size, c : c + size]).save(folder / f"img{i:05d}.png")
    return folder
