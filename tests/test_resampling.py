"""Record-level intervals everywhere: breakdown, disparities, identity rates and gates.

The reference intervals are computed here, independently, with numpy only: a
percentile bootstrap that resamples whole records within a group.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from srforensics.analysis import breakdown, disparities, disparity_stats, identity_rates
from srforensics.gates import evaluate, exit_status, parse_gates, write_junit

#: The example parity gate of docs/fairness.md.
SWAP_PARITY = {
    "name": "swap-parity",
    "metric": "id_swap",
    "disparity": "max_over_geomean",
    "across": "race",
    "op": "<=",
    "value": 1.5,
}


def _clustered(n_records=40, n_outputs=6, groups="ab", seed=0, rate=None, shift=0.0):
    """Records whose outputs share most of their value (a record effect of sd 0.1, output
    noise of sd 0.01): output-level and record-level intervals differ by about sqrt(6)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in groups:
        for r in range(n_records):
            base = 0.7 + (shift if g == groups[-1] else 0.0) + rng.normal(0, 0.1)
            p = None if rate is None else rate
            for _ in range(n_outputs):
                rows.append(
                    {
                        "status": "ok",
                        "record_id": f"{g}{r}",
                        "race": g,
                        "id_cosine": base + rng.normal(0, 0.01),
                        "id_swap": float(rng.random() < p) if p is not None else 0.0,
                    }
                )
    return pd.DataFrame(rows)


def _record_bootstrap(values, records, n_boot=4000, seed=123, level=0.95):
    """Independent reference: resample records with replacement, mean over their outputs."""
    ids = np.unique(records)
    per = [values[records == i] for i in ids]
    sums = np.array([v.sum() for v in per])
    counts = np.array([len(v) for v in per])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    boot = sums[picks].sum(1) / counts[picks].sum(1)
    a = (1 - level) / 2
    return np.quantile(boot, a), np.quantile(boot, 1 - a)


def _output_bootstrap(values, n_boot=4000, seed=123, level=0.95):
    rng = np.random.default_rng(seed)
    boot = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    a = (1 - level) / 2
    return np.quantile(boot, a), np.quantile(boot, 1 - a)


def test_every_interval_is_the_independent_record_level_bootstrap():
    df = _clustered()
    bd = breakdown(df, ["id_cosine"], ["race"], n_boot=2000, seed=5).set_index(["feature", "group"])
    gates = parse_gates(
        {
            "n_boot": 2000,
            "min_group_size": 10,
            "gates": [
                {"name": "all", "metric": "id_cosine", "statistic": "mean", "op": ">=", "value": 0},
                {
                    "name": "per",
                    "metric": "id_cosine",
                    "statistic": "mean",
                    "by": "race",
                    "op": ">=",
                    "value": 0,
                },
            ],
        }
    )
    overall, per = evaluate(gates, df, seed=5)
    d = disparities(df, "id_cosine", ["race"], n_boot=2000, seed=5, min_group=10)
    for group in ("a", "b"):
        part = df[df.race == group]
        ref_lo, ref_hi = _record_bootstrap(part.id_cosine.to_numpy(), part.record_id.to_numpy())
        row = bd.loc[("race", group)]
        # Monte-Carlo tolerance: 2000 vs 4000 replicates of a CI half-width of ~0.03.
        assert row.ci_low == pytest.approx(ref_lo, abs=0.004)
        assert row.ci_high == pytest.approx(ref_hi, abs=0.004)
        assert (row.n_records, row.n_outputs) == (40, 240)
        # The same quantity, the same interval: gates and disparities use the same draws.
        g = per.detail["groups"][group]
        assert (g["ci_low"], g["ci_high"]) == (row.ci_low, row.ci_high)
        assert (d["groups"][group]["ci_low"], d["groups"][group]["ci_high"]) == (
            row.ci_low,
            row.ci_high,
        )
        # And it is much wider than what resampling outputs gives.
        out_lo, out_hi = _output_bootstrap(part.id_cosine.to_numpy())
        assert (row.ci_high - row.ci_low) > 1.8 * (out_hi - out_lo)
    all_row = bd.loc[("overall", "all")]
    assert (overall.detail["ci_low"], overall.detail["ci_high"]) == (
        all_row.ci_low,
        all_row.ci_high,
    )
    ref_lo, ref_hi = _record_bootstrap(df.id_cosine.to_numpy(), df.record_id.to_numpy())
    assert all_row.ci_low == pytest.approx(ref_lo, abs=0.003)
    assert all_row.n_records == 80


