"""Dataset cards, per-group breakdowns with CIs, disparities, and gates."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from conftest import audit_tiny, run_cli, write_png

from srforensics.analysis import breakdown, disparities, disparity_stats
from srforensics.data import load_dataset
from srforensics.gates import GateError, evaluate, parse_gates


def _img():
    return (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)


# -- dataset cards ----------------------------------------------------------------------------
def test_utkface_names(tmp_path):
    for name in (
        "25_0_2_20170116174525125.jpg.chip.jpg",
        "1_1_4_20161221193016140.jpg",
        "71_1_0_2017.jpg",
        "39_1_20170116174525125.jpg",
    ):  # the last lacks a field, as a few UTKFace files do
        write_png(tmp_path / name, _img())
    ds = load_dataset("utkface", root=tmp_path)
    by = {r.id: r.attributes for r in ds.records}
    assert len(ds.records) == 3
    assert by["25_0_2_20170116174525125.jpg.chip.jpg"] == {
        "age": "20-29",
        "gender": "male",
        "race": "asian",
    }
    assert by["1_1_4_20161221193016140.jpg"] == {"age": "0-2", "gender": "female", "race": "other"}
    assert by["71_1_0_2017.jpg"]["age"] == "70+"


def test_fairface_csv(tmp_path):
    (tmp_path / "val").mkdir()
    for i in (1, 2):
        write_png(tmp_path / "val" / f"{i}.jpg", _img())
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,more than 70,Female,East Asian,True\n"
        "val/2.jpg,3-9,Male,Martian,False\n"
    )
    ds = load_dataset("fairface", root=tmp_path)
    assert [r.attributes for r in ds.records] == [
        {"age": "70+", "gender": "female", "race": "east_asian"},
        {
            "age": "3-9",
            "gender": "male",
            "race": None,
        },  # an unknown label is missing, never guessed
    ]


def test_celeba_files(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    for f in ("000001.jpg", "000002.jpg"):
        write_png(tmp_path / "img_align_celeba" / f, _img())
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 2880\n000002.jpg 2937\n")
    (tmp_path / "list_attr_celeba.txt").write_text(
        "2\nMale Smiling Young\n000001.jpg -1  1  1\n000002.jpg  1 -1 -1\n"
    )
    ds = load_dataset("celeba", root=tmp_path)
    assert [(r.subject, r.attributes) for r in ds.records] == [
        ("2880", {"gender": "female", "age": "young"}),
        ("2937", {"gender": "male", "age": "not_young"}),
    ]
    assert ds.records[0].path == (tmp_path / "img_align_celeba" / "000001.jpg").resolve()


def test_lfw_folders(tmp_path):
    for person, n in (("Aaron_Peirsol", 2), ("Zico", 1)):
        for i in range(1, n + 1):
            write_png(tmp_path / person / f"{person}_{i:04d}.jpg", _img())
    ds = load_dataset("lfw", root=tmp_path)
    assert [r.subject for r in ds.records] == ["Aaron_Peirsol", "Aaron_Peirsol", "Zico"]


def test_cards_need_a_root_and_validate_prints_group_counts(tmp_path):
    proc = run_cli("datasets", "validate", "utkface")
    assert proc.returncode == 2 and "--dataset-root" in proc.stderr
    write_png(tmp_path / "30_1_1_2017.jpg", _img())
    write_png(tmp_path / "35_0_1_2017.jpg", _img())
    proc = run_cli("datasets", "validate", "utkface", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "race: black 2" in proc.stdout and "gender: female 1, male 1" in proc.stdout
    listing = run_cli("datasets", "list")
    assert {"fairface", "utkface", "celeba", "lfw", "folder", "sample"} <= {
        line.split()[0] for line in listing.stdout.splitlines()
    }


# -- breakdowns and disparities ----------------------------------------------------------------
def _synthetic(effect: float, n_per_group: int = 300, seed: int = 0) -> pd.DataFrame:
    """Outputs of three race groups; ``effect`` lowers group b's identity and raises its swap rate."""
    rng = np.random.default_rng(seed)
    rows = []
    for race, shift, swap in (("a", 0.0, 0.1), ("b", -effect, 0.1 + effect), ("c", 0.0, 0.1)):
        for i in range(n_per_group):
            rows.append(
                {
                    "record_id": f"{race}{i}",
                    "status": "ok",
                    "race": race,
                    "gender": "fm"[i % 2],
                    "id_cosine": 0.8 + shift + rng.normal(0, 0.05),
                    "id_swap": float(rng.random() < swap),
                }
            )
    return pd.DataFrame(rows)


