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
