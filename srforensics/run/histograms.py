"""The report's histograms, drawn by the run's helper processes while this one finishes."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from srforensics.report import histograms
from srforensics.report.figures import distribution, drawing_loaded
from srforensics.run.helpers import Helpers


class Histograms(Mapping):
    """The report's histograms, drawn by the helper processes (if the run has any) while this
    one saves galleries, exports tables and prepares the rest of the report: matplotlib's
    seconds there.

    A mapping ``{key: data URI}``, keyed as :func:`srforensics.report.histograms` keys them
    (by their values), collected when it is first read (:meth:`collect`).

    The helpers get one histogram per process at a time, the next as one finishes, so that
    those not handed over yet are there for this process to take when it is free: a process
    pool queues what it is sent, and a queued call cannot be taken back once a process has
    it (or the pipe to it does).
    """

    def __init__(self, results, metrics, helpers: Helpers | None) -> None:
        self.kwargs: dict[str, dict[str, Any]] = {}
        self.futures: dict[str, Any] = {}
        self._drawn: dict[str, str] | None = None
        self._todo: deque[str] = deque()  # not handed over yet: the helpers take from its head
        # Guards the queue; notified as a histogram is handed over, or refused.
        self._lock = threading.Condition()
        self._refused = False
        self._helpers = helpers
        if helpers is None or not helpers.processes:
            return
        self.kwargs = histograms(results, metrics)
        self._todo.extend(self.kwargs)
        for _ in range(helpers.processes):
            self._hand_over()

    def _hand_over(self, _finished: Any = None) -> None:
        """Send the next histogram to the helpers (also called as one of theirs finishes)."""
        with self._lock:
            try:
                if not self._todo:
                    return
                key = self._todo.popleft()
                fut = self._helpers.submit(distribution, **self.kwargs[key])
                if fut is None:  # they take no more work: it is left for this process
                    self._todo.appendleft(key)
                    self._refused = True
                    return
                self.futures[key] = fut
            finally:
                self._lock.notify_all()
        fut.add_done_callback(self._hand_over)

    def _wait_for_helpers(self, patience: float) -> None:
        """Wait while the helpers draw every histogram; stop early if they take no more work,
        or if ``patience`` seconds pass without one handing over its next."""
        with self._lock:
            while not self._refused and (
                self._todo or not all(f.done() for f in self.futures.values())
            ):
                if not self._lock.wait(timeout=patience):
                    return

    def collect(
        self, timeout: float = 60.0, *, help_here: bool | None = None, patience: float = 5.0
    ) -> dict[str, str]:
        """``{key: data URI}``. This process, free now, draws those not handed over yet (from
        the end: the helpers take from the head) and those handed over that no helper has
        started, while the helpers finish theirs; one that failed (or is late) is left out,
        for the report to draw.

        It helps only where matplotlib is loaded here already (``help_here=None``): a first
        figure imports it, 0.4 to 0.6 s, where the helpers, which have it, take 30 to 80 ms a
        histogram. Otherwise it waits for them, and draws here only what they leave: the rest,
        if they take no more work or ``patience`` seconds pass without one finishing one.
        """
        if self._drawn is not None:
            return self._drawn
        if help_here is None:
            help_here = drawing_loaded()
        if not help_here:
            self._wait_for_helpers(patience)

        drawn: dict[str, str] = {}
        while True:
            with self._lock:
                if not self._todo:
                    queue = list(self.futures.items())
                    break
                key = self._todo.pop()
            drawn[key] = distribution(**self.kwargs[key])
        while queue and queue[-1][1].cancel():
            key, _ = queue.pop()
            drawn[key] = distribution(**self.kwargs[key])
        done, _ = cf.wait([fut for _, fut in queue], timeout=timeout)
        for key, fut in queue:
            if fut in done and fut.exception() is None:
                drawn[key] = fut.result()
            else:
                fut.cancel()
        self._drawn = drawn
        return drawn

    def __getitem__(self, key: str) -> str:
        return self.collect()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.collect())

    def __len__(self) -> int:
        return len(self.collect())
