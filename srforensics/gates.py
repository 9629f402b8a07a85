"""Gates: conditions on a run's results -> verdicts, exit codes, JUnit XML.

A gate file (YAML)::

    min_group_size: 30        # groups smaller than this are ignored unless a gate includes them
    n_boot: 1000
    gates:
      - name: identity-holds
        metric: id_cosine
        statistic: mean       # the metric's mean over ok outputs ...
        op: ">="
        value: 0.6
        message: Mean identity cosine must stay at or above 0.6
      - name: identity-holds-for-every-race
        metric: id_cosine
        statistic: mean
        by: race              # ... or every group's mean
        op: ">="
        value: 0.5
      - name: swap-parity
        metric: id_swap
        disparity: max_over_geomean   # difference | ratio | max_over_geomean
        across: [race]                # one attribute, or several for intersections
        op: "<="
        value: 1.5
        include_small: false

Intervals resample whole records, stratified by group, with the run's seed
(:mod:`srforensics.resampling`): the same intervals as the breakdown and
``disparities.json`` for the same ``n_boot``.

- A ``statistic: mean`` gate is judged on the end of its interval that makes it
  conservative: the lower bound for ``>=``/``>``, the upper bound for ``<=``/``<``.
- A ``disparity`` gate that limits a gap (``difference``/``max_over_geomean`` with
  ``<=``/``<``, ``ratio`` with ``>=``/``>``) passes when the conservative end of the
  bias-corrected interval meets the limit; otherwise it fails only when a permutation
  test of parity (group labels permuted over records) rejects at ``1 - level``: a model
  with equal group values fails such a gate at most that often. Other disparity gates
  are judged on the conservative bound alone.
- ``familywise: bonferroni`` judges each of the file's m comparisons (a gate, or one
  group of a ``by`` gate) at level ``1 - (1 - level) / m``.
- A gate that cannot be judged (no values, too few records, only small groups) is an
  error, not a failure: exit status 2, and a JUnit ``error`` element.
"""

from __future__ import annotations

import json
import operator
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from srforensics.errors import SRForensicsError, check_fields
from srforensics.ledger import LEDGER_NAME, Ledger
from srforensics.provenance import MANIFEST_NAME, read_manifest

if TYPE_CHECKING:
    import pandas as pd

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
DISPARITIES = ("difference", "ratio", "max_over_geomean")
FAMILYWISE = ("none", "bonferroni")
_GATE_FIELDS = {
    "name",
    "metric",
    "statistic",
    "by",
    "disparity",
    "across",
    "op",
    "value",
    "message",
    "include_small",
}


class GateError(SRForensicsError):
    """A gate file or a run that gates cannot be evaluated on (exit status 2)."""


@dataclass(frozen=True)
class Gate:
    name: str
    metric: str
    op: str
    value: float
    message: str = ""
    statistic: str | None = None
    by: tuple[str, ...] = ()
    disparity: str | None = None
    across: tuple[str, ...] = ()
    include_small: bool = False


@dataclass(frozen=True)
class GateFile:
    gates: tuple[Gate, ...]
    min_group_size: int = 30  # records
    n_boot: int = 1000
    level: float = 0.95
    source: str = ""
    familywise: str = "none"


@dataclass
class Verdict:
    name: str
    passed: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    status: str = ""  # "pass", "fail" or "error" (could not be judged)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error(name: str, message: str, detail: dict[str, Any] | None = None) -> Verdict:
    return Verdict(name, False, f"could not judge: {message}", detail or {}, status="error")


