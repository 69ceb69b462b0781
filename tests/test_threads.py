"""BLAS threads matched to the block sizes and to the CPUs other processes leave free
(sklmm/_engine/threads.py)."""

import multiprocessing as mp
import os
import time

import pytest
from threadpoolctl import threadpool_info

from sklmm._engine.threads import SINGLE_THREAD_BLOCK, _usable_cpus, blas_limit, free_cpus


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_small_blocks_run_blas_on_one_thread_and_large_ones_on_free_cpus():
    with blas_limit(SINGLE_THREAD_BLOCK - 1):
        assert all(n == 1 for n in _blas_threads())
    free = free_cpus()
    assert 1 <= free <= _usable_cpus()
    with blas_limit(SINGLE_THREAD_BLOCK):
        assert all(n <= _usable_cpus() for n in _blas_threads())


def _spin(stop):
    while not stop.is_set():
        pass


@pytest.mark.skipif(not os.path.exists("/proc/loadavg") or _usable_cpus() < 2,
                    reason="reads Linux's run queue; needs two CPUs")
def test_a_busy_process_takes_its_cpu_out_of_the_count():
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        time.sleep(0.3)
        assert free_cpus() <= _usable_cpus() - 1
        with blas_limit(10 * SINGLE_THREAD_BLOCK):
            assert all(n <= _usable_cpus() - 1 for n in _blas_threads())
    finally:
        stop.set()
        spinner.join()
