"""Settings of the process an audit computes in: thread counts, the allocator, the
garbage collector.

None of them changes a computed value except the thread count, which a run fixes and records
(:func:`torch_threads`).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# torch, threadpoolctl: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` threads in torch and in the BLAS/OpenMP pools numpy and
    scipy use (restored after).

    Reductions split across threads sum in another order, so values can differ in
    their last bits between thread counts: a run fixes its count (``--threads``)
    for every process that computes, and records it.
    """
    # Lazy: the CLI's --help and 'metrics list' load this module and never torch.
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
    env = os.environ
    if (
        not sys.platform.startswith("linux")
        or any(f"MALLOC_{k}_" in env for k in ("MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"))
        or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")
        or "malloc" in env.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc: theirs
    ):
        return None
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
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def freeze_heap() -> None:
    """In a helper process, once its pipeline or protocol is loaded: what it has loaded is
    left out of the collector's scans for the rest of its life (see :func:`heap_frozen`)."""
    gc.freeze()


def allocator_settings() -> str | None:
    """The allocator settings :func:`tune_allocator` made in this process, or None."""
    return _ALLOCATOR["settings"]
