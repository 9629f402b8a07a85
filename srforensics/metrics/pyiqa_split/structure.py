"""Splits of the structural and gradient metrics: SSIM, MS-SSIM, CW-SSIM, FSIM, GMSD, VSI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srforensics.metrics.pyiqa_split.base import _Split

# torch, pyiqa, numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch


def _ssim_prepare(net: Any, img: torch.Tensor) -> torch.Tensor:
    """pyiqa's SSIM/MS-SSIM input: Y (or RGB) at 255, rounded as MATLAB, in float64."""
    import torch
    from pyiqa.archs.func_util import preprocess_rgb

    return preprocess_rgb(img, net.test_y_channel, net.data_range, net.color_space).to(
        torch.float64
    )


def _ssim_reference(y: torch.Tensor, *, downsample: bool) -> tuple[torch.Tensor, ...]:
    """The reference's share of pyiqa's ``ssim_arch.ssim`` (11x11 Gaussian, sigma 1.5,
    'valid'): the image (averaged down as pyiqa does with ``downsample``), its local mean,
    squared mean and variance."""
    import torch.nn.functional as F
    from pyiqa.matlab_utils import filter2, fspecial

    win = fspecial(11, 1.5, y.shape[1]).to(y)
    f = max(1, round(min(y.size()[-2:]) / 256))
    if f > 1 and downsample:
        y = F.avg_pool2d(y, kernel_size=f)
    mu2 = filter2(y, win, "valid")
    mu2_sq = mu2.pow(2)
    sigma2_sq = filter2(y * y, win, "valid") - mu2_sq
    return y, mu2, mu2_sq, sigma2_sq


