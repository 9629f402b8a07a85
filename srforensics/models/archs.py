"""SR architectures whose state-dict keys match the public releases.

- ``RRDBNet``: ESRGAN / Real-ESRGAN generator: spandrel's, which loads BasicSR's key layout
  (``conv_first``, ``body.N.rdbK.convM``, ...), ESRGAN's original names (``RRDB_trunk``,
  ...) and its own. Scale 2 and 1 use pixel-unshuffle, as Real-ESRGAN.

The others are written here because spandrel has no architecture for them: MSRResNet
(SRGAN's generator), EDSR, IMDN and SRCNN.
- ``MSRResNet``: SRResNet without BN (BasicSR).
- ``EDSR``: BasicSR layout (``conv_first``, ``body``, ``conv_after_body``, ``upsample``).
- ``IMDN``: Hui et al. 2019, the official repository's layout (``fea_conv``,
  ``IMDB1..6``, ``c``, ``LR_conv``, ``upsampler``).

All take and return RGB in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from spandrel.architectures.ESRGAN import ESRGAN
from torch import nn

from srforensics.resize import imresize_tensor

# spandrel: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def _sequential(block, n: int, **kw) -> nn.Sequential:
    return nn.Sequential(*[block(**kw) for _ in range(n)])


# -- RRDBNet ------------------------------------------------------------------------------
class RRDBNet(ESRGAN):
    """ESRGAN / Real-ESRGAN's generator: spandrel's ESRGAN network, built from BasicSR's
    arguments.

    Scale 2 and 1 pixel-unshuffle the input by 2 and 4 first, as Real-ESRGAN does (the
    network always upsamples x4). spandrel's RRDB blocks grow by 32 channels, the value of
    every published ESRGAN and Real-ESRGAN file. :meth:`convert_keys` takes a state dict in
    BasicSR's layout, ESRGAN's original one or spandrel's, through spandrel's own detection.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scales 1, 2 and 4, not {scale}")
        if num_grow_ch != 32:
            raise ValueError(
                f"RRDBNet (spandrel's ESRGAN) grows by 32 channels, the published value; got {num_grow_ch}"
            )
        shuffle = {1: 4, 2: 2, 4: None}[scale]
        super().__init__(
            in_nc=num_in_ch * (shuffle or 1) ** 2,
            out_nc=num_out_ch,
            num_filters=num_feat,
            num_blocks=num_block,
            scale=4,
            shuffle_factor=shuffle,
        )

    @staticmethod
    def convert_keys(state: dict) -> dict:
        """``state`` in the layout of this network (spandrel's), converted by spandrel."""
        from spandrel.architectures.ESRGAN import ESRGANArch

        try:
            return dict(ESRGANArch().load(dict(state)).model.state_dict())
        except (KeyError, ValueError, RuntimeError):
            return dict(state)  # not an ESRGAN state dict: load_into names what does not fit


# -- MSRResNet and EDSR -------------------------------------------------------------------
class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class MSRResNet(nn.Module):
    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
    ) -> None:
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f"MSRResNet supports scales 2, 3 and 4, not {upscale}")
        self.upscale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = _sequential(ResidualBlockNoBN, num_block, num_feat=num_feat)
        if upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(
            x, scale_factor=self.upscale, mode="bilinear", align_corners=False
        )


class SRCNN(nn.Module):
    """SRCNN (Dong, Loy, He, Tang, ECCV 2014 / TPAMI 2016), the 9-5-5 network: three
    convolutions (64 filters 9×9, 32 filters 5×5, ``num_out_ch`` 5×5, ReLU between) applied
    to the LR upscaled by MATLAB bicubic, as the paper's input is. ``num_in_ch`` 3 is the
    RGB variant; the paper's Y-only model is ``num_in_ch=num_out_ch=1``, not run here."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 4,
        f1: int = 9,
        f2: int = 5,
        f3: int = 5,
        n1: int = 64,
        n2: int = 32,
    ) -> None:
        super().__init__()
        self.upscale = upscale
        self.conv1 = nn.Conv2d(num_in_ch, n1, f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, num_out_ch, f3, padding=f3 // 2)

    def forward(self, x):

        up = imresize_tensor(x, self.upscale)
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(up)))))


class Upsample(nn.Sequential):
    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
        res_scale: float = 1.0,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040),
    ) -> None:
        super().__init__()
        self.img_range = img_range
        self.mean = torch.tensor(rgb_mean).view(1, 3, 1, 1)  # not a buffer: not in the state dict
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = _sequential(
            ResidualBlockNoBN, num_block, num_feat=num_feat, res_scale=res_scale
        )
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        mean = self.mean.to(x)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / self.img_range + mean


# -- IMDN ----------------------------------------------------------------------------------
def _conv(in_ch: int, out_ch: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, k, padding=(k - 1) // 2, bias=True)


def _stdv_channels(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)


class CCALayer(nn.Module):
    """Contrast-aware channel attention."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.conv_du(_stdv_channels(x) + x.mean(dim=(2, 3), keepdim=True))


class IMDModule(nn.Module):
    def __init__(self, in_channels: int, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(in_channels * distillation_rate)
        self.remaining = in_channels - self.distilled
        self.c1 = _conv(in_channels, in_channels, 3)
        self.c2 = _conv(self.remaining, in_channels, 3)
        self.c3 = _conv(self.remaining, in_channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(0.05, inplace=True)
        self.c5 = _conv(self.distilled * 4, in_channels, 1)
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x):
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        out = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        return self.c5(self.cca(out)) + x


class IMDN(nn.Module):
    def __init__(
        self, in_nc: int = 3, nf: int = 64, num_modules: int = 6, out_nc: int = 3, upscale: int = 4
    ) -> None:
        super().__init__()
        self.fea_conv = _conv(in_nc, nf, 3)
        self.num_modules = num_modules
        for i in range(1, num_modules + 1):
            setattr(self, f"IMDB{i}", IMDModule(nf))
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(0.05, inplace=True))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(
            _conv(nf, out_nc * upscale * upscale, 3), nn.PixelShuffle(upscale)
        )

    def forward(self, x):
        fea = self.fea_conv(x)
        outs, out = [], fea
        for i in range(1, self.num_modules + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outs.append(out)
        lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(lr)
