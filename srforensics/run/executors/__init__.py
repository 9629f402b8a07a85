"""Where an audit's shards are processed: in this process (records loaded here or by loader
processes), in local worker processes, or on Ray.

Every back-end is handed the driver's loaded :class:`~.base.ShardWork` and a starter that
loads one in another process (:mod:`.base`); none imports the pipeline.

- :mod:`.base`: shards, and the interface of the work run on them.
- :mod:`.sinks`: where results are written (the run, or a buffer a worker sends back).
- :mod:`.local`: shards in this process.
- :mod:`.processes`: how helper processes start (fork server, environment, exit with parent).
- :mod:`.loaders`: loader processes (``--loaders``).
- :mod:`.workers`: local worker processes (``--workers``).
- :mod:`.ray_actors`: Ray actors (``--executor ray``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from srforensics.run.executors.base import Pending, Shard, ShardWork, Starter, shards
from srforensics.run.executors.loaders import Loaders
from srforensics.run.executors.local import process_local, process_shard
from srforensics.run.executors.ray_actors import gpu_share, run_ray
from srforensics.run.executors.sinks import BufferSink, LedgerSink
from srforensics.run.executors.workers import Workers, run_pool

Executor = Literal["local", "ray"]

__all__ = [
    "BufferSink",
    "Executor",
    "LedgerSink",
    "Loaders",
    "Pending",
    "Shard",
    "ShardWork",
    "Starter",
    "Workers",
    "gpu_share",
    "process_shard",
    "run_shards",
    "shards",
]


def run_shards(
    work: ShardWork,
    todo: Iterable[Shard],
    *,
    start: Starter,
    executor: Executor = "local",
    workers: int = 0,
    ray_address: str | None = None,
    progress: Callable[[int], Any] | None = None,
    loaders: Loaders | None = None,
    pool: Workers | None = None,
) -> None:
    """Process every shard of ``todo`` and write its results through ``work.sink``.

    ``start`` loads the work in other processes (workers, Ray actors). ``loaders``
    (in-process execution only) load records ahead in other processes. ``pool``: local
    worker processes already started for this run (else they start here).
    """
    sink = work.sink
    tick = progress or (lambda n: None)
    if executor == "local" and workers <= 0:  # in this process, progress LR by LR
        work.progress = tick
        try:
            process_local(work, todo, loaders)
        finally:
            work.progress = None
        return

    def done(shard: Shard, ops: list[tuple]) -> None:
        BufferSink.replay(ops, sink)
        tick(len(shard.records) * work.variants)

    def busy(shards: Iterable[Shard]) -> Iterator[Shard]:
        for shard in shards:
            if shard.pending:
                yield shard
            else:  # finished before (a resumed run): nothing to send
                tick(len(shard.records) * work.variants)

    config = work.config.to_dict()
    if executor == "ray":
        run_ray(
            busy(todo),
            config=config,
            start=start,
            device=work.device,
            workers=workers or 2,
            address=ray_address,
            done=done,
        )
    elif pool is None:
        with Workers(config, processes=workers, start=start) as started:
            run_pool(busy(todo), started, done=done)
    else:
        run_pool(busy(todo), pool, done=done)
