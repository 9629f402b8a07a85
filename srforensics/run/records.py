"""Dataset records, loaded: decoded, their HR prepared, each pending LR variant drawn and
degraded. Pure (no model, nothing written), so loader processes may run it ahead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.faces import NoFaceFound
from srforensics.images import pixel_sha256, read_image
from srforensics.ledger import to_json
from srforensics.recompute import describe_error as _describe_error
from srforensics.seeding import degradation_rng, model_seed

#: Output statuses written to the ledger.
OK, FAILED, NO_FACE = "ok", "failed", "no_face"


@dataclass
class LoadedLR:
    """One LR of a loaded record: its drawn parameters and pixels, or why it failed."""

    variant: int
    todo: list[int]
    params: Any = None
    params_json: str | None = None  # ``params`` as the ledger stores them (``ledger.to_json``)
    lr: np.ndarray | None = None
    lr_sha: str | None = None
    error: str | None = None
    seeds: list[int] = field(default_factory=list)  # the model's seed for each of ``todo``


@dataclass
class LoadedRecord:
    """A record decoded, prepared and degraded, ready to be queued (see :func:`load_record`)."""

    idx: int
    rec: Any
    pending: dict[int, list[int]]
    protocol_sha256: str | None = None
    status: str = OK
    error: str | None = None
    sha: str | None = None
    hr: np.ndarray | None = None
    hr_params: Any = None
    hr_sha: str | None = None
    lrs: list[LoadedLR] = field(default_factory=list)
    #: Reference features a loader process computed: ``{metric: (key, features)}``, and
    #: its seconds on them.
    features: dict[str, Any] = field(default_factory=dict)
    features_s: float = 0.0


def load_record(
    protocol, idx: int, rec, pending: Mapping[int, Sequence[int]], *, run_seed: int, max_pixels: int
) -> LoadedRecord:
    """Decode ``rec``, prepare its HR and draw and apply the degradation of every pending variant.

    Pure: it writes nothing and uses no model, so it may run ahead in another process
    (``--loaders``) and gives the same arrays wherever it runs. A failure is recorded in
    what it returns (status and reason), never raised: a long run goes on.
    """

    pending = {v: list(s) for v, s in pending.items() if s}
    out = LoadedRecord(idx, rec, pending, protocol_sha256=protocol.sha256)
    if not pending:
        return out
    if rec.error:  # refused by the dataset loader (outside the root, duplicate id)
        out.status, out.error = FAILED, rec.error
        return out
    try:
        img, out.sha = read_image(rec.path, max_pixels=max_pixels)
        if rec.sha256 and out.sha != rec.sha256:
            raise SRForensicsError(
                f"file hash {out.sha[:12]}... differs from the dataset card's {rec.sha256[:12]}...: "
                "the file is not the one the card describes"
            )
        hr, out.hr_params = protocol.prepare(img)
    except NoFaceFound as exc:
        out.status, out.error = NO_FACE, str(exc)
        return out
    except Exception as exc:  # a long run records the failure and goes on
        out.status, out.error = FAILED, _describe_error(exc)
        return out
    out.hr, out.hr_sha = hr, pixel_sha256(hr)
    for variant, todo in pending.items():
        # The model's seeds too: pure, and here they are not computed where the model runs.
        lr = LoadedLR(variant, todo, seeds=[model_seed(run_seed, rec.id, variant, s) for s in todo])
        try:
            lr.params = protocol.sample(degradation_rng(run_seed, rec.id, variant))
            lr.lr = protocol.apply(hr, lr.params)
            lr.lr_sha = pixel_sha256(lr.lr)
            lr.params_json = to_json(lr.params)  # here, not where the model runs
        except Exception as exc:
            lr.error = f"degradation failed: {_describe_error(exc)}"
        out.lrs.append(lr)
    return out