def _attrs(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and raw and all(isinstance(a, str) for a in raw):
        return tuple(raw)
    raise GateError(f"{where}: expected an attribute name or a list of them, got {raw!r}")


def parse_gates(data: Any, *, source: str = "<gates>") -> GateFile:
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("gates"), list)
        or not data["gates"]
    ):
        raise GateError(f"{source}: a gate file is a mapping with a non-empty 'gates' list")
    gates, names = [], set()
    for i, g in enumerate(data["gates"]):
        where = f"{source}: gates[{i}]"
        if not isinstance(g, Mapping):
            raise GateError(f"{where}: a gate is a mapping")
        check_fields(g, _GATE_FIELDS, where, error=GateError)
        for key in ("name", "metric", "op", "value"):
            if key not in g:
                raise GateError(f"{where}: missing required field {key!r}")
        if g["op"] not in OPS:
            raise GateError(f"{where}.op: {g['op']!r} is not one of {', '.join(OPS)}")
        if not isinstance(g["value"], int | float) or isinstance(g["value"], bool):
            raise GateError(f"{where}.value: expected a number, got {g['value']!r}")
        if ("disparity" in g) == ("statistic" in g):
            raise GateError(f"{where}: give exactly one of 'statistic' (mean) or 'disparity'")
        if "statistic" in g and g["statistic"] != "mean":
            raise GateError(f"{where}.statistic: only 'mean' is supported, got {g['statistic']!r}")
        if "disparity" in g:
            if g["disparity"] not in DISPARITIES:
                raise GateError(
                    f"{where}.disparity: {g['disparity']!r} is not one of {', '.join(DISPARITIES)}"
                )
            if not g.get("across"):
                raise GateError(
                    f"{where}: a disparity gate needs 'across' (the sensitive attribute)"
                )
        if g["name"] in names:
            raise GateError(f"{where}: duplicate gate name {g['name']!r}")
        names.add(g["name"])
        gates.append(
            Gate(
                name=str(g["name"]),
                metric=str(g["metric"]),
                op=g["op"],
                value=float(g["value"]),
                message=str(g.get("message", "")),
                statistic=g.get("statistic"),
                by=_attrs(g.get("by"), f"{where}.by"),
                disparity=g.get("disparity"),
                across=_attrs(g.get("across"), f"{where}.across"),
                include_small=bool(g.get("include_small", False)),
            )
        )
    check_fields(data, ("gates", "min_group_size", "n_boot", "familywise"), source, error=GateError)
    min_group = data.get("min_group_size", 30)
    n_boot = data.get("n_boot", 1000)
    if (
        not isinstance(min_group, int)
        or min_group < 1
        or not isinstance(n_boot, int)
        or n_boot < 100
    ):
        raise GateError(f"{source}: min_group_size must be >= 1 and n_boot >= 100")
    familywise = data.get("familywise", "none")
    if familywise not in FAMILYWISE:
        raise GateError(f"{source}: familywise must be one of {', '.join(FAMILYWISE)}")
    return GateFile(tuple(gates), min_group, n_boot, 0.95, source, familywise)


