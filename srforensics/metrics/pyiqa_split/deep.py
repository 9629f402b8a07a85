"""Splits of the learned metrics: LPIPS, DISTS, PieAPP (the reference's deep features once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srforensics.metrics.pyiqa_split.base import _Split

# torch, pyiqa, numpy: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import torch


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
