"""InstEval beside a busy process: the fit's time with every core free and with one core
kept busy by another process (a pure-Python loop), as the performance issue measures it.

    python benchmarks/bench_busy.py [--repeats 3]

Needs Rscript with lme4 for the data (``lme4::InstEval``). Prints a table: quiet and busy
medians and their ratio (target: at most 1.3). sklmm limits BLAS to the CPUs no other process
keeps busy (``sklmm/_engine/threads.py``); to see the unlimited behaviour, run an older commit.

The table also gives the fit on one core: a fresh process pinned to CPU 0 (``taskset``, where
there is one), which starts its BLAS with one thread. It is the most the busy fit can hope for
with the other core taken: busy over one-core near 1 means no oversubscription, and the
quiet-to-one-core ratio is what the fit gains from the second core.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

from sklmm import MixedLinearRegressor


def _spin(stop):
    while not stop.is_set():
        pass


def _fit(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        m = MixedLinearRegressor(reml=False).fit(d[["service"]], d["y"], groups=d[["s", "d", "dept"]])
        return time.perf_counter() - t, m.criterion_


def _read(path):
    return pd.read_csv(path, dtype={"s": str, "d": str, "dept": str})


def _one_core(path, repeats):
    """Median fit time in a fresh process pinned to CPU 0, or None without ``taskset``."""
    if shutil.which("taskset") is None:
        return None
    out = subprocess.run(["taskset", "-c", "0", sys.executable, os.path.abspath(__file__), "--worker", path,
                          "--repeats", str(repeats)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # (the one-core run: the CSV to fit)
    args = ap.parse_args()
    if args.worker:
        d = _read(args.worker)
        _fit(d)
        print(np.median([_fit(d)[0] for _ in range(args.repeats)]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "insteval.csv")
        subprocess.run(["Rscript", "-e", 'd <- lme4::InstEval; write.csv(data.frame(y = d$y, '
                        'service = as.numeric(d$service == "1"), s = as.character(d$s), '
                        'd = as.character(d$d), dept = as.character(d$dept)), commandArgs(TRUE)[1], '
                        'row.names = FALSE)', path], check=True)
        d = _read(path)
        one = _one_core(path, args.repeats)
    _fit(d)  # (page faults and imports of a first fit)
    quiet = [_fit(d) for _ in range(args.repeats)]
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    time.sleep(0.5)
    try:
        busy = [_fit(d) for _ in range(args.repeats)]
    finally:
        stop.set()
        spinner.join()
    q, b = np.median([t for t, _ in quiet]), np.median([t for t, _ in busy])
    print(f"CPUs: {os.cpu_count()}; repeats: {args.repeats}")
    print("| workload | quiet (s) | one busy process (s) | ratio | one core (s) | busy / one core | criterion |")
    print("|---|---|---|---|---|---|---|")
    one_s, one_r = ("n/a", "n/a") if one is None else (f"{one:.3f}", f"{b / one:.2f}")
    print(f"| InstEval ML | {q:.3f} | {b:.3f} | {b / q:.2f} | {one_s} | {one_r} | {quiet[0][1]:.6f} |")


if __name__ == "__main__":
    main()
