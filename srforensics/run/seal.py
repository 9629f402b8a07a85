"""The seal: what binds the files written after the manifest to it.

The manifest hashes every file of the run folder that exists when it is written. The
report (and the gate verdicts, and a printed PDF) come after it, so ``seal.json``
records the manifest's SHA-256 and the SHA-256 of each of them; ``verify`` checks the
seal and re-renders the report from the ledger and the manifest, comparing it byte for
byte with ``report.html`` (the report embeds no time, so nothing has to be removed
before comparing). ``srforensics report`` and ``report --pdf`` re-seal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from srforensics import __version__
from srforensics.images import sha256_file
from srforensics.run.folder import write_atomic

SEAL_NAME = "seal.json"
#: Files of a run folder written after the manifest; the seal covers those present.
SEALED = ("report.html", "report.pdf", "gates.json", "junit.xml")


def write_seal(run_dir: Path) -> dict[str, Any]:
    """Record the manifest's SHA-256 and each sealed file's; returns the seal."""
    run_dir = Path(run_dir)
    seal = {
        "manifest_sha256": sha256_file(run_dir / "manifest.json"),
        "files": {n: sha256_file(run_dir / n) for n in SEALED if (run_dir / n).is_file()},
        "srforensics_version": __version__,
        "report_check": "verify re-renders report.html from the ledger and the manifest and "
        "compares the bytes; the report embeds no time",
    }
    write_atomic(run_dir / SEAL_NAME, json.dumps(seal, indent=2, sort_keys=True) + "\n")
    return seal


def check_seal(run_dir: Path, manifest_sha256: str) -> list[str]:
    """Problems with the seal and the files it covers, each naming its file."""
    path = Path(run_dir) / SEAL_NAME
    if not path.is_file():
        return [
            f"missing: {SEAL_NAME}: the report is not covered; re-render and seal it with "
            f"'srforensics report {run_dir}'"
        ]
    try:
        seal = json.loads(path.read_text(encoding="utf-8"))
        files = dict(seal["files"])
        sealed_manifest = str(seal["manifest_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"altered: {SEAL_NAME} is not a readable seal ({type(exc).__name__})"]
    problems = []
    if sealed_manifest != manifest_sha256:
        problems.append(
            f"altered: {SEAL_NAME} seals manifest {sealed_manifest}, but manifest.json hashes "
            f"to {manifest_sha256}"
        )
    for name in SEALED:
        target = Path(run_dir) / name
        if name not in files:
            if target.is_file():
                problems.append(f"unsealed: {name} is in the run folder but not in {SEAL_NAME}")
            continue
        if not target.is_file():
            problems.append(f"missing: {name} (sealed in {SEAL_NAME})")
        elif sha256_file(target) != files[name]:
            problems.append(
                f"altered: {name} hashes to {sha256_file(target)}, {SEAL_NAME} says {files[name]}"
            )
    for name in sorted(set(files) - set(SEALED)):
        problems.append(f"altered: {SEAL_NAME} names {name}, which is not a sealed file")
    return problems
