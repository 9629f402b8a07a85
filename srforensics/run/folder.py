"""The run folder: file names, a default location, the lock, atomic writes, file hashes."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from srforensics.errors import SRForensicsError

if TYPE_CHECKING:
    from srforensics.run.config import AuditConfig

CONFIG_NAME = "config.json"
REPORT_NAME = "report.html"
LOCK_NAME = ".lock"
#: Files of a run folder that the manifest does not hash: itself, the ledger (hashed by
#: content instead) and what is written after it (report, gate verdicts, PDF), which the
#: seal covers (:mod:`srforensics.run.seal`).
UNHASHED = frozenset(
    {
        "manifest.json",
        "manifest.json.tmp",
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        LOCK_NAME,
        REPORT_NAME,
        "gates.json",
        "junit.xml",
        "seal.json",
        "seal.json.tmp",
        "report.pdf",
    }
)


def safe_name(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "x"


def image_stem(record_id: str) -> str:
    # Readable and collision-free even for ids that differ only in odd characters.
    return f"{safe_name(record_id)}-{hashlib.sha256(record_id.encode()).hexdigest()[:8]}"


def default_run_dir(config: AuditConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (
        Path("runs")
        / f"{stamp}-{safe_name(Path(config.study.model).name)}-{safe_name(Path(config.study.protocol).stem)}"
    )


def check_new_run_dir(run_dir: Path, *, inputs: Path | None = None) -> None:
    """Refuse an ``--out`` that is not a new or empty folder, and one inside the input data.

    The run hashes every file of its folder into the manifest and writes its images there:
    a folder that holds the user's files would have them vouched for (or overwritten), and
    a folder inside the dataset would have the outputs read as evidence by a later audit.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise SRForensicsError(f"--out {run_dir} is a file, not a folder; choose another --out")
    for parent in run_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise SRForensicsError(f"--out {run_dir} is below {parent}, which is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise SRForensicsError(
            f"--out {run_dir} is a folder that already holds files and no run: srforensics "
            "writes only into a new or empty folder; choose another --out"
        )
    if inputs is not None:
        root = inputs.resolve()
        if run_dir == root or root in run_dir.parents:
            raise SRForensicsError(
                f"--out {run_dir} is inside the dataset folder {root}: the outputs would be read "
                "as evidence by a later audit of that folder; choose an --out outside it"
            )


def make_run_dir(run_dir: Path) -> None:
    """Create the run folder (and its parents), with a clear error where that is not allowed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SRForensicsError(
            f"cannot write the run folder {run_dir}: {exc.strerror or exc}; choose another --out"
        ) from None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process; a second audit or resume of it is refused.

    An advisory ``flock`` on ``RUN_DIR/.lock``: the operating system releases it when
    the process ends, however it ends (``kill -9`` included), so it never goes stale.
    """

    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            raise SRForensicsError(
                f"{run_dir} is in use by {holder}; wait for it to finish (then --resume "
                "it if it stopped), or audit into another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"srforensics pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def run_files(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file of the run folder the manifest vouches for (see :data:`UNHASHED`)."""
    from srforensics.images import sha256_file

    return {
        p.relative_to(run_dir).as_posix(): sha256_file(p)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).as_posix() not in UNHASHED
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
