"""srforensics: forensic-grade evaluation and audit of image super-resolution.

Importing the package is cheap: heavy dependencies (torch, pyiqa, facenet-pytorch)
are imported by the modules that need them, when they need them.
"""

from __future__ import annotations

from srforensics.errors import SRForensicsError

__version__ = "0.1.0"
__all__ = ["SRForensicsError", "__version__"]
