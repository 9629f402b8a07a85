"""Protocol files: load, validate, and run a degradation protocol.

A protocol is YAML (read with ``yaml.safe_load``) naming only registered
operators::

    name: faces
    version: 1
    description: ...
    references: [...]    # where the settings come from
    scale: 4
    variants: 2          # LRs drawn per image
    seed: 0              # run seed unless --seed overrides it
    hr:                  # HR preparation, deterministic from the image
      - {op: face_align, size: 128}
    steps:               # the degradation, random parameters drawn per variant
      - {op: gaussian_blur, sigma: {uniform: [0.2, 2.0]}, p: 0.5}
      - {op: downscale, scale: 4}
    metrics: [psnr, ssim]

A parameter is a fixed value or one of ``{uniform: [a, b]}``,
``{log_uniform: [a, b]}``, ``{choice: [...]}``; ``p`` is the probability that a
step applies (default 1). ``include: NAME_OR_FILE`` starts from another
protocol, whose fields this file's fields replace (lists whole). The SHA-256 is
computed from the resolved, canonical form, so formatting, comments and
includes that mean the same thing do not change it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from srforensics.degradations import DEGRADATIONS
from srforensics.degradations.base import Degradation, HRStep, ProtocolError
from srforensics.errors import SRForensicsError, check_fields
from srforensics.images import quantize
from srforensics.resources import list_resources

_TOP_LEVEL = {
    "name": str,
    "version": (int, str),
    "description": str,
    "references": list,
    "scale": int,
    "variants": int,
    "seed": int,
    "hr": list,
    "steps": list,
    "metrics": list,
}
_REQUIRED = ("name", "scale", "steps")


@dataclass(frozen=True)
class Protocol:
    """A validated degradation protocol."""

    name: str
    version: str
    description: str
    references: tuple[str, ...]
    scale: int
    variants: int
    seed: int
    hr_steps: tuple[HRStep, ...]
    steps: tuple[Degradation, ...]
    metrics: tuple[str, ...] | None
    source: str = ""
    text: str = field(default="", repr=False)

    # -- identity -----------------------------------------------------------
    def resolved(self) -> dict[str, Any]:
        """The protocol in canonical, fully resolved form (what the hash covers)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "references": list(self.references),
            "scale": self.scale,
            "variants": self.variants,
            "seed": self.seed,
            "hr": [s.resolved() for s in self.hr_steps],
            "steps": [s.resolved() for s in self.steps],
            "metrics": list(self.metrics) if self.metrics is not None else None,
        }

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of :meth:`resolved` as canonical JSON (computed once: the protocol is frozen)."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def imports(self) -> tuple[str, ...]:
        """The slow imports of its operators (:attr:`Degradation.imports`), each once."""
        return tuple(dict.fromkeys(m for s in (*self.hr_steps, *self.steps) for m in s.imports))

    @property
    def needs_face(self) -> bool:
        return any(getattr(s, "needs_face", False) for s in self.hr_steps)

    def face_landmarks(self, hr_params: Sequence[Mapping[str, Any]]):
        """The five face landmarks ``(5, 2)`` in the prepared HR's pixels, from the HR steps'
        recorded parameters: where a step located the face (``HRStep.points``), carried
        through the steps after it that keep pixel positions; None when no step located one
        or a later step moves pixels (a centre crop)."""
        points = None
        for step, params in zip(self.hr_steps, hr_params, strict=True):
            found = step.points(params)
            if found is not None:
                points = found
            elif points is not None and not step.keeps_points:
                return None
        return points

    # -- running ------------------------------------------------------------
    def prepare(
        self, hr: np.ndarray, params: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Run the HR steps: ``(prepared HR, the parameters each step fitted)``.

        ``params``: parameters recorded by an earlier call (the ledger's ``hr_params``), applied
        as they are instead of fitted again (no face detection). Pure.
        """
        if params is not None and len(params) != len(self.hr_steps):
            raise ValueError(f"expected {len(self.hr_steps)} HR parameter sets, got {len(params)}")
        fitted = []
        for i, step in enumerate(self.hr_steps):
            p = dict(params[i]) if params is not None else step.fit(hr)
            hr = step.apply(hr, **p)
            fitted.append(p)
        return np.ascontiguousarray(hr, dtype=np.float32), fitted

    def sample(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Draw the parameters of every degradation step, in order.

        A step with ``p < 1`` first draws whether it applies; one that does not is
        recorded as ``{"applied": False}``.
        """
        params = []
        for step in self.steps:
            if step.p < 1.0 and not rng.random() < step.p:
                params.append({"applied": False})
            else:
                params.append(step.sample(rng))
        return params

    def apply(self, hr: np.ndarray, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Degrade a prepared HR with recorded parameters; the LR is rounded to 8 bits. Pure."""
        if len(params) != len(self.steps):
            raise ValueError(f"expected {len(self.steps)} parameter sets, got {len(params)}")
        img = hr
        for step, p in zip(self.steps, params, strict=True):
            if p.get("applied", True) is False:
                continue
            img = step.apply(img, **p)
        expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
        if img.shape[:2] != expected:
            raise ValueError(
                f"the protocol made a {img.shape[1]}x{img.shape[0]} LR from a {hr.shape[1]}x{hr.shape[0]} HR; "
                f"x{self.scale} needs {expected[1]}x{expected[0]}"
            )
        return quantize(img)


def _build_step(raw: Any, where: str, *, hr: bool = False) -> Degradation:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{where}: a step is a mapping with 'op', got {raw!r}")
    spec = dict(raw)
    op = spec.pop("op", None)
    prob = spec.pop("p", 1.0)
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 < prob <= 1:
        raise ProtocolError(f"{where}.p: the probability of a step must be in (0, 1], got {prob!r}")
    if hr and prob != 1:
        raise ProtocolError(f"{where}.p: HR steps always apply; remove 'p'")
    if not isinstance(op, str):
        raise ProtocolError(f"{where}: missing 'op' (the operator name)")
    try:
        cls = DEGRADATIONS.get(op)
    except SRForensicsError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Degradation)):
        raise ProtocolError(f"{where}: {op!r} is not a degradation operator")
    step = cls(where=f"{where} ({op})", **spec)
    step.p = float(prob)
    return step


def parse_protocol(data: Any, *, source: str = "<protocol>", text: str = "") -> Protocol:
    """Validate a loaded YAML document into a :class:`Protocol`."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{source}: a protocol is a YAML mapping, got {type(data).__name__}")
    check_fields(data, _TOP_LEVEL, source, error=ProtocolError)
    for key in _REQUIRED:
        if key not in data:
            raise ProtocolError(f"{source}: missing required field {key!r}")
    for key, typ in _TOP_LEVEL.items():
        if (
            key in data
            and data[key] is not None
            and (not isinstance(data[key], typ) or isinstance(data[key], bool))
        ):
            raise ProtocolError(f"{source}: field {key!r} has the wrong type: {data[key]!r}")
    scale, variants = data["scale"], data.get("variants", 1)
    if not 1 <= scale <= 16:
        raise ProtocolError(f"{source}: scale must be between 1 and 16, got {scale}")
    if not 1 <= variants <= 10_000:
        raise ProtocolError(f"{source}: variants must be between 1 and 10000, got {variants}")
    hr_steps = tuple(
        _build_step(s, f"{source}: hr[{i}]", hr=True) for i, s in enumerate(data.get("hr") or [])
    )
    for i, s in enumerate(hr_steps):
        if not isinstance(s, HRStep):
            raise ProtocolError(f"{source}: hr[{i}]: {s.name!r} is a degradation, not an HR step")
    steps = tuple(_build_step(s, f"{source}: steps[{i}]") for i, s in enumerate(data["steps"]))
    for i, s in enumerate(steps):
        if isinstance(s, HRStep):
            raise ProtocolError(
                f"{source}: steps[{i}]: {s.name!r} is an HR step; list it under 'hr'"
            )
    factor = 1
    for s in steps:
        factor *= s.scale_factor()
    if factor != scale:
        raise ProtocolError(
            f"{source}: the downscale steps reduce by x{factor}, but the protocol's scale is {scale}"
        )
    metrics = data.get("metrics")
    if metrics is not None and not all(isinstance(m, str) for m in metrics):
        raise ProtocolError(f"{source}: 'metrics' must be a list of metric names")
    return Protocol(
        name=data["name"],
        version=str(data.get("version", "1")),
        description=(data.get("description") or "").strip(),
        references=tuple(str(r) for r in data.get("references") or []),
        scale=scale,
        variants=variants,
        seed=int(data.get("seed", 0)),
        hr_steps=hr_steps,
        steps=steps,
        metrics=tuple(metrics) if metrics is not None else None,
        source=source,
        text=text,
    )


def available_protocols() -> dict[str, Path]:
    """Shipped protocol names and their files."""
    return list_resources("protocols")


def _find(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    shipped = available_protocols()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.is_file():
        return path

    close = difflib.get_close_matches(str(name_or_path), list(shipped), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ProtocolError(
        f"unknown protocol {str(name_or_path)!r}{hint} Known: {', '.join(shipped)}; "
        "or give the path of a protocol YAML file"
    )


def _read(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read protocol file {path}: {exc}") from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProtocolError(f"{path}: invalid YAML{loc}: {problem}") from None


def _resolve_includes(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """The file's mapping with ``include:`` replaced by the included protocol's fields.

    The including file's fields override the included ones; lists (``steps``,
    ``hr``, ``references``) are replaced whole, not merged.
    """
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ProtocolError(f"{path}: include cycle: {cycle}")
    data, _ = _read(path)
    if not isinstance(data, Mapping) or "include" not in data:
        return data
    target = data["include"]
    if not isinstance(target, str):
        raise ProtocolError(
            f"{path}: 'include' must be a protocol name or file path, got {target!r}"
        )
    base_path = _find(target, relative_to=path.parent)
    base = _resolve_includes(base_path, (*chain, path.resolve()))
    parse_protocol(base, source=str(base_path))  # the included protocol must be valid on its own
    merged = dict(base)
    merged.update({k: v for k, v in data.items() if k != "include"})
    return merged


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load a shipped protocol by name, or a protocol YAML file by path (``include:`` resolved)."""
    path = _find(name_or_path)
    data = _resolve_includes(path)
    _, text = _read(path)
    return parse_protocol(data, source=str(path), text=text)
