"""Benchmark: factor-smooth interactions ``s(x, f, bs="fs")``, sklmm beside mgcv's gam and bam.

Data: ``G`` levels of a factor ``f``, 50 rows each, ``x ~ U(0, 1)``, ``a_g ~ N(0, 1)``,
``phase_g ~ U(0, 6)``, noise ``N(0, 0.3^2)``, seeded numpy generator (seed 0):

* **cr**: ``y = sin(2 pi x) + a_g + 0.5 sin(4 x + phase_g) + noise``; model
  ``y ~ s(x, bs = "cr") + s(x, f, bs = "fs", xt = "cr", k = 5)``, i.e.
  ``PenalizedSplineRegressor(smooths=[s("x", bs="cr"), s("x", "f", bs="fs", xt="cr", k=5)])``.
  For a cr base mgcv spans the penalty's null space with an arbitrary basis (from eigen()),
  sklmm with a canonical one (a random intercept and a slope on centred x), and each null-space
  column has its own smoothing parameter: **the two are slightly different models**, so their
  fits, edf and REML scores need not agree.
* **cc**: ``y = sin(2 pi x) + a_g + 0.7 sin(2 pi x + phase_g) + noise`` (periodic in x); model
  ``y ~ s(x, bs = "cc") + s(x, f, bs = "fs", xt = "cc", k = 5)``. The cyclic base has a
  one-dimensional null space (the constant), so here sklmm's and mgcv's models are the same
  and both should reach the same REML optimum.

sklmm is fitted three times in a fresh Python process per workload (time: the median of the
three, and the first fit apart; peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of
that process, interpreter and data included). mgcv runs in its own Rscript per fit:
``gam(method = "REML")`` once, ``bam(method = "fREML", discrete = TRUE)`` three times (median
and first), timed by ``system.time`` around the fit inside R; peak memory of the Rscript by
``/usr/bin/time -f %M``. Each subprocess is killed after ``--timeout`` seconds ("> 300 s
(stopped)"); once a tool has been stopped on a case, its larger sizes of that case are
skipped. The REML criteria are on different scales (sklmm's ``criterion_`` is lme4's -2 log
restricted likelihood, mgcv's ``gcv.ubre`` -1 x a restricted log-likelihood with its own
constants), so the fits are compared by the largest absolute difference of the fitted values
from sklmm's, over sd(y), and by the total edf (sklmm's ``edf_total_``, R's ``sum(edf)``); for
the same optimum these agree to about 1e-4. For the cc case the gam row also notes sklmm's
``criterion_`` minus 2 x gam's score (negative: sklmm's optimum is the better one, if the two
scales differ by no constant for this model); for cr it is not printed, the models differ.

    python benchmarks/bench_fs.py                          # G = 20, 50, 100, 200; ~30 min with R
    python benchmarks/bench_fs.py --groups 20 50 --timeout 60
    python benchmarks/bench_fs.py --no-r                   # sklmm only

Prints a markdown table, the distinct warnings the fits raised, the 1-minute load average over
the run, the sklmm commit and the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import (
    LoadSampler,
    describe_failure,
    fmt,
    git_commit,
    machine_info,
    r_available,
    run_python,
    run_r,
)

SEED = 0
PER_LEVEL = 50
K_FS = 5
SKLMM_REPEATS = 3
BAM_REPEATS = 3
CASES = ("cr", "cc")

PY_FIT = """
import sys, time, warnings
sys.path.insert(0, {here!r})
import numpy as np
import pandas as pd
from _harness import emit_result
import sklmm
from sklmm import PenalizedSplineRegressor, s
d = pd.read_csv({csv!r})
d["f"] = d["f"].astype("category")
X, y = d[["x", "f"]], d["y"]
times = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range({repeats}):
        est = PenalizedSplineRegressor(smooths=[s("x", bs={case!r}),
                                                s("x", "f", bs="fs", xt={case!r}, k={k})])
        t0 = time.perf_counter()
        est.fit(X, y)
        times.append(time.perf_counter() - t0)
