"""Datasets: dataset cards and folder + CSV manifests -> :class:`Record` lists.

``--dataset`` takes a card name (``datasets/NAME.yaml``), a card file, or a
folder of images. A folder may hold a manifest, ``metadata.csv`` or
``labels.csv``, with a ``path`` (or ``file``) column relative to the folder, an
optional ``subject`` column and any attribute columns; without one every image
below the folder is a record, its own subject. Loading never
downloads anything and never opens a file outside the dataset root.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from srforensics.datasets_layouts import LAYOUTS
from srforensics.errors import SRForensicsError, check_fields
from srforensics.resources import list_resources

# numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif",
)  # fmt: skip
CSV_NAME = "metadata.csv"
#: The manifests a dataset folder may hold (one at most), and the columns naming the file.
CSV_NAMES = (CSV_NAME, "labels.csv")
PATH_COLUMNS = ("path", "file")
_CARD_FIELDS = {
    "name",
    "description",
    "source",
    "licence",
    "layout",
    "root",
    "records",
    "attributes",
    "files",
    "archive_sha256",
    "citation",
    "sensitive",
}


class DatasetError(SRForensicsError):
    """A dataset that cannot be loaded; the message says which file and what to fix."""


@dataclass(frozen=True)
class Record:
    """One input image: id, file, subject (identity label) and attributes."""

    id: str
    path: Path
    subject: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    sha256: str | None = None  # expected file hash, when the card gives one
    error: str | None = None  # why the record is refused without opening it (e.g. outside the root)


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path
    records: tuple[Record, ...]
    attribute_names: tuple[str, ...]
    description: str = ""
    source: str = ""
    licence: str = ""
    card_path: str | None = None
    sensitive: tuple[str, ...] | None = None  # None: every attribute is a sensitive attribute
    #: Files of a dataset folder that are not records, each ``(path, why)``: none is left
    #: out without being named.
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def sensitive_attributes(self) -> tuple[str, ...]:
        return self.attribute_names if self.sensitive is None else self.sensitive

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "records": len(self.records),
            "attributes": list(self.attribute_names),
            "description": self.description,
            "source": self.source,
            "licence": self.licence,
            "card": self.card_path,
            "sensitive_attributes": list(self.sensitive_attributes),
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
        }


def _inside(root: Path, rel: str, where: str) -> tuple[Path, str | None]:
    """The record's file, and a refusal when it (or a symlink on the way) leaves the root."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        return root / rel, (
            f"{where}: path {rel!r} points outside the dataset root {root} (symlink or '..'); "
            "refused: copy the file into the dataset folder"
        )
    return path, None


def _resolve_root(raw: Any, card: Path) -> Path:
    if isinstance(raw, Mapping) and set(raw) == {"package"}:
        spec = importlib.util.find_spec(str(raw["package"]))
        if spec is None or not spec.submodule_search_locations:
            raise DatasetError(
                f"{card}: package {raw['package']!r} for the dataset root is not installed"
            )
        return Path(next(iter(spec.submodule_search_locations)))
    if isinstance(raw, str):
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (card.parent / p)
    raise DatasetError(f"{card}: 'root' must be a path or {{package: NAME}}, got {raw!r}")


def _check_unique(records: list[Record], where: str) -> list[Record]:
    """Later records with an id already seen become refused records of their own."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        n = seen.get(r.id, 0) + 1
        seen[r.id] = n
        if n > 1:
            r = replace(
                r,
                id=f"{r.id} (duplicate {n})",
                error=f"{where}: duplicate record id {r.id!r} (occurrence {n}); ids must be "
                "unique, so only the first is audited",
            )
        out.append(r)
    return out


# -- attribute normalisation ----------------------------------------------------------------
def normalise_attributes(
    raw: Mapping[str, Any], mapping: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Map a record's raw fields to the normalised vocabulary of the card's ``attributes``.

    Each attribute is ``{source: FIELD}`` plus either ``map: {raw: value}`` or
    ``bands: [[low, high, label], ...]`` (inclusive integer ranges, e.g. age bands).
    A missing or unmapped value becomes None (a missing attribute, never a guess).
    """
    out: dict[str, Any] = {}
    for name, spec in mapping.items():
        if not isinstance(spec, Mapping) or "source" not in spec:
            raise DatasetError(f"{where}: attribute {name!r} needs a 'source' field")
        value = raw.get(str(spec["source"]))
        value = None if value is None or str(value).strip() == "" else str(value).strip()
        if value is not None and "map" in spec:
            value = {str(k): v for k, v in spec["map"].items()}.get(value)
        elif value is not None and "bands" in spec:
            try:
                number = float(value)
            except ValueError:
                number = None
            value = next(
                (
                    label
                    for lo, hi, label in spec["bands"]
                    if number is not None and lo <= number <= hi
                ),
                None,
            )
        out[name] = value
    return out


