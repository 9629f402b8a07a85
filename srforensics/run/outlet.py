"""Where the stages of a run send what they make: the sink (the run's ledger and folder, or
a worker's buffer), image files encoded as PNG, and the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from srforensics.images import encode_png


def _no_poll() -> None:
    """The ``poll`` of a run whose records no loader processes load."""


class Outlet:
    """The sink results are written through (set by the executor that runs the shard),
    ``poll`` (called between the LRs of a model batch: loader processes that became ready
    meanwhile get their records then) and ``progress`` (called with LRs finished)."""

    def __init__(self) -> None:
        self.sink: Any = None
        self.poll: Callable[[], None] = _no_poll
        self.progress: Callable[[int], Any] | None = None

    def tick(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)

    def save(self, img: np.ndarray, rel: str) -> str:
        """Save ``img`` as ``images/{rel}``; its path in the run folder."""
        return self.sink.save_png(encode_png(img), rel)

    def save_outputs(
        self, stem: str, images: Mapping[int, np.ndarray], hashes: Mapping[int, str]
    ) -> dict[int, str]:
        """Save the outputs ``{sample: image}`` of one LR as ``{stem}_s{sample}.png``; outputs
        with the same 8-bit pixels (``hashes``: :func:`~srforensics.images.pixel_sha256`) are
        encoded once (a deterministic model's N outputs are one image)."""
        encoded: dict[str, bytes] = {}
        paths = {}
        for s, img in images.items():
            if hashes[s] not in encoded:
                encoded[hashes[s]] = encode_png(img)
            paths[s] = self.sink.save_png(encoded[hashes[s]], f"{stem}_s{s}.png")
        return paths
