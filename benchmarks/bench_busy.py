"""InstEval beside a busy process: the fit's time with every core free and with one core
kept busy by another process (a pure-Python loop), as the performance issue measures it.

    python benchmarks/bench_busy.py [--repeats 3]

Needs Rscript with lme4 for the data (``lme4::InstEval``). Prints a table: quiet and busy
medians and their ratio (target: at most 1.3). sklmm limits BLAS to the CPUs no other process
keeps busy (``sklmm/_engine/threads.py``); to see the unlimited behaviour, run an older commit.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "insteval.csv")
        subprocess.run(["Rscript", "-e", 'd <- lme4::InstEval; write.csv(data.frame(y = d$y, '
                        'service = as.numeric(d$service == "1"), s = as.character(d$s), '
                        'd = as.character(d$d), dept = as.character(d$dept)), commandArgs(TRUE)[1], '
                        'row.names = FALSE)', path], check=True)
        d = pd.read_csv(path, dtype={"s": str, "d": str, "dept": str})
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
    print("| workload | quiet (s) | one busy process (s) | ratio | criterion |")
    print("|---|---|---|---|---|")
    print(f"| InstEval ML | {q:.3f} | {b:.3f} | {b / q:.2f} | {quiet[0][1]:.6f} |")


if __name__ == "__main__":
    main()