def load_gates(path: str | Path) -> GateFile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GateError(f"cannot read gate file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise GateError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    return parse_gates(data, source=str(path))


def _conservative(op: str, low: float, high: float) -> float:
    return low if op in (">=", ">") else high


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _message(g: Gate, passed: bool, text: str) -> str:
    return text if passed or not g.message else f"{g.message} — {text}"


def _bound_name(op: str) -> str:
    return "lower" if op in (">=", ">") else "upper"


def _judge_mean(g: Gate, row: dict[str, Any], level: float) -> tuple[bool | None, str]:
    """A group's (or the run's) mean, judged on its conservative bound; None: cannot judge."""
    pct = f"{level * 100:.4g}%"
    if row["ci_low"] is None:
        return None, f"mean {g.metric} {_fmt(row['mean'])} has no interval ({row['ci_method']})"
    bound = _conservative(g.op, row["ci_low"], row["ci_high"])
    passed = bool(OPS[g.op](bound, g.value))
    text = (
        f"mean {g.metric} {_fmt(row['mean'])} ({pct} CI {_fmt(row['ci_low'])}–{_fmt(row['ci_high'])}, "
        f"{row['n_records']} records, {row['n_outputs']} outputs); judged on the {_bound_name(g.op)} "
        f"bound {_fmt(bound)} {g.op} {_fmt(g.value)}"
    )
    return passed, text


def _limits_gap(g: Gate) -> bool:
    if g.disparity == "ratio":
        return g.op in (">=", ">")
    return g.op in ("<=", "<")


def _comparisons(gate_file: GateFile, ok: pd.DataFrame, tables) -> int:
    """How many comparisons the file makes: one per gate, one per judged group of a ``by``."""
    m = 0
    for g in gate_file.gates:
        if g.by and g.metric in ok:
            m += max(1, sum(1 for t in tables(g).values() if _judged(g, t, gate_file)))
        else:
            m += 1
    return m


def _judged(g: Gate, table, gate_file: GateFile) -> bool:
    n = int((table.counts[:, 0] > 0).sum())
    return n > 0 and (g.include_small or n >= gate_file.min_group_size)


def evaluate(gate_file: GateFile, results: pd.DataFrame, *, seed: int = 0) -> list[Verdict]:
    """Judge every gate on ``results`` (one row per output, as exported).

    Raises :class:`GateError` for a gate naming a column or attribute the run does not
    have; a gate that exists but cannot be judged gives an ``error`` verdict.
    """
    from srforensics.analysis import group_tables, with_error_columns
    from srforensics.resampling import Resampling

    results = with_error_columns(results)
    for g in gate_file.gates:
        if g.metric not in results:
            raise GateError(f"gate {g.name!r}: the run has no column {g.metric!r}")
        for a in g.by + g.across:
            if a not in results:
                raise GateError(f"gate {g.name!r}: the run has no attribute {a!r}")
    ok = results[results["status"] == "ok"]
    cache: dict[tuple, dict] = {}

    def tables(g: Gate):
        key = (g.metric, g.by)
        if key not in cache:
            cache[key] = group_tables(ok, [g.metric], g.by)
        return cache[key]

    m = _comparisons(gate_file, ok, tables) if gate_file.familywise == "bonferroni" else 1
    level = 1 - (1 - gate_file.level) / m
    rs = Resampling(n_boot=gate_file.n_boot, seed=seed, level=level)
    family = (
        f"; Bonferroni over {m} comparisons: each at level {level:.4g}"
        if gate_file.familywise == "bonferroni"
        else ""
    )
    verdicts = []
    for g in gate_file.gates:
        if g.disparity:
            verdicts.append(_judge_disparity(g, results, gate_file, rs, seed, family))
        elif not g.by:
            verdicts.append(_judge_overall(g, ok, rs, level, family))
        else:
            verdicts.append(_judge_groups(g, tables(g), gate_file, rs, level, family))
    return verdicts


def _judge_overall(g: Gate, ok: pd.DataFrame, rs, level: float, family: str) -> Verdict:
    """A gate on the whole run's mean."""
    from srforensics.analysis import OVERALL_KEY
    from srforensics.resampling import RecordTable, estimate

    if ok[g.metric].notna().sum() == 0:
        return _error(g.name, f"no output has a value of {g.metric}")
    row = estimate(RecordTable.from_outputs(ok, [g.metric]), rs, OVERALL_KEY).row(g.metric)
    passed, text = _judge_mean(g, row, level)
    if passed is None:
        return _error(g.name, text, row)
    return Verdict(g.name, passed, _message(g, passed, text + family), row)


def _judge_groups(
    g: Gate, tables: dict, gate_file: GateFile, rs, level: float, family: str
) -> Verdict:
    """A gate that every group of ``g.by`` must meet (small groups are reported, not judged,
    unless the gate file includes them)."""
    from srforensics.resampling import estimate

    feature = "×".join(g.by)
    failing, checked, skipped, unjudged = [], {}, {}, []
    for label, table in tables.items():
        n = int((table.counts[:, 0] > 0).sum())
        if n == 0:
            continue
        if not _judged(g, table, gate_file):
            skipped[label] = n
            continue
        row = estimate(table, rs, (feature, label)).row(g.metric)
        passed, text = _judge_mean(g, row, level)
        checked[label] = row
        if passed is None:
            unjudged.append(f"{feature}={label}: {text}")
        elif not passed:
            failing.append(f"{feature}={label}: {text}")
    detail = {"groups": checked, "small_groups": skipped}
    small = (
        f"could not judge small groups (< {gate_file.min_group_size} records): "
        + ", ".join(f"{k} ({v} records)" for k, v in skipped.items())
        if skipped
        else ""
    )
    if not checked or unjudged:
        why = "; ".join(unjudged) or (
            f"no group of {feature} has {gate_file.min_group_size}+ records with {g.metric}; "
            "set include_small to judge small groups"
        )
        return _error(g.name, why + (f"; {small}" if small else ""), detail)
    passed = not failing
    text = (
        "; ".join(failing)
        if failing
        else f"every group of {feature} meets {g.op} {_fmt(g.value)} on its "
        f"{_bound_name(g.op)} bound ({len(checked)} groups)"
    )
    text += (f"; {small}" if small else "") + family
    return Verdict(g.name, passed, _message(g, passed, text), detail)


def _judge_disparity(
    g: Gate, results: pd.DataFrame, gate_file: GateFile, rs, seed: int, family: str
) -> Verdict:
    from srforensics.analysis import disparities

    feature = "×".join(g.across)
    d = disparities(
        results,
        g.metric,
        g.across,
        min_group=gate_file.min_group_size,
        include_small=g.include_small,
        n_boot=gate_file.n_boot,
        level=rs.level,
        seed=seed,
    )
    if "unavailable" in d:
        return _error(
            g.name, f"{g.disparity} of {g.metric} across {feature}: {d['unavailable']}", d
        )
    stat = d[g.disparity]
    if stat["value"] is None or stat["ci_low"] is None:
        return _error(
            g.name, f"{g.disparity} of {g.metric} across {feature}: {stat.get('reason')}", d
        )
    bound = _conservative(g.op, stat["ci_low"], stat["ci_high"])
    alpha = 1 - rs.level
    p = stat["p_parity"]
    within = bool(OPS[g.op](bound, g.value))
    hi, lo = d["highest_group"], d["lowest_group"]
    text = (
        f"{g.disparity} of {g.metric} across {feature} is {_fmt(stat['value'])}, bias-corrected "
        f"{_fmt(stat['bias_corrected'])} ({rs.level * 100:.4g}% CI {_fmt(stat['ci_low'])}–"
        f"{_fmt(stat['ci_high'])}); judged on the {_bound_name(g.op)} bound {_fmt(bound)} "
        f"{g.op} {_fmt(g.value)}"
    )
    if within:
        passed = True
    elif _limits_gap(g) and p is not None and p >= alpha:
        passed = True
        text += (
            f", which it does not meet, but the groups are not distinguishable from parity "
            f"(permutation p = {_fmt(p)} >= {_fmt(alpha)})"
        )
    else:
        passed = False
        if _limits_gap(g) and p is not None:
            text += f"; parity rejected (permutation p = {_fmt(p)} < {_fmt(alpha)})"
    groups = d["groups"]
    text += (
        f"; highest group {feature}={hi} ({_fmt(groups[hi]['mean'])}, {groups[hi]['n_records']} "
        f"records), lowest {lo} ({_fmt(groups[lo]['mean'])}, {groups[lo]['n_records']} records)"
    )
    if d["small_groups"] and not g.include_small:
        text += "; could not judge small groups (< {} records): {}".format(
            gate_file.min_group_size,
            ", ".join(f"{k} ({v} records)" for k, v in d["small_groups"].items()),
        )
    worst = lo if g.disparity == "ratio" and g.op in (">=", ">") else hi
    return Verdict(
        g.name, passed, _message(g, passed, text + family), dict(d, worst_group=worst, bound=bound)
    )


def write_json(verdicts: Sequence[Verdict], path: str | Path) -> None:
    from srforensics.analysis import json_safe

    data = {
        "passed": all(v.passed for v in verdicts),
        "errors": sum(v.status == "error" for v in verdicts),
        "gates": [v.to_dict() for v in verdicts],
    }
    Path(path).write_text(
        json.dumps(json_safe(data), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n",
        encoding="utf-8",
    )


def write_junit(
    verdicts: Sequence[Verdict], path: str | Path, *, suite: str = "srforensics gates"
) -> None:
    """JUnit XML: one testsuite, one testcase per gate; a ``failure`` element for a failed
    gate, an ``error`` element for one that could not be judged."""
    from srforensics.analysis import json_safe

    failures = sum(v.status == "fail" for v in verdicts)
    errors = sum(v.status == "error" for v in verdicts)
    ts = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(verdicts)),
        failures=str(failures),
        errors=str(errors),
    )
    for v in verdicts:
        tc = ET.SubElement(ts, "testcase", classname="srforensics.gates", name=v.name)
        if v.status in ("fail", "error"):
            f = ET.SubElement(tc, "failure" if v.status == "fail" else "error", message=v.message)
            f.text = json.dumps(json_safe(v.detail), indent=2, sort_keys=True, default=str)
        else:
            ET.SubElement(tc, "system-out").text = v.message
    root = ET.Element("testsuites")
    root.append(ts)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def exit_status(verdicts: Sequence[Verdict]) -> int:
    """0 when every gate passed, 2 when any could not be judged, else 1."""
    if any(v.status == "error" for v in verdicts):
        return 2
    return 1 if any(v.status == "fail" for v in verdicts) else 0


def gate_run(run_dir: str | Path, gate_file: GateFile) -> list[Verdict]:
    """Evaluate gates on a finished run folder's results (with its flags and error columns)."""
    from srforensics.analysis import with_flags

    run_dir = Path(run_dir)
    if not (run_dir / LEDGER_NAME).is_file() or not (run_dir / MANIFEST_NAME).is_file():
        raise GateError(f"{run_dir} is not a run folder (needs {LEDGER_NAME} and {MANIFEST_NAME})")
    seed = int(read_manifest(run_dir).get("seeds", {}).get("run_seed", 0))
    with Ledger(run_dir / LEDGER_NAME) as ledger:
        results = with_flags(ledger.results())
    return evaluate(gate_file, results, seed=seed)