def test_identity_rates_and_breakdown_give_the_same_interval():
    df = _clustered(rate=0.3, seed=3)
    rates = identity_rates(df, seed=9, n_boot=500)["id_swap"]
    bd = breakdown(df, ["id_swap"], ["race"], n_boot=500, seed=9)
    row = bd[bd.feature == "overall"].iloc[0]
    assert (rates["ci_low"], rates["ci_high"]) == (row.ci_low, row.ci_high)
    assert rates["n_records"] == 80 and rates["resampling"]["unit"] == "record"


def test_a_disparity_gate_judges_the_record_level_bound():
    """Group b is 0.1 lower. Output-level resampling would make the difference's upper
    bound ~0.13; record-level, it is ~0.16 (the independent bootstrap of the difference)."""
    df = _clustered(shift=-0.1, seed=11)
    d = disparities(df, "id_cosine", ["race"], n_boot=2000, seed=1, min_group=10)
    rng = np.random.default_rng(0)
    diffs, out_diffs = [], []
    parts = {g: df[df.race == g] for g in "ab"}
    for _ in range(2000):
        means, out_means = [], []
        for part in parts.values():
            recs = part.record_id.unique()
            pick = rng.choice(recs, size=len(recs))
            means.append(np.concatenate([part.id_cosine[part.record_id == r] for r in pick]).mean())
            out_means.append(rng.choice(part.id_cosine.to_numpy(), size=len(part)).mean())
        diffs.append(abs(means[0] - means[1]))
        out_diffs.append(abs(out_means[0] - out_means[1]))
    ref_width = np.quantile(diffs, 0.975) - np.quantile(diffs, 0.025)
    out_width = np.quantile(out_diffs, 0.975) - np.quantile(out_diffs, 0.025)
    width = d["difference"]["ci_high"] - d["difference"]["ci_low"]
    assert width == pytest.approx(ref_width, rel=0.15)
    assert width > 1.8 * out_width


def test_zero_rates_are_parity_and_partial_zeros_are_corrected_never_inf():
    all_zero = disparity_stats(np.array([0.0, 0.0, 0.0]))
    assert all_zero["ratio"][0] == 1.0 and all_zero["max_over_geomean"][0] == 1.0
    # One group at 0 of 100 outputs, others 0.05 and 0.10: with (e + 0.5) / (n + 1) the
    # rates are 0.00495, 0.0545, 0.1040; max / geomean = 0.1040 / 0.03074 = 3.384.
    one = disparity_stats(np.array([0.0, 0.05, 0.10]), n=np.array([100, 100, 100]))
    r = np.array([0.5, 5.5, 10.5]) / 101
    assert one["max_over_geomean"][0] == pytest.approx(
        r.max() / np.exp(np.log(r).mean()), rel=1e-12
    )
    assert np.isfinite(one["max_over_geomean"][0]) and one["ratio"][0] == 0.0


