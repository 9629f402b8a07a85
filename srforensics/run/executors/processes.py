"""Helper processes (loaders, workers): how they start, and the pool that holds them."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import wait
from typing import Any

from srforensics.degradations.protocol import load_protocol
from srforensics.metrics import METRICS, run_metric_names
from srforensics.metrics.quality import hub_policy
from srforensics.run.config import AuditConfig
from srforensics.runtime import tune_allocator

#: Imported once, in the fork server every helper process is forked from: a new process then
#: starts in a fraction of a second instead of importing torch (seconds) again.
_PRELOAD = (
    "numpy",
    "torch",
    "scipy.ndimage",
    "srforensics.run.executors.loaders",
    "srforensics.run.executors.workers",
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
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # Used when the server starts (once per process; a module that fails to import is skipped).
    ctx.set_forkserver_preload(list(dict.fromkeys((*_PRELOAD, *imports))))
    return ctx


def _protocol_imports(config: AuditConfig) -> tuple[str, ...]:
    """What the run's protocol imports, for the fork server: the modules of its operators,
    and their slow imports (the face detector's, say)."""
    try:
        protocol = load_protocol(config.study.protocol)
    except Exception:  # the driver reports a bad protocol, with the reason
        return ()
    steps = (*protocol.hr_steps, *protocol.steps)
    return tuple(dict.fromkeys((*(type(s).__module__ for s in steps), *protocol.imports())))


def _metric_imports(config: AuditConfig) -> tuple[str, ...]:
    """What building the run's metrics imports, for the fork server: each metric's module,
    and the slow imports it names (``imports()``: pyiqa's, about 5 s in each loader process
    otherwise, which builds the metrics whose reference features it computes)."""
    modules: list[str] = []
    try:
        protocol = load_protocol(config.study.protocol)
        for name in run_metric_names(config.study.metrics, protocol.metrics):
            factory = METRICS.get(name)
            modules += [factory.__module__, *getattr(factory, "imports", tuple)()]
    except Exception:  # the driver reports a bad name, with the reason
        return ()
    return tuple(dict.fromkeys(modules))


def submit_in_background(pool, fn: Callable[..., Any], *args: Any):
    """``pool.submit(fn, *args)``, made from a thread: a future that follows its result,
    and an event set once the task is submitted (and its process started).

    Submitting a task starts a pool process, and a process from a fork server starts
    only once the server has imported what it preloads (seconds, once per process):
    the caller loads its own pipeline meanwhile instead of waiting. (Until the event is
    set, another ``pool.submit`` would wait for the same lock.)
    """
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


def helper_start(environment: dict[str, str] | None) -> None:
    """What every helper process (loader, worker, Ray actor) does first: end with its
    parent, take the environment of the audit that started it (None: the one it has), and
    tune its allocator as the CLI does."""
    exit_with_parent()
    if environment is not None:
        _adopt(environment)
    tune_allocator()


def _adopt(environment: dict[str, str]) -> None:
    """Take the environment of the process that started this one (a forked helper has the
    fork server's, from when that started): ``SRFORENSICS_CACHE`` and the like are read late."""
    os.environ.clear()
    os.environ.update(environment)


class HelperPool:
    """Helper processes from :func:`process_context`, each started with
    ``initializer(config, environment)``; a context manager that shuts them down."""

    #: Whether closing waits for the processes to finish what they are doing.
    wait_on_close = True
    #: Why the processes were given up (they take no more work), or ``None``.
    failure: str | None = None

    def __init__(
        self,
        config: dict[str, Any],
        *,
        processes: int,
        initializer: Callable[..., Any],
        initargs: tuple = (),
        imports: Sequence[str] = (),
    ) -> None:
        """``initializer(config, environment, *initargs)`` starts each process; ``imports``:
        modules its fork server imports beside what the protocol and the metrics need."""
        # As this process sets it before it imports pyiqa: a fork server that starts now
        # imports pyiqa for the helpers (see _metric_imports) with the same setting.
        audit = AuditConfig.from_dict(config)
        hub_policy(allow_downloads=audit.safety.allow_downloads)
        self.processes = processes
        self.pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=process_context(
                (*imports, *_protocol_imports(audit), *_metric_imports(audit))
            ),
            initializer=initializer,
            initargs=(config, dict(os.environ), *initargs),
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


def exit_with_parent() -> None:
    """End this spawned process when the one that started it ends, however it ends.

    A process pool's workers wait on their queue, whose both ends they hold, so after a
    ``kill -9`` of the audit they would wait forever (holding its output pipes, so a
    caller reading them hangs too). A thread watches the parent's sentinel instead.
    """
    parent = mp.parent_process()
    if parent is None:  # not started by multiprocessing (a Ray actor): nothing to watch
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="srforensics-exit-with-parent", daemon=True).start()
