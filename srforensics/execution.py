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

import math
import os
import time
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
    _process_local(pipe, [shard], None)


def _process_local(pipe, work: Iterable[Shard], loaders: Loaders | None) -> None:
    """Shard after shard in this process, records loaded ahead by ``loaders`` if any."""

    def items() -> Iterator[tuple[int, int, Any, Pending]]:
        for shard in work:
            for idx, rec in shard.records:
                yield shard.number, idx, rec, shard.pending.get(rec.id, {})

    current, before = None, pipe.poll
    if loaders is not None:
        loaded = loaders.iterate(items(), pipe)
        pipe.poll = loaded.poll  # between the LRs of a batch: feed processes that became ready
    else:
        loaded = _here(items(), pipe)
    try:
        for number, record in loaded:
            if number != current:
                pipe.flush()  # batches end with their shard, as in a worker process
                current = number
            pipe.queue_loaded(record)
        pipe.flush()
    finally:
        pipe.poll = before


def _here(items: Iterable[tuple[int, int, Any, Pending]], pipe) -> Iterator[tuple[int, Any]]:
    for number, idx, rec, pending in items:
        yield number, pipe.load(idx, rec, pending)


# -- helper processes: how they start -------------------------------------------------------
#: Imported once, in the fork server every helper process is forked from: a new process then
#: starts in a fraction of a second instead of importing torch (seconds) again.
_PRELOAD = (
    "numpy",
    "torch",
    "scipy.ndimage",
    "srforensics.run.pipeline",
    "srforensics.execution",
    # what every loader's start imports (30 to 40 ms in each helper otherwise)
    "threadpoolctl",
    "srforensics.degradations.protocol",
    # helpers draw the report's histograms at the end of a run
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "srforensics.report.figures",
)


