"""What every execution back-end is handed: shards of records, and the work to run on them.

Records are cut into *shards* of consecutive records (``shard_size``). A shard is processed
whole by one worker: decoding, HR preparation, degradation, the model and the metrics.
Batches of LRs never cross a shard boundary, so the same audit gives the same batches, hence
bit-identical outputs, whatever executes it.

A back-end never imports the pipeline: it is handed a :class:`ShardWork` (the driver's,
loaded) and, to run shards in other processes, a *starter*: a picklable function that
loads a :class:`ShardWork` from the audit's configuration (:meth:`AuditConfig.to_dict`) in
the process it runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Pending samples of one record: variant -> samples still to compute.
Pending = Mapping[int, Sequence[int]]


class Sink(Protocol):
    """Where results are written (:mod:`srforensics.run.executors.sinks`)."""

    def put_record(self, **kw: Any) -> None: ...
    def save_png(self, png: bytes, rel: str) -> str: ...
    def put_lrs(
        self, lrs: Sequence[Mapping[str, Any]], members: Sequence | None = None
    ) -> None: ...


class ShardWork(Protocol):
    """The loaded work of one audit, as the back-ends see it.

    ``load`` decodes, prepares and degrades one record (pure: it gives the same arrays in any
    process); ``queue_loaded`` queues its LRs for the model, running a model batch when one is
    full; ``flush`` runs what is queued. Results go to ``sink``.
    """

    config: Any  # has to_dict(): what a starter is given in another process
    variants: int
    run_seed: int
    device: str
    protocol: Any  # its ``sha256`` identifies the protocol file loader processes must share
    sink: Sink
    progress: Callable[[int], Any] | None
    poll: Callable[[], None]

    def load(self, idx: int, rec: Any, pending: Pending) -> Any: ...
    def queue_loaded(self, loaded: Any) -> None: ...
    def flush(self) -> None: ...


#: Loads a :class:`ShardWork` from an audit's configuration dict, in the process it runs in.
Starter = Callable[[dict[str, Any]], ShardWork]


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
