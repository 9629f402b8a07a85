"""The house: imports point one way (no cycles, the executors never reach the pipeline), and
the run's stages have short functions. Read from the source with :mod:`ast`, not by importing."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import srforensics

PACKAGE = Path(srforensics.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("srforensics", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _import_graph() -> dict[str, set[str]]:
    """Module -> the srforensics modules it imports, anywhere in it (inside functions too);
    a submodule's import of its own package is not an edge (Python runs the package first)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("srforensics") else None
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_import_graph_has_no_cycles():
    graph = _import_graph()
    cyclic = sorted(m for m in list(graph) if m in _reachable(graph, m))
    assert not cyclic, f"modules on an import cycle: {cyclic}"


def test_the_executors_never_import_the_pipeline():
    """They are handed the work (``ShardWork``) and a starter; the pipeline imports them."""
    graph = _import_graph()
    executors = [m for m in _modules() if m.startswith("srforensics.run.executors")]
    assert len(executors) >= 5
    for mod in executors:
        assert "srforensics.run.pipeline" not in _reachable(graph, mod), mod
    assert "srforensics.run.executors" in graph["srforensics.run.pipeline"]


def test_the_run_stages_have_short_functions():
    """Each function of the run's stage modules reads in one screen (60 lines, docstring
    included)."""
    long = []
    for path in sorted((PACKAGE / "run").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)"
                    )
    assert not long, long


def test_a_stage_is_found_from_the_folder_listing():
    """docs/architecture.md names the module of each stage, and each exists."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for stage in (
        "config",
        "parts",
        "records",
        "lrs",
        "scoring",
        "identity",
        "gallery",
        "exports",
        "manifest",
        "resume",
        "executors",
    ):
        assert f"run/{stage}" in text, stage
        assert (PACKAGE / "run" / f"{stage}.py").exists() or (PACKAGE / "run" / stage).is_dir()