def _raw_records(
    layout: str, root: Path, card: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:

    try:
        loader = LAYOUTS.get(layout)
    except SRForensicsError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    return loader(root, card, where)


def load_card(path: Path, *, root_override: Path | None = None) -> Dataset:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read dataset card {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: a dataset card is a YAML mapping")
    check_fields(data, _CARD_FIELDS, str(path), error=DatasetError)
    layout = data.get("layout", "folder")
    if root_override is None and data.get("root") is None:
        raise DatasetError(
            f"{path}: the {data.get('name', path.stem)!r} dataset is not shipped (licence and size); "
            "download it yourself and give its folder with --dataset-root DIR"
        )
    root = (root_override or _resolve_root(data.get("root", "."), path)).expanduser()
    if layout not in ("folder", "list") and not root.is_dir():
        raise DatasetError(f"{path}: dataset root {root} is not a folder")
    if layout == "folder":
        base = load_folder(root)
        records = list(base.records)
        attrs = list(base.attribute_names)
    elif layout != "list":
        records, attrs = _mapped_records(layout, root, data, path)
    else:
        records, attrs = _listed_records(root, data, path)
    return Dataset(
        name=str(data.get("name", path.stem)),
        root=root,
        records=tuple(records),
        attribute_names=tuple(attrs),
        description=str(data.get("description", "")).strip(),
        source=str(data.get("source", "")),
        licence=str(data.get("licence", "")),
        card_path=str(path),
        sensitive=tuple(data["sensitive"]) if data.get("sensitive") is not None else None,
    )


def _mapped_records(layout: str, root: Path, data: Mapping, path: Path):
    """Records of a known dataset layout, their fields mapped onto attributes by the card."""
    mapping = data.get("attributes") or {}
    if not isinstance(mapping, Mapping):
        raise DatasetError(
            f"{path}: 'attributes' must map attribute names to {{source, map|bands}}"
        )
    records = []
    for raw in _raw_records(layout, root, data, str(path)):
        file, error = _inside(root, raw["path"], str(path))
        records.append(
            Record(
                id=raw["id"],
                path=file,
                subject=raw.get("subject"),
                attributes=normalise_attributes(raw.get("fields", {}), mapping, str(path)),
                error=error,
            )
        )
    return _check_unique(records, str(path)), list(mapping)


def _listed_records(root: Path, data: Mapping, path: Path):
    """Records listed one by one in the card (``layout: list``)."""
    records, attrs = [], list(data.get("attributes") or [])
    for i, item in enumerate(data.get("records") or []):
        where = f"{path}: records[{i}]"
        if not isinstance(item, Mapping) or "path" not in item:
            raise DatasetError(f"{where}: each record needs a 'path'")
        a = dict(item.get("attributes") or {})
        attrs += [k for k in a if k not in attrs]
        file, error = _inside(root, str(item["path"]), where)
        records.append(
            Record(
                id=str(item.get("id", item["path"])),
                path=file,
                subject=None if item.get("subject") is None else str(item["subject"]),
                attributes=a,
                sha256=item.get("sha256"),
                error=error,
            )
        )
    return _check_unique(records, str(path)), attrs


def load_folder(root: Path) -> Dataset:
    """A folder of images, described by ``metadata.csv`` when present."""
    root = root.resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    manifests = [root / n for n in CSV_NAMES if (root / n).is_file()]
    if len(manifests) > 1:
        raise DatasetError(
            f"dataset folder {root} holds both {' and '.join(m.name for m in manifests)}; keep one "
            "manifest (columns: path or file, subject, attributes)"
        )
    csv_path = manifests[0] if manifests else root / CSV_NAME
    if csv_path.is_file():
        records, attrs, skipped = _csv_records(root, csv_path)
    else:
        records, attrs, skipped = _scanned_records(root)
    records = _check_unique(records, str(csv_path if csv_path.is_file() else root))
    return Dataset(
        name=root.name,
        root=root,
        records=tuple(records),
        attribute_names=tuple(attrs),
        skipped=tuple(skipped),
    )


def _visible_files(root: Path):
    """Everything below ``root`` but folders and hidden files (.DS_Store, .git/), sorted."""
    for p in sorted(root.rglob("*")):
        if not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            yield p


def _csv_records(root: Path, csv_path: Path):
    """The records a folder's manifest lists; the folder's other files are skipped, with why."""
    records: list[Record] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        key = next((c for c in PATH_COLUMNS if c in cols), None)
        if key is None:
            raise DatasetError(
                f"{csv_path}: needs a 'path' or 'file' column naming each image, and may have "
                f"'subject', 'id' and attribute columns (found: {', '.join(cols) or 'none'})"
            )
        attrs = [c for c in cols if c not in (key, "subject", "id")]
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line}"
            rel = (row.get(key) or "").strip()
            if not rel:
                raise DatasetError(f"{where}: empty {key!r}")
            file, error = _inside(root, rel, where)
            records.append(
                Record(
                    id=(row.get("id") or rel).strip(),
                    path=file,
                    subject=(row.get("subject") or "").strip() or None,
                    attributes={a: ((row.get(a) or "").strip() or None) for a in attrs},
                    error=error,
                )
            )
    listed = {r.path.resolve() for r in records} | {csv_path.resolve()}
    skipped = [
        (p.relative_to(root).as_posix(), f"not listed in {csv_path.name}")
        for p in _visible_files(root)
        if p.resolve() not in listed
    ]
    return records, attrs, skipped


def _scanned_records(root: Path):
    """A folder without a manifest: one record an image file, its stem the subject."""
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    for p in _visible_files(root):
        rel = p.relative_to(root).as_posix()
        if not p.is_file():
            skipped.append((rel, "not a regular file (a named pipe, socket or device)"))
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            file, error = _inside(root, rel, str(root))
            records.append(Record(id=rel, path=file, subject=p.stem, error=error))
        else:
            skipped.append((rel, f"not an image file ({p.suffix or 'no suffix'})"))
    if not records:
        raise DatasetError(
            f"dataset folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no {CSV_NAME}"
        )
    return records, [], skipped


def available_datasets() -> dict[str, Path]:
    return list_resources("datasets")


def load_dataset(spec: str | Path, *, root: str | Path | None = None) -> Dataset:
    """Load a dataset from a card name, a card file, or a folder; ``root`` overrides a card's root."""
    cards = available_datasets()
    root_path = Path(root).expanduser() if root else None
    if str(spec) in cards:
        return load_card(cards[str(spec)], root_override=root_path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return load_card(path, root_override=root_path)

    close = difflib.get_close_matches(str(spec), list(cards), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise DatasetError(
        f"unknown dataset {str(spec)!r}{hint} Give a card name ({', '.join(cards)}), "
        "a dataset card .yaml file, or a folder of images"
    )


def limit_records(
    records: tuple[Record, ...], n: int, *, attributes: tuple[str, ...], seed: int
) -> tuple[tuple[Record, ...], dict[str, Any]]:
    """``n`` of ``records``, and how they were chosen (for the manifest).

    With sensitive ``attributes``: a seeded sample stratified over their combined
    values (a missing value is its own stratum), each stratum's share proportional to
    its size (largest remainders), kept in the dataset's order. Without: the first
    ``n`` in the dataset's order, which the description says plainly (on a dataset
    whose file names begin with an attribute, such as UTKFace's age, that is biased).
    """
    import numpy as np

    if n >= len(records):
        return records, {"limit": n, "how": "all records (the limit is not below their number)"}
    if not attributes:
        return records[:n], {
            "limit": n,
            "how": "the first N records in the dataset's order (no sensitive attributes to "
            "stratify over)",
        }
    strata: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        strata.setdefault(tuple(str(r.attributes.get(a)) for a in attributes), []).append(i)
    keys = sorted(strata)
    quota = np.array([len(strata[k]) for k in keys], dtype=float) * n / len(records)
    take = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]:
        take[j] += 1
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, 0x11A117]))
    chosen: list[int] = []
    for k, t in zip(keys, take, strict=True):
        members = strata[k]
        chosen += [members[i] for i in rng.permutation(len(members))[:t]]
    picked = tuple(records[i] for i in sorted(chosen))
    return picked, {
        "limit": n,
        "how": "a seeded sample stratified over "
        + " × ".join(attributes)
        + " (proportional allocation, largest remainders)",
        "seed": int(seed),
        "strata": {"×".join(k): int(t) for k, t in zip(keys, take, strict=True)},
    }
