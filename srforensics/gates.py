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

Every condition is judged on the end of its confidence interval that makes the gate
conservative: the lower bound for ``>=``/``>``, the upper bound for ``<=``/``<``.
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

from srforensics.errors import SRForensicsError

if TYPE_CHECKING:
    import pandas as pd

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
DISPARITIES = ("difference", "ratio", "max_over_geomean")
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
    min_group_size: int = 30
    n_boot: int = 1000
    level: float = 0.95
    source: str = ""


@dataclass
class Verdict:
    name: str
    passed: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        unknown = sorted(set(g) - _GATE_FIELDS)
        if unknown:
            raise GateError(
                f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_GATE_FIELDS))}"
            )
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
    min_group = data.get("min_group_size", 30)
    n_boot = data.get("n_boot", 1000)
    if (
        not isinstance(min_group, int)
        or min_group < 1
        or not isinstance(n_boot, int)
        or n_boot < 100
    ):
        raise GateError(f"{source}: min_group_size must be >= 1 and n_boot >= 100")
    return GateFile(tuple(gates), min_group, n_boot, 0.95, source)


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


def _judge_mean(
    g: Gate, rows: pd.DataFrame, gate_file: GateFile, seed: int
) -> tuple[dict, bool, str]:
    """Mean of ``g.metric`` over ``rows`` with a record-level bootstrap CI, judged on its conservative bound."""
    from srforensics.analysis import bootstrap_rate

    rate, lo, hi = bootstrap_rate(
        rows[g.metric].to_numpy(), rows["record_id"].to_numpy(), seed=seed, n_boot=gate_file.n_boot
    )
    passed = bool(OPS[g.op](_conservative(g.op, lo, hi), g.value))
    text = (
        f"mean {g.metric} {_fmt(rate)} (95% CI {_fmt(lo)}–{_fmt(hi)}), needs {g.op} {_fmt(g.value)}"
    )
    return {"mean": rate, "ci_low": lo, "ci_high": hi, "n": int(len(rows))}, passed, text


