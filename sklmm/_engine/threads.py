"""BLAS threads for a fit: as many as the blocks can use and the machine has free.

OpenBLAS's threads pay off only on large blocks, and only on idle cores: on a machine where
another process keeps a core busy, two BLAS threads on two cores take turns with it and every
synchronisation waits for the descheduled one (InstEval on 2 cores beside one busy process:
4 to 10 s with two threads, 1.0 s with one; 0.9 s quiet). So a fit limits BLAS to the cores
that are free when it starts (:func:`free_cpus`), and to one thread where its dense block is
small (:data:`SINGLE_THREAD_BLOCK`). Each estimator's ``fit`` runs inside
:func:`sparing_busy_cpus`, so the limit binds its setup and last steps too and the CPUs are
measured once. Inside joblib's workers (GridSearchCV ``n_jobs``) the other workers are the busy
processes, so each worker gets the share left to it.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager, nullcontext

__all__ = ["free_cpus", "blas_limit", "busy_limit", "factor_threads", "sparing_busy_cpus",
           "single_threaded_blas", "SINGLE_THREAD_BLOCK"]

#: below this many columns of a fit's dense block BLAS runs on one thread: its products and
#: factorizations are then too small to gain from threads, and the idle threads of numpy's and
#: scipy's two OpenBLAS libraries, spinning after each call, slow the other's calls (a
#: 203-column Cholesky after a product: 50 ms instead of 0.2 ms on 2 cores)
SINGLE_THREAD_BLOCK = 1000

#: samples of the run queue taken by :func:`free_cpus`, 1 ms apart
_SAMPLES = 5

_CONTROLLER = []

#: the free CPUs a fit measured when it started, per thread (see :func:`sparing_busy_cpus`)
_ACTIVE = threading.local()


def _controller():
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def single_threaded_blas():
    """Context: BLAS libraries limited to one thread (a controller built once, ~10 us a call)."""
    return _controller().limit(limits=1, user_api="blas")


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _own_running_threads():
    """Threads of this process in the running state (an OpenBLAS thread may still spin)."""
    count = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "R":
                    count += 1
    except OSError:
        return 1
    return count


def free_cpus():
    """CPUs this process may use that no other process keeps busy: the usable CPUs minus the
    least number of other runnable threads over a few samples of the run queue (Linux's
    ``/proc/loadavg``), at least 1. Where the run queue cannot be read: all usable CPUs."""
    known = getattr(_ACTIVE, "free", None)
    if known is not None:  # inside a fit (sparing_busy_cpus): what it measured when it started
        return known
    usable = _usable_cpus()
    busy = None
    try:
        for i in range(_SAMPLES):
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            # (only this thread running: none busy, without reading this process's threads)
            others = 0 if running <= 1 else max(0, running - _own_running_threads())
            busy = others if busy is None else min(busy, others)
            if busy == 0:
                break
            if i + 1 < _SAMPLES:
                time.sleep(0.001)
    except (OSError, ValueError, IndexError):
        return usable
    return max(1, usable - busy)


_NUMPY_BLAS = []  # (found once)


def _numpy_own_blas():
    """The file paths of the BLAS libraries numpy bundles apart from scipy's (the wheels ship
    one OpenBLAS each), empty where they share one (a system or conda BLAS)."""
    if not _NUMPY_BLAS:
        from pathlib import Path

        paths = [c.filepath for c in _controller().lib_controllers if c.user_api == "blas"]
        own = [fp for fp in paths if any(part.startswith("numpy") for part in Path(fp).parent.parts[-2:])]
        _NUMPY_BLAS.append(own if len(own) < len(paths) else [])
    return _NUMPY_BLAS[0]


@contextmanager
def factor_threads():
    """Context for the evaluations of a large dense block: BLAS at the free CPUs
    (:func:`busy_limit`) for scipy's LAPACK, which factors it, and numpy's own BLAS, which
    forms only small products between its calls, on one thread: its idle threads, spinning
    after each call, would take a core from the factorization (InstEval's gradient: 77-86 ms
    instead of 152-159 with both at two threads, 100-122 with both at one)."""
    with busy_limit():
        own = _numpy_own_blas()
        if not own:
            yield
            return
        with _controller().select(filepath=own).limit(limits=1):
            yield


def blas_limit(side, single_below=True):
    """The BLAS threading for a fit whose dense block has ``side`` columns (a context): one
    thread below :data:`SINGLE_THREAD_BLOCK` (unless ``single_below`` is False: then as it
    is); above, :func:`factor_threads`."""
    if side < SINGLE_THREAD_BLOCK:
        return single_threaded_blas() if single_below else nullcontext()
    return factor_threads()


def busy_limit():
    """Context: BLAS limited to the free CPUs (:func:`free_cpus`) when other processes keep some
    busy; nothing when all are free."""
    free = free_cpus()
    return _controller().limit(limits=free, user_api="blas") if free < _usable_cpus() else nullcontext()


@contextmanager
def sparing_busy_cpus():
    """Context for an estimator's ``fit``: all of it under :func:`busy_limit`, the input checks,
    the setup and the last steps as well as the evaluations (which set their own limits
    inside), with :func:`free_cpus` measured once when it starts (beside a busy process, two
    BLAS threads in InstEval's moment start and final factorization cost 0.15 s of a 1.2 s
    fit, and each measure up to 5 ms). A context inside the method's body, not a decorator:
    the warnings' stack levels stay those of the user's call."""
    if getattr(_ACTIVE, "free", None) is not None:  # (a fit inside a fit)
        yield
        return
    _ACTIVE.free = free_cpus()
    try:
        with busy_limit():  # (its free_cpus() is the measure just kept)
            yield
    finally:
        _ACTIVE.free = None