def process_context(imports: Sequence[str] = ()):
    """The ``multiprocessing`` context of worker and loader processes.

    A fork server where the platform has one (Linux, macOS): started once per process
    with :data:`_PRELOAD` and ``imports`` imported and no thread pool running, it forks each
    new helper, so ``--workers 8`` imports torch once, not eight times at once, and a second
    audit in the same process starts its helpers at once. Elsewhere, ``spawn``. Never a plain
    fork of this process: forking after torch's thread pools have started can deadlock.
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # Used when the server starts (once per process; a module that fails to import is skipped).
    ctx.set_forkserver_preload(list(dict.fromkeys((*_PRELOAD, *imports))))
    return ctx


def _protocol_imports(config: Mapping[str, Any]) -> tuple[str, ...]:
    """What the run's protocol imports, for the fork server: the modules of its operators,
    and their slow imports (the face detector's, say)."""
    from srforensics.degradations.protocol import load_protocol

    try:
        protocol = load_protocol(config["protocol"])
    except Exception:  # the driver reports a bad protocol, with the reason
        return ()
    steps = (*protocol.hr_steps, *protocol.steps)
    return tuple(dict.fromkeys((*(type(s).__module__ for s in steps), *protocol.imports())))


def _metric_imports(config: Mapping[str, Any]) -> tuple[str, ...]:
    """What building the run's metrics imports, for the fork server: each metric's module,
    and the slow imports it names (``imports()``: pyiqa's, about 5 s in each loader process
    otherwise, which builds the metrics whose reference features it computes)."""
    from srforensics.degradations.protocol import load_protocol
    from srforensics.metrics import METRICS, run_metric_names

    modules: list[str] = []
    try:
        protocol = load_protocol(config["protocol"])
        for name in run_metric_names(config.get("metrics"), protocol.metrics):
            factory = METRICS.get(name)
            modules += [factory.__module__, *getattr(factory, "imports", tuple)()]
    except Exception:  # the driver reports a bad name, with the reason
        return ()
    return tuple(dict.fromkeys(modules))


def _submit_in_background(pool, fn: Callable[..., Any], *args: Any):
    """``pool.submit(fn, *args)``, made from a thread: a future that follows its result,
    and an event set once the task is submitted (and its process started).

    Submitting a task starts a pool process, and a process from a fork server starts
    only once the server has imported what it preloads (seconds, once per process):
    the caller loads its own pipeline meanwhile instead of waiting. (Until the event is
    set, another ``pool.submit`` would wait for the same lock.)
    """
    import threading
    from concurrent.futures import Future

    out: Future = Future()
    submitted = threading.Event()

    def follow(inner) -> None:
        if inner.cancelled():
            out.cancel()
        elif inner.exception() is not None:
            out.set_exception(inner.exception())
        else:
            out.set_result(inner.result())

    def submit() -> None:
        try:
            pool.submit(fn, *args).add_done_callback(follow)
        except BaseException as exc:  # the pool was shut down, or broke
            out.set_exception(exc)
        finally:
            submitted.set()

    threading.Thread(target=submit, name="srforensics-start-helpers", daemon=True).start()
    return out, submitted


def _helper_start(environment: dict[str, str] | None) -> None:
    """What every helper process (loader, worker, Ray actor) does first: end with its
    parent, take the environment of the audit that started it (None: the one it has), and
    tune its allocator as the CLI does."""
    _exit_with_parent()
    if environment is not None:
        _adopt(environment)
    tune_allocator()


def _adopt(environment: dict[str, str]) -> None:
    """Take the environment of the process that started this one (a forked helper has the
    fork server's, from when that started): ``SRFORENSICS_CACHE`` and the like are read late."""
    os.environ.clear()
    os.environ.update(environment)


# -- loader processes (--loaders): decoding and degradation ahead of the model ----------------
_LOADER: dict[str, Any] = {}


def _loader_init(config: dict[str, Any], environment: dict[str, str]) -> None:
    _helper_start(environment)
    import torch
    from threadpoolctl import threadpool_limits

    from srforensics.degradations.protocol import load_protocol

    threads = int(config.get("threads") or 1)
    torch.set_num_threads(threads)  # the driver's count: the same arrays, bit for bit
    _LOADER["limits"] = threadpool_limits(limits=threads)
    protocol = load_protocol(config["protocol"])
    _LOADER["protocol"] = protocol
    _LOADER["max_pixels"] = config["max_pixels"]
    _LOADER["metrics"] = _loader_metrics(config, protocol)
    _warm_up(protocol, _LOADER["metrics"])
    _freeze_heap()


def _loader_metrics(config: dict[str, Any], protocol) -> list[tuple[Any, str]]:
    """The run's metrics whose reference features this loader computes ahead, with their keys
    (:func:`srforensics.run.scoring.metric_key`): on the CPU only (a GPU run computes them on its
    device, in the driver), built as the driver builds them, downloading nothing. Any
    that cannot be built here are left to the driver."""
    from srforensics.metrics import MetricConfig, run_metric_names
    from srforensics.run.scoring import build_metrics, metric_key, resolve_device

    try:
        if resolve_device(config["device"]) != "cpu":
            return []
        mconf = MetricConfig(scale=protocol.scale, crop_border=config["crop_border"], device="cpu")
        names = run_metric_names(config["metrics"], protocol.metrics)
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
    import numpy as np

    from srforensics.run.scoring import loader_features

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
    import numpy as np
    import skimage.data
    from PIL import Image

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
    from srforensics.run.records import load_record
    from srforensics.run.scoring import loader_features

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


class _HelperPool:
    """Helper processes from :func:`process_context`, each started with
    ``initializer(config, environment)``; a context manager that shuts them down."""

    #: Whether closing waits for the processes to finish what they are doing.
    wait_on_close = True
    #: Why the processes were given up (they take no more work), or ``None``.
    failure: str | None = None

    def __init__(self, config: dict[str, Any], *, processes: int, initializer) -> None:
        from concurrent.futures import ProcessPoolExecutor

        from srforensics.metrics.quality import hub_policy

        # As this process sets it before it imports pyiqa: a fork server that starts now
        # imports pyiqa for the helpers (see _metric_imports) with the same setting.
        hub_policy(allow_downloads=bool(config.get("allow_downloads")))
        self.processes = processes
        self.pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=process_context((*_protocol_imports(config), *_metric_imports(config))),
            initializer=initializer,
            initargs=(config, dict(os.environ)),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):
        """``fn(*args, **kwargs)`` in one of the processes, once it is free: a future, or
        ``None`` when the pool can take no more work (it broke, failed, or was closed)."""
        if self.failure is not None:
            return None
        try:
            return self.pool.submit(fn, *args, **kwargs)
        except RuntimeError:  # BrokenProcessPool is one; so is a shut-down pool
            return None

    def close(self) -> None:
        self.pool.shutdown(wait=self.wait_on_close, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Loaders(_HelperPool):
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
        self.ahead = ahead or max(2 * int(config.get("batch_size") or 8), 4 * processes)
        self.share = share
        self.ready = False  # the processes have started, with the run's protocol file
        self.failure: str | None = None
        self.loaded_here = 0
        self._probe, _ = _submit_in_background(self.pool, _loader_probe)

    wait_on_close = False  # closed after a failure too, and the run goes on meanwhile

    def wait_ready(self, protocol_sha256: str | None, timeout: float | None = None) -> bool:
        """Wait until the processes have started; ``False`` if they failed (see ``failure``)."""
        from concurrent.futures import wait

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

    def iterate(self, items: Iterable[tuple[int, int, Any, Pending]], pipe) -> LoaderFeed:
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
        import logging

        from srforensics.recompute import describe_error

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

    The audit calls :meth:`poll` between the LRs of a model batch (``_Pipeline.poll``), so
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


#: glibc's ``mallopt`` parameters (``malloc.h``) and the values :func:`tune_allocator` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its moving threshold (64-bit)
_TRIM_THRESHOLD = 128 << 20
#: The allocator settings this process made (:func:`allocator_settings`); None: none.
_ALLOCATOR: dict[str, Any] = {"settings": None}


def tune_allocator() -> str | None:
    """Keep freed blocks of up to 32 MiB in glibc's heap for reuse, rather than return them
    to the kernel: called by the CLI and by the helper processes an audit starts (processes
    srforensics owns; a program that calls :func:`srforensics.run.pipeline.run_audit` may call it).

    glibc serves a block of 128 KiB or more with a fresh ``mmap`` and unmaps it when freed,
    raising that threshold only as such blocks are freed, and gives the top of its heap back
    to the kernel beyond twice the threshold. The metrics' intermediate tensors (0.2 to 10
    MB at a time) were so mapped, touched page by page, and unmapped again: about a million
    page faults, over a second of kernel time, in a 1024-output ``srforensics audit`` (a 5%
    to 9% longer run). Starting at glibc's ceiling of 32 MiB, with the heap trimmed beyond
    128 MiB, keeps them in the heap. Allocation does not change any computed value.

    Linux with glibc only. Where the environment already sets these (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) or
    preloads another allocator, nothing is changed. Returns the settings
    made (also :func:`allocator_settings`, recorded in the manifest's environment), or None.
    """
    if _ALLOCATOR["settings"] is not None:
        return _ALLOCATOR["settings"]
    import sys

    env = os.environ
    if (
        not sys.platform.startswith("linux")
        or any(f"MALLOC_{k}_" in env for k in ("MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"))
        or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")
        or "malloc" in env.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc: theirs
    ):
        return None
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's C library
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) != 1:
        return None
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    _ALLOCATOR["settings"] = (
        f"glibc mallopt: M_MMAP_THRESHOLD={_MMAP_THRESHOLD}, M_TRIM_THRESHOLD={_TRIM_THRESHOLD}"
    )
    return _ALLOCATOR["settings"]


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Leave the objects that exist when the block starts out of the garbage collector's
    scans until it ends (:func:`gc.freeze`); the objects the block makes are collected as
    usual.

    Before a run starts, hundreds of thousands of objects exist (torch's, pyiqa's, pandas's,
    the pipeline's: about 420,000 in an audit's process). They live through the run, and a
    full collection, which the run's own allocations trigger now and then, scanned them all:
    a quarter of a second each time, here. They are unfrozen after the block. Where the
    heap is frozen already (by the caller), it is left as it is.
    """
    import gc

    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic garbage collection in the block (where it was on, it is on again after).

    For loading: importing torch, pyiqa and the rest makes hundreds of thousands of objects
    that all live on, and the collections their number triggers found next to no garbage
    while they scanned them all, again and again (0.7 s of an audit's start, here).
    """
    import gc

    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _freeze_heap() -> None:
    """In a helper process, once its pipeline or protocol is loaded: what it has loaded is
    left out of the collector's scans for the rest of its life (see :func:`heap_frozen`)."""
    import gc

    gc.freeze()