np.save({fitted!r}, est.predict(X))
emit_result(times=times, criterion=float(est.criterion_), edf_total=float(est.edf_total_),
            sigma2=float(est.sigma_ ** 2), sklmm_path=sklmm.__file__, n_iter=int(est.n_iter_), converged=bool(est.converged_),
            warnings=sorted({{f"{{w.category.__name__}}: {{str(w.message)[:150]}}" for w in caught}}))
"""

R_FIT = r"""
suppressPackageStartupMessages({library(mgcv); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1]); d$f <- factor(d$f)
case <- a[2]; tool <- a[3]; reps <- as.integer(a[4]); out <- a[5]; k <- as.integer(a[6])
fm <- as.formula(sprintf('y ~ s(x, bs = "%s") + s(x, f, bs = "fs", xt = "%s", k = %d)', case, case, k))
warns <- character(0)
fit1 <- function() withCallingHandlers(
  if (tool == "gam") gam(fm, data = d, method = "REML")
  else bam(fm, data = d, method = "fREML", discrete = TRUE),
  warning = function(w) {warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")})
times <- numeric(0)
for (i in seq_len(reps)) times <- c(times, system.time(g <- fit1())[["elapsed"]])
writeBin(as.double(fitted(g)), out)
iter <- if (tool == "gam") g$outer.info$iter else g$iter
conv <- if (tool == "gam") g$outer.info$conv else if (isTRUE(g$converged)) "converged" else "NOT converged"
cat("\n", toJSON(list(times = I(times), score = g$gcv.ubre, edf_total = sum(g$edf), sigma2 = g$sig2,
                      iter = iter, conv = conv, warnings = I(unique(warns))),
                 auto_unbox = TRUE, digits = NA), "\n", sep = "")
"""


def make_data(n_groups, case, per=PER_LEVEL, seed=SEED):
    """The simulated data of one workload (columns y, x, f; f as zero-padded level names)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.uniform(0, 1, g.size)
    a = rng.normal(0, 1, n_groups)
    phase = rng.uniform(0, 6, n_groups)
    if case == "cr":
        y = np.sin(2 * np.pi * x) + a[g] + 0.5 * np.sin(4 * x + phase[g])
    else:
        y = np.sin(2 * np.pi * x) + a[g] + 0.7 * np.sin(2 * np.pi * x + phase[g])
    y = y + rng.normal(0, 0.3, g.size)
    width = len(str(n_groups - 1))
    return pd.DataFrame({"y": y, "x": x, "f": [f"g{i:0{width}d}" for i in g]})


COLUMNS = ["case", "groups", "rows", "tool", "time (s)", "first fit (s)", "peak MB", "total edf",
           "edf - sklmm's", "sigma^2", "max abs fitted diff / sd(y) vs sklmm", "notes"]


def print_row(row):
    print("| " + " | ".join("n/a" if row.get(c) is None else str(row[c]) for c in COLUMNS) + " |",
          flush=True)


def times_note(times):
    return ", ".join(f"{t:.3g}" for t in times) + " s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, nargs="+", default=[20, 50, 100, 200],
                    help="numbers of factor levels (50 rows each)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds before a fit's subprocess is killed (default 300)")
    ap.add_argument("--no-r", action="store_true", help="sklmm only")
    args = ap.parse_args()
    have_r = not args.no_r and r_available(["mgcv"])
    tools = ["sklmm"] + (["gam", "bam"] if have_r else [])
    labels = {"sklmm": f"sklmm (median of {SKLMM_REPEATS})", "gam": 'mgcv gam(method="REML")',
              "bam": f'mgcv bam(method="fREML", discrete=TRUE) (median of {BAM_REPEATS})'}
    tlim = f"{args.timeout:g}"
    stopped = {}  # (tool, case) -> G at which it was stopped
    warnings_seen = {}  # message -> tools
    sklmm_paths = set()
    load = LoadSampler()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            for n_groups in args.groups:
                data = make_data(n_groups, case)
                csv = os.path.join(tmp, f"fs_{case}_{n_groups}.csv")
                data.to_csv(csv, index=False, float_format="%.17g")
                sd_y = float(data["y"].std())
                ref_fitted, ref_edf, ref_crit = None, None, None
                for tool in tools:
                    row = {"case": case, "groups": f"{n_groups:,}", "rows": f"{len(data):,}",
                           "tool": labels[tool]}
                    if (tool, case) in stopped:
                        row["notes"] = f"skipped (stopped at {stopped[tool, case]:,} groups)"
                        print_row(row)
                        continue
                    fitted_path = os.path.join(tmp, f"fitted_{tool}_{case}_{n_groups}")
                    try:
                        if tool == "sklmm":
                            fitted_path += ".npy"
                            code = PY_FIT.format(here=HERE, csv=csv, case=case, k=K_FS,
                                                 repeats=SKLMM_REPEATS, fitted=fitted_path)
                            res = run_python(code, timeout=args.timeout)
                            fitted = np.load(fitted_path)
                        else:
                            reps = 1 if tool == "gam" else BAM_REPEATS
                            res = run_r(R_FIT, csv, timeout=args.timeout,
                                        args=(case, tool, reps, fitted_path, K_FS))
                            fitted = np.fromfile(fitted_path, dtype=np.float64)
                    except subprocess.TimeoutExpired:
                        stopped[tool, case] = n_groups
                        row["time (s)"] = f"> {tlim} s (stopped)"
                        print_row(row)
                        continue
                    except Exception as exc:  # noqa: BLE001 (a failed fit is a table row)
                        row["notes"] = describe_failure(exc, tlim)
                        print_row(row)
                        continue
                    times = res["times"]
                    for w in res.get("warnings") or []:
                        warnings_seen.setdefault(w, set()).add(f"{tool} {case}")
                    row.update({"time (s)": fmt(statistics.median(times), ".3g"),
                                "first fit (s)": fmt(times[0], ".3g") if len(times) > 1 else None,
                                "peak MB": fmt(res["peak_mb"], ".0f"),
                                "total edf": fmt(res["edf_total"], ".5f"),
                                "sigma^2": fmt(res["sigma2"], ".6g")})
                    if tool == "sklmm":
                        sklmm_paths.add(res["sklmm_path"])
                        ref_fitted, ref_edf, ref_crit = fitted, res["edf_total"], res["criterion"]
                        row["edf - sklmm's"] = "(reference)"
                        row["max abs fitted diff / sd(y) vs sklmm"] = "(reference)"
                        row["notes"] = (f"fits {times_note(times)}; criterion_ {res['criterion']:.6f}; "
                                        f"{res['n_iter']} evals; "
                                        + ("converged" if res["converged"] else "NOT converged"))
                    else:
                        if ref_fitted is not None:
                            row["edf - sklmm's"] = f"{res['edf_total'] - ref_edf:+.1e}"
                            row["max abs fitted diff / sd(y) vs sklmm"] = (
                                f"{np.max(np.abs(fitted - ref_fitted)) / sd_y:.1e}")
                        notes = [f"score {res['score']:.6f}", f"{res['iter']} iterations", res["conv"]]
                        if tool == "gam" and case == "cc" and ref_crit is not None:
                            notes.insert(1, f"sklmm's criterion_ - 2 x score = {ref_crit - 2 * res['score']:+.2e}")
                        if tool == "bam":
                            notes.insert(0, f"fits {times_note(times)}")
                        row["notes"] = "; ".join(notes)
                    print_row(row)
    if warnings_seen:
        print("\nWarnings raised by the fits:")
        for w, where in warnings_seen.items():
            print(f"* {w} ({', '.join(sorted(where))})")
    print("\n" + load.stop())
    print("\nsklmm commit: " + git_commit(HERE) + " (working tree of the benchmark script); sklmm "
          "imported from: " + ", ".join(sorted(sklmm_paths)))
    info = machine_info(r_packages=("mgcv",))
    print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


if __name__ == "__main__":
    main()
