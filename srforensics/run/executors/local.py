"""Shards in this process, their records loaded here or ahead by loader processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from srforensics.run.executors.base import Pending, Shard, ShardWork, Sink


def process_shard(work: ShardWork, shard: Shard, sink: Sink) -> None:
    """Run one shard through loaded ``work``, writing through ``sink``; batches end with it."""
    work.sink = sink
    process_local(work, [shard], None)


def process_local(work: ShardWork, shards: Iterable[Shard], loaders: Any = None) -> None:
    """Shard after shard in this process, records loaded ahead by ``loaders``
    (:class:`~srforensics.run.executors.loaders.Loaders`) if any."""

    def items() -> Iterator[tuple[int, int, Any, Pending]]:
        for shard in shards:
            for idx, rec in shard.records:
                yield shard.number, idx, rec, shard.pending.get(rec.id, {})

    current, before = None, work.poll
    if loaders is not None:
        loaded = loaders.iterate(items(), work)
        work.poll = loaded.poll  # between the LRs of a batch: feed processes that became ready
    else:
        loaded = ((number, work.load(idx, rec, p)) for number, idx, rec, p in items())
    try:
        for number, record in loaded:
            if number != current:
                work.flush()  # batches end with their shard, as in a worker process
                current = number
            work.queue_loaded(record)
        work.flush()
    finally:
        work.poll = before
