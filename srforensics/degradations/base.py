"""The degradation operator contract: random parameters apart from a pure apply.

An operator is configured from its protocol step (fixed values or parameter
distributions), draws concrete parameters with ``sample(rng)``, and applies
them with a pure ``apply(img, **params)``: the same image and parameters always
give the same result, so any LR can be replayed from its recorded parameters.
HR-side steps (``HRStep``) instead derive their parameters from the image
itself with a deterministic ``fit(img)`` (e.g. where the face is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from srforensics.errors import SRForensicsError, check_fields

DISTRIBUTIONS = ("uniform", "log_uniform", "choice")


class ProtocolError(SRForensicsError):
    """A protocol file or step that is invalid; the message names file, step and field."""


@dataclass(frozen=True)
class Field:
    """One configurable parameter of an operator.

    ``kind`` is the Python type of a concrete value; ``low``/``high`` bound it
    (inclusive); ``choices`` restricts it; ``random`` says whether the field may
    be given as a distribution rather than a fixed value.
    """

    kind: type
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    random: bool = True
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def check(self, value: Any, where: str) -> Any:
        """Validate and normalise one concrete value."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ProtocolError(f"{where}: expected {self.kind.__name__}, got {value!r}")
        if self.kind in (int, float):
            if not math.isfinite(value):
                raise ProtocolError(f"{where}: {value!r} is not finite")
            if self.low is not None and value < self.low:
                raise ProtocolError(f"{where}: {value!r} is below the minimum {self.low}")
            if self.high is not None and value > self.high:
                raise ProtocolError(f"{where}: {value!r} is above the maximum {self.high}")
        if self.choices is not None and value not in self.choices:
            raise ProtocolError(f"{where}: {value!r} is not one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class Distribution:
    """A parameter distribution from a protocol: ``uniform``, ``log_uniform`` or ``choice``."""

    kind: str
    args: tuple[Any, ...]

    def draw(self, rng: np.random.Generator, field: Field) -> Any:
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.kind == "log_uniform":
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return int(round(value)) if field.kind is int else float(value)
        if field.kind is int:
            return int(rng.integers(int(lo), int(hi) + 1))  # inclusive of both ends
        return float(rng.uniform(lo, hi))

    def to_json(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


def parse_value(raw: Any, field: Field, where: str) -> Any:
    """A protocol value: a fixed value or a one-key distribution mapping."""
    if isinstance(raw, Mapping):
        if not field.random:
            raise ProtocolError(f"{where}: this field must be a fixed value, not {dict(raw)!r}")
        if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
            raise ProtocolError(
                f"{where}: a distribution is one of {{uniform: [a, b]}}, {{log_uniform: [a, b]}}, "
                f"{{choice: [...]}}; got {dict(raw)!r}"
            )
        kind, args = next(iter(raw.items()))
        if not isinstance(args, list) or not args:
            raise ProtocolError(f"{where}: {kind} needs a non-empty list, got {args!r}")
        if kind == "choice":
            return Distribution(kind, tuple(field.check(a, where) for a in args))
        if len(args) != 2:
            raise ProtocolError(f"{where}: {kind} needs [low, high], got {args!r}")
        lo, hi = (field.check(a, where) for a in args)
        if lo > hi:
            raise ProtocolError(f"{where}: {kind} low {lo} is above high {hi}")
        if kind == "log_uniform" and lo <= 0:
            raise ProtocolError(f"{where}: log_uniform needs positive bounds, got {args!r}")
        return Distribution(kind, (lo, hi))
    return field.check(raw, where)


class Degradation:
    """Base class of degradation operators.

    Subclasses declare ``name`` and ``fields`` and implement :meth:`apply`
    (pure). The default :meth:`sample` draws each field from its configured
    value or distribution; operators that need more randomness (a noise field)
    draw a ``seed`` and regenerate it inside ``apply``.
    """

    name: ClassVar[str] = ""
    fields: ClassVar[Mapping[str, Field]] = {}
    #: Probability that the step is applied to a given LR; set by the protocol (``p:``).
    p: float = 1.0
    #: Modules the operator imports on its first call that take long to import (seconds):
    #: helper processes import them before they start, once (see :meth:`Protocol.imports`).
    imports: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, where: str = "", **spec: Any) -> None:
        where = where or self.name
        takes = f"{self.name} takes {', '.join(self.fields) or 'no fields'}"
        check_fields(spec, self.fields, where, error=ProtocolError, takes=takes)
        self.spec: dict[str, Any] = {}
        for fname, field in self.fields.items():
            if fname in spec:
                self.spec[fname] = parse_value(spec[fname], field, f"{where}.{fname}")
            elif field.required:
                raise ProtocolError(f"{where}: missing required field {fname!r}")
            else:
                self.spec[fname] = field.default

    def resolved(self) -> dict[str, Any]:
        """The operator's configuration in a canonical JSON-able form."""
        out: dict[str, Any] = {"op": self.name, "p": self.p}
        for k, v in self.spec.items():
            out[k] = v.to_json() if isinstance(v, Distribution) else v
        return out

    def scale_factor(self) -> int:
        """By how much this step reduces each side (1 for most operators)."""
        return 1

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {
            k: (v.draw(rng, self.fields[k]) if isinstance(v, Distribution) else v)
            for k, v in self.spec.items()
        }

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class HRStep(Degradation):
    """An HR preparation step whose parameters come from the image (deterministic)."""

    #: Whether a pixel keeps its coordinates through this step (a top-left anchored crop).
    keeps_points: ClassVar[bool] = False

    def points(self, params: Mapping[str, Any]):
        """Face landmarks ``(5, 2)`` in this step's output pixels, when the step locates a
        face (see :meth:`Protocol.face_landmarks`); None otherwise."""
        return None

    def fit(self, img: np.ndarray) -> dict[str, Any]:
        return self.sample(np.random.default_rng(0))
