"""Benchmark: a GAMM with many groups, sklmm beside gamm4 (the same run).

Data: ``n_groups`` groups of 10 rows, ``x ~ U(0, 1)``, ``y = sin(6 x) + b_g + N(0, 0.3^2)``,
``b_g ~ N(0, 0.5^2)``, fixed seed. Model: gamm4's ``y ~ s(x, bs="cr", k=10)``,
``random = ~ (1 | g)``; sklmm's ``PenalizedSplineRegressor(basis="cr", n_basis=10)`` with
``groups=g``. The performance issue's target: 10,000 groups under 3 s and 1 GB.

    python benchmarks/bench_gamm_groups.py [--groups 1000 10000 50000] [--no-r]

Prints time, peak memory (of a fresh process per fit), the REML criterion (lme4's scale: both
report it) and the smooth's edf.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import fmt, machine_info, r_available  # noqa: E402

SEED = 0

PY_FIT = """
import json, resource, sys, time, warnings
import pandas as pd
from sklmm import PenalizedSplineRegressor
d = pd.read_csv(sys.argv[1])
warnings.simplefilter("ignore")
t = time.perf_counter()
m = PenalizedSplineRegressor(basis="cr", n_basis=10).fit(d[["x"]], d["y"], groups=d["g"])
el = time.perf_counter() - t
print(json.dumps(dict(time=el, mem=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      criterion=m.criterion_, edf=float(m.edf_.iloc[0]))))
"""

R_FIT = """
suppressPackageStartupMessages({library(gamm4); library(jsonlite)})
d <- read.csv(commandArgs(trailingOnly = TRUE)[1]); d$g <- factor(d$g)
t <- system.time(b <- gamm4(y ~ s(x, bs = "cr", k = 10), random = ~ (1 | g), data = d))[["elapsed"]]
cat(toJSON(list(time = t, criterion = REMLcrit(b$mer), edf = sum(b$gam$edf[-1])), auto_unbox = TRUE, digits = NA))
"""


def make_data(n_groups, per=10, seed=SEED):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.uniform(0, 1, g.size)
    y = np.sin(6 * x) + rng.normal(0, 0.5, n_groups)[g] + rng.normal(0, 0.3, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    have_r = not args.no_r and r_available(["gamm4"])
    print("| groups | rows | tool | time (s) | peak memory (MB) | REML criterion | edf s(x) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n_groups in args.groups:
            path = os.path.join(tmp, f"gamm_{n_groups}.csv")
            make_data(n_groups).to_csv(path, index=False)
            out = json.loads(subprocess.run([sys.executable, "-c", PY_FIT, path], check=True,
                                            capture_output=True, text=True).stdout)
            print(f"| {n_groups:,} | {10 * n_groups:,} | sklmm | {fmt(out['time'], '.3g')} | {out['mem']:.0f} | "
                  f"{out['criterion']:.6f} | {out['edf']:.4f} |")
            if have_r:
                r = subprocess.run(["Rscript", "-e", R_FIT, path], capture_output=True, text=True)
                if r.returncode == 0 and r.stdout.strip():
                    res = json.loads(r.stdout.strip().splitlines()[-1])
                    print(f"| {n_groups:,} | {10 * n_groups:,} | gamm4 | {fmt(res['time'], '.3g')} | n/a | "
                          f"{res['criterion']:.6f} | {res['edf']:.4f} |")
                else:
                    print(f"| {n_groups:,} | {10 * n_groups:,} | gamm4 | failed | | | |")
    print()
    info = machine_info(r_packages=("gamm4", "lme4"))
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


if __name__ == "__main__":
    main()