def test_a_model_with_no_swaps_passes_parity_gates_and_the_json_is_strict(tmp_path):
    df = _clustered(rate=0.0)
    gates = parse_gates(
        {
            "min_group_size": 10,
            "gates": [
                {
                    "name": "mog",
                    "metric": "id_swap",
                    "disparity": "max_over_geomean",
                    "across": "race",
                    "op": "<=",
                    "value": 1.5,
                },
                {
                    "name": "ratio",
                    "metric": "id_swap",
                    "disparity": "ratio",
                    "across": "race",
                    "op": ">=",
                    "value": 0.8,
                },
            ],
        }
    )
    verdicts = evaluate(gates, df)
    assert all(v.passed for v in verdicts), [v.message for v in verdicts]
    d = disparities(df, "id_swap", ["race"], min_group=10, n_boot=200)
    text = json.dumps(d, allow_nan=False)  # raises on NaN / Infinity
    assert "Infinity" not in text and d["ratio"]["value"] == 1.0
    # A rate of 0 in a group: the Wilson interval on its 40 records, not the point [0, 0].
    assert d["groups"]["a"]["ci_method"] == "wilson" and d["groups"]["a"]["ci_high"] > 0.05


@pytest.mark.slow
def test_a_fair_model_fails_a_parity_gate_at_most_at_the_nominal_rate():
    """5 groups at the same true swap rate 0.05, 200 records of one output each (the
    issue's example): raw max/geomean has a median near 1.4, yet the gate
    `max_over_geomean <= 1.5` must fail in at most ~5% of runs. 80 simulated runs: under
    the nominal 5% the count of failures is Binomial(80, 0.05); P(X > 9) = 0.006."""
    gates = parse_gates(
        {
            "n_boot": 400,
            "gates": [SWAP_PARITY],
        }
    )
    rng = np.random.default_rng(2026)
    failures, raw = 0, []
    for run in range(80):
        df = pd.DataFrame(
            {
                "status": "ok",
                "record_id": [f"{g}{i}" for g in "abcde" for i in range(200)],
                "race": [g for g in "abcde" for _ in range(200)],
                "id_swap": (rng.random(1000) < 0.05).astype(float),
            }
        )
        [v] = evaluate(gates, df, seed=run)
        failures += v.status == "fail"
        raw.append(v.detail["max_over_geomean"]["value"])
    assert np.median(raw) > 1.2  # the bias the gate must not be fooled by
    assert failures <= 9, failures


def test_a_planted_disparity_fails_the_parity_gate():
    rng = np.random.default_rng(1)
    rate = {"a": 0.05, "b": 0.05, "c": 0.20}
    df = pd.DataFrame(
        {
            "status": "ok",
            "record_id": [f"{g}{i}" for g in "abc" for i in range(300)],
            "race": [g for g in "abc" for _ in range(300)],
            "id_swap": [float(rng.random() < rate[g]) for g in "abc" for _ in range(300)],
        }
    )
    [v] = evaluate(parse_gates({"gates": [SWAP_PARITY]}), df)
    assert v.status == "fail" and "parity rejected" in v.message and "race=c" in v.message
    assert "judged on the upper bound" in v.message


def test_a_gate_on_a_metric_without_values_is_an_error_with_junit(tmp_path):
    df = _clustered().assign(id_swap=np.nan)
    gates = parse_gates(
        {
            "gates": [
                SWAP_PARITY,
                {"name": "m", "metric": "id_swap", "statistic": "mean", "op": "<=", "value": 0.1},
            ]
        }
    )
    verdicts = evaluate(gates, df)
    assert [v.status for v in verdicts] == ["error", "error"]
    assert exit_status(verdicts) == 2
    path = tmp_path / "junit.xml"
    write_junit(verdicts, path)
    text = path.read_text()
    assert text.count("<error ") == 2 and 'errors="2"' in text and "could not judge" in text


def test_small_groups_are_judged_on_records_not_outputs():
    # Four people with 50 outputs each: 200 outputs, but a small group of 4 records.
    df = _clustered(n_records=4, n_outputs=50, groups="z").assign(race="z")
    big = _clustered(n_records=40, n_outputs=1, groups="a")
    both = pd.concat([big, df], ignore_index=True)
    bd = breakdown(both, ["id_cosine"], ["race"], n_boot=200).set_index(["feature", "group"])
    assert bd.loc[("race", "z"), "small"] and bd.loc[("race", "z"), "n_outputs"] == 200
    assert not bd.loc[("race", "a"), "small"]
    d = disparities(both, "id_cosine", ["race"], n_boot=200)
    assert d["small_groups"] == {"z": 4} and "unavailable" in d


