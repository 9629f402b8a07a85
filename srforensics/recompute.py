"""Model calls, and their exact recomputation from what a run recorded.

An audit sends several LRs through the model in one call (a batch) and records
which. A batched model may round differently with other inputs beside an LR,
so an output is recomputed bit-identically by recomputing its whole batch:
:class:`Recomputer` reads each member's input file, prepares its HR and
applies its recorded degradation parameters, calls the model with the
recorded seeds, and compares every hash on the way with the ledger's.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srforensics.errors import SRForensicsError
from srforensics.images import (
    DEFAULT_MAX_PIXELS,
    from_uint8,
    levels_sha256,
    pixel_sha256,
    read_image,
    to_tensor,
    to_uint8,
)

# torch: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def describe_error(exc: BaseException) -> str:
    """One line for a failure: the message of a user error, else its type and first line."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SRForensicsError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def model_context(
    record_id: str, variant: int, params: Any, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "variant": variant,
        "degradation": params,
        "attributes": dict(attributes),
    }


class ModelTimeout(Exception):
    """Raised inside a model call that ran past ``--model-timeout``."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`ModelTimeout` in the block after ``seconds`` (SIGALRM; main thread only).

    A model stuck inside one native call is interrupted when that call returns.
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        raise SRForensicsError(
            "--model-timeout needs the audit in the main thread of a POSIX process; "
            "run it from the command line, or leave --model-timeout out"
        )

    def expire(signum, frame):
        raise ModelTimeout(f"model timed out after {seconds:g} s (--model-timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class ModelCall:
    """What one model call gave: outputs on the CPU, or why not (and whether one LR at a
    time may do better: not after a timeout, which would cost a timeout per LR)."""

    outputs: Any = None
    error: str | None = None
    retry_alone: bool = True


class ModelExit(SRForensicsError):
    """The model asked the process to end (``SystemExit``): the run stops, with that reason."""


def call_model(
    model, lrs: Sequence[Any], *, scale: int, seeds, contexts, timeout: float | None = None
) -> ModelCall:
    """One ``model.sample`` call on LRs of one shape, checked for its output shape."""
    import torch

    n = len(seeds[0])
    h, w = lrs[0].shape[-2:]
    expected = (len(lrs), n, 3, h * scale, w * scale)
    try:
        with deadline(timeout), torch.no_grad():
            outs = model.sample(
                torch.cat(list(lrs)), scale=scale, n=n, seeds=seeds, context=contexts
            )
    except ModelTimeout as exc:
        return ModelCall(error=str(exc), retry_alone=False)
    except Exception as exc:
        return ModelCall(error=f"model failed: {describe_error(exc)}")
    except SystemExit as exc:  # a plug-in that ends the process: stop the run, saying so
        raise ModelExit(
            f"the model called sys.exit({exc.code!r}) while upscaling; the run stopped. The "
            "outputs finished so far are in the ledger: fix the model, then --resume"
        ) from None
    if not isinstance(outs, torch.Tensor):
        return ModelCall(
            error=f"model returned {type(outs).__name__}, expected a tensor of shape {expected}"
        )
    if tuple(outs.shape) != expected:
        return ModelCall(error=f"model returned shape {tuple(outs.shape)}, expected {expected}")
    return ModelCall(outputs=outs.detach().to("cpu", torch.float32))


@dataclass(frozen=True)
class OutputImage:
    """One model output, checked and quantised: the image and the SHA-256 of its 8-bit pixels,
    or why it failed."""

    image: np.ndarray | None  # (H, W, 3) float32 on 8-bit levels
    sha256: str | None = None
    reason: str | None = None


def output_images(outs, *, tolerance: float) -> list[OutputImage]:
    """Model outputs ``[N, 3, H, W]`` checked and quantised together. An output fails when it is
    not finite or leaves [0, 1] by more than ``tolerance`` (within it, quantising clips)."""
    import torch

    n = len(outs)
    if n == 0:
        return []
    # Outputs bit for bit equal to the first (a deterministic model's N outputs are one) share
    # its check, image and hash: their bytes are compared (a few of them first, so that
    # different outputs cost next to nothing), which is cheaper than any pass over the values.
    rows = outs.numpy().reshape(n, -1)
    head, whole = rows[0, :16].tobytes(), rows[0].tobytes()
    twins = [
        j for j in range(1, n) if rows[j, :16].tobytes() == head and rows[j].tobytes() == whole
    ]
    shared = set(twins)
    own = [j for j in range(n) if j not in shared]
    flat = outs.reshape(n, -1) if len(own) == n else outs[own].reshape(len(own), -1)
    # NaN and Inf show here (amin and amax propagate NaN; torch.aminmax over a dimension
    # gives the same, about eight times slower).
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    checked: list[OutputImage | None] = [None] * n
    for j, a, b in zip(own, lo.tolist(), hi.tolist(), strict=True):
        if not (np.isfinite(a) and np.isfinite(b)):
            checked[j] = OutputImage(None, reason="model output contains NaN or Inf")
        elif a < -tolerance or b > 1 + tolerance:
            reason = (
                f"model output outside [0, 1] beyond the tolerance {tolerance}: "
                f"min {a:.4g}, max {b:.4g}"
            )
            checked[j] = OutputImage(None, reason=reason)
    good = [j for j in own if checked[j] is None]
    if good:
        # Outputs equal to the first good one, value for value (-0.0 and 0.0; the first output
        # may have failed), quantise to the same levels: they are quantised and hashed once.
        # The test stops at the first differing value.
        first = outs[good[0]]
        repeats = {j for j in good[1:] if torch.equal(outs[j], first)}
        distinct = [j for j in good if j not in repeats]
        chw = outs if len(distinct) == n else outs[distinct]
        levels = np.ascontiguousarray(to_uint8(chw.numpy()).transpose(0, 2, 3, 1))
        images = from_uint8(levels)
        images.flags.writeable = False  # repeats share their first's array
        made = [
            OutputImage(images[k], sha256=levels_sha256(levels[k])) for k in range(len(distinct))
        ]
        for k, j in enumerate(distinct):
            checked[j] = made[k]
        for j in repeats:
            checked[j] = made[0]
    for j in twins:
        checked[j] = checked[0]  # frozen: shared
    return checked  # type: ignore[return-value]


def output_image(out, *, tolerance: float) -> tuple[np.ndarray | None, str | None]:
    """One model output ``[3, H, W]``: ``(image, None)``, or ``(None, reason)`` (see
    :func:`output_images`)."""
    checked = output_images(out[None], tolerance=tolerance)[0]
    return checked.image, checked.reason


@dataclass
class Recomputed:
    """One LR of a recomputed batch: its images and every way it differs from the ledger."""

    record_id: str
    variant: int
    hr: np.ndarray | None = None
    lr: np.ndarray | None = None
    outputs: dict[int, np.ndarray] = field(default_factory=dict)
    checked: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Recomputer:
    """Recompute recorded batches with a loaded protocol and model.

    ``refit``: fit the protocol's HR steps again (face detection), as ``verify`` does; when
    ``False``, apply the parameters the ledger recorded for them (the run that recorded
    them recomputing its own galleries). Either way the HR is checked against its hash.
    """

    protocol: Any
    model: Any
    device: str = "cpu"
    tolerance: float = 0.1
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout: float | None = None
    refit: bool = True
    _hrs: dict = field(default_factory=dict, repr=False)

    def batch(self, ledger, batch: int) -> list[Recomputed]:
        """Recompute one recorded model call, every LR of it."""
        members = ledger.batch(batch)
        if not members:
            raise SRForensicsError(f"batch {batch} is not in the ledger {ledger.path}")
        return self._run(ledger, members, f"its model batch {batch}")

    def lr(self, ledger, record_id: str, variant: int) -> Recomputed:
        """Recompute one LR's outputs: alone first (cheap), and with its whole batch when alone
        does not reproduce the ledger (a batched model rounding with its batch-mates)."""
        batches = ledger.batches_of([(record_id, variant)])
        if len(batches) != 1:
            out = Recomputed(record_id, variant)
            out.problems.append(f"the ledger names {len(batches)} model calls for this LR")
            return out
        members = ledger.batch(batches[0])
        mine = [m for m in members if (m[0], m[1]) == (record_id, variant)]
        alone = self._run(ledger, mine, "")[0]
        if not alone.problems or len(members) == 1 or alone.lr is None:
            return alone
        return next(
            d
            for d in self._run(ledger, members, f"its model batch {batches[0]}")
            if (d.record_id, d.variant) == (record_id, variant)
        )

    def _run(self, ledger, members, label: str) -> list[Recomputed]:
        done = [self._lr(ledger, rid, v) for rid, v, _ in members]
        if any(d.lr is None for d in done):
            for d in done:  # the batch cannot be formed again without every member
                if d.lr is not None:
                    d.problems.append(
                        f"not recomputed: another LR of {label} could not be recreated"
                    )
            return done
        rows = {(d.record_id, d.variant): ledger.outputs_of(d.record_id, d.variant) for d in done}
        lost = {
            (d.record_id, d.variant): sorted(
                set(samples) - {r["sample"] for r in rows[(d.record_id, d.variant)]}
            )
            for d, (_, _, samples) in zip(done, members, strict=True)
        }
        if any(lost.values()):  # the batch cannot be formed again without every output's seed
            for d in done:
                gone = lost[(d.record_id, d.variant)]
                d.problems.append(
                    f"the ledger has no row for output(s) {gone} of this LR, which its model "
                    "call names (a row was deleted)"
                    if gone
                    else f"not recomputed: outputs of another LR of {label or 'its model call'} "
                    "are missing from the ledger"
                )
            return done
        seeds, contexts = [], []
        for d, (_, _, samples) in zip(done, members, strict=True):
            by_sample = {r["sample"]: r for r in rows[(d.record_id, d.variant)]}
            seeds.append([int(by_sample[s]["seed"]) for s in samples])
            rec, lr_row = ledger.record(d.record_id), ledger.lr(d.record_id, d.variant)
            contexts.append(
                model_context(d.record_id, d.variant, lr_row["params"], rec["attributes"])
            )
        call = call_model(
            self.model,
            [to_tensor(d.lr).to(self.device) for d in done],
            scale=self.protocol.scale,
            seeds=seeds,
            contexts=contexts,
            timeout=self.timeout,
        )
        outs, error = call.outputs, call.error
        for b, (d, (_, _, samples)) in enumerate(zip(done, members, strict=True)):
            by_sample = {r["sample"]: r for r in rows[(d.record_id, d.variant)]}
            checked = (
                [OutputImage(None, reason=error)] * len(samples)
                if error is not None
                else output_images(outs[b], tolerance=self.tolerance)
            )
            for s, out in zip(samples, checked, strict=True):
                row = by_sample[s]
                d.checked += 1
                if out.image is None:
                    if row["status"] == "ok":
                        d.problems.append(
                            f"output {s}: recorded ok, recomputed as failed ({out.reason})"
                        )
                    continue
                d.outputs[s] = out.image
                if row["status"] != "ok":
                    d.problems.append(f"output {s}: recorded {row['status']}, recomputed ok")
                elif out.sha256 != row["output_sha256"]:
                    d.problems.append(
                        f"output {s}: recomputed pixels hash to {out.sha256[:12]}..., "
                        f"the ledger says {row['output_sha256'][:12]}..."
                    )
        return done

    def _lr(self, ledger, record_id: str, variant: int) -> Recomputed:
        """Input file -> HR -> LR from the recorded parameters, each checked against its hash."""
        out = Recomputed(record_id, variant)
        rec, lr_row = ledger.record(record_id), ledger.lr(record_id, variant)
        if rec is None or lr_row is None:
            out.problems.append(f"LR {record_id!r} variant {variant} is not in the ledger")
            return out
        try:
            img, sha = read_image(rec["path"], max_pixels=self.max_pixels)
        except Exception as exc:
            out.problems.append(f"input {rec['path']}: {describe_error(exc)}")
            return out
        if sha != rec["sha256"]:
            out.problems.append(
                f"input {rec['path']} hashes to {sha[:12]}..., the ledger says {str(rec['sha256'])[:12]}..."
            )
            return out
        try:
            key = (record_id, sha)
            if key not in self._hrs:  # HR work once per input, as in the audit
                if len(self._hrs) >= 16:
                    self._hrs.pop(next(iter(self._hrs)))
                recorded = None if self.refit else rec["hr_params"]
                self._hrs[key] = self.protocol.prepare(img, recorded)[0]
            hr = self._hrs[key]
        except Exception as exc:
            out.problems.append(f"HR preparation failed: {describe_error(exc)}")
            return out
        if pixel_sha256(hr) != rec["hr_sha256"]:
            out.problems.append("the prepared HR differs from the one recorded")
            return out
        lr = self.protocol.apply(hr, lr_row["params"])
        if pixel_sha256(lr) != lr_row["lr_sha256"]:
            out.problems.append(
                "the LR made from the recorded parameters differs from the one recorded"
            )
            return out
        out.hr, out.lr = hr, lr
        return out


__all__ = [
    "ModelCall",
    "ModelTimeout",
    "Recomputed",
    "Recomputer",
    "call_model",
    "describe_error",
    "model_context",
    "OutputImage",
    "output_image",
    "output_images",
]
