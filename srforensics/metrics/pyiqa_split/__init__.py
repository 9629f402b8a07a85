"""pyiqa full-reference metrics split into the reference's share and the output's.

pyiqa computes both images' features in one call, so scoring N outputs of one
input against its HR computes the HR's features N times. The classes here
compute the same numbers in two steps: :meth:`reference` once per HR, then
:meth:`score` per batch of outputs, with pyiqa's own building blocks and its
architecture's settings, in pyiqa's order of operations.

They follow pyiqa 0.1.16's formulas (FSIM: Zhang et al. 2011; VIF: Sheikh and
Bovik 2006, pyiqa's pixel-domain steerable-pyramid port of ``vifvec``; GMSD:
Xue et al. 2014; LPIPS: Zhang et al. 2018; DISTS: Ding et al. 2020; SSIM: Wang
et al. 2004; MS-SSIM: Wang, Simoncelli and Bovik 2003; NLPD: Laparra et al. 2016;
CW-SSIM: Sampat et al. 2009; MAD: Larson and Chandler 2010; PieAPP: Prashnani et al.
2018; VSI: Zhang, Shen and Li 2014). :func:`split_for` checks a split against pyiqa's own call on
a test image before it is used (once per process for each architecture, settings
and device), so a pyiqa whose formulas changed is called whole instead, never
replaced by different numbers.

Each split is keyed by the name of the pyiqa architecture class it reproduces.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from srforensics.metrics.base import repeat_features
from srforensics.metrics.pyiqa_split.base import CHECK_RTOL, _Split
from srforensics.metrics.pyiqa_split.deep import DISTSSplit, LPIPSSplit, PieAPPSplit
from srforensics.metrics.pyiqa_split.information import MADSplit, NLPDSplit, VIFSplit
from srforensics.metrics.pyiqa_split.structure import (
    CWSSIMSplit,
    FSIMSplit,
    GMSDSplit,
    MSSSIMSplit,
    SSIMSplit,
    VSISplit,
)

# torch, pyiqa, numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECK_RTOL",
    "SPLITS",
    "CWSSIMSplit",
    "DISTSSplit",
    "FSIMSplit",
    "GMSDSplit",
    "LPIPSSplit",
    "MADSplit",
    "MSSSIMSplit",
    "NLPDSplit",
    "PieAPPSplit",
    "SSIMSplit",
    "VIFSplit",
    "VSISplit",
    "split_for",
]


#: The splits, by the name of the pyiqa architecture class they reproduce.
SPLITS: dict[str, type[_Split]] = {
    s.arch: s
    for s in (
        CWSSIMSplit,
        DISTSSplit,
        FSIMSplit,
        GMSDSplit,
        LPIPSSplit,
        MADSplit,
        MSSSIMSplit,
        NLPDSplit,
        PieAPPSplit,
        SSIMSplit,
        VIFSplit,
        VSISplit,
    )
}


#: The checks' verdicts in this process, by architecture class, split class, device and the
#: architecture's plain settings (see :func:`_check_key`): pyiqa's code cannot change while
#: a process runs, so each combination is checked once per process.
_VERDICTS: dict[tuple, bool] = {}


def split_for(net: Any, device: str = "cpu") -> _Split | None:
    """The split of pyiqa architecture ``net``, or None when there is none or it does not
    reproduce pyiqa's own call on a test image (a pyiqa whose formulas differ).

    The check runs once per process for each architecture, settings and device."""
    cls = SPLITS.get(type(net).__name__)
    if cls is None:
        return None
    key = _check_key(net, cls, device)
    if key not in _VERDICTS:
        _VERDICTS[key] = _reproduces(cls, net, device)
    return cls(net) if _VERDICTS[key] else None


def _check_key(net: Any, cls: type[_Split], device: str) -> tuple:
    """What decides a check's verdict: the classes (their code), the device, and the
    architecture's settings (flags such as FSIM's ``chromatic`` or LPIPS's ``spatial``, and
    lists such as VIF's subbands, choose code paths; weights do not: a split computes with
    the architecture's own layers)."""
    settings = []
    for name, value in sorted(vars(net).items()):
        plain = _setting(value)
        if plain is not _NOT_A_SETTING:
            settings.append((name, plain))
    return (type(net), cls, str(device), tuple(settings))


_NOT_A_SETTING = object()


def _setting(value: Any) -> Any:
    """``value`` as a hashable setting: numbers, strings, their lists, and a
    ``functools.partial`` (FSIM keeps its settings in one); anything else is not a setting."""

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        items = tuple(_setting(v) for v in value)
        return _NOT_A_SETTING if _NOT_A_SETTING in items else items
    if isinstance(value, functools.partial):
        keywords = tuple((k, _setting(v)) for k, v in sorted(value.keywords.items()))
        return (value.func, _setting(value.args), keywords)
    return _NOT_A_SETTING


def _reproduces(cls: type[_Split], net: Any, device: str) -> bool:
    """Whether ``cls`` computes what ``net`` computes, on :func:`_check_images`."""
    import torch

    ref, out = _check_images(device, cls.check_size)
    try:
        split = cls(net)
        with torch.no_grad():
            whole = net(out, ref.expand(len(out), -1, -1, -1)).reshape(-1).double()
            features = repeat_features([split.reference(ref)], [len(out)])
            parts = split.score(out, features).reshape(-1).double()
    except Exception:
        return False
    return parts.shape == whole.shape and bool(
        torch.allclose(parts, whole, rtol=CHECK_RTOL, atol=1e-7)
    )


def _check_images(device: str, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """A small test image, smooth with texture (the reference), and two distortions of it
    (small: the check runs when a process first builds a metric, and takes tens of
    milliseconds)."""
    import torch

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([(xx + yy) / 2, (torch.sin(8 * xx) + 1) / 2, (torch.cos(6 * yy) + 1) / 2])
    ref = (0.8 * base + 0.2 * torch.rand(3, size, size, generator=g)).unsqueeze(0)
    noisy = (ref + 0.05 * torch.randn(1, 3, size, size, generator=g)).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(ref, 3, stride=1, padding=1, count_include_pad=False)
    return ref.to(device), torch.cat([noisy, blurred]).to(device)
