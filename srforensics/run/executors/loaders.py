"""Loader processes (``--loaders``): decoding, HR preparation and degradation ahead of the
model, like a ``DataLoader``'s workers, and the reference features of the metrics that
allow it."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from srforensics.degradations.protocol import load_protocol
from srforensics.metrics import MetricConfig, run_metric_names
from srforensics.recompute import describe_error
from srforensics.run.config import AuditConfig
from srforensics.run.executors.base import Pending, ShardWork
from srforensics.run.executors.processes import HelperPool, helper_start, submit_in_background
from srforensics.run.records import load_record
from srforensics.run.scoring import build_metrics, loader_features, metric_key, resolve_device
from srforensics.runtime import freeze_heap

# torch, threadpoolctl, skimage: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

_LOADER: dict[str, Any] = {}


def _loader_init(config: dict[str, Any], environment: dict[str, str]) -> None:
    helper_start(environment)
    import torch  # lazy: the driver's own import of torch is timed as loading
    from threadpoolctl import threadpool_limits

    audit = AuditConfig.from_dict(config)
    threads = audit.execution.threads
    torch.set_num_threads(threads)  # the driver's count: the same arrays, bit for bit
    _LOADER["limits"] = threadpool_limits(limits=threads)
    protocol = load_protocol(audit.study.protocol)
    _LOADER["protocol"] = protocol
    _LOADER["max_pixels"] = audit.safety.max_pixels
    _LOADER["metrics"] = _loader_metrics(audit, protocol)
    _warm_up(protocol, _LOADER["metrics"])
    freeze_heap()


def _loader_metrics(config: AuditConfig, protocol) -> list[tuple[Any, str]]:
    """The run's metrics whose reference features this loader computes ahead, with their keys
    (:func:`srforensics.run.scoring.metric_key`): on the CPU only (a GPU run computes them on its
    device, in the driver), built as the driver builds them, downloading nothing. Any
    that cannot be built here are left to the driver."""
    try:
        if resolve_device(config.execution.device) != "cpu":
            return []
        mconf = MetricConfig(
            scale=protocol.scale, crop_border=config.study.crop_border, device="cpu"
        )
        names = run_metric_names(config.study.metrics, protocol.metrics)
        metrics, _, _ = build_metrics(names, mconf, loader=True)  # no weight file read
    except Exception:
        return []
    return [(m, metric_key(m)) for m in metrics]


def _warm_up(protocol, metrics: Sequence[tuple[Any, str]] = ()) -> None:
    """Run the protocol once on a photograph (scikit-image's astronaut, a face), and the
    ``metrics``' reference features of its HR: first calls pay for lazy loading (MTCNN's
    weights and each of its stages, kernels; about 2 s), which is better paid before the
    process says it is ready than by a record the driver waits for. Nothing of it is kept;
    the run's seeds are not used."""
    # Her face, 128 px (a small picture: the detector's first calls cost least on it).
    photo = _astronaut()[:256:2, 96:352:2].astype(np.float32) / 255.0
    try:
        hr, _ = protocol.prepare(photo)
    except Exception:  # a protocol for other pictures: its steps have run all the same
        hr = photo
    try:
        protocol.apply(hr, protocol.sample(np.random.default_rng(0)))
    except Exception:
        pass
    loader_features(metrics, hr)


def _astronaut():
    """scikit-image's astronaut, read with Pillow from the file scikit-image ships (its own
    reader's first call costs a tenth of a second more), or from scikit-image itself."""
    import skimage.data  # lazy: only where the loaders warm up

    path = Path(skimage.data.__file__).parent / "astronaut.png"
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError:  # another layout of scikit-image's data
        return skimage.data.astronaut()


def _loader_probe() -> str | None:
    """The SHA-256 of the loader's protocol file (answered once the process has started)."""
    return _LOADER["protocol"].sha256


def _loader_run(idx: int, rec, pending: Pending, run_seed: int):
    """Load one record, and the reference features of its HR for the metrics this loader
    computes ahead; the run seed is the driver's (resolved once, in the driver)."""
    loaded = load_record(
        _LOADER["protocol"],
        idx,
        rec,
        pending,
        run_seed=run_seed,
        max_pixels=_LOADER["max_pixels"],
    )
    if loaded.hr is not None and any(lr.error is None for lr in loaded.lrs):
        t = time.perf_counter()
        loaded.features = loader_features(_LOADER["metrics"], loaded.hr)
        loaded.features_s = time.perf_counter() - t
    return loaded


_OTHER_PROTOCOL = (
    "their protocol file differs from the one this run loaded (was it changed during the run?)"
)


