"""BLAS threads for a fit: as many as the blocks can use and the machine has free.

OpenBLAS's threads pay off only on large blocks, and only on idle cores: on a machine where
another process keeps a core busy, two BLAS threads on two cores take turns with it and every
synchronisation waits for the descheduled one (InstEval on 2 cores beside one busy process:
4 to 10 s with two threads, 1.0 s with one; 0.9 s quiet). So a fit limits BLAS to the cores
that are free when it starts (:func:`free_cpus`), and to one thread where its dense block is
small (:data:`SINGLE_THREAD_BLOCK`). Inside joblib's workers (GridSearchCV ``n_jobs``) the
other workers are the busy processes, so each worker gets the share left to it.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

__all__ = ["free_cpus", "blas_limit", "single_threaded_blas", "SINGLE_THREAD_BLOCK"]

#: below this many columns of a fit's dense block BLAS runs on one thread: its products and
#: factorizations are then too small to gain from threads, and the idle threads of numpy's and
#: scipy's two OpenBLAS libraries, spinning after each call, slow the other's calls (a
#: 203-column Cholesky after a product: 50 ms instead of 0.2 ms on 2 cores)
SINGLE_THREAD_BLOCK = 1000

#: samples of the run queue taken by :func:`free_cpus`, 1 ms apart
_SAMPLES = 5

_CONTROLLER = []


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
    usable = _usable_cpus()
    busy = None
    try:
        for i in range(_SAMPLES):
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            others = max(0, running - _own_running_threads())
            busy = others if busy is None else min(busy, others)
            if busy == 0:
                break
            if i + 1 < _SAMPLES:
                time.sleep(0.001)
    except (OSError, ValueError, IndexError):
        return usable
    return max(1, usable - busy)


def blas_limit(side, single_below=True):
    """The BLAS threading for a fit whose dense block has ``side`` columns (a context): one
    thread below :data:`SINGLE_THREAD_BLOCK` (unless ``single_below`` is False: then as it
    is); above, the free CPUs when some are busy."""
    if side < SINGLE_THREAD_BLOCK:
        return single_threaded_blas() if single_below else nullcontext()
    free = free_cpus()
    return _controller().limit(limits=free, user_api="blas") if free < _usable_cpus() else nullcontext()
