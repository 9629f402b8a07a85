"""Models used by the tests as third-party plug-ins (named as module:Class)."""

from __future__ import annotations

import gc
import os

import torch

from srforensics.faces.embed import EmbedderCard, FaceEmbedder
from srforensics.metrics.base import Metric
from srforensics.models import SRModel
from srforensics.models.interpolation import Bicubic


class CountingBicubic(Bicubic):
    """Bicubic that appends one line per call to $SRF_CALL_LOG and can die after $SRF_DIE_AFTER calls."""

    name = "counting-bicubic"

    def sample(self, lr, *, scale, n, seeds, context=None):
        log = os.environ.get("SRF_CALL_LOG")
        calls = 0
        if log:
            with open(log, "a") as fh:
                fh.write(" ".join(f"{c['record_id']}:{c['variant']}" for c in context) + "\n")
            with open(log) as fh:
                calls = sum(1 for _ in fh)
        die_after = int(os.environ.get("SRF_DIE_AFTER", "0"))
        if die_after and calls > die_after:
            os._exit(9)  # a hard stop, as kill -9: no cleanup, no exception handlers
        return super().sample(lr, scale=scale, n=n, seeds=seeds, context=context)


class NoisyModel(SRModel):
    """A stochastic toy model: bicubic plus seeded noise; NaN output for seeds divisible by 7 if asked."""

    name = "noisy"
    stochastic = True

    def __init__(self, *, device: str = "cpu", amplitude: float = 0.05, nan_every: int = 0) -> None:
        super().__init__(device=device)
        self.amplitude = amplitude
        self.nan_every = nan_every

    def sample(self, lr, *, scale, n, seeds, context=None):
        base = Bicubic().upscale(lr, scale=scale)
        rows = []
        for b, row in enumerate(seeds):
            outs = []
            for s in row:
                g = torch.Generator().manual_seed(int(s))
                noise = torch.randn(base.shape[1:], generator=g) * self.amplitude
                out = (base[b] + noise).clamp(0, 1)
                if self.nan_every and int(s) % self.nan_every == 0:
                    out = out * float("nan")
                outs.append(out)
            rows.append(torch.stack(outs))
        return torch.stack(rows)


class Crashing(SRModel):
    """Raises on every call."""

    name = "crashing"

    def upscale(self, lr, *, scale):
        raise RuntimeError("weights exploded")


class NotAModel:
    pass


class Faulty(Bicubic):
    """Raises for one record and returns NaN for another (named by --model-arg), bicubic otherwise."""

    name = "faulty"

    def __init__(
        self, *, device="cpu", dtype="float32", raise_on="", nan_on="", overshoot_on="",
        shape_on="", few_on="",
    ):  # fmt: skip
        super().__init__(device=device, dtype=dtype)
        self.raise_on, self.nan_on, self.overshoot_on = raise_on, nan_on, overshoot_on
        self.shape_on, self.few_on = shape_on, few_on

    def sample(self, lr, *, scale, n, seeds, context=None):
        ids = [c["record_id"] for c in context]
        if self.raise_on in ids:
            raise RuntimeError(f"cannot handle {self.raise_on}")
        out = super().sample(lr, scale=scale, n=n, seeds=seeds, context=context).clone()
        if self.shape_on in ids:  # the whole call's tensor: one LR per call to make it one record's
            return out[..., :-1]
        if self.few_on in ids:
            return out[:, : n - 1]
        for b, rid in enumerate(ids):
            if rid == self.nan_on:
                out[b] = float("nan")
            if rid == self.overshoot_on:
                out[b] = out[b] * 3.0 - 1.0
        return out


class Blocky(SRModel):
    """Not flip-equivariant: nearest upscaling of the LR shifted one pixel right."""

    name = "blocky"

    def upscale(self, lr, *, scale):
        shifted = torch.roll(lr, shifts=1, dims=-1)
        return torch.nn.functional.interpolate(shifted, scale_factor=scale, mode="nearest")


class GroupBiased(Bicubic):
    """Bicubic, plus heavy seeded noise for LRs whose record has attribute group == "b"."""

    name = "group-biased"

    def sample(self, lr, *, scale, n, seeds, context=None):
        out = super().sample(lr, scale=scale, n=n, seeds=seeds, context=context).clone()
        for b, ctx in enumerate(context):
            if ctx["attributes"].get("group") == "b":
                g = torch.Generator().manual_seed(int(seeds[b][0]))
                out[b] = (out[b] + torch.randn(out[b].shape, generator=g) * 0.2).clamp(0, 1)
        return out