class Loaders(HelperPool):
    """Processes that decode, prepare and degrade the next records while this one runs the
    model and the metrics (``--loaders N``), like a ``DataLoader``'s workers.

    Loading is pure (:func:`srforensics.run.records.load_record`), so a record gives the same
    arrays wherever it is loaded, and records are handed over in order: results are
    identical to loading here. While the processes start (importing torch takes seconds)
    the records are loaded here; later, a record the processes have not reached yet is
    loaded here too. If the processes fail, or their protocol file is not the driver's,
    everything is loaded here from then on, and the run goes on.

    Parameters
    ----------
    config : dict
        The audit's configuration (:meth:`AuditConfig.to_dict`).
    processes : int
        Number of loader processes.
    ahead : int, optional
        Records loaded ahead at most (the memory bound: their HRs and LRs wait in memory).
        Default: two model batches' worth (``2 * batch_size``, at least ``4 * processes``).
        Less than a batch's worth leaves the processes idle while this one runs a batch.
    share : bool, default True
        Load here a record that no process has taken yet, rather than wait for it.
    when_idle : callable, optional
        Run once in each process after every record has been sent (the audit's: warm up
        for the report's histograms, which the processes draw at the run's end).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        processes: int,
        ahead: int | None = None,
        share: bool = True,
        when_idle: Callable[[], Any] | None = None,
    ):
        super().__init__(config, processes=processes, initializer=_loader_init)
        self.when_idle = when_idle
        batch = AuditConfig.from_dict(config).execution.batch_size
        self.ahead = ahead or max(2 * batch, 4 * processes)
        self.share = share
        self.ready = False  # the processes have started, with the run's protocol file
        self.failure: str | None = None
        self.loaded_here = 0
        self._probe, _ = submit_in_background(self.pool, _loader_probe)

    wait_on_close = False  # closed after a failure too, and the run goes on meanwhile

    def wait_ready(self, protocol_sha256: str | None, timeout: float | None = None) -> bool:
        """Wait until the processes have started; ``False`` if they failed (see ``failure``)."""
        wait([self._probe], timeout=timeout)
        self._check(protocol_sha256)
        return self.ready

    def _check(self, protocol_sha256: str | None) -> None:
        if self.ready or self.failure is not None or not self._probe.done():
            return
        try:
            theirs = self._probe.result()
        except Exception as exc:
            return self._fail(exc)
        if theirs != protocol_sha256:
            return self._fail(RuntimeError(_OTHER_PROTOCOL))
        self.ready = True

    def all_sent(self) -> None:
        """Every record has been sent: each process, idle once it has loaded its last, runs
        ``when_idle`` (queued after the records, it delays none)."""
        if self.when_idle is not None:
            for _ in range(self.processes):
                self.submit(self.when_idle)

    def iterate(
        self, items: Iterable[tuple[int, int, Any, Pending]], pipe: ShardWork
    ) -> LoaderFeed:
        """``(number, loaded record)`` for each ``(number, idx, record, pending)``, in order."""
        return LoaderFeed(self, items, pipe)

    def _submit(self, item, run_seed: int):
        number, idx, rec, pending = item
        if not any(pending.values()):
            return None  # nothing to load (a resumed run): no need to send it
        try:
            return self.pool.submit(_loader_run, idx, rec, pending, run_seed)
        except Exception as exc:  # the pool broke
            self._fail(exc)
            return None

    def _take(self, item, fut, pipe):
        number, idx, rec, pending = item
        self._check(pipe.protocol.sha256)
        # While the processes start, and later for a record no process has taken yet,
        # load it here; a record a process is loading is waited for.
        usable = fut is not None and self.ready and self.failure is None
        if usable and (fut.done() or not self.share or not fut.cancel()):
            try:
                loaded = fut.result()
            except Exception as exc:
                self._fail(exc)
            else:
                if loaded.protocol_sha256 == pipe.protocol.sha256:
                    return loaded
                self._fail(RuntimeError(_OTHER_PROTOCOL))  # another process, started later
        elif fut is not None:
            fut.cancel()
        self.loaded_here += 1
        return pipe.load(idx, rec, pending)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = describe_error(exc)
            logging.getLogger("srforensics").warning(
                "loader processes stopped (%s); loading the remaining records in this process",
                self.failure,
            )
            self.close()


class LoaderFeed:
    """The records of :meth:`Loaders.iterate`, loaded, in order; :meth:`poll` sends the
    records ahead to the processes as soon as they are ready.

    The audit calls :meth:`poll` between the LRs of a model batch (``ShardWork.poll``), so
    processes that become ready during a batch get their records then, not when this one
    wants its next record, which would leave them idle for the rest of the batch and the
    next records late.
    """

    def __init__(self, loaders: Loaders, items: Iterable[tuple[int, int, Any, Pending]], pipe):
        self._loaders, self._pipe = loaders, pipe
        self._source = iter(items)
        self._window: deque = deque()
        self._all_sent = False

    def __iter__(self) -> LoaderFeed:
        return self

    def __next__(self) -> tuple[int, Any]:
        loaders, pipe = self._loaders, self._pipe
        if self._window:
            item, fut = self._window.popleft()
        else:  # the processes are starting (or have just started), or have failed
            item = next(self._source, None)
            if item is None:
                raise StopIteration
            # Sharing, this process loads the record it needs now rather than wait for
            # a process it has just sent it to.
            fut = (
                None if loaders.share or not loaders.ready else loaders._submit(item, pipe.run_seed)
            )
        self.poll()
        return item[0], loaders._take(item, fut, pipe)

    def poll(self) -> None:
        """Send records ahead (up to ``ahead``) if the processes are ready; cheap otherwise.

        Nothing is sent before they are ready: sending would wait for them to start, and a
        record sent meanwhile is theirs (queued, it cannot be taken back) even when this
        process, free first, has loaded it too.
        """
        loaders, pipe = self._loaders, self._pipe
        loaders._check(pipe.protocol.sha256)
        while (
            not self._all_sent
            and loaders.ready
            and loaders.failure is None
            and len(self._window) < loaders.ahead
        ):
            ahead = next(self._source, None)
            if ahead is None:
                self._all_sent = True
                loaders.all_sent()
                break
            self._window.append((ahead, loaders._submit(ahead, pipe.run_seed)))
