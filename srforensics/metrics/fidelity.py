"""PSNR and SSIM in the SR convention, and LR consistency: the metrics.

Convention (BasicSR / EDSR / RCAN evaluation): images on the 8-bit scale
(rounded, as BasicSR ``tensor2img``), Y channel of BT.601 as MATLAB
``rgb2ycbcr`` (range [16, 235]), ``crop_border`` pixels removed from each side
(default: the scale), computed in float64. SSIM: Wang et al. 2004, 11x11
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, valid region only
(equal to scikit-image ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)``). The ``_rgb``
variants use the three RGB channels instead of Y.

The arithmetic is in :mod:`srforensics.metrics.fidelity_ops`, imported by the methods
that compute: this module imports no torch, so ``srforensics metrics list`` describes
these metrics in a fraction of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from srforensics.metrics.base import Metric

if TYPE_CHECKING:
    import torch

#: NTIRE "Learning the SR space": an output is consistent with the LR at or above this LR-PSNR.
CONSISTENCY_DB = 45.0


class _Fidelity(Metric):
    """Compares the 8-bit, cropped output with the reference prepared once (its features)."""

    y_channel: ClassVar[bool] = True
    requires_reference = True
    loader_features = True  # arithmetic on the reference alone

    def __call__(self, out, ref=None, *, lr=None):
        return self.score_reference(out, ref, lr=lr)

    def _eight_bit(self, x: torch.Tensor) -> torch.Tensor:
        from srforensics.metrics.fidelity_ops import crop, to_8bit_scale

        return crop(to_8bit_scale(x, y_channel=self.y_channel), self.config.border)

    def reference_features(self, ref):
        return (self._eight_bit(ref),)

    def _output(self, out: torch.Tensor, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        a = self._eight_bit(out)
        if a.shape[1:] != features[0].shape[1:]:
            raise ValueError(
                f"{self.name}: output {tuple(out.shape)[1:]}, cropped to {tuple(a.shape)[1:]}, "
                f"and the reference, cropped to {tuple(features[0].shape)[1:]}, differ"
            )
        return a


class PSNRY(_Fidelity):
    name = "psnr"
    unit = "dB"
    score_range = (0.0, float("inf"))
    description = "PSNR on Y (BT.601, MATLAB rgb2ycbcr), crop_border = scale; the SR convention"

    def score_features(self, out, features, *, lr=None):
        from srforensics.metrics.fidelity_ops import psnr

        return psnr(self._output(out, features), features[0])


class PSNRRGB(PSNRY):
    name = "psnr_rgb"
    y_channel = False
    description = "PSNR on RGB, crop_border = scale"


class SSIMY(_Fidelity):
    name = "ssim"
    score_range = (-1.0, 1.0)
    description = (
        "SSIM on Y (BT.601), Gaussian 11x11 sigma 1.5, crop_border = scale; the SR convention"
    )

    def reference_features(self, ref):
        from srforensics.metrics.fidelity_ops import ssim_reference

        return ssim_reference(self._eight_bit(ref))

    def score_features(self, out, features, *, lr=None):
        from srforensics.metrics.fidelity_ops import ssim_features

        return ssim_features(self._output(out, features), features)


class SSIMRGB(SSIMY):
    name = "ssim_rgb"
    y_channel = False
    description = "SSIM on RGB (mean over channels), crop_border = scale"


class LRPSNR(Metric):
    """Consistency with the evidence: the output, downscaled again, against the LR input."""

    name = "lr_psnr"
    unit = "dB"
    requires_reference = False
    requires_lr = True
    score_range = (0.0, float("inf"))
    description = (
        "PSNR (RGB) between the output downscaled with MATLAB bicubic and the LR input; "
        ">= 45 dB is consistent (NTIRE Learning the SR space)"
    )

    def __call__(self, out, ref=None, *, lr=None):
        if lr is None:
            raise ValueError("lr_psnr needs the LR input")
        from srforensics.metrics.fidelity_ops import downscale_8bit, psnr, to_8bit_scale

        down = downscale_8bit(out, tuple(lr.shape[-2:]))
        return psnr(down, to_8bit_scale(lr, y_channel=False))


class LRPSNRHR(Metric):
    """The NTIRE variant: the output and the HR, both downscaled, compared."""

    name = "lr_psnr_hr"
    unit = "dB"
    requires_reference = True
    loader_features = True  # the reference downscaled
    score_range = (0.0, float("inf"))
    description = (
        "PSNR (RGB) between the output and the HR, both downscaled with MATLAB bicubic "
        "(NTIRE Learning the SR space, LR-PSNR against the downscaled ground truth)"
    )

    def __call__(self, out, ref=None, *, lr=None):
        return self.score_reference(out, ref, lr=lr)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        from srforensics.metrics.fidelity_ops import downscale_8bit

        h, w = x.shape[-2] // self.config.scale, x.shape[-1] // self.config.scale
        return downscale_8bit(x, (h, w))

    def reference_features(self, ref):
        return (self._down(ref),)

    def score_features(self, out, features, *, lr=None):
        from srforensics.metrics.fidelity_ops import psnr

        down = self._down(out)
        if down.shape[1:] != features[0].shape[1:]:
            raise ValueError(
                f"{self.name}: output {tuple(out.shape)[1:]} does not downscale to the "
                f"reference's {tuple(features[0].shape)[1:]}"
            )
        return psnr(down, features[0])
