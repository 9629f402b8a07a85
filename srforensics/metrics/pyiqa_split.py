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
import math
from typing import TYPE_CHECKING, Any, ClassVar

from srforensics.metrics.base import repeat_features

# torch, pyiqa, numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch

#: Largest relative difference from pyiqa's own call accepted by :func:`split_for`'s check.
#: pyiqa's VIF in float32 itself varies by up to 3e-5 between batch sizes (its batched
#: eigendecompositions); a changed formula differs by far more.
CHECK_RTOL = 1e-4


class _Split:
    """The reference's features (``reference``) and the output's score (``score``)."""

    arch: ClassVar[str]
    #: Side of the check's test image (px): large enough for the architecture.
    check_size: ClassVar[int] = 48

    def __init__(self, net: Any) -> None:
        self.net = net

    def reference(self, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise NotImplementedError

    def score(self, out: torch.Tensor, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


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


class VIFSplit(_Split):
    """VIF: the reference's steerable pyramid, its GSM parameters (covariance eigenvalues,
    multipliers), its local means and variances, and the information it carries (the
    denominator); the output's side estimates the distortion channel against them."""

    arch = "VIF"

    def _pyramid(self, img: torch.Tensor) -> list[torch.Tensor]:
        from pyiqa.archs.vif_arch import SteerablePyramidSpace
        from pyiqa.utils.color_util import to_y_channel

        net = self.net
        y = to_y_channel(img, 255)
        return SteerablePyramidSpace(y, height=net.level, order=net.ori, channels=net.channels)[
            ::-1
        ]

    def _window(self, sub: int) -> tuple[int, Any, list[int]]:
        import numpy as np

        lev = np.ceil((sub - 1) / 6)
        winsize = int(2**lev + 1)
        return winsize, np.ones((winsize, winsize)), [int(np.floor(self.net.M / 2))] * 2

    def _local(self, y, win, winsize, start, end):
        """Windowed mean and windowed sum of squares about it, as pyiqa's ``vifsub_est_M``."""
        net = self.net
        mean = net.corrDn_win(
            y, win / (winsize**2), step=net.M, channels=net.channels, start=start, end=end
        )
        ss = (
            net.corrDn_win(y**2, win, step=net.M, channels=net.channels, start=start, end=end)
            - (winsize**2) * mean**2
        )
        return mean, ss

    @staticmethod
    def _information(lam, signal, noise):
        """Sum over the covariance eigenvalues ``c`` of ``log2(1 + signal * c / noise)``, summed
        over the subband and averaged over channels: pyiqa's numerator and denominator terms
        (``signal`` is ``g * g * s`` and ``s``; the same order of operations)."""
        import torch

        total = 0
        for j in range(lam.shape[2]):
            cc = lam[:, :, j].unsqueeze(2).unsqueeze(3)
            total = total + torch.sum(torch.log2(1 + signal * cc / noise), dim=[2, 3])
        return total.mean(1)

    def _crop(self, y):
        m = self.net.M
        return y[:, :, : int(math.floor(y.shape[2] / m) * m), : int(math.floor(y.shape[3] / m) * m)]

    def _ends(self, y) -> list[int]:
        m = self.net.M
        return [int(y.shape[2] - math.ceil(m / 2)) + 1, int(y.shape[3] - math.ceil(m / 2)) + 1]

    def reference(self, ref):
        import torch
        import torch.nn.functional as F

        net = self.net
        sp = self._pyramid(ref)
        ss_arr, l_arr, _ = net.refparams_vecgsm(sp)
        subs, means, sss, ss_c, dens = [], [], [], [], []
        for i, band in enumerate(net.subbands):
            sub = band - 1
            y = self._crop(sp[sub])
            winsize, win, start = self._window(sub)
            mean, ss = self._local(y, win, winsize, start, self._ends(y))
            ss_i = self._cropped(ss_arr[i], band)
            subs.append(y)
            means.append(mean)
            sss.append(F.relu(ss))
            ss_c.append(ss_i)
            dens.append(self._information(l_arr[i], ss_i, net.sigma_nsq))
        return (*subs, *means, *sss, *ss_c, *l_arr, torch.stack(dens, dim=1).sum(1))

    def _cropped(self, t, band: int):
        import numpy as np

        lev = np.ceil((band - 1) / 6)
        offset = int(np.ceil(((2**lev + 1) - 1) / 2 / self.net.M))
        h, w = t.shape[-2:]
        return t[:, :, offset : h - offset, offset : w - offset]

    def score(self, out, features):
        import torch
        import torch.nn.functional as F

        net = self.net
        k = len(net.subbands)
        subs, means, sss = features[:k], features[k : 2 * k], features[2 * k : 3 * k]
        ss_c, lams, den = features[3 * k : 4 * k], features[4 * k : 5 * k], features[5 * k]
        sp = self._pyramid(out)
        num = []
        for i, band in enumerate(net.subbands):
            sub = band - 1
            y, mean_x, ss_x = subs[i], means[i], sss[i]
            yn = self._crop(sp[sub])
            winsize, win, start = self._window(sub)
            end = self._ends(y)
            mean_y, ss_y = self._local(yn, win, winsize, start, end)
            cov_xy = (
                net.corrDn_win(y * yn, win, step=net.M, channels=net.channels, start=start, end=end)
                - (winsize**2) * mean_x * mean_y
            )
            ss_y = F.relu(ss_y)
            g, vv = self._channel(cov_xy, ss_x, ss_y, winsize)
            g, vv = self._cropped(g, band), self._cropped(vv, band)
            ss = ss_c[i]
            num.append(self._information(lams[i], g * g * ss, vv + net.sigma_nsq))
        return torch.stack(num, dim=1).sum(1) / (den + 1e-12)

    def _channel(self, cov_xy, ss_x, ss_y, winsize: int):
        """The distortion channel's gain and noise variance, as pyiqa's ``vifsub_est_M``."""
        import torch.nn.functional as F

        tol = self.net.tol
        g = cov_xy / (ss_x + tol)
        vv = (ss_y - g * cov_xy) / (winsize**2)
        g = g.masked_fill(ss_x < tol, 0)
        small_x = (ss_x < tol).expand_as(vv)
        vv[small_x] = ss_y[small_x]
        g = g.masked_fill(ss_y < tol, 0)
        vv = vv.masked_fill(ss_y < tol, 0)
        vv[g < 0] = ss_y[g < 0]
        g = F.relu(g)
        vv = vv.masked_fill(vv < tol, tol)
        return g, vv


class LPIPSSplit(_Split):
    """LPIPS (v0.1, learned or not, spatial or averaged): the reference's unit-normalised
    backbone features. Its semantic-weighted variant is called whole."""

    arch = "LPIPS"

    def __init__(self, net: Any) -> None:
        super().__init__(net)
        if getattr(net, "semantic_weight_layer", -1) >= 0:
            raise ValueError("LPIPS with semantic weights is not split")

    def _features(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from pyiqa.archs.lpips_arch import normalize_tensor

        net = self.net
        x = 2 * img - 1  # pyiqa's default normalize=True: [0, 1] -> [-1, 1]
        x = net.scaling_layer(x) if net.version == "0.1" else x
        return tuple(normalize_tensor(f) for f in net.net.forward(x)[: net.L])

    reference = _features

    def score(self, out, features):
        from pyiqa.archs.lpips_arch import spatial_average, upsample

        net = self.net
        diffs = [(r - o) ** 2 for r, o in zip(features, self._features(out), strict=True)]
        size = out.shape[2:]
        if net.lpips:
            layers = [net.lins[k](d) for k, d in enumerate(diffs)]
        else:
            layers = [d.sum(dim=1, keepdim=True) for d in diffs]
        if net.spatial:
            res = [upsample(t, out_HW=size) for t in layers]
        else:
            res = [spatial_average(t, keepdim=True) for t in layers]
        val = 0
        for r in res:
            val += r
        return val.squeeze(-1).squeeze(-1)


class DISTSSplit(_Split):
    """DISTS (Ding et al. 2020): the reference's VGG16 features (with L2 pooling), their
    spatial means and variances, per stage."""

    arch = "DISTS"

    def reference(self, ref):
        feats = self.net.forward_once(ref)
        means = [f.mean([2, 3], keepdim=True) for f in feats]
        variances = [
            ((f - m) ** 2).mean([2, 3], keepdim=True) for f, m in zip(feats, means, strict=True)
        ]
        return (*feats, *means, *variances)

    def score(self, out, features):
        import torch

        net = self.net
        k = len(net.chns)
        feats1, means1, vars1 = features[:k], features[k : 2 * k], features[2 * k :]
        feats0 = net.forward_once(out)
        dist1, dist2, c1, c2 = 0, 0, 1e-6, 1e-6
        w_sum = net.alpha.sum() + net.beta.sum()
        alpha = torch.split(net.alpha / w_sum, net.chns, dim=1)
        beta = torch.split(net.beta / w_sum, net.chns, dim=1)
        for i in range(k):
            x_mean, y_mean = feats0[i].mean([2, 3], keepdim=True), means1[i]
            s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
            dist1 = dist1 + (alpha[i] * s1).sum(1, keepdim=True)
            x_var = ((feats0[i] - x_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (feats0[i] * feats1[i]).mean([2, 3], keepdim=True) - x_mean * y_mean
            s2 = (2 * xy_cov + c2) / (x_var + vars1[i] + c2)
            dist2 = dist2 + (beta[i] * s2).sum(1, keepdim=True)
        return (1 - (dist1 + dist2)).squeeze(-1).squeeze(-1)


class NLPDSplit(_Split):
    """NLPD (Laparra et al. 2016): the reference's normalised Laplacian pyramid."""

    arch = "NLPD"

    def _pyramid(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from pyiqa.utils.color_util import to_y_channel

        net = self.net
        if net.test_y_channel and net.channels == 1:
            img = to_y_channel(img)
        return tuple(net.pyramid(img))

    reference = _pyramid

    def score(self, out, features):
        import torch

        total = [
            torch.sqrt(torch.mean((z1 - z2) ** 2, (1, 2, 3)))
            for z1, z2 in zip(self._pyramid(out), features, strict=True)
        ]
        return torch.stack(total, dim=1).mean(1)


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


def _mad_csf(img: torch.Tensor) -> torch.Tensor:
    """pyiqa's MAD: an image filtered by the contrast sensitivity function (in ``hi_index``)."""
    import torch
    from pyiqa.archs.mad_arch import make_csf
    from pyiqa.matlab_utils import math_util

    _, c, h, w = img.shape
    csf = make_csf(h, w, 32)
    csf = torch.from_numpy(csf.reshape(1, 1, h, w, 1)).float().repeat(1, c, 1, 1, 2).to(img.device)
    x1 = math_util.batch_fftshift2d(torch.fft.fft2(img))
    return torch.fft.ifft2(math_util.batch_ifftshift2d(x1 * csf)).real


class MADSplit(_Split):
    """MAD (Larson and Chandler 2010): for its detection part, the reference's CSF-filtered
    luminance, local means, masked local contrast and contrast index; for its appearance
    part, the statistics (deviation, skewness, kurtosis) of the reference's 20 log-Gabor
    subbands."""

    arch = "MAD"
    #: pyiqa's ``hi_index`` constants.
    K, G, C_SLOPE, CI_THRESH, CD_THRESH, BSIZE, EPS = 0.02874, 0.5, 1, -5, -5, 16, 1e-12
    #: pyiqa's ``lo_index`` weights of the Gabor scales (indexed by orientation, as pyiqa).
    LO_WEIGHTS = (0.5 / 13.25, 0.75 / 13.25, 1 / 13.25, 5 / 13.25, 6 / 13.25)

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        from pyiqa.utils.color_util import to_y_channel

        if self.net.test_y_channel and img.shape[1] == 3:
            return to_y_channel(img, 255.0)
        return img * 255

    @staticmethod
    def _gabor_stats(img: torch.Tensor) -> list[torch.Tensor]:
        from pyiqa.archs.mad_arch import gaborconvolve, ical_stat
        from pyiqa.matlab_utils import math_util

        gabor = gaborconvolve(img)
        return [
            t for o in range(4) for j in range(5) for t in ical_stat(math_util.abs(gabor[o][j]))
        ]

    def reference(self, ref):
        import torch
        from pyiqa.archs.mad_arch import MAX, ical_std

        ref = self._prepare(ref)
        ref_f = _mad_csf(self.K * (ref + 1e-12) ** (2.2 / 3))
        m1_1, std_1 = ical_std(ref_f)
        _, _, h1, w1 = m1_1.shape
        std_1 = (-MAX(-std_1) / 2)[:, :, :h1, :w1]
        ci_ref = torch.log(torch.abs((std_1 + self.EPS) / (m1_1 + self.EPS)))
        return (ref, ref_f, m1_1, ci_ref, *self._gabor_stats(ref))

    def _hi(self, dst_img, ref_img, ref_f, m1_1, ci_ref) -> torch.Tensor:
        """pyiqa's ``hi_index`` (detection-based strategy), the reference's share given."""

        import torch
        import torch.nn.functional as F
        from pyiqa.archs.mad_arch import ical_std

        dst = _mad_csf(self.K * (torch.abs(dst_img) + 1e-12) ** (2.2 / 3))
        _, std_2 = ical_std(dst - ref_f)
        ci_dst = torch.log(torch.abs((std_2 + self.EPS) / (m1_1 + self.EPS)))
        ci_dst = ci_dst.masked_fill(m1_1 < self.G, -1000)
        c_slope, ci_t, cd_t = self.C_SLOPE, self.CI_THRESH, self.CD_THRESH
        idx1 = (ci_ref > ci_t) & (ci_dst > (c_slope * (ci_ref - ci_t) + cd_t))
        idx2 = (ci_ref <= ci_t) & (ci_dst > cd_t)
        msk = ci_ref.clone()
        msk = msk.masked_fill(~idx1, 0)
        msk = msk.masked_fill(~idx2, 0)
        msk[idx1] = ci_dst[idx1] - (c_slope * (ci_ref[idx1] - ci_t) + cd_t)
        msk[idx2] = ci_dst[idx2] - cd_t
        c = ref_img.shape[1]
        win = torch.ones((1, 1, self.BSIZE, self.BSIZE)).repeat(c, 1, 1, 1).to(dst.device)
        lmse = F.conv2d((ref_img - dst_img) ** 2, win / self.BSIZE**2, stride=4, groups=c)
        mp = msk * lmse
        b, c, h, w = mp.shape
        return torch.norm(mp.reshape(b, c, -1), dim=2) / math.sqrt(h * w) * 200

    def _lo(self, dst: torch.Tensor, ref_stats) -> torch.Tensor:
        """pyiqa's ``lo_index`` (appearance-based strategy), the reference's share given."""
        import numpy as np
        import torch

        dst_stats = self._gabor_stats(dst)
        mp = 0
        for band in range(20):
            std_r, skw_r, krt_r = ref_stats[3 * band : 3 * band + 3]
            std_d, skw_d, krt_d = dst_stats[3 * band : 3 * band + 3]
            mp = mp + self.LO_WEIGHTS[band // 5] * (
                torch.abs(std_r - std_d) + 2 * torch.abs(skw_r - skw_d) + torch.abs(krt_r - krt_d)
            )
        b, c, rows, cols = mp.shape
        return torch.norm(mp.reshape(b, c, -1), dim=2) / np.sqrt(rows * cols)

    def score(self, out, features):

        ref_img, ref_f, m1_1, ci_ref, *ref_stats = features
        dst = self._prepare(out)
        hi = self._hi(dst, ref_img, ref_f, m1_1, ci_ref)
        lo = self._lo(dst, ref_stats)
        thresh1, thresh2 = 2.55, 3.35
        b1 = math.exp(-thresh1 / thresh2)
        b2 = 1 / (math.log(10) * thresh2)
        sig = 1 / (1 + b1 * hi**b2)
        return (lo ** (1 - sig) * hi ** (sig)).mean(1)


class PieAPPSplit(_Split):
    """PieAPP (Prashnani et al. 2018): the reference patches' multi-scale and coarse
    features (one backbone pass per output instead of two)."""

    arch = "PieAPP"
    check_size = 118  # 64 px patches every 27 px: 3 x 3 of them

    def __init__(self, net: Any) -> None:
        super().__init__(net)
        if net.training:
            raise ValueError("PieAPP in training mode scores whole images: not split")

    def _features(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from pyiqa.archs.func_util import extract_2d_patches

        net = self.net
        patches = extract_2d_patches(
            net.preprocess(img), net.patch_size, net.stride, padding="none"
        )
        bsz, n, c, psz, _ = patches.shape
        multi_scale, coarse = net.compute_features(patches.reshape(bsz * n, c, psz, psz))
        return multi_scale.reshape(bsz, n, -1), coarse.reshape(bsz, n, -1)

    reference = _features

    def score(self, out, features):
        import torch.nn.functional as F

        net = self.net
        a_multi_scale, a_coarse = self._features(out)
        ref_multi_scale, ref_coarse = features
        bsz, n = a_multi_scale.shape[:2]
        diff_ms = (ref_multi_scale - a_multi_scale).reshape(bsz * n, -1)
        diff_coarse = (ref_coarse - a_coarse).reshape(bsz * n, -1)
        per_patch_score = net.ref_score_subtract(
            0.01 * net.fc2_score(F.relu(net.fc1_score(diff_ms)))
        ).view((-1, n))
        per_patch_weight = (net.fc2_weight(F.relu(net.fc1_weight(diff_coarse))) + 1e-6).view(
            (-1, n)
        )
        score = (per_patch_weight * per_patch_score).sum(dim=-1) / per_patch_weight.sum(dim=-1)
        return score.reshape(bsz, 1)


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
