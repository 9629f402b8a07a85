"""The helper processes of a run: loader processes (``--loaders``) or local worker processes
(``--workers``), started first, so that they start while the model and the metrics load
here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from srforensics.report.figures import warm_up
from srforensics.run.executors import Loaders, Starter, Workers


@dataclass
class Helpers:
    """The processes started for a run before its pipeline loads (see :func:`helpers`)."""

    loaders: Loaders | None = None
    workers: Workers | None = None

    def submit(self, fn, /, *args: Any, **kwargs: Any):
        """``fn(*args, **kwargs)`` in a helper process (once one is free), or ``None`` when
        there is none to take it."""
        pool = self.loaders if self.loaders is not None else self.workers
        return None if pool is None else pool.submit(fn, *args, **kwargs)

    @property
    def processes(self) -> int:
        """How many helper processes there are (0: none)."""
        pool = self.loaders if self.loaders is not None else self.workers
        return 0 if pool is None else pool.processes


@contextmanager
def helpers(config, start: Starter) -> Iterator[Helpers]:
    """The helpers ``config`` asks for, shut down after the block; ``start`` loads a worker's
    work from the configuration (see :class:`~srforensics.run.executors.Workers`)."""
    if config.execution.loaders:
        # Idle once every record is sent, they warm up for the report's histograms, which
        # they draw at the run's end (run.histograms).
        with Loaders(
            config.to_dict(), processes=config.execution.loaders, when_idle=warm_up
        ) as loaders:
            yield Helpers(loaders=loaders)
    elif config.execution.workers > 0 and config.execution.executor == "local":
        with Workers(config.to_dict(), processes=config.execution.workers, start=start) as workers:
            yield Helpers(workers=workers)
    else:
        yield Helpers()
