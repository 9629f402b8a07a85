"""Seeds keyed by (run seed, record id, variant, sample).

Every random draw of an audit comes from a :class:`numpy.random.SeedSequence`
keyed by where it is used, so any single LR or output can be recomputed alone,
in any order, on any worker.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Stream tags, so degradation draws and model seeds never share a stream.
_DEGRADATION, _MODEL = 0, 1


def record_key(record_id: str) -> int:
    """A stable 64-bit integer for a record id (independent of Python's hash seed)."""
    return int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "little")


def degradation_rng(run_seed: int, record_id: str, variant: int) -> np.random.Generator:
    """The generator a protocol samples the parameters of one LR variant from."""
    ss = np.random.SeedSequence(run_seed, spawn_key=(_DEGRADATION, record_key(record_id), variant))
    return np.random.default_rng(ss)


def model_seed(run_seed: int, record_id: str, variant: int, sample: int) -> int:
    """The seed handed to the model for one output (a 63-bit integer)."""
    ss = np.random.SeedSequence(
        run_seed, spawn_key=(_MODEL, record_key(record_id), variant, sample)
    )
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
