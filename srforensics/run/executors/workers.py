"""Worker processes (``--workers N``, in-process pool): each loads its own :class:`ShardWork`
with the run's starter and processes whole shards, sending back what it would write."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

from srforensics.run.config import AuditConfig
from srforensics.run.executors.base import Shard, Starter
from srforensics.run.executors.local import process_shard
from srforensics.run.executors.processes import HelperPool, helper_start, submit_in_background
from srforensics.run.executors.sinks import BufferSink
from srforensics.runtime import freeze_heap, torch_threads

_WORKER: dict[str, Any] = {}


def worker_init(
    config: dict[str, Any], environment: dict[str, str] | None = None, start: Starter | None = None
) -> None:
    """Load the audit's work once per worker with ``start``, as the process starts (while the
    driver loads its own); an error is kept and raised by the first shard, as the driver's
    would be."""
    helper_start(environment)
    _WORKER["threads"] = 1
    try:
        if start is None:
            raise RuntimeError("a worker process was started without a starter")
        _WORKER["threads"] = AuditConfig.from_dict(config).execution.threads
        with torch_threads(_WORKER["threads"]):
            _WORKER["work"] = start(config)
    except Exception as exc:
        _WORKER["error"] = exc
    freeze_heap()


def _worker_started() -> None:
    """Nothing: submitted once per worker to start them all at once."""


def worker_run(shard: Shard) -> list[tuple]:
    """Process ``shard`` with this worker's work: the writes it would make, for the driver."""
    if "error" in _WORKER:
        raise _WORKER["error"]
    with torch_threads(_WORKER["threads"]):
        sink = BufferSink()
        process_shard(_WORKER["work"], shard, sink)
    return sink.ops


class Workers(HelperPool):
    """Worker processes for ``--workers N`` (in-process pool, not Ray), started before the
    driver loads its own work: each loads its own meanwhile, so neither waits for the other.

    Parameters
    ----------
    config : dict
        The audit's configuration (:meth:`AuditConfig.to_dict`).
    processes : int
        Number of worker processes.
    start : callable
        Loads a worker's work from ``config`` (a module-level function: it is pickled).
    """

    def __init__(self, config: dict[str, Any], *, processes: int, start: Starter) -> None:
        super().__init__(
            config,
            processes=processes,
            initializer=worker_init,
            initargs=(start,),
            imports=(start.__module__,),
        )
        for _ in range(processes):  # a pool starts a process per task waiting for one
            submit_in_background(self.pool, _worker_started)


def schedule(
    work: Iterable[Shard],
    *,
    slots: int,
    submit: Callable[[Shard], Any],
    is_done: Callable[[Any], bool],
    wait_any: Callable[[list], Any],
    result: Callable[[Any], list[tuple]],
    done: Callable[[Shard, list[tuple]], Any],
) -> None:
    """Keep ``slots`` shards running (a worker never waits for a slow one), and hand the
    results over in shard order; at most ``4 * slots`` results wait, so memory stays bounded."""
    shards_iter, queue, exhausted = iter(work), deque(), False
    while True:
        running = [h for _, h in queue if not is_done(h)]
        while not exhausted and len(running) < slots and len(queue) < 4 * slots:
            shard = next(shards_iter, None)
            if shard is None:
                exhausted = True
                break
            handle = submit(shard)
            queue.append((shard, handle))
            running.append(handle)
        while queue and is_done(queue[0][1]):
            shard, handle = queue.popleft()
            done(shard, result(handle))
        if not queue and exhausted:
            return
        if queue and not is_done(queue[0][1]):
            wait_any([h for _, h in queue if not is_done(h)])


def run_pool(work: Iterable[Shard], workers: Workers, *, done) -> None:
    """Every shard of ``work`` on ``workers``; ``done(shard, ops)`` in shard order."""
    schedule(
        work,
        slots=workers.processes + 1,  # one queued ahead, so a worker finds its next shard waiting
        submit=lambda s: workers.pool.submit(worker_run, s),
        is_done=lambda fut: fut.done(),
        wait_any=lambda futs: wait(futs, return_when=FIRST_COMPLETED),
        result=lambda fut: fut.result(),
        done=done,
    )
