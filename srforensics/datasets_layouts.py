"""Readers of public dataset layouts: each gives raw records ``{id, path, subject, fields}``.

The dataset card (``datasets/*.yaml``) names the layout and maps ``fields`` to the
normalised attribute vocabulary. Readers only read files under the root; nothing is
downloaded. New layouts join the :data:`LAYOUTS` registry.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.registry import Registry

LAYOUTS: Registry[Any] = Registry("dataset layout")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class LayoutError(SRForensicsError):
    """A local copy of a dataset that does not have the layout its card describes."""


def _file(root: Path, card: Mapping[str, Any], key: str, default: str, where: str) -> Path:
    name = (card.get("files") or {}).get(key, default)
    path = root / name
    if not path.is_file():
        raise LayoutError(
            f"{where}: {path} is missing; the {card.get('name')} layout needs {name} under the root"
        )
    return path


def fairface(root: Path, card: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """FairFace: a label CSV with columns file, age, gender, race (paths relative to the root)."""
    path = _file(root, card, "labels", "fairface_label_val.csv", where)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "age", "gender", "race"} - set(reader.fieldnames or [])
        if missing:
            raise LayoutError(f"{where}: {path} lacks column(s) {', '.join(sorted(missing))}")
        return [{"id": r["file"], "path": r["file"], "subject": None, "fields": r} for r in reader]


_UTK = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?P<race>\d+)_(?P<date>\d+)")


def utkface(root: Path, card: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """UTKFace: facts in the file name, ``age_gender_race_date.jpg``; malformed names are skipped."""
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = _UTK.match(p.name)
        if m is None:
            continue  # a handful of UTKFace files lack a field: they cannot be labelled
        rel = p.relative_to(root).as_posix()
        out.append({"id": rel, "path": rel, "subject": None, "fields": m.groupdict()})
    return out


def celeba(root: Path, card: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """CelebA: ``identity_CelebA.txt`` (file, identity) and ``list_attr_celeba.txt`` (40 +-1 attributes)."""
    images = (card.get("files") or {}).get("images", "img_align_celeba")
    ident = {}
    for line in (
        _file(root, card, "identity", "identity_CelebA.txt", where).read_text().splitlines()
    ):
        parts = line.split()
        if len(parts) == 2:
            ident[parts[0]] = parts[1]
    lines = _file(root, card, "attributes", "list_attr_celeba.txt", where).read_text().splitlines()
    if len(lines) < 2:
        raise LayoutError(f"{where}: list_attr_celeba.txt is empty")
    names = lines[1].split()
    out = []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) != len(names) + 1:
            continue
        fields = dict(zip(names, parts[1:], strict=True))
        out.append(
            {
                "id": parts[0],
                "path": f"{images}/{parts[0]}",
                "subject": ident.get(parts[0]),
                "fields": fields,
            }
        )
    return out


def lfw(root: Path, card: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """LFW: one folder per person; the folder name is the subject."""
    out = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(person.iterdir()):
            if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES:
                rel = img.relative_to(root).as_posix()
                out.append(
                    {
                        "id": rel,
                        "path": rel,
                        "subject": person.name,
                        "fields": {"person": person.name},
                    }
                )
    return out


for _name, _fn in (("fairface", fairface), ("utkface", utkface), ("celeba", celeba), ("lfw", lfw)):
    LAYOUTS.register(_name, _fn)