def test_breakdown_rows_and_small_groups():
    df = _synthetic(0.0, n_per_group=20)
    bd = breakdown(df, ["id_cosine"], ["race", "gender"], n_boot=100)
    assert set(bd.feature) == {"overall", "race", "gender", "race×gender"}
    race = bd[(bd.feature == "race")].set_index("group")
    assert race.loc["a", "n_records"] == 20 and race.loc["a", "n_outputs"] == 20
    assert race["small"].all()  # 20 records < 30
    assert (race.ci_low <= race["mean"]).all() and (race["mean"] <= race.ci_high).all()
    assert race.loc["b", "mean"] == pytest.approx(df[df.race == "b"].id_cosine.mean())


def test_max_over_geomean_formula():
    # NIST IR 8429: max rate / geometric mean of rates. Rates 0.01, 0.04: geomean 0.02 -> 2.
    assert disparity_stats(np.array([0.01, 0.04]))["max_over_geomean"] == pytest.approx(2.0)
    assert disparity_stats(np.array([0.01, 0.04]))["difference"] == pytest.approx(0.03)
    assert disparity_stats(np.array([0.01, 0.04]))["ratio"] == pytest.approx(0.25)
    d = disparities(_synthetic(0.2), "id_swap", ["race"], n_boot=300)
    assert d["highest_group"] == "b" and d["max_over_geomean"]["ci_low"] > 1.0


@pytest.mark.slow
def test_bootstrap_cis_cover_the_true_group_mean():
    # 100 seeded replicates of a group of 40 outputs with true mean 0.8 (beside a second group at
    # 0.5): the 95% CI of the group mean must cover 0.8 in at least 90% of them. The replicates are
    # the groups of one breakdown ("cell" = replicate x race), so fairlearn bootstraps them together.
    rng = np.random.default_rng(2026)
    frames = []
    for rep in range(100):
        frames.append(
            pd.DataFrame(
                {
                    "status": "ok",
                    "record_id": [f"{rep}-{i}" for i in range(80)],
                    "cell": [f"{rep}:a"] * 40 + [f"{rep}:b"] * 40,
                    "v": np.r_[rng.normal(0.8, 0.1, 40), rng.normal(0.5, 0.1, 40)],
                }
            )
        )
    bd = breakdown(
        pd.concat(frames, ignore_index=True),
        ["v"],
        ["cell"],
        n_boot=200,
        seed=7,
        intersections=False,
    )
    a = bd[(bd.feature == "cell") & bd.group.str.endswith(":a")]
    assert len(a) == 100
    coverage = ((a.ci_low <= 0.8) & (0.8 <= a.ci_high)).mean()
    assert coverage >= 0.90, coverage


# -- gates ------------------------------------------------------------------------------------------
GATES = {
    "min_group_size": 30,
    "n_boot": 500,
    "gates": [
        {
            "name": "identity-holds",
            "metric": "id_cosine",
            "statistic": "mean",
            "op": ">=",
            "value": 0.6,
        },
        {
            "name": "identity-per-race",
            "metric": "id_cosine",
            "statistic": "mean",
            "by": "race",
            "op": ">=",
            "value": 0.7,
            "message": "every race group keeps its identity",
        },
        {
            "name": "swap-parity",
            "metric": "id_swap",
            "disparity": "max_over_geomean",
            "across": ["race"],
            "op": "<=",
            "value": 2.0,
        },
    ],
}


def test_planted_group_effect_fails_naming_the_group_and_no_effect_passes():
    gates = parse_gates(GATES)
    clean = evaluate(gates, _synthetic(0.0))
    assert all(v.passed for v in clean), [v.message for v in clean]
    biased = {v.name: v for v in evaluate(gates, _synthetic(0.3))}
    assert biased["identity-holds"].passed  # the overall mean still clears 0.6
    assert not biased["identity-per-race"].passed
    assert (
        "race=b" in biased["identity-per-race"].message
        and "race=a" not in biased["identity-per-race"].message
    )
    assert biased["identity-per-race"].message.startswith("every race group keeps its identity — ")
    assert (
        not biased["swap-parity"].passed and "highest group race=b" in biased["swap-parity"].message
    )


