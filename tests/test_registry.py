from __future__ import annotations

import sys
import textwrap

import pytest

from srforensics.errors import SRForensicsError
from srforensics.registry import Registry


def test_lazy_target_is_imported_only_when_used():
    reg = Registry("thing")
    reg.register("tree", "xml.etree.ElementTree:Element", aliases=("node",))
    sys.modules.pop("xml.etree.ElementTree", None)
    assert reg.names() == ["tree"]
    assert "xml.etree.ElementTree" not in sys.modules
    import xml.etree.ElementTree as ET

    assert reg.get("node") is ET.Element
    assert reg.get("TREE") is ET.Element
    assert reg.canonical("node") == "tree"


def test_unknown_name_suggests_close_match():
    reg = Registry("model")
    reg.register("bicubic", object())
    reg.register("bilinear", object())
    with pytest.raises(SRForensicsError, match=r"unknown model 'bicubc'; did you mean 'bicubic'"):
        reg.get("bicubc")


def test_module_attr_and_bad_module_errors():
    reg = Registry("model")
    assert reg.get("collections:OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(SRForensicsError, match="cannot import module 'no_such_pkg_xyz.mod'"):
        reg.get("no_such_pkg_xyz.mod:Thing")
    with pytest.raises(SRForensicsError, match="has no attribute 'Nope'"):
        reg.get("collections:Nope")


def test_prefix_namespace():
    reg = Registry("metric")
    reg.register_prefix("up", str.upper)
    assert reg.get("up:abc") == "ABC"


def test_duplicate_registration_refused():
    reg = Registry("model")
    reg.register("a", object())
    with pytest.raises(ValueError):
        reg.register("A", object())


def test_entry_point_group(tmp_path, monkeypatch):
    dist = tmp_path / "srf_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: srf-fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [srforensics.models]
            fancy = srf_fake_plugin_mod:Fancy
            bicubic = srf_fake_plugin_mod:Fancy
            """
        )
    )
    (tmp_path / "srf_fake_plugin_mod.py").write_text("class Fancy:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("model", entry_point_group="srforensics.models")
    reg.register("bicubic", "collections:OrderedDict")
    assert "fancy" in reg.names()
    assert reg.get("fancy").__name__ == "Fancy"
    # A plug-in cannot silently replace a built-in name.
    assert reg.get("bicubic").__name__ == "OrderedDict"
    entry = next(e for e in reg.entries() if e.name == "fancy")
    assert "srf-fake-plugin" in entry.origin
