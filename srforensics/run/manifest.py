"""The run's manifest: what the run is (written as it starts, ``status: running``) and, once
it has finished, what it holds (inputs, LRs, counts, exports, weights, file hashes)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from srforensics import __version__
from srforensics.faces.mtcnn import settings as face_settings
from srforensics.images import sha256_file
from srforensics.provenance import environment, git_commit, package_versions, utc_now
from srforensics.resampling import Resampling
from srforensics.runtime import allocator_settings

#: How the run's seeds are drawn, as the manifest says.
SEED_SCHEME = (
    "numpy SeedSequence(run_seed, spawn_key=(stream, sha256(record_id)[:8], variant[, sample])); "
    "stream 0 = degradation parameters, 1 = model seeds"
)


def metric_entries(parts) -> list[dict[str, Any]]:
    """Each metric's metadata, with why it is unavailable in this run (or None)."""
    return [dict(i, unavailable=parts.unavailable.get(i["name"])) for i in parts.metric_infos]


def start_manifest(parts, ledger, run_dir: Path, history: list) -> dict[str, Any]:
    """The manifest of a run that has started: its configuration, protocol, dataset, model,
    metrics, seeds and environment."""
    config, protocol = parts.config, parts.protocol
    return {
        "run_id": ledger.get_meta("run_id") or f"{run_dir.name}-{uuid.uuid4().hex[:8]}",
        "srforensics_version": __version__,
        "status": "running",
        "command": list(config.command or []),
        "config": config.to_dict(),
        "protocol": {
            "name": protocol.name,
            "version": protocol.version,
            "file": protocol.source,
            "sha256": protocol.sha256,
            "text": protocol.text,
            "resolved": protocol.resolved(),
        },
        "dataset": dict(parts.dataset.info(), limit=parts.limit_info),
        "model": parts.card.to_dict(),
        "metrics": metric_entries(parts),
        "seeds": {
            "run_seed": parts.run_seed,
            "variants": parts.variants,
            "samples": config.study.samples,
            "scheme": SEED_SCHEME,
        },
        "device": parts.device,
        "face_detection": face_settings() if protocol.needs_face else None,
        "diversity_distance": parts.distance_name,
        "packages": package_versions(),
        "git": git_commit(),
        "environment": environment(device=parts.device, allocator=allocator_settings()),
        "history": history,
        "started_at": history[0]["started_at"],
        "finished_at": None,
    }


def finish_manifest(
    manifest: dict[str, Any], parts, ledger, *, identity: dict | None, exports: list[Path]
) -> None:
    """Add to ``manifest`` what the finished run holds (the ledger is still open)."""
    n_boot = parts.config.outputs.breakdown_boot or 1000
    manifest["inputs"] = [
        {k: r[k] for k in ("record_id", "path", "sha256", "status", "error")}
        for r in ledger.records()
    ]
    # Parameters (kernels included) live in the ledger; the manifest keeps their hash.
    manifest["lrs"] = ledger.lr_digests()
    manifest["counts"] = ledger.counts()
    manifest["identity"] = identity
    manifest["resampling"] = Resampling(n_boot=n_boot, seed=parts.run_seed).describe()
    manifest["metrics"] = metric_entries(parts)
    manifest["exports"] = {p.name: sha256_file(p) for p in exports}
    manifest["weights"] = parts.weights_log
    manifest["trust_weights"] = parts.config.safety.trust_weights
    manifest["status"] = "finished"
    manifest["finished_at"] = utc_now()
    manifest["ledger_content_sha256"] = ledger.content_digests()
