from __future__ import annotations

from pathlib import Path

import numpy as np


def make_images(root: Path, names: list[str], size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(p)
