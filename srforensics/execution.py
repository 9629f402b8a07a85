"""Where an audit's records are processed: in this process, in worker processes, or on Ray.

Records are cut into *shards* of consecutive records (``shard_size``). A shard is
processed whole by one worker: decoding, HR preparation, degradation, the model
and the metrics. Batches of LRs never cross a shard boundary, so the same audit
gives the same batches, hence bit-identical outputs, whatever executes it.

A worker writes nothing: it records what it would write in a :class:`BufferSink`
(records, LR rows, image files as PNG bytes), and the driver replays that into
the run's ledger and folder (:class:`LedgerSink`), one transaction per model
call, in shard order. The ledger keeps a single writer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srforensics.errors import SRForensicsError

Executor = Literal["local", "ray"]

#: Pending samples of one record: variant -> samples still to compute.
Pending = Mapping[int, Sequence[int]]


class LedgerSink:
    """Writes straight into the run: the ledger and the run folder's ``images/``."""

    def __init__(self, ledger, run_dir: Path) -> None:
        self.ledger, self.run_dir = ledger, run_dir

    def put_record(self, **kw: Any) -> None:
        self.ledger.put_record(**kw)

    def save_png(self, png: bytes, rel: str) -> str:
        path = self.run_dir / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return Path("images", rel).as_posix()

    def put_lrs(self, lrs: Sequence[Mapping[str, Any]], members: Sequence | None = None) -> None:
        """LRs of one model call (``members`` names them) or failed LRs, in one transaction."""
        with self.ledger.transaction():
            batch = None
            if members is not None:
                batch = self.ledger.next_batch()
                self.ledger.put_batch(batch, members)
            for lr in lrs:
                self.ledger.put_lr(**lr, batch=batch)


@dataclass
class BufferSink:
    """Records the writes of a worker, to be replayed by the driver with :meth:`replay`."""

    ops: list[tuple] = field(default_factory=list)

    def put_record(self, **kw: Any) -> None:
        self.ops.append(("record", kw))

    def save_png(self, png: bytes, rel: str) -> str:
        self.ops.append(("png", png, rel))
        return Path("images", rel).as_posix()

    def put_lrs(self, lrs: Sequence[Mapping[str, Any]], members: Sequence | None = None) -> None:
        self.ops.append(("lrs", list(lrs), None if members is None else list(members)))

    @staticmethod
    def replay(ops: Iterable[tuple], sink: LedgerSink) -> None:
        """Write a worker's ops through ``sink``, in the order the worker made them."""
        for op in ops:
            if op[0] == "record":
                sink.put_record(**op[1])
            elif op[0] == "png":
                sink.save_png(op[1], op[2])
            else:
                sink.put_lrs(op[1], op[2])


@dataclass(frozen=True)
class Shard:
    """Consecutive records ``(index, record)`` with what each still needs."""

    number: int
    records: tuple[tuple[int, Any], ...]
    pending: Mapping[str, Pending]


def shards(
    records: Sequence[Any], size: int, pending_of: Callable[[Any], Pending]
) -> Iterator[Shard]:
    """Cut the records into shards of ``size``; a shard with nothing to do is still yielded
    (empty ``pending``) so the caller can count it as done."""
    for start in range(0, len(records), size):
        chunk = tuple((start + i, r) for i, r in enumerate(records[start : start + size]))
        pending = {}
        for _, r in chunk:
            todo = {v: list(s) for v, s in pending_of(r).items() if s}
            if todo:
                pending[r.id] = todo
        yield Shard(start // size, chunk, pending)


def process_shard(pipe, shard: Shard, sink) -> None:
    """Run one shard through a loaded pipeline, writing through ``sink``; batches end with it."""
    pipe.sink = sink
    for idx, rec in shard.records:
        pipe.run_record(idx, rec, shard.pending.get(rec.id, {}))
    pipe.flush()


# -- worker processes -----------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` threads in torch and in the BLAS/OpenMP pools numpy and
    scipy use (restored after).

    Reductions split across threads sum in another order, so values can differ in
    their last bits between thread counts: a run fixes its count (``--threads``)
    for every process that computes, and records it.
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _worker_init(config: dict[str, Any]) -> None:
    _WORKER["config"] = config


def _worker_run(shard: Shard) -> list[tuple]:
    from srforensics.audit import AuditConfig, _Pipeline

    with torch_threads(int(_WORKER["config"].get("threads") or 1)):
        if "pipe" not in _WORKER:  # loaded once per worker process
            _WORKER["pipe"] = _Pipeline(AuditConfig.from_dict(_WORKER["config"]))
        sink = BufferSink()
        process_shard(_WORKER["pipe"], shard, sink)
    return sink.ops


def run_shards(
    pipe,
    work: Iterable[Shard],
    *,
    executor: Executor = "local",
    workers: int = 0,
    ray_address: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> None:
    """Process every shard and write its results through ``pipe.sink`` (the run's ledger)."""
    sink = pipe.sink
    tick = progress or (lambda n: None)
    if executor == "local" and workers <= 0:  # in this process, progress LR by LR
        pipe.progress = tick
        for shard in work:
            process_shard(pipe, shard, sink)
        pipe.progress = None
        return

    def done(shard: Shard, ops: list[tuple]) -> None:
        BufferSink.replay(ops, sink)
        tick(len(shard.records) * pipe.variants)

    def busy(work: Iterable[Shard]) -> Iterator[Shard]:
        for shard in work:
            if shard.pending:
                yield shard
            else:  # finished before (a resumed run): nothing to send
                tick(len(shard.records) * pipe.variants)

    if executor == "ray":
        _run_ray(pipe, busy(work), workers=workers or 2, address=ray_address, done=done)
    else:
        _run_pool(pipe, busy(work), workers=workers, done=done)


def _schedule(
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


def _run_pool(pipe, work: Iterable[Shard], *, workers: int, done) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: forking a process that has started torch's thread pools can deadlock.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(pipe.config.to_dict(),),
    ) as pool:
        _schedule(
            work,
            slots=workers + 1,  # one queued ahead, so a worker finds its next shard waiting
            submit=lambda s: pool.submit(_worker_run, s),
            is_done=lambda fut: fut.done(),
            wait_any=lambda futs: wait(futs, return_when=FIRST_COMPLETED),
            result=lambda fut: fut.result(),
            done=done,
        )


def _run_ray(pipe, work: Iterable[Shard], *, workers: int, address: str | None, done) -> None:
    try:
        import ray
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
        gpus = 1 if pipe.device == "cuda" else 0

        @ray.remote(num_cpus=1, num_gpus=gpus)
        class ShardWorker:
            def __init__(self, config: dict[str, Any]) -> None:
                _worker_init(config)

            def run(self, shard: Shard) -> list[tuple]:
                return _worker_run(shard)

        actors = [ShardWorker.remote(pipe.config.to_dict()) for _ in range(workers)]
        busy: dict[Any, int] = {}  # object ref -> index of the actor computing it

        def submit(shard: Shard):
            idle = next(i for i in range(workers) if i not in busy.values())
            ref = actors[idle].run.remote(shard)
            busy[ref] = idle
            return ref

        def is_done(ref) -> bool:
            ready = bool(ray.wait([ref], timeout=0)[0])
            if ready:
                busy.pop(ref, None)
            return ready

        _schedule(
            work,
            slots=workers,  # one shard per actor: an actor runs its calls one after another
            submit=submit,
            is_done=is_done,
            wait_any=lambda refs: ray.wait(refs, num_returns=1),
            result=ray.get,
            done=done,
        )
    finally:
        if started:
            ray.shutdown()
