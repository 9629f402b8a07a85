"""Find the shipped resource folders (protocols/, datasets/, reports/).

In a source checkout (editable install) they are the top-level folders next to
the package; in an installed wheel they are package data under
``srforensics/_resources/<name>/``.
"""

from __future__ import annotations

from importlib import resources as _ilr
from pathlib import Path
from typing import Literal

ResourceKind = Literal["protocols", "datasets", "reports"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(kind: ResourceKind) -> Path:
    """Return the folder holding the shipped resources of ``kind``."""
    checkout = _PACKAGE_DIR.parent / kind
    if checkout.is_dir():
        return checkout
    installed = Path(str(_ilr.files("srforensics") / "_resources" / kind))
    if installed.is_dir():
        return installed
    raise FileNotFoundError(
        f"srforensics resource folder {kind!r} not found next to the package or in it; "
        "the installation is incomplete: reinstall srforensics"
    )


def list_resources(kind: ResourceKind, suffix: str = ".yaml") -> dict[str, Path]:
    """Map resource names (file stems) to their files, sorted by name."""
    folder = resource_dir(kind)
    return {p.stem: p for p in sorted(folder.glob(f"*{suffix}"))}