def test_gates_ignore_small_groups_unless_told():
    df = _synthetic(0.0)
    tiny = df.iloc[:5].assign(race="z", id_cosine=0.1)  # a group of 5 with very low identity
    both = pd.concat([df, tiny], ignore_index=True)
    gate = {
        "name": "g",
        "metric": "id_cosine",
        "statistic": "mean",
        "by": "race",
        "op": ">=",
        "value": 0.7,
    }
    v = evaluate(parse_gates({"gates": [gate]}), both)[0]
    assert v.passed and "could not judge small groups (< 30 records): z (5 records)" in v.message
    v = evaluate(parse_gates({"gates": [dict(gate, include_small=True)]}), both)[0]
    assert not v.passed and "race=z" in v.message


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gates": []}, "non-empty 'gates' list"),
        (
            {"gates": [{"name": "g", "metric": "m", "op": "=>", "value": 1, "statistic": "mean"}]},
            "'=>' is not one of",
        ),
        (
            {"gates": [{"name": "g", "metric": "m", "op": ">=", "value": 1}]},
            "exactly one of 'statistic'",
        ),
        (
            {
                "gates": [
                    {
                        "name": "g",
                        "metric": "m",
                        "op": ">=",
                        "value": 1,
                        "disparity": "gini",
                        "across": "race",
                    }
                ]
            },
            "'gini' is not one of",
        ),
    ],
)
def test_bad_gate_files(bad, message):
    with pytest.raises(GateError, match=message):
        parse_gates(bad)


def test_gate_cli_exit_codes_junit_and_json(tiny_dataset, tmp_path):
    import yaml

    run = tmp_path / "biased"
    proc = audit_tiny(tiny_dataset, run, model="srf_test_plugins:GroupBiased")
    assert proc.returncode == 0, proc.stderr[-2000:]
    gates = {
        "min_group_size": 1,
        "gates": [
            {
                "name": "psnr-overall",
                "metric": "psnr",
                "statistic": "mean",
                "op": ">=",
                "value": 10,
            },
            {
                "name": "psnr-per-group",
                "metric": "psnr",
                "statistic": "mean",
                "by": "group",
                "op": ">=",
                "value": 25,
                "message": "every group keeps PSNR",
            },
        ],
    }
    gates["gates"].append(
        {
            "name": "psnr-high",
            "metric": "psnr",
            "statistic": "mean",
            "op": ">=",
            "value": 60,
            "message": "PSNR stays high",
        }
    )
    gate_file = tmp_path / "gates.yaml"
    gate_file.write_text(yaml.safe_dump(gates))
    junit, js = tmp_path / "junit.xml", tmp_path / "gates.json"
    proc = run_cli(
        "gate", str(run), "--gates", str(gate_file), "--junit", str(junit), "--json", str(js)
    )
    # Group b is one photograph: no interval, so that gate cannot be judged (exit 2), while
    # the other two are judged and their verdicts still written.
    assert proc.returncode == 2, proc.stderr
    assert "PASS psnr-overall" in proc.stdout and "judged on the lower bound" in proc.stdout
    assert "FAIL psnr-high: PSNR stays high — mean psnr" in proc.stdout
    assert "ERROR psnr-per-group: could not judge: group=b" in proc.stdout
    assert "1 record(s)" in proc.stdout
    assert "could not be judged: psnr-per-group" in proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["psnr-overall", "psnr-per-group", "psnr-high"]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    assert "group=b" in cases[1].find("error").get("message")
    assert cases[2].find("failure") is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    written = json.loads(js.read_text())
    assert written["passed"] is False and written["errors"] == 1
    failing = tmp_path / "fail.yaml"
    failing.write_text(yaml.safe_dump({"gates": [gates["gates"][0], gates["gates"][2]]}))
    assert run_cli("gate", str(run), "--gates", str(failing)).returncode == 1
    gate_file = failing

    passing = tmp_path / "pass.yaml"
    passing.write_text(yaml.safe_dump({"min_group_size": 1, "gates": gates["gates"][:1]}))
    assert run_cli("gate", str(run), "--gates", str(passing)).returncode == 0
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"gates": [dict(gates["gates"][0], metric="nosuch")]}))
    proc = run_cli("gate", str(run), "--gates", str(unknown))
    assert proc.returncode == 2 and "has no column 'nosuch'" in proc.stderr
    assert run_cli("gate", str(tmp_path / "nope"), "--gates", str(passing)).returncode == 2

    # audit --gates: the same verdict at the end of an audit; the report path is still the last line.
    proc = audit_tiny(
        tiny_dataset,
        tmp_path / "audited",
        "--gates",
        str(gate_file),
        model="srf_test_plugins:GroupBiased",
        breakdowns=True,
    )
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].endswith("report.html")
    assert (tmp_path / "audited" / "junit.xml").is_file()
    html = (tmp_path / "audited" / "report.html").read_text()
    assert 'alt="per-group means with confidence intervals"' in html
    assert "Verdict: FAILED" in html and html.index("Verdict") < html.index('id="summary"')
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates: [\n")
    proc = audit_tiny(tiny_dataset, tmp_path / "never", "--gates", str(bad))
    assert proc.returncode == 2 and not (tmp_path / "never").exists()
