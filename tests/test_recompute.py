"""Recomputing recorded model batches, and the report's worst-case galleries built on it."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import audit_in_process

from srforensics.images import pixel_sha256, read_image, to_tensor
from srforensics.ledger import Ledger


@pytest.fixture(scope="module")
def sensitive_run(tiny_dataset, tmp_path_factory):
    """A stochastic, batch-sensitive model; images kept for the first record only."""
    out = tmp_path_factory.mktemp("recompute") / "run"
    return audit_in_process(
        tiny_dataset,
        out,
        model="srf_test_plugins:BatchSensitive",
        samples=3,
        variants=2,
        batch_size=4,
        metrics=("psnr", "lr_psnr"),
        save_images="report",
        report_examples=1,
    )


def test_batches_are_recorded_and_every_output_names_its_batch(sensitive_run):
    run, results = sensitive_run
    with Ledger(run.run_dir / "ledger.sqlite") as ledger:
        ok = results[results["status"] == "ok"]
        members = [
            m
            for b in ledger.batches_of(set(zip(ok.record_id, ok.variant, strict=True)))
            for m in ledger.batch(b)
        ]
    # 3 readable images x 2 variants; the 66 px astronaut has a shape of its own.
    assert sorted((r, v) for r, v, _ in members) == sorted(
        {(r, int(v)) for r, v in zip(ok.record_id, ok["variant"], strict=True)}
    )
    assert all(s == [0, 1, 2] for _, _, s in members)


def test_recomputing_a_batch_is_bit_identical_but_one_lr_alone_is_not(sensitive_run):
    from srforensics.degradations.protocol import load_protocol
    from srforensics.models import load_model
    from srforensics.recompute import Recomputer, output_image

    run, results = sensitive_run
    model = load_model("srf_test_plugins:BatchSensitive")
    rec = Recomputer(load_protocol("bicubic-x4"), model)
    with Ledger(run.run_dir / "ledger.sqlite") as ledger:
        multi = next(b for b in range(ledger.next_batch()) if len(ledger.batch(b)) > 1)
        got = rec.batch(ledger, multi)
        assert all(not g.problems and g.checked == 3 for g in got), [g.problems for g in got]
        # The same LR recomputed without its batch-mates does not reproduce the ledger: this is
        # why batches are recorded (the model's output depends on them, as rounding can).
        first = got[0]
    recorded = results[(results.record_id == first.record_id) & (results.variant == first.variant)]
    alone = model.sample(to_tensor(first.lr), scale=4, n=3, seeds=[[int(s) for s in recorded.seed]])
    assert (
        pixel_sha256(output_image(alone[0, 0], tolerance=0.1)[0]) != recorded.output_sha256.iloc[0]
    )


def test_recompute_names_an_input_file_changed_after_the_run(sensitive_run, tiny_dataset, tmp_path):
    import shutil

    from srforensics.degradations.protocol import load_protocol
    from srforensics.models import load_model
    from srforensics.recompute import Recomputer

    run, _ = sensitive_run
    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    altered = tmp_path / "coffee.png"
    data = bytearray((tiny_dataset / "coffee.png").read_bytes())
    altered.write_bytes(bytes(data) + b"\0")  # one trailing byte: same pixels, other file
    with Ledger(copy / "ledger.sqlite") as ledger:
        ledger.conn.execute(
            "UPDATE records SET path = ? WHERE record_id = 'coffee.png'", (str(altered),)
        )
        ledger.conn.commit()
        batch = ledger.batches_of([("coffee.png", 0)])[0]
        got = Recomputer(
            load_protocol("bicubic-x4"), load_model("srf_test_plugins:BatchSensitive")
        ).batch(ledger, batch)
    coffee = next(g for g in got if g.record_id == "coffee.png")
    assert any("hashes to" in p and "coffee.png" in p for p in coffee.problems)
    others = [g for g in got if g.record_id != "coffee.png"]
    assert all(any("could not be recreated" in p for p in g.problems) for g in others)


def test_recorded_hr_parameters_are_applied_without_fitting_and_checked_by_hash(
    sensitive_run, monkeypatch
):
    """``refit=False`` (an audit recomputing its own galleries) applies the HR parameters the
    ledger recorded instead of fitting them again (face detection, for ``faces``); the HR is
    still checked against its recorded hash, so altered parameters are caught."""
    import json

    from srforensics.degradations.ops import ModCrop
    from srforensics.degradations.protocol import load_protocol
    from srforensics.models import load_model
    from srforensics.recompute import Recomputer

    run, _ = sensitive_run
    fits = []
    fit = ModCrop.fit
    monkeypatch.setattr(ModCrop, "fit", lambda self, img: fits.append(1) or fit(self, img))
    model = load_model("srf_test_plugins:BatchSensitive")
    with Ledger(run.run_dir / "ledger.sqlite") as ledger:
        refit = Recomputer(load_protocol("bicubic-x4"), model).lr(ledger, "coffee.png", 0)
        fitted = len(fits)  # one per input of its batch (this model needs its batch-mates)
        assert not refit.problems and fitted >= 1
        recorded = Recomputer(load_protocol("bicubic-x4"), model, refit=False)
        got = recorded.lr(ledger, "coffee.png", 0)
        assert not got.problems and len(fits) == fitted  # nothing fitted again
        assert np.array_equal(got.hr, refit.hr) and got.checked == refit.checked == 3
        params = ledger.record("coffee.png")["hr_params"]
        assert params == [{"multiple": 4}]  # what mod_crop fitted: its configured multiple
        params[0]["multiple"] = 7  # 64 px: cropped otherwise by a multiple of 7
        ledger.conn.execute(
            "UPDATE records SET hr_params = ? WHERE record_id = 'coffee.png'",
            (json.dumps(params),),
        )
        altered = Recomputer(load_protocol("bicubic-x4"), model, refit=False)
        got = altered.lr(ledger, "coffee.png", 0)
        ledger.conn.rollback()
    assert any("prepared HR differs" in p for p in got.problems), got.problems


def test_protocol_prepare_applies_recorded_parameters_as_they_are():
    """``prepare(img, params)`` gives the HR that fitting gave, bit for bit, from the
    parameters as the ledger stores them (JSON), and refuses a list of the wrong length."""
    import json

    from skimage import data

    from srforensics.degradations.protocol import load_protocol

    protocol = load_protocol("bicubic-x4")
    img = data.coffee()[:, :, :3].astype(np.float32) / 255.0
    hr, params = protocol.prepare(img)
    again, same = protocol.prepare(img, json.loads(json.dumps(params)))
    assert np.array_equal(hr, again) and same == params
    with pytest.raises(ValueError, match="expected 1 HR parameter sets, got 2"):
        protocol.prepare(img, params * 2)


def test_galleries_show_recomputed_worst_cases_bit_identical_to_the_ledger(sensitive_run):
    run, _ = sensitive_run
    results = pd.read_parquet(run.run_dir / "results.parquet")
    html = (run.run_dir / "report.html").read_text()
    for title in ("Least consistent with the evidence", "Highest spread across outputs"):
        assert title in html
    assert "could not reproduce" not in html and "did not reproduce" not in html
    # Galleries reach beyond the one example record the run kept images for ...
    kept = results[results.output_path.notna()]
    assert set(kept.record_id) - {"astronaut.png"}
    # ... and every saved output file holds exactly the pixels the ledger hashed.
    for _, row in kept.iterrows():
        img, _ = read_image(run.run_dir / row.output_path)
        assert pixel_sha256(img) == row.output_sha256
    gallery = html[html.index('id="galleries"') : html.index('id="examples"')]
    assert len(re.findall(r"<img ", gallery)) >= 3 * (3 + 3)  # HR, LR, 3 outputs, std map per LR
    assert 'alt="per-pixel standard deviation of' in gallery


def test_exported_tables_are_the_ledger_read_again_with_the_galleries_paths(
    sensitive_run, tmp_path
):
    """The audit reads its tables once, before the galleries, and takes the saved images'
    paths from the ledger afterwards: its exports are the ledger's tables read afresh."""
    from srforensics.run.pipeline import export_tables

    run, _ = sensitive_run
    with Ledger(run.run_dir / "ledger.sqlite") as ledger:
        export_tables(ledger, tmp_path)  # everything read from the ledger now
    for name in ("results", "per_input"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(run.run_dir / f"{name}.parquet"),
            pd.read_parquet(tmp_path / f"{name}.parquet"),
            check_exact=True,
        )
        assert (run.run_dir / f"{name}.csv").read_bytes() == (tmp_path / f"{name}.csv").read_bytes()
    # Not trivially: the galleries saved images of LRs the run itself did not keep.
    results = pd.read_parquet(tmp_path / "results.parquet")
    saved = results[results.output_path.notna() & (results.record_id != "astronaut.png")]
    per = pd.read_parquet(tmp_path / "per_input.parquet")
    assert len(saved) and per[per.record_id != "astronaut.png"].std_map_path.notna().any()
    assert saved.hr_path.notna().all() and saved.lr_path.notna().all()


