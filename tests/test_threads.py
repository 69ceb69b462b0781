"""BLAS threads matched to the block sizes and to the CPUs other processes leave free
(sklmm/_engine/threads.py)."""

import multiprocessing as mp
import os
import time
import warnings

import numpy as np
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


def test_large_blocks_keep_numpys_own_blas_on_one_thread():
    """Above SINGLE_THREAD_BLOCK the factorization's library (scipy's) gets the free CPUs and
    numpy's own BLAS, where the wheels bundle one apart, one thread: its spinning threads
    would take a core from the factorization."""
    from sklmm._engine.threads import _numpy_own_blas

    own = set(_numpy_own_blas())
    with blas_limit(SINGLE_THREAD_BLOCK):
        libs = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        for lib in libs:
            if lib["filepath"] in own:
                assert lib["num_threads"] == 1
            else:
                assert lib["num_threads"] <= _usable_cpus()
    assert len(own) < max(len(libs), 1)  # never every BLAS library (scipy's keeps its threads)


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


def test_smooth_bases_built_in_threads_equal_those_built_in_order(monkeypatch):
    """designs_of builds several smooths' bases in threads on large data: the same designs,
    and the same fit, as one after the other; a smooth's error is raised as in order."""
    import pandas as pd

    from sklmm import PenalizedSplineRegressor
    from sklmm._input import smooth_terms

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.uniform(size=(3000, 3)), columns=["a", "b", "c"])
    y = np.sin(6 * X["a"]) + X["b"] ** 2 + rng.normal(0, 0.3, 3000)
    serial = PenalizedSplineRegressor(n_basis=8).fit(X, y)
    monkeypatch.setattr(smooth_terms, "PARALLEL_BASIS_ROWS", 0)
    monkeypatch.setattr(smooth_terms, "free_cpus", lambda: 2)
    threaded = PenalizedSplineRegressor(n_basis=8).fit(X, y)
    assert threaded.criterion_ == serial.criterion_
    np.testing.assert_array_equal(threaded.predict(X), serial.predict(X))
    Xa = X.to_numpy()
    for (F1, Z1), (F2, Z2) in zip(smooth_terms.designs_of(serial.smooths_, Xa),
                                  [sm.design(Xa) for sm in serial.smooths_]):
        np.testing.assert_array_equal(F1, F2)
        np.testing.assert_array_equal(Z1, Z2)
    bad = X.assign(c=np.repeat([0.0, 1.0], 1500))  # two distinct values: no smooth of c
    with pytest.raises(ValueError, match="distinct values"):
        PenalizedSplineRegressor(n_basis=8).fit(bad, y)


@pytest.mark.skipif(_usable_cpus() < 2, reason="needs two CPUs to leave one")
def test_a_fit_measures_the_free_cpus_once_and_keeps_blas_within_them_throughout(monkeypatch):
    """Each estimator's fit measures the free CPUs when it starts and limits BLAS to them for
    all of its steps: the cross-products and the moment start (which ran with every thread
    beside a busy process) as well as the evaluations; a GLMM's setup too. Its warnings still
    point at the caller."""
    from sklmm import MixedLinearRegressor, MixedLogisticRegression
    from sklmm._engine import fit as engine_fit
    from sklmm._engine import glmm_fit, threads

    samples = []

    def one_free(path, *args, **kwargs):  # /proc/loadavg says another process runs
        samples.append(path)
        return real_open(path, *args, **kwargs) if path != "/proc/loadavg" else _FakeLoad()

    real_open = open
    monkeypatch.setattr(threads, "open", one_free, raising=False)
    monkeypatch.setattr(threads, "_own_running_threads", lambda: 1)
    seen = []
    for mod, name in ((engine_fit, "cross_products"), (engine_fit, "moment_start"), (glmm_fit, "make_factor")):
        real = getattr(mod, name)

        def spy(*args, _real=real, **kwargs):
            seen.append(max(_blas_threads()))
            return _real(*args, **kwargs)

        monkeypatch.setattr(mod, name, spy)
    rng = np.random.default_rng(0)
    g = rng.integers(0, 20, 400)
    x = rng.normal(size=400)
    MixedLinearRegressor().fit(x[:, None], x + rng.normal(size=20)[g] + rng.normal(size=400), groups=g)
    loads = samples.count("/proc/loadavg")
    assert 1 <= loads <= threads._SAMPLES  # (one measure: its samples)
    with warnings.catch_warnings(record=True) as caught:  # (a singular fit)
        warnings.simplefilter("always")
        MixedLogisticRegression().fit(x[:, None], (x + rng.normal(size=400) > 0).astype(int), groups=g)
    assert caught and all(w.filename == __file__ for w in caught)  # (the limit adds no frame)
    assert seen and all(n == _usable_cpus() - 1 for n in seen)
    assert max(_blas_threads()) == _usable_cpus() or _usable_cpus() == 1  # (restored after the fits)


class _FakeLoad:
    """``/proc/loadavg`` with two runnable threads: this one and another process's."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self):
        return "1.00 1.00 1.00 2/300 12345\n"