class ColourEmbedder(FaceEmbedder):
    """A face 'embedder' for tests: the normalised mean colour of each quadrant (no weights)."""

    name = "colour"

    def __init__(self, *, weights_file=None, device="cpu"):
        self.device = device

    def embed(self, faces):
        h, w = faces.shape[-2:]
        quads = [
            faces[..., : h // 2, : w // 2],
            faces[..., : h // 2, w // 2 :],
            faces[..., h // 2 :, : w // 2],
            faces[..., h // 2 :, w // 2 :],
        ]
        v = torch.cat([q.mean(dim=(-2, -1)) for q in quads], dim=1).double() - 0.5
        return torch.nn.functional.normalize(v, dim=1)

    def card(self):
        return EmbedderCard("colour", None, None, "none", "test", "tests")


class LoudNoise(NoisyModel):
    """Bicubic plus very strong seeded noise: outputs that disagree with each other."""

    name = "loud-noise"

    def __init__(self, *, device="cpu", dtype="float32"):
        super().__init__(device=device, amplitude=0.35)


class BatchSensitive(NoisyModel):
    """Seeded noise plus a shift that depends on the whole batch, as a batched network's rounding
    can: an output is reproduced only by running its LR with the same batch-mates."""

    name = "batch-sensitive"

    def sample(self, lr, *, scale, n, seeds, context=None):
        out = super().sample(lr, scale=scale, n=n, seeds=seeds, context=context)
        return (out + 4.0 / 255.0 * float(lr.mean()) * len(seeds)).clamp(0, 1)


class SlowNoisy(NoisyModel):
    """NoisyModel that sleeps $SRF_SLEEP seconds per call (default 0.1): a run long enough to be
    interrupted at chosen moments; a call sleeping past --model-timeout is cut short."""

    name = "slow-noisy"

    def sample(self, lr, *, scale, n, seeds, context=None):
        import time

        time.sleep(float(os.environ.get("SRF_SLEEP", "0.1")))
        return super().sample(lr, scale=scale, n=n, seeds=seeds, context=context)


class BrightRefFails(Metric):
    """Mean absolute error; raises when any reference in the call is brighter than 0.5 on
    average (of the tiny dataset, the astronaut crop: 0.53). Records each call's batch size."""

    name = "bright-ref-fails"
    higher_is_better = False
    calls: list[int] = []

    def __call__(self, out, ref=None, *, lr=None):
        type(self).calls.append(len(out))
        if (ref.mean(dim=(1, 2, 3)) > 0.5).any():
            raise ValueError("a reference is too bright")
        return (out - ref).abs().mean(dim=(1, 2, 3)).double()


class OneValue(Metric):
    """A faulty metric: one value for a whole batch."""

    name = "one-value"

    def __call__(self, out, ref=None, *, lr=None):
        return (out - ref).abs().mean().double()


class CountedReference(Metric):
    """Mean absolute error scored against reference features; records the SHA-256 of each
    reference it computes features of, and refuses a reference brighter than 0.5 on average
    (of the tiny dataset, the astronaut crop: 0.53) while computing them."""

    name = "counted-reference"
    higher_is_better = False
    references: list[str] = []

    def __call__(self, out, ref=None, *, lr=None):
        return self.score_reference(out, ref, lr=lr)

    def reference_features(self, ref):
        import hashlib

        for r in ref:
            type(self).references.append(hashlib.sha256(r.cpu().numpy().tobytes()).hexdigest())
        if (ref.mean(dim=(1, 2, 3)) > 0.5).any():
            raise ValueError("a reference is too bright")
        return (ref.clone(),)

    def score_features(self, out, features, *, lr=None):
        return (out - features[0]).abs().mean(dim=(1, 2, 3)).double()


class WhereFeatures(Metric):
    """Mean absolute error against reference features a loader process may compute
    (``loader_features``); the features carry the id of the process that computed them, and
    scoring records it (in ``seen``, in the process that scores)."""

    name = "where-features"
    higher_is_better = False
    loader_features = True
    seen: list[int] = []

    def __call__(self, out, ref=None, *, lr=None):
        return self.score_reference(out, ref, lr=lr)

    def reference_features(self, ref):
        return (ref.clone(), torch.full((len(ref),), os.getpid(), dtype=torch.int64))

    def score_features(self, out, features, *, lr=None):
        type(self).seen.extend(features[1].tolist())
        return (out - features[0]).abs().mean(dim=(1, 2, 3)).double()


class ThreadsAtLoad(Bicubic):
    """Bicubic that records torch's thread count when it is loaded (in ``loads``)."""

    name = "threads-at-load"
    loads: list[int] = []

    def __init__(self, **kw):
        super().__init__(**kw)
        ThreadsAtLoad.loads.append(torch.get_num_threads())


class Sleepy(Metric):
    """Mean absolute error that sleeps 0.05 s per call (a metric's time, measurable)."""

    name = "sleepy"
    higher_is_better = False

    def __call__(self, out, ref=None, *, lr=None):
        import time

        time.sleep(0.05)
        return (out - ref).abs().mean(dim=(1, 2, 3)).double()


class CollectorWatcher(Bicubic):
    """Bicubic that records, when loaded and at each call, whether automatic garbage
    collection is on and how many objects the collector has frozen (in ``seen``)."""

    name = "collector-watcher"
    seen: list[tuple[str, bool, int]] = []

    def __init__(self, **kw):
        super().__init__(**kw)
        CollectorWatcher.seen.append(("load", gc.isenabled(), gc.get_freeze_count()))

    def upscale(self, lr, *, scale):
        CollectorWatcher.seen.append(("call", gc.isenabled(), gc.get_freeze_count()))
        return super().upscale(lr, scale=scale)


class IgnoresSeeds(SRModel):
    """A stochastic model that draws its noise from torch's global random state, not from
    the seeds it is given: its outputs cannot be recomputed."""

    name = "ignores-seeds"
    scale = 4
    stochastic = True

    def sample(self, lr, *, scale, n, seeds, context=None):
        up = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic")
        out = up.unsqueeze(1).repeat(1, n, 1, 1, 1)
        return (out + 0.05 * torch.randn_like(out)).clamp(0, 1)


class Exits(Bicubic):
    """A model that ends the process from inside its call."""

    name = "exits"

    def upscale(self, lr, *, scale):
        raise SystemExit(3)


class BrokenInit(Bicubic):
    """A model whose constructor fails."""

    name = "broken-init"

    def __init__(self, **kwargs):
        raise RuntimeError("cannot find my weights")


class NonCommercial(Bicubic):
    """Bicubic under a non-commercial licence, as a restrictively licensed model's card says."""

    name = "non-commercial-bicubic"
    licence = "Example Licence 1.0: non-commercial use only"