def test_report_shows_every_lr_variant_of_an_example_record(sensitive_run):
    run, _ = sensitive_run
    html = (run.run_dir / "report.html").read_text()
    protocol = html[html.index('id="protocol"') : html.index('id="model"')]
    assert "Example LR variants" in protocol
    assert 'alt="LR variant 0 of astronaut.png"' in protocol
    assert 'alt="LR variant 1 of astronaut.png"' in protocol


def test_no_gallery_images_when_images_are_not_kept(tiny_dataset, tmp_path):
    run, results = audit_in_process(
        tiny_dataset, tmp_path / "run", model="srf_test_plugins:LoudNoise", samples=2
    )
    assert results.output_path.isna().all()
    assert not (run.run_dir / "images").exists()
    html = (run.run_dir / "report.html").read_text()
    assert "Highest spread across outputs" in html
    assert "Images were not kept for this run" in html
    assert np.isfinite(results.psnr.dropna()).all()


def test_outputs_are_checked_and_quantised_one_by_one_in_a_stack():
    """A stack of outputs gives what each output gives alone (BasicSR ``tensor2img``
    rounding; the hash of its 8-bit pixels), and a bad output fails alone with its reason."""
    import torch

    from srforensics.images import pixel_sha256
    from srforensics.recompute import output_images

    g = torch.Generator().manual_seed(0)
    outs = torch.rand(5, 3, 16, 24, generator=g) * 1.1 - 0.05  # within the 0.1 tolerance
    outs[1, 0, 3, 4] = float("nan")
    outs[2, 2, 0, 0] = float("inf")
    outs[3, 1, 5, 5] = 1.5
    checked = output_images(outs, tolerance=0.1)
    assert [c.reason is None for c in checked] == [True, False, False, False, True]
    assert "NaN or Inf" in checked[1].reason and "NaN or Inf" in checked[2].reason
    assert "max 1.5" in checked[3].reason and checked[3].image is None
    for j in (0, 4):
        ref = np.clip(np.round(outs[j].permute(1, 2, 0).double().numpy() * 255), 0, 255) / 255
        np.testing.assert_array_equal(checked[j].image, ref.astype(np.float32))
        assert checked[j].image.shape == (16, 24, 3)
        assert checked[j].sha256 == pixel_sha256(checked[j].image)