def _message(g: Gate, passed: bool, text: str) -> str:
    return text if passed or not g.message else f"{g.message} — {text}"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def evaluate(gate_file: GateFile, results: pd.DataFrame, *, seed: int = 0) -> list[Verdict]:
    """Judge every gate on ``results`` (one row per output, as exported); raises GateError on data errors."""
    from srforensics.analysis import disparities, with_error_columns

    results = with_error_columns(results)
    ok = results[results["status"] == "ok"]
    verdicts = []
    for g in gate_file.gates:
        if g.metric not in results:
            raise GateError(f"gate {g.name!r}: the run has no column {g.metric!r}")
        for a in g.by + g.across:
            if a not in results:
                raise GateError(f"gate {g.name!r}: the run has no attribute {a!r}")
        test = OPS[g.op]
        if g.disparity:
            d = disparities(
                results,
                g.metric,
                g.across,
                min_group=gate_file.min_group_size,
                include_small=g.include_small,
                n_boot=gate_file.n_boot,
                seed=seed,
            )
            if "unavailable" in d:
                verdicts.append(
                    Verdict(
                        g.name,
                        False,
                        f"cannot judge {g.disparity} of {g.metric} across "
                        f"{'×'.join(g.across)}: {d['unavailable']}",
                        d,
                    )
                )
                continue
            stat = d[g.disparity]
            bound = _conservative(g.op, stat["ci_low"], stat["ci_high"])
            worst = (
                d["lowest_group"]
                if g.disparity == "ratio" and g.op in (">=", ">")
                else d["highest_group"]
            )
            passed = bool(test(bound, g.value))
            text = (
                f"{g.disparity} of {g.metric} across {'×'.join(g.across)} is {_fmt(stat['value'])} "
                f"(95% CI {_fmt(stat['ci_low'])}–{_fmt(stat['ci_high'])}); needs {g.op} {_fmt(g.value)}; "
                f"highest group {'×'.join(g.across)}={d['highest_group']} "
                f"({_fmt(d['groups'][d['highest_group']]['mean'])}), lowest {d['lowest_group']} "
                f"({_fmt(d['groups'][d['lowest_group']]['mean'])})"
            )
            if d["small_groups"]:
                text += f"; ignored small groups: {', '.join(d['small_groups'])}"
            verdicts.append(
                Verdict(
                    g.name,
                    passed,
                    _message(g, passed, text),
                    dict(d, worst_group=worst, bound=bound),
                )
            )
            continue
        rows = ok[ok[g.metric].notna()]
        if g.by:
            rows = rows[rows[list(g.by)].notna().all(axis=1)]
            labels = rows[list(g.by)].astype(str).agg("×".join, axis=1)
            failing, checked, skipped = [], {}, []
            for label, part in rows.groupby(labels):
                if len(part) < gate_file.min_group_size and not g.include_small:
                    skipped.append(str(label))
                    continue
                stats, ok_group, text = _judge_mean(g, part, gate_file, seed)
                checked[str(label)] = stats
                if not ok_group:
                    failing.append(f"{'×'.join(g.by)}={label}: {text}")
            if not checked:
                verdicts.append(
                    Verdict(
                        g.name,
                        False,
                        f"no group of {'×'.join(g.by)} has {gate_file.min_group_size}+ "
                        f"outputs with {g.metric}; set include_small to judge small groups",
                        {"skipped_small_groups": skipped},
                    )
                )
                continue
            passed = not failing
            text = (
                "; ".join(failing)
                if failing
                else f"every group of {'×'.join(g.by)} meets {g.op} {_fmt(g.value)}"
            )
            if skipped:
                text += f"; ignored small groups: {', '.join(skipped)}"
            verdicts.append(
                Verdict(
                    g.name,
                    passed,
                    _message(g, passed, text),
                    {"groups": checked, "skipped_small_groups": skipped},
                )
            )
            continue
        if rows.empty:
            verdicts.append(Verdict(g.name, False, f"no output has a value of {g.metric}", {}))
            continue
        stats, passed, text = _judge_mean(g, rows, gate_file, seed)
        verdicts.append(
            Verdict(
                g.name,
                passed,
                _message(g, passed, text),
                stats,
            )
        )
    return verdicts


def write_json(verdicts: Sequence[Verdict], path: str | Path) -> None:
    data = {"passed": all(v.passed for v in verdicts), "gates": [v.to_dict() for v in verdicts]}
    Path(path).write_text(
        json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )


def write_junit(
    verdicts: Sequence[Verdict], path: str | Path, *, suite: str = "srforensics gates"
) -> None:
    """JUnit XML: one testsuite, one testcase per gate, a failure element for each failed gate."""
    failures = sum(not v.passed for v in verdicts)
    ts = ET.Element(
        "testsuite", name=suite, tests=str(len(verdicts)), failures=str(failures), errors="0"
    )
    for v in verdicts:
        tc = ET.SubElement(ts, "testcase", classname="srforensics.gates", name=v.name)
        if not v.passed:
            f = ET.SubElement(tc, "failure", message=v.message)
            f.text = json.dumps(v.detail, indent=2, sort_keys=True, default=str)
        else:
            ET.SubElement(tc, "system-out").text = v.message
    root = ET.Element("testsuites")
    root.append(ts)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def gate_run(run_dir: str | Path, gate_file: GateFile) -> list[Verdict]:
    """Evaluate gates on a finished run folder's results (with its flags and error columns)."""
    from srforensics.analysis import with_flags
    from srforensics.ledger import LEDGER_NAME, Ledger
    from srforensics.provenance import MANIFEST_NAME, read_manifest

    run_dir = Path(run_dir)
    if not (run_dir / LEDGER_NAME).is_file() or not (run_dir / MANIFEST_NAME).is_file():
        raise GateError(f"{run_dir} is not a run folder (needs {LEDGER_NAME} and {MANIFEST_NAME})")
    seed = int(read_manifest(run_dir).get("seeds", {}).get("run_seed", 0))
    with Ledger(run_dir / LEDGER_NAME) as ledger:
        results = with_flags(ledger.results())
    return evaluate(gate_file, results, seed=seed)
