"""Print a self-contained page to PDF with headless Chromium, offline.

Chromium prints with ``--print-to-pdf`` from a fresh profile, with its own header and
footer off; the page's print CSS (``@page`` margin boxes) puts the page number, the run
id and the manifest's SHA-256 in each page's footer. Network access is shut off: the
page is self-contained, and the browser is told to resolve no host and to use a proxy
that does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from srforensics.errors import SRForensicsError

#: Flags of a headless, offline, stateless Chromium.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    """The Chromium to print with: ``$SRFORENSICS_CHROMIUM``, else the first on PATH."""
    given = os.environ.get("SRFORENSICS_CHROMIUM")
    found = given if given and Path(given).is_file() else None
    found = found or next((p for p in map(shutil.which, _NAMES) if p), None)
    if not found:
        raise SRForensicsError(
            "printing to PDF needs a headless Chromium, and none was found: install it "
            "('apt-get install -y chromium' on Debian, or set SRFORENSICS_CHROMIUM to its path)"
        )
    return found


def print_pdf(page: str | Path, pdf: str | Path, *, timeout: float = 180) -> Path:
    """Print ``page`` (an HTML file) to ``pdf``; return its path."""
    page, pdf = Path(page).resolve(), Path(pdf).resolve()
    chromium = find_chromium()
    with tempfile.TemporaryDirectory(prefix="srforensics-chromium-") as profile:
        tmp = pdf.with_name(f".{pdf.name}.part")
        try:
            proc = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={tmp}",
                    page.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            raise SRForensicsError(
                f"Chromium did not print {page} within {timeout:.0f} s"
            ) from None
        if proc.returncode != 0 or not tmp.is_file() or tmp.read_bytes()[:5] != b"%PDF-":
            tmp.unlink(missing_ok=True)
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SRForensicsError(f"Chromium could not print {page} to PDF: {last[:300]}")
        tmp.replace(pdf)
    return pdf