def test_equal_outputs_are_quantised_once_and_give_what_each_gives_alone():
    """A deterministic model's N outputs are one: those equal to the first good output share its
    image and hash; an output that differs in its last value only is quantised on its own.
    Reference: each output checked alone (``output_image``) and BasicSR ``tensor2img`` rounding."""
    import torch

    from srforensics.images import pixel_sha256
    from srforensics.recompute import output_image, output_images

    g = torch.Generator().manual_seed(1)
    base = torch.rand(3, 8, 8, generator=g)
    base[0, 0, 0] = 0.0
    signed = base.clone()
    signed[0, 0, 0] = -0.0  # equal in value: the same 8-bit level
    last = base.clone()
    last[2, 7, 7] = (base[2, 7, 7] + 0.5) % 1.0  # another level, in the last value only
    nan = base.clone()
    nan[1, 1, 1] = float("nan")
    outs = torch.stack([nan, base, base.clone(), signed, last, base.clone()])
    checked = output_images(outs, tolerance=0.1)
    assert checked[0].image is None and "NaN" in checked[0].reason
    for j in range(1, 6):
        alone, reason = output_image(outs[j], tolerance=0.1)
        assert reason is None
        np.testing.assert_array_equal(checked[j].image, alone)
        assert checked[j].sha256 == pixel_sha256(alone)
    assert checked[1].image is checked[2].image is checked[3].image is checked[5].image
    assert checked[4].sha256 != checked[1].sha256
    assert not checked[1].image.flags.writeable  # shared: nobody may change it for the others


def test_outputs_bit_for_bit_equal_to_the_first_share_its_check():
    """Copies of the first output share its verdict: its failure when it fails (each with the
    reason it gives alone), its image and hash when it passes; others are checked on their own."""
    import torch

    from srforensics.recompute import output_image, output_images

    g = torch.Generator().manual_seed(2)
    base = torch.rand(3, 8, 8, generator=g)
    high = base.clone()
    high[0, 4, 4] = 1.5  # beyond the tolerance, in one value past the first few compared
    for outs in (
        torch.stack([high, high.clone(), base, high.clone()]),
        torch.stack([base, base.clone(), high, base.clone()]),
        torch.zeros(0, 3, 8, 8),
    ):
        checked = output_images(outs, tolerance=0.1)
        assert len(checked) == len(outs)
        for j, c in enumerate(checked):
            alone, reason = output_image(outs[j], tolerance=0.1)
            assert c.reason == reason
            if reason is None:
                np.testing.assert_array_equal(c.image, alone)
            else:
                assert c.image is None and "max 1.5" in reason
        if len(outs):
            assert checked[1] is checked[3] is checked[0]  # the copies share the first's
            assert checked[2] is not checked[0]
