"""srforensics: forensic-grade evaluation and audit of image super-resolution.

The Python API (:mod:`srforensics.api`) is available from the package itself::

    import srforensics
    run = srforensics.audit(model="bicubic", protocol="faces")
    run.results            # one row per output, a pandas DataFrame
    srforensics.verify(run.run_dir).ok

Importing the package is cheap: the API is imported on first use, and heavy dependencies
(torch, pyiqa, facenet-pytorch) are imported by the modules that need them, when they
need them (``srforensics --help`` stays under 0.2 s).
"""

from __future__ import annotations

from typing import Any

from srforensics.errors import SRForensicsError

__version__ = "0.1.0"
_API = ("Counts", "Review", "Run", "audit", "compare", "gate", "open_run", "review", "verify")
__all__ = ["SRForensicsError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    # ``srforensics.run.pipeline`` is the API function; the module of the same name stays
    # importable as ``srforensics.run.pipeline`` through ``import srforensics.run.pipeline``/``from ... import``.
    if name in _API:
        from srforensics import api

        return getattr(api, name)
    raise AttributeError(f"module 'srforensics' has no attribute {name!r}")
