"""Where a shard's results are written: straight into the run, or recorded for the driver.

A worker process writes nothing: it records what it would write in a :class:`BufferSink`
(records, LR rows, image files as PNG bytes), and the driver replays that into the run's
ledger and folder (:class:`LedgerSink`), one transaction per model call, in shard order. The
ledger keeps a single writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
