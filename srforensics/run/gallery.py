"""The report's worst cases: the images of those the run did not keep, recomputed from the
ledger and saved only when bit-identical to the hashes it recorded."""

from __future__ import annotations

from typing import Any

import numpy as np

from srforensics.analysis import gallery_picks
from srforensics.metrics.diversity import pixel_std, std_map_image
from srforensics.run.folder import image_stem
from srforensics.run.outlet import Outlet
from srforensics.run.records import OK


def save_gallery_images(parts, ledger, out: Outlet, tables) -> list[tuple[str, int]]:
    """Save the images of the report's worst cases that the run did not keep.

    ``tables``: the ledger's results and per-input table (:class:`LedgerTables`). The LRs'
    batches are recomputed from the recorded inputs, parameters and seeds
    (``parts.recomputer``); an image is saved only when it is bit-identical to the ledger's
    hash. Those that could not be reproduced are recorded in the ledger
    (``gallery_problems``), with the reasons. Returns the LRs whose images were saved
    (``(record_id, variant)``).
    """
    if parts.config.outputs.save_images == "none":
        return []
    hashes = _unsaved_hashes(tables)
    problems: list[dict[str, Any]] = []
    saved: list[tuple[str, int]] = []
    for key in sorted(hashes):
        got = parts.recomputer.lr(ledger, *key)
        if got.problems:
            problems.append({"record_id": key[0], "variant": key[1], "problems": got.problems})
            continue
        stem = f"{image_stem(key[0])}/v{key[1]}"
        rec = ledger.record(key[0])
        hr_path = None if rec["hr_path"] else out.save(got.hr, f"{image_stem(key[0])}/hr.png")
        images = [got.outputs[s] for s in sorted(got.outputs)]
        std_path = (
            out.save(std_map_image(pixel_std(np.stack(images))), f"{stem}_std.png")
            if len(images) > 1
            else None
        )
        ledger.set_image_paths(
            record_id=key[0],
            variant=key[1],
            hr_path=hr_path,
            lr_path=out.save(got.lr, f"{stem}_lr.png"),
            std_map_path=std_path,
            output_paths=out.save_outputs(stem, got.outputs, hashes[key]),
        )
        saved.append(key)
    ledger.set_meta("gallery_problems", problems)
    return saved


def _unsaved_hashes(tables) -> dict[tuple[str, int], dict[int, str]]:
    """Per LR the report shows whose images the run did not keep, the ledger's hash of each
    of its outputs (an output is saved only when it is bit-identical to its hash)."""
    results = tables.results
    wanted = {
        (lr["record_id"], lr["variant"])
        for g in gallery_picks(results, tables.per_input)
        for lr in g["lrs"]
    }
    ok = results[results["status"] == OK]
    rows = list(
        zip(
            zip(ok["record_id"].tolist(), ok["variant"].tolist(), strict=True),
            ok["sample"].tolist(),
            ok["output_sha256"].tolist(),
            ok["output_path"].isna().tolist(),
            strict=True,
        )
    )  # plain lists: a pandas group per LR costs milliseconds each
    unsaved = {key for key, _, _, no_path in rows if no_path and key in wanted}
    hashes: dict[tuple[str, int], dict[int, str]] = {}
    for key, sample, sha, _ in rows:
        if key in unsaved:
            hashes.setdefault(key, {})[sample] = sha
    return hashes
