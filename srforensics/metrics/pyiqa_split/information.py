"""Splits of the information and perceptual-model metrics: VIF, NLPD, MAD."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from srforensics.metrics.pyiqa_split.base import _Split

# torch, pyiqa, numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch


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
