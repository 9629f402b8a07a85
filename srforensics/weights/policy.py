"""The weight-loading policy of a run (may pickles be fully unpickled?) and the log of the
weight files it loaded, for its manifest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from srforensics.images import sha256_file

__all__ = [
    "log_weights_file",
    "trusts_pickles",
    "weights_policy",
]

_TRUST_PICKLES: ContextVar[bool] = ContextVar("srforensics_trust_pickles", default=False)
_LOADED: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "srforensics_weights_log", default=None
)


@contextmanager
def weights_policy(*, trust_pickles: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Within the block, weight loading follows this policy; yields the log of files loaded.

    ``trust_pickles`` lets :func:`load_state_dict` fully unpickle a file that
    ``weights_only=True`` refuses; such a file can run arbitrary code, so only the
    user may allow it (``--trust-weights``), and the log says it happened.
    """
    log: list[dict[str, Any]] = []
    t1, t2 = _TRUST_PICKLES.set(trust_pickles), _LOADED.set(log)
    try:
        yield log
    finally:
        _TRUST_PICKLES.reset(t1)
        _LOADED.reset(t2)


def trusts_pickles() -> bool:
    """Whether the current :func:`weights_policy` lets pickles be unpickled fully."""
    return _TRUST_PICKLES.get()


def log_weights_file(
    path: str | Path, *, how: str, sha256: str | None = None, licence: str | None = None
) -> None:
    """Note a weight file used by the current run (see :func:`weights_policy`); ``licence``
    is shown in the report's licence section."""
    log = _LOADED.get()
    if log is not None:
        path = Path(path).resolve()
        entry = {"path": str(path), "sha256": sha256 or sha256_file(path), "loaded_as": how}
        if licence:
            entry["licence"] = licence
        log.append(entry)
