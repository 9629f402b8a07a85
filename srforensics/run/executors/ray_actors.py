"""Shards on a Ray cluster (``--executor ray``): one actor per worker, each loading its work
with the run's starter."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.run.executors.base import Shard, Starter
from srforensics.run.executors.workers import schedule, worker_init, worker_run

# ray: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


def gpu_share(cluster_gpus: float, workers: int) -> float:
    """The GPUs each of ``workers`` Ray actors asks for with ``--device cuda``.

    One each while the cluster has one per actor; where it has fewer, an even share (rounded
    down to Ray's 1e-4 resolution), so that every actor is placed and the GPUs are split among
    them instead of the surplus actors waiting forever for a whole GPU. Ray then sets each
    actor's ``CUDA_VISIBLE_DEVICES`` to the GPU it was placed on.

    Parameters
    ----------
    cluster_gpus : float
        The cluster's ``GPU`` resource (``ray.cluster_resources()``).
    workers : int
        The number of actors (``--workers``).

    Raises
    ------
    SRForensicsError
        The cluster has no GPU.
    """
    if cluster_gpus <= 0:
        raise SRForensicsError(
            "--device cuda with --executor ray: the Ray cluster has no GPU. Use --device cpu, "
            "or start the cluster's nodes where torch sees a CUDA device (ray start --num-gpus N)"
        )
    return min(1.0, math.floor(cluster_gpus / workers * 10_000) / 10_000)


def run_ray(
    work: Iterable[Shard],
    *,
    config: dict[str, Any],
    start: Starter,
    device: str,
    workers: int,
    address: str | None,
    done,
) -> None:
    """Every shard of ``work`` on ``workers`` Ray actors, each loading its work with
    ``start(config)``; ``done(shard, ops)`` in shard order."""
    try:
        import ray  # lazy: an optional dependency
    except ImportError:
        raise SRForensicsError(
            "--executor ray needs Ray: pip install 'srforensics[ray]' (or pip install ray)"
        ) from None
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            **({} if address else {"num_cpus": max(workers, 1)}),
        )
        started = True
    try:
        gpus = gpu_share(ray.cluster_resources().get("GPU", 0), workers) if device == "cuda" else 0
        _run_on(ray, _actors(ray, config, start, workers, gpus), work, done)
    finally:
        if started:
            ray.shutdown()


def _actors(ray, config: dict[str, Any], start: Starter, workers: int, gpus: float) -> list:
    """``workers`` actors, each with its own work loaded by ``start(config)``."""

    @ray.remote(num_cpus=1, num_gpus=gpus)
    class ShardWorker:
        def __init__(self, config: dict[str, Any]) -> None:
            worker_init(config, None, start)

        def run(self, shard: Shard) -> list[tuple]:
            return worker_run(shard)

    return [ShardWorker.remote(config) for _ in range(workers)]


def _run_on(ray, actors: list, work: Iterable[Shard], done) -> None:
    """Every shard of ``work`` on ``actors``, one shard per actor at a time."""
    busy: dict[Any, int] = {}  # object ref -> index of the actor computing it

    def submit(shard: Shard):
        idle = next(i for i in range(len(actors)) if i not in busy.values())
        ref = actors[idle].run.remote(shard)
        busy[ref] = idle
        return ref

    def is_done(ref) -> bool:
        ready = bool(ray.wait([ref], timeout=0)[0])
        if ready:
            busy.pop(ref, None)
        return ready

    schedule(
        work,
        slots=len(actors),  # one shard per actor: an actor runs its calls one after another
        submit=submit,
        is_done=is_done,
        wait_any=lambda refs: ray.wait(refs, num_returns=1),
        result=ray.get,
        done=done,
    )