def allocator_settings() -> str | None:
    """The allocator settings :func:`tune_allocator` made in this process, or None."""
    return _ALLOCATOR["settings"]


def _exit_with_parent() -> None:
    """End this spawned process when the one that started it ends, however it ends.

    A process pool's workers wait on their queue, whose both ends they hold, so after a
    ``kill -9`` of the audit they would wait forever (holding its output pipes, so a
    caller reading them hangs too). A thread watches the parent's sentinel instead.
    """
    import multiprocessing as mp
    import threading
    from multiprocessing.connection import wait

    parent = mp.parent_process()
    if parent is None:  # not started by multiprocessing (a Ray actor): nothing to watch
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="srforensics-exit-with-parent", daemon=True).start()


def _worker_init(config: dict[str, Any], environment: dict[str, str] | None = None) -> None:
    """Load the audit's pipeline once per worker, as the process starts (while the driver
    loads its own); an error is kept and raised by the first shard, as the driver's would be."""
    _helper_start(environment)
    _WORKER["config"] = config
    from srforensics.run.pipeline import AuditConfig, _Pipeline

    try:
        with torch_threads(int(config.get("threads") or 1)):
            _WORKER["pipe"] = _Pipeline(AuditConfig.from_dict(config))
    except Exception as exc:
        _WORKER["error"] = exc
    _freeze_heap()


