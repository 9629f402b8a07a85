from __future__ import annotations

import pytest

from srforensics.data import DatasetError, load_dataset
from srforensics.images import sha256_file


def test_sample_dataset_is_bundled_and_hashes_match():
    ds = load_dataset("sample")
    assert [r.id for r in ds.records] == ["astronaut", "camera", "chelsea", "coffee", "rocket"]
    assert ds.attribute_names == ("content",)
    for r in ds.records:
        assert r.path.is_file() and sha256_file(r.path) == r.sha256


def test_folder_with_csv(tiny_dataset):
    ds = load_dataset(str(tiny_dataset))
    assert len(ds.records) == 4
    assert ds.attribute_names == ("group", "lighting")
    rec = ds.records[2]
    assert (
        rec.id == "gray cam.png"
        and rec.subject == "s3"
        and rec.attributes == {"group": "a", "lighting": "night"}
    )


def test_folder_without_csv(tmp_path):
    from tests_helpers import make_images

    make_images(tmp_path, ["b.png", "a/c.png"])
    ds = load_dataset(str(tmp_path))
    assert [r.id for r in ds.records] == ["a/c.png", "b.png"]


def test_csv_paths_and_symlinks_outside_root_are_refused_per_record(tmp_path):
    from tests_helpers import make_images

    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    make_images(root, ["ok.png"])
    make_images(elsewhere, ["secret.png"])
    (root / "link.png").symlink_to(elsewhere / "secret.png")
    (root / "metadata.csv").write_text("path,subject\n../../etc/passwd,x\nlink.png,y\nok.png,z\n")
    errors = {r.id: r.error for r in load_dataset(str(root)).records}
    assert "outside the dataset root" in errors["../../etc/passwd"]
    assert "outside the dataset root" in errors["link.png"]
    assert errors["ok.png"] is None
    (root / "metadata.csv").unlink()  # no CSV: every image below the folder, symlinks checked too
    errors = {r.id: r.error for r in load_dataset(str(root)).records}
    assert errors == {"link.png": errors["link.png"], "ok.png": None}
    assert "outside the dataset root" in errors["link.png"]


def test_duplicate_ids_become_refused_records(tmp_path):
    (tmp_path / "metadata.csv").write_text("path,id\na.png,x\nb.png,x\nc.png,y\n")
    ds = load_dataset(str(tmp_path))
    assert [(r.id, r.error is None) for r in ds.records] == [
        ("x", True),
        ("x (duplicate 2)", False),
        ("y", True),
    ]
    assert "duplicate record id 'x'" in ds.records[1].error


def test_unknown_dataset_suggests():
    with pytest.raises(DatasetError, match="did you mean 'sample'"):
        load_dataset("sampel")


def test_a_folder_with_labels_csv_reads_its_subjects(tmp_path):
    """The layout of ../shared/realfaces/identities: labels.csv with file and subject columns."""
    import numpy as np
    from conftest import write_png

    from srforensics.data import DatasetError, load_dataset

    img = np.zeros((8, 8, 3), dtype=np.uint8)
    for name in ("a1.png", "a2.png", "b1.png"):
        write_png(tmp_path / name, img)
    (tmp_path / "labels.csv").write_text("file,subject\na1.png,alice\na2.png,alice\nb1.png,bob\n")
    ds = load_dataset(tmp_path)
    assert [(r.id, r.subject) for r in ds.records] == [
        ("a1.png", "alice"),
        ("a2.png", "alice"),
        ("b1.png", "bob"),
    ]
    (tmp_path / "labels.csv").write_text("image,person\na1.png,alice\n")
    with pytest.raises(DatasetError, match="needs a 'path' or 'file' column.*found: image, person"):
        load_dataset(tmp_path)
    (tmp_path / "metadata.csv").write_text("path\na1.png\n")
    with pytest.raises(DatasetError, match="keep one manifest"):
        load_dataset(tmp_path)


def test_limit_takes_a_seeded_sample_stratified_over_the_sensitive_attributes():
    from pathlib import Path

    from srforensics.data import Record, limit_records

    # Names sorted by age, as UTKFace's are: the first 20 would all be "young".
    records = tuple(
        Record(id=f"{i:03d}", path=Path(f"{i:03d}.png"), attributes={"age": age, "race": race})
        for i, (age, race) in enumerate(
            [("young", "a")] * 40 + [("old", "a")] * 20 + [("old", "b")] * 40
        )
    )
    picked, info = limit_records(records, 20, attributes=("age", "race"), seed=3)
    counts = {}
    for r in picked:
        key = (r.attributes["age"], r.attributes["race"])
        counts[key] = counts.get(key, 0) + 1
    # Proportional allocation: 40/100, 20/100, 40/100 of 20 records.
    assert counts == {("young", "a"): 8, ("old", "a"): 4, ("old", "b"): 8}
    assert [r.id for r in picked] == sorted(r.id for r in picked)  # the dataset's order
    assert picked == limit_records(records, 20, attributes=("age", "race"), seed=3)[0]
    assert picked != limit_records(records, 20, attributes=("age", "race"), seed=4)[0]
    assert "stratified over age × race" in info["how"] and info["seed"] == 3
    first, plain = limit_records(records, 5, attributes=(), seed=3)
    assert [r.id for r in first] == ["000", "001", "002", "003", "004"]
    assert "first N records" in plain["how"]
