"""The parts of one audit, loaded and checked before anything runs: the protocol, the
dataset's records, the model, the metrics, the face matcher, the gate file."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from srforensics.data import limit_records, load_dataset
from srforensics.degradations.protocol import load_protocol
from srforensics.errors import SRForensicsError
from srforensics.gates import load_gates
from srforensics.metrics import MetricConfig, run_metric_names
from srforensics.metrics.diversity import distance_backend
from srforensics.recompute import Recomputer
from srforensics.run.config import AuditConfig
from srforensics.run.identity import IdentityStage, load_identity
from srforensics.run.scoring import build_metrics, metric_key, resolve_device
from srforensics.weights import weights_policy


@dataclass(eq=False)
class Parts:
    """What an audit runs with, loaded from its :class:`AuditConfig`."""

    config: AuditConfig
    protocol: Any
    dataset: Any
    gate_file: Any
    device: str
    model: Any
    card: Any  # the model's ModelCard
    run_seed: int
    variants: int
    metrics: list
    metric_infos: list[dict[str, Any]]
    #: Per metric that cannot be computed in this run, the reason.
    unavailable: dict[str, str]
    #: Per metric whose reference features a loader process may compute, its key.
    feature_keys: dict[str, str]
    distance_name: str
    distance: Any
    identity: IdentityStage
    recomputer: Recomputer
    records: list
    limit_info: dict[str, Any] | None
    #: Every weight file read while the parts loaded, for the manifest.
    weights_log: list
    loading_s: float

    @property
    def scale(self) -> int:
        return self.protocol.scale


def load_parts(config: AuditConfig, *, started: float | None = None) -> Parts:
    """Load and check everything ``config`` names; ``started``: when the audit started
    (``time.perf_counter()``), for the loading time (default: now)."""
    started = time.perf_counter() if started is None else started
    protocol = load_protocol(config.study.protocol)
    dataset = load_dataset(config.study.dataset, root=config.study.dataset_root)
    gate_file = (
        load_gates(config.study.gates) if config.study.gates else None
    )  # checked before anything runs
    device = resolve_device(config.execution.device)
    with weights_policy(trust_pickles=config.safety.trust_weights) as log:
        model = config.load_model(device)
        _check_scale(config, model, protocol)
        run_seed = protocol.seed if config.study.seed is None else config.study.seed
        mconf = MetricConfig(
            scale=protocol.scale,
            crop_border=config.study.crop_border,
            device=device,
            allow_downloads=config.safety.allow_downloads,
        )
        names = run_metric_names(config.study.metrics, protocol.metrics)
        metrics, infos, unavailable = build_metrics(names, mconf)
        distance_name, distance = distance_backend(config.outputs.diversity, device=device)
        wanted = config.identity.mode == "on" or (
            config.identity.mode == "auto" and protocol.needs_face
        )
        identity = load_identity(config, protocol, device, infos, unavailable, wanted=wanted)
    recomputer = Recomputer(
        protocol,
        model,
        device=device,
        tolerance=config.safety.range_tolerance,
        max_pixels=config.safety.max_pixels,
        timeout=config.safety.model_timeout,
        refit=False,  # galleries: this run's own HR parameters, the HR checked by its hash
    )
    records, limit_info = _records(config, dataset, run_seed)
    return Parts(
        config=config,
        protocol=protocol,
        dataset=dataset,
        gate_file=gate_file,
        device=device,
        model=model,
        card=model.card(),
        run_seed=run_seed,
        variants=protocol.variants if config.study.variants is None else config.study.variants,
        metrics=metrics,
        metric_infos=infos,
        unavailable=unavailable,
        feature_keys={m.name: metric_key(m) for m in metrics if m.loader_features},
        distance_name=distance_name,
        distance=distance,
        identity=identity,
        recomputer=recomputer,
        records=records,
        limit_info=limit_info,
        weights_log=log,
        loading_s=time.perf_counter() - started,
    )


def _check_scale(config: AuditConfig, model, protocol) -> None:
    if model.scale is not None and model.scale != protocol.scale:
        raise SRForensicsError(
            f"model {config.study.model!r} upscales x{model.scale}, but protocol "
            f"{protocol.name!r} is x{protocol.scale}; pick a matching protocol"
        )


def _records(config: AuditConfig, dataset, run_seed: int) -> tuple[list, dict[str, Any] | None]:
    """The dataset's records the run audits (``--limit``: a stratified subset), and how
    they were chosen."""
    if not config.study.limit:
        return list(dataset.records), None
    records, info = limit_records(
        dataset.records,
        config.study.limit,
        attributes=dataset.sensitive_attributes,
        seed=run_seed,
    )
    print(f"audit: --limit {config.study.limit}: {info['how']}", file=sys.stderr)
    return records, info
