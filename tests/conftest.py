"""Shared fixtures. Everything is generated here; nothing is downloaded."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# Test plug-in models, named as module:Class like a user's own package.
sys.path.insert(0, str(TESTS / "plugins"))

TINY_METRICS = "psnr,ssim,psnr_rgb,ssim_rgb,lr_psnr,fsim"


def write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


#: Totals of the fault-injection suite, printed at the end of the session.
FAULT_TOTALS: dict[str, list[int]] = {}


def count_fault(kind: str, held: bool) -> None:
    """Count one fault-injection trial of ``kind``; ``held``: the tool did what it must."""
    done = FAULT_TOTALS.setdefault(kind, [0, 0])
    done[0] += bool(held)
    done[1] += 1


def pytest_terminal_summary(terminalreporter):
    if FAULT_TOTALS:
        terminalreporter.section("fault injection")
        for kind, (ok, n) in sorted(FAULT_TOTALS.items()):
            terminalreporter.write_line(f"{kind}: {ok}/{n}")


def realfaces_dir() -> Path | None:
    """The real photographs beside the checkout (``../shared/realfaces``, or
    ``$SRFORENSICS_REALFACES``); never copied into the project."""
    for candidate in (
        os.environ.get("SRFORENSICS_REALFACES"),
        REPO.parent / "shared" / "realfaces",
        REPO / "shared" / "realfaces",
    ):
        if candidate and (Path(candidate) / "identities" / "labels.csv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def realfaces() -> Path:
    found = realfaces_dir()
    if found is None:
        pytest.skip(
            "the real photographs of ../shared/realfaces are not beside this checkout "
            "(set SRFORENSICS_REALFACES to their folder)"
        )
    return found


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Three small real photographs (scikit-image crops), one corrupt file, and a CSV."""
    from skimage import data

    root = tmp_path_factory.mktemp("tiny-dataset")
    write_png(
        root / "astronaut.png", data.astronaut()[40:106, 180:246]
    )  # 66x66: not a multiple of 4
    write_png(root / "coffee.png", data.coffee()[100:164, 200:264])
    write_png(root / "gray cam.png", data.camera()[60:124, 220:284])  # grayscale, space in the name
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "subject", "group", "lighting"])
        w.writerow(["astronaut.png", "s1", "a", "day"])
        w.writerow(["coffee.png", "s2", "b", "day"])
        w.writerow(["gray cam.png", "s3", "a", "night"])
        w.writerow(["broken.png", "s4", "b", "night"])
    return root


@pytest.fixture(scope="session")
def face_weights(tmp_path_factory) -> Path:
    """A randomly initialised InceptionResnetV1 saved as a lab's own checkpoint (seeded)."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "lab_facenet.pt"
    net = InceptionResnetV1(pretrained=None, classify=False)
    torch.save(
        {f"module.{k}": v for k, v in net.state_dict().items()}, path
    )  # as DataParallel saves
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "plugins"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srforensics", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        cwd=cwd,
        timeout=timeout,
    )


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must have a headless Chromium (.ci/run installs the Debian package 'chromium')"
            )
        pytest.skip(
            "no Chromium on this machine: install Debian's 'chromium' to run the browser tests"
        )
    return path


def audit_tiny(
    tiny_dataset: Path,
    out: Path,
    *extra: str,
    model: str = "bicubic",
    env: dict[str, str] | None = None,
    breakdowns: bool = False,
):
    """The CLI audit of the tiny dataset that several tests run (bicubic-x4, 2 samples, all images).

    Per-group breakdowns (record-level bootstraps) only when a test needs them.
    """
    extra = (*extra, "--breakdown-boot", "200" if breakdowns else "0")
    return run_cli(
        "audit",
        "--model",
        model,
        "--protocol",
        "bicubic-x4",
        "--dataset",
        str(tiny_dataset),
        "--samples",
        "2",
        "--metrics",
        TINY_METRICS,
        "--save-images",
        "all",
        "--out",
        str(out),
        *extra,
        env=env,
    )


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real CLI audit of the tiny dataset, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = audit_tiny(tiny_dataset, out, breakdowns=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def audit_in_process(tiny_dataset: Path, out: Path, **overrides):
    """An in-process audit of the tiny dataset (bicubic-x4, psnr, no images); returns (run, results)."""
    import pandas as pd

    from srforensics.run.pipeline import AuditConfig, run_audit

    config = dict(
        protocol="bicubic-x4",
        dataset=str(tiny_dataset),
        samples=1,
        metrics=("psnr",),
        save_images="none",
        out=str(out),
        breakdown_boot=0,
    )
    config.update(overrides)
    run = run_audit(AuditConfig.from_options(**config))
    return run, pd.read_parquet(run.run_dir / "results.parquet")


def run_fresh_python(code: str, tmp_path: Path, timeout: float = 600) -> dict[str, str]:
    """Run ``code`` in a new interpreter with an empty TORCH_HOME (pyiqa fixes its cache folder at
    import); return its output lines as ``{first word: rest}``."""
    env = {"TORCH_HOME": str(tmp_path / "torch"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for line in out.stdout.splitlines()
        if " " in line
    }


def _chromium_flags() -> list[str]:
    """The package's offline headless flags (the ones its PDF export uses), and no QUIC."""
    from srforensics.report.pdf import CHROMIUM_FLAGS as PACKAGE_FLAGS

    return [*PACKAGE_FLAGS, "--disable-quic"]


CHROMIUM_FLAGS = _chromium_flags()


def open_in_chromium(chromium: str, page: Path, tmp_path: Path, *extra: str):
    """Load ``page`` in headless Chromium: ``(dom, console messages, URLs the page itself requested)``.

    Console messages come from Chromium's log (``--enable-logging``); requests from its net log,
    keeping those whose initiator is a page (Chromium's own background requests have none).
    """
    import json as _json

    profile, netlog = tmp_path / "chromium-profile", tmp_path / "netlog.json"
    profile.mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=3000",
            *extra,
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    log = _json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = [
        e["params"]["url"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB"
        and e.get("params", {}).get("url")
        and e["params"].get("initiator") != "not an origin"
    ]
    return proc.stdout, console, requests