def _worker_started() -> None:
    """Nothing: submitted once per worker to start them all at once."""


def _worker_run(shard: Shard) -> list[tuple]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    with torch_threads(int(_WORKER["config"].get("threads") or 1)):
        sink = BufferSink()
        process_shard(_WORKER["pipe"], shard, sink)
    return sink.ops


class Workers(_HelperPool):
    """Worker processes for ``--workers N`` (in-process pool, not Ray), started before the
    driver loads its pipeline: each loads its own meanwhile, so neither waits for the other.

    Parameters
    ----------
    config : dict
        The audit's configuration (:meth:`AuditConfig.to_dict`).
    processes : int
        Number of worker processes.
    """

    def __init__(self, config: dict[str, Any], *, processes: int) -> None:
        super().__init__(config, processes=processes, initializer=_worker_init)
        for _ in range(processes):  # a pool starts a process per task waiting for one
            _submit_in_background(self.pool, _worker_started)


def run_shards(
    pipe,
    work: Iterable[Shard],
    *,
    executor: Executor = "local",
    workers: int = 0,
    ray_address: str | None = None,
    progress: Callable[[int], Any] | None = None,
    loaders: Loaders | None = None,
    pool: Workers | None = None,
) -> None:
    """Process every shard and write its results through ``pipe.sink`` (the run's ledger).

    ``loaders`` (in-process execution only) load records ahead in other processes.
    ``pool``: local worker processes already started for this run (else they start here).
    """
    sink = pipe.sink
    tick = progress or (lambda n: None)
    if executor == "local" and workers <= 0:  # in this process, progress LR by LR
        pipe.progress = tick
        try:
            _process_local(pipe, work, loaders)
        finally:
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
        if pool is None:
            with Workers(pipe.config.to_dict(), processes=workers) as started:
                _run_pool(busy(work), started, done=done)
        else:
            _run_pool(busy(work), pool, done=done)


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


def _run_pool(work: Iterable[Shard], workers: Workers, *, done) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    _schedule(
        work,
        slots=workers.processes + 1,  # one queued ahead, so a worker finds its next shard waiting
        submit=lambda s: workers.pool.submit(_worker_run, s),
        is_done=lambda fut: fut.done(),
        wait_any=lambda futs: wait(futs, return_when=FIRST_COMPLETED),
        result=lambda fut: fut.result(),
        done=done,
    )


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
        gpus = (
            gpu_share(ray.cluster_resources().get("GPU", 0), workers)
            if pipe.device == "cuda"
            else 0
        )

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