def test_familywise_bonferroni_widens_the_intervals_it_judges():
    df = _clustered()
    gate = {
        "name": "per",
        "metric": "id_cosine",
        "statistic": "mean",
        "by": "race",
        "op": ">=",
        "value": 0.0,
    }
    plain = evaluate(parse_gates({"min_group_size": 10, "gates": [gate]}), df)[0]
    family = evaluate(
        parse_gates({"min_group_size": 10, "familywise": "bonferroni", "gates": [gate]}), df
    )[0]
    assert "Bonferroni over 2 comparisons" in family.message
    a, b = plain.detail["groups"]["a"], family.detail["groups"]["a"]
    assert b["ci_low"] < a["ci_low"] and b["ci_high"] > a["ci_high"]


def test_group_means_agree_with_fairlearn_metricframe():
    """fairlearn is the reference for the group values: MetricFrame.by_group of the mean."""
    from fairlearn.metrics import MetricFrame

    df = _clustered(groups="abc", seed=4)
    bd = breakdown(df, ["id_cosine"], ["race"], n_boot=100)
    mf = MetricFrame(
        metrics=lambda yt, yp: float(np.mean(yp)),
        y_true=np.zeros(len(df)),
        y_pred=df.id_cosine.to_numpy(),
        sensitive_features=df.race,
    )
    race = bd[bd.feature == "race"].set_index("group")["mean"]
    for group, value in mf.by_group.items():
        assert race[group] == pytest.approx(value, rel=1e-12)
    assert bd[bd.feature == "overall"]["mean"].item() == pytest.approx(mf.overall, rel=1e-12)


def test_the_overall_row_uses_every_record():
    df = _clustered(n_records=20, n_outputs=2)
    df.loc[df.record_id.str.endswith(("1", "3", "5", "7", "9")), "race"] = None
    bd = breakdown(df, ["id_cosine"], ["race"], n_boot=100)
    row = bd[bd.feature == "overall"].iloc[0]
    assert row.n_records == 40 and row["mean"] == pytest.approx(df.id_cosine.mean())


@pytest.mark.parametrize("successes", [0, 10, 37, 40])
def test_wilson_interval_contains_the_rate(successes):
    """Wilson (1927): the score interval always contains p = k/n; at k = 0 and k = n its
    bounds are exactly 0 and 1 (floating point must not put them a hair inside)."""
    from srforensics.resampling import wilson

    lo, hi = wilson(successes, 40, 0.95)
    p = successes / 40
    assert lo <= p <= hi
    if successes == 40:
        assert hi == 1.0 and lo == pytest.approx(0.9124, abs=1e-4)  # 40/(40+z^2), z = 1.96
    if successes == 0:
        assert lo == 0.0 and hi == pytest.approx(1 - 0.9124, abs=1e-4)


def test_group_chart_draws_an_interval_that_excludes_the_mean():
    """A chart draws each interval from its bounds: an interval beside the mean (as a rounded
    Wilson bound once was) is drawn, not refused by an error-bar check."""
    from srforensics.report.figures import group_means

    rows = [
        {
            "group": "a",
            "n_records": 10,
            "mean": 1.0,
            "ci_low": 0.72,
            "ci_high": 1 - 1e-16,
            "small": True,
        },
        {
            "group": "b",
            "n_records": 40,
            "mean": 0.5,
            "ci_low": 0.55,
            "ci_high": 0.6,
            "small": False,
        },
        {"group": "c", "n_records": 1, "mean": 0.4, "ci_low": None, "ci_high": None, "small": True},
    ]
    assert group_means(rows, metric="m", feature="g", overall=0.6).startswith("data:image/png")