def _ssim_score(
    x: torch.Tensor, features: tuple[torch.Tensor, ...], *, downsample: bool, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """pyiqa's ``ssim_arch.ssim(..., get_cs=True)`` against :func:`_ssim_reference`'s
    features: (SSIM, contrast-structure), in pyiqa's order of operations."""
    import torch.nn.functional as F
    from pyiqa.matlab_utils import filter2, fspecial

    y, mu2, mu2_sq, sigma2_sq = features
    win = fspecial(11, 1.5, x.shape[1]).to(x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = max(1, round(min(x.size()[-2:]) / 256))
    if f > 1 and downsample:
        x = F.avg_pool2d(x, kernel_size=f)
    mu1 = filter2(x, win, "valid")
    mu1_sq = mu1.pow(2)
    mu1_mu2 = mu1 * mu2
    sigma1_sq = filter2(x * x, win, "valid") - mu1_sq
    sigma12 = filter2(x * y, win, "valid") - mu1_mu2
    cs_map = F.relu((2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2))
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.mean([1, 2, 3]), cs_map.mean([1, 2, 3])


class SSIMSplit(_Split):
    """pyiqa's SSIM (``pyiqa:ssim``; Wang et al. 2004, on MATLAB-rounded Y): the
    reference's local mean and variance."""

    arch = "SSIM"

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        cb = self.net.crop_border
        return img[..., cb:-cb, cb:-cb] if cb != 0 else img

    def reference(self, ref):
        y = _ssim_prepare(self.net, self._crop(ref))
        return _ssim_reference(y, downsample=self.net.downsample)

    def score(self, out, features):
        net = self.net
        x = _ssim_prepare(net, self._crop(out))
        return _ssim_score(x, features, downsample=net.downsample, data_range=net.data_range)[0]


class MSSSIMSplit(_Split):
    """pyiqa's MS-SSIM (Wang, Simoncelli and Bovik 2003; five scales, halved by 2x2
    averages): the reference's image, local mean and variance at each scale."""

    arch = "MS_SSIM"
    check_size = 192  # five scales of an 11 px window: at least 176 px
    #: The scales' exponents (the paper's, as pyiqa).
    WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

    @staticmethod
    def _halve(t: torch.Tensor) -> torch.Tensor:
        """The next scale: 2x2 averages, an odd side padded (as pyiqa)."""
        import torch.nn.functional as F

        return F.avg_pool2d(t, kernel_size=2, padding=(t.shape[2] % 2, t.shape[3] % 2))

    def reference(self, ref):
        y = _ssim_prepare(self.net, ref)
        features: list[torch.Tensor] = []
        for _ in self.WEIGHTS:
            features.extend(_ssim_reference(y, downsample=self.net.downsample))
            y = self._halve(y)
        return tuple(features)

    def score(self, out, features):
        import torch

        net = self.net
        x = _ssim_prepare(net, out)
        weights = torch.FloatTensor(list(self.WEIGHTS)).to(x)
        per_scale = len(features) // len(self.WEIGHTS)  # _ssim_reference's tensors
        mcs = []
        for level in range(len(self.WEIGHTS)):
            ssim_val, cs = _ssim_score(
                x,
                features[per_scale * level : per_scale * (level + 1)],
                downsample=net.downsample,
                data_range=net.data_range,
            )
            mcs.append(cs)
            x = self._halve(x)
        mcs = torch.stack(mcs, dim=0)
        if net.is_prod:
            return torch.prod(mcs[:-1] ** weights[:-1].unsqueeze(1), dim=0) * (
                ssim_val ** weights[-1]
            )
        weights = weights / torch.sum(weights)
        return torch.sum(mcs[:-1] * weights[:-1].unsqueeze(1), dim=0) + ssim_val * weights[-1]


class CWSSIMSplit(_Split):
    """CW-SSIM (Sampat et al. 2009): the reference's complex steerable pyramid bands at the
    coarsest level used, and their power."""

    arch = "CW_SSIM"
    check_size = 64  # four levels of pyiqa's pyramid

    def _bands(self, img: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
        """The bands of the level pyiqa compares (its guard band cut off), and their size
        before the cut (pyiqa's weighting window is made from it)."""
        import numpy as np
        import torch
        from pyiqa.matlab_utils import SCFpyr_PyTorch
        from pyiqa.utils.color_util import to_y_channel

        net = self.net
        x = img.to(torch.float64)
        if net.test_y_channel and x.shape[1] == 3:
            x = to_y_channel(x, 255, net.color_space)
        pyr = SCFpyr_PyTorch(height=net.level, nbands=net.ori, scale_factor=2, device=x.device)
        level = pyr.build(x)[net.level]
        s = np.array(level[0].size()[1:3])
        gb = int(net.guardb / (2 ** (net.level - 1)))
        return [b[:, gb : s[0] - gb, gb : s[1] - gb, :] for b in level[: net.ori]], s

    def reference(self, ref):
        from pyiqa.matlab_utils import math_util

        bands, _ = self._bands(ref)
        return (*bands, *(math_util.abs(b) ** 2 for b in bands))

    def score(self, out, features):
        import torch
        import torch.nn.functional as F
        from pyiqa.matlab_utils import fspecial, math_util

        net = self.net
        bands1, s = self._bands(out)
        bands2, powers2 = features[: net.ori], features[net.ori :]
        w = fspecial(s - 7 + 1, s[0] / 4, 1).to(out.device)
        win7 = net.win7.to(torch.float64)  # pyiqa: its window in the images' float64
        band_cssim = []
        for band1, band2, power2 in zip(bands1, bands2, powers2, strict=True):
            corr_band = net.conv2d_complex(net.conj(band1, band2), win7, groups=net.channels)
            varr = (math_util.abs(band1) ** 2 + power2).unsqueeze(1)
            varr_band = F.conv2d(varr, win7, stride=1, padding=0, groups=net.channels)
            cssim_map = (2 * math_util.abs(corr_band) + net.K) / (varr_band + net.K)
            band_cssim.append(
                (cssim_map * w.repeat(cssim_map.shape[0], 1, 1, 1)).sum([2, 3]).mean(1)
            )
        return torch.stack(band_cssim, dim=1).mean(1)


class FSIMSplit(_Split):
    """FSIM(c): phase congruency, gradient magnitude and the I/Q chroma of the reference."""

    arch = "FSIM"

    def __init__(self, net: Any) -> None:
        super().__init__(net)
        kw = dict(net.fsim.keywords)  # pyiqa keeps its settings in a functools.partial
        self.chromatic = bool(kw.pop("chromatic"))
        self.pc_kw = kw

    def _features(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch
        import torch.nn.functional as F
        from pyiqa.archs.fsim_arch import _phase_congruency
        from pyiqa.archs.func_util import gradient_map
        from pyiqa.utils.color_util import rgb2yiq

        if img.shape[1] != 3:
            raise ValueError(f"FSIM needs RGB images, got {img.shape[1]} channel(s)")
        x = img / 1.0 * 255  # as pyiqa: the same rounding
        x = F.avg_pool2d(x, max(1, round(min(x.shape[-2:]) / 256)))
        yiq = rgb2yiq(x)
        lum = yiq[:, :1]
        pc = _phase_congruency(lum, **self.pc_kw)
        scharr = torch.tensor([[[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]]]) / 16
        grad = gradient_map(lum, torch.stack([scharr, scharr.transpose(-1, -2)]))
        return pc, grad, yiq[:, 1:2], yiq[:, 2:]

    reference = _features

    def score(self, out, features):
        import torch
        from pyiqa.archs.func_util import similarity_map

        pc_x, grad_x, i_x, q_x = self._features(out)
        pc_y, grad_y, i_y, q_y = features
        t1, t2, t3, t4, lmbda = 0.85, 160, 200, 200, 0.03  # the paper's constants, as pyiqa
        pc = similarity_map(pc_x, pc_y, t1)
        gm = similarity_map(grad_x, grad_y, t2)
        pc_max = torch.where(pc_x > pc_y, pc_x, pc_y)
        s = gm * pc * pc_max
        if self.chromatic:
            s = s * torch.abs(similarity_map(i_x, i_y, t3) * similarity_map(q_x, q_y, t4)) ** lmbda
        return s.sum(dim=[1, 2, 3]) / pc_max.sum(dim=[1, 2, 3])


class GMSDSplit(_Split):
    """GMSD: the reference's gradient magnitude on its 2x2-averaged (Y) image."""

    arch = "GMSD"

    def _gradient(self, img: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F
        from pyiqa.utils.color_util import to_y_channel

        channels = self.net.channels
        if self.net.test_y_channel:
            x, channels = to_y_channel(img, 255), 1
        else:
            x = img * 255.0
        dx = (torch.Tensor([[1, 0, -1], [1, 0, -1], [1, 0, -1]]) / 3.0).unsqueeze(0).unsqueeze(0)
        dy = (torch.Tensor([[1, 1, 1], [0, 0, 0], [-1, -1, -1]]) / 3.0).unsqueeze(0).unsqueeze(0)
        dx, dy = dx.repeat(channels, 1, 1, 1).to(x), dy.repeat(channels, 1, 1, 1).to(x)
        ave = torch.ones(channels, 1, 2, 2).to(x) / 4.0
        y = F.conv2d(x, ave, stride=2, padding=0, groups=channels)
        ix = F.conv2d(y, dx, stride=1, padding=1, groups=channels)
        iy = F.conv2d(y, dy, stride=1, padding=1, groups=channels)
        return torch.sqrt(ix**2 + iy**2 + 1e-12)

    def reference(self, ref):
        return (self._gradient(ref),)

    def score(self, out, features):
        import torch

        g1, (g2,) = self._gradient(out), features
        t = 170  # pyiqa's default stability constant
        quality = (2 * g1 * g2 + t) / (g1**2 + g2**2 + t)
        return torch.std(quality.view(quality.shape[0], -1), dim=1)


class VSISplit(_Split):
    """VSI (Zhang, Shen and Li 2014): the reference's visual saliency map (SDSP), its LMN
    colour channels and its gradient magnitude."""

    arch = "VSI"

    def __init__(self, net: Any) -> None:
        super().__init__(net)
        self.kw = dict(net.vsi.keywords)  # pyiqa keeps its settings in a functools.partial

    def _side(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch
        from pyiqa.archs.func_util import gradient_map, scharr_filter
        from pyiqa.archs.vsi_arch import sdsp
        from pyiqa.utils.color_util import rgb2lmn
        from torch.nn.functional import avg_pool2d, pad

        kw = self.kw
        x = img.double()
        if x.size(1) == 1:  # pyiqa: a grey image as RGB
            x = x.repeat(1, 3, 1, 1)
        x = x * 255.0 / kw["data_range"]
        saliency = {k: kw[k] for k in ("omega_0", "sigma_f", "sigma_d", "sigma_c")}
        vs = sdsp(x, data_range=255, **saliency)
        lmn = rgb2lmn(x)
        kernel_size = max(1, round(min(vs.size()[-2:]) / 256))
        padding = kernel_size // 2
        if padding:
            pad_to_use = [padding, (kernel_size - 1) // 2, padding, (kernel_size - 1) // 2]
            vs = pad(vs, pad=pad_to_use, mode="replicate")
            lmn = pad(lmn, pad=pad_to_use, mode="replicate")
        vs = avg_pool2d(vs, kernel_size=kernel_size)
        lmn = avg_pool2d(lmn, kernel_size=kernel_size)
        kernels = torch.stack([scharr_filter(), scharr_filter().transpose(1, 2)]).to(lmn)
        return vs, lmn, gradient_map(lmn[:, :1], kernels)

    reference = _side

    def score(self, out, features):
        import torch
        from pyiqa.archs.func_util import similarity_map

        kw = self.kw
        (vs_x, x_lmn, gm_x), (vs_y, y_lmn, gm_y) = self._side(out), features
        s_vs = similarity_map(vs_x, vs_y, kw["c1"])
        s_gm = similarity_map(gm_x, gm_y, kw["c2"])
        s_m = similarity_map(x_lmn[:, 1:2], y_lmn[:, 1:2], kw["c3"])
        s_n = similarity_map(x_lmn[:, 2:], y_lmn[:, 2:], kw["c3"])
        s_c = s_m * s_n
        s_c_complex = [s_c.abs(), torch.atan2(torch.zeros_like(s_c), s_c)]
        s_c_complex_pow = [s_c_complex[0] ** kw["beta"], s_c_complex[1] * kw["beta"]]
        s_c_real_pow = s_c_complex_pow[0] * torch.cos(s_c_complex_pow[1])
        s = s_vs * s_gm.pow(kw["alpha"]) * s_c_real_pow
        vs_max = torch.max(vs_x, vs_y)
        eps = torch.finfo(vs_max.dtype).eps
        output = s * vs_max
        return ((output.sum(dim=(-1, -2)) + eps) / (vs_max.sum(dim=(-1, -2)) + eps)).squeeze(-1)
