"""Benchmark: two-smooth additive model, sklmm against mgcv's gam (REML) and bam (fREML).

Data: ``x1, x2 ~ U(0, 1)``, ``y = sin(2 pi x1) + exp(2 x2) / 3 + N(0, 0.3^2)``, fixed seed.
Model: ``y ~ s(x1, bs="cr", k=20) + s(x2, bs="cr", k=20)``, smoothing parameters by REML.

Run ``python benchmarks/bench_gam.py`` (``--quick`` for a smoke run, ``--output FILE`` to also
write the markdown table to a file).
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (  # noqa: E402
    fmt,
    machine_info,
    markdown_table,
    median_time,
    python_peak_memory_mb,
    r_available,
    report,
    run_r,
)

SEED = 0
FORMULA = 'y ~ s(x1, bs = "cr", k = 20) + s(x2, bs = "cr", k = 20)'

R_TEMPLATE = """\
suppressPackageStartupMessages(library(mgcv))
d <- read.csv(commandArgs(trailingOnly = TRUE)[1])
times <- numeric({repeats})
for (i in seq_along(times))
  times[i] <- system.time(g <- {fun}({formula}, data = d, method = "{method}"))[["elapsed"]]
cat(jsonlite::toJSON(list(time = median(times), edf = sum(g$edf), sigma2 = g$sig2,
                          criterion = unname(g$gcv.ubre)), auto_unbox = TRUE, digits = NA), "\\n")
"""


def make_data(n, seed=SEED):
    """Simulate the benchmark data.

    Parameters
    ----------
    n : int
        Number of rows.
    seed : int, default=SEED
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    DataFrame
        Columns ``x1``, ``x2`` (features) and ``y`` (response).
    """
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(size=n), rng.uniform(size=n)
    y = np.sin(2 * np.pi * x1) + np.exp(2 * x2) / 3 + rng.normal(0.0, 0.3, size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


def fit_sklmm(data):
    """Fit the benchmark model with sklmm.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`make_data`.

    Returns
    -------
    PenalizedSplineRegressor
        The fitted estimator.
    """
    from sklmm import PenalizedSplineRegressor

    return PenalizedSplineRegressor(n_basis=20, basis="cr").fit(data[["x1", "x2"]], data["y"])


def run(n, repeats_sklmm=5, repeats_bam=3):
    """Fit sklmm, mgcv ``gam`` and mgcv ``bam`` on the same data and collect the results.

    Parameters
    ----------
    n : int
        Number of rows.
    repeats_sklmm, repeats_bam : int
        Fits whose median time is reported (mgcv's ``gam`` is fitted once).

    Returns
    -------
    list of dict
        One dict per tool with keys tool, time, edf, sigma2, criterion, peak_mb
        (criterion is sklmm's lme4-scale REML criterion or mgcv's REML score).
    """
    data = make_data(n)
    results = []
    seconds, est = median_time(lambda: fit_sklmm(data), repeats_sklmm)
    here = os.path.dirname(os.path.abspath(__file__))
    peak = python_peak_memory_mb(f"import sys; sys.path.insert(0, {here!r})\n"
                                 f"from bench_gam import make_data, fit_sklmm\n"
                                 f"fit_sklmm(make_data({n}))")
    results.append({"tool": f"sklmm PenalizedSplineRegressor (median of {repeats_sklmm})",
                    "time": seconds, "edf": est.edf_total_, "sigma2": est.sigma_**2,
                    "criterion": est.criterion_, "peak_mb": peak})
    if not r_available(["mgcv"]):
        return results
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "gam.csv")
        data.to_csv(csv, index=False, float_format="%.17g")
        for fun, method, repeats in [("gam", "REML", 1), ("bam", "fREML", repeats_bam)]:
            script = R_TEMPLATE.format(repeats=repeats, fun=fun, formula=FORMULA, method=method)
            out = run_r(script, csv)
            label = f'mgcv {fun}(method="{method}")' + (f" (median of {repeats})"
                                                        if repeats > 1 else "")
            results.append({"tool": label, "time": out["time"], "edf": out["edf"],
                            "sigma2": out["sigma2"], "criterion": out["criterion"],
                            "peak_mb": out["peak_mb"]})
    return results


def table(results, n):
    """Markdown table of :func:`run`'s results, with a footnote on the criteria.

    Parameters
    ----------
    results : list of dict
        Output of :func:`run`.
    n : int
        Number of rows (for the workload column).

    Returns
    -------
    str
    """
    rows = []
    for r in results:
        sk = r["tool"].startswith("sklmm")
        rows.append({
            "workload": f"2 smooths, cr k=20, n={n:,}", "tool": r["tool"],
            "time (s)": fmt(r["time"], ".3g"), "total edf": fmt(r["edf"], ".5g"),
            "sigma^2": fmt(r["sigma2"], ".5g"),
            "REML criterion, lme4 scale [a]": fmt(r["criterion"], ".10g") if sk else "",
            "REML score, mgcv scale [a]": "" if sk else fmt(r["criterion"], ".10g"),
            "peak memory (MB) [b]": fmt(r["peak_mb"], ".0f")})
    notes = [
        "[a] sklmm reports lme4's REML criterion, -2 x the restricted log-likelihood of the "
        "mixed-model form; mgcv's `gcv.ubre` is its REML score, -1 x a restricted "
        "log-likelihood, so 2 x gam's score should equal sklmm's criterion (checked below); "
        "`bam`'s fREML score carries different constants. Total edf and sigma^2 (mgcv's "
        "`sig2`) compare across all three.",
        "[b] peak RSS of a fresh process that loads the data and fits: Python via "
        "`resource.getrusage(RUSAGE_SELF).ru_maxrss` (one fit), R via `/usr/bin/time -f %M` "
        "(all of its repeats); interpreter and data included.",
    ]
    ref = next((r for r in results if r["tool"].startswith("mgcv gam")), None)
    if ref is not None:
        sk = results[0]
        notes.append(f"sklmm vs mgcv gam: total edf differs by "
                     f"{abs(sk['edf'] / ref['edf'] - 1):.3%}, sigma^2 by "
                     f"{abs(sk['sigma2'] / ref['sigma2'] - 1):.3%}; sklmm's criterion minus "
                     f"2 x gam's REML score = {sk['criterion'] - 2 * ref['criterion']:.3g}.")
    return markdown_table(rows) + "\n\n" + "\n\n".join(notes) + "\n"


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="number of rows")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: n=20000, one repeat of each fit")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        n, results = 20_000, run(20_000, repeats_sklmm=1, repeats_bam=1)
    else:
        n, results = args.n, run(args.n)
    report(table(results, n), machine_info(), args.output)


if __name__ == "__main__":
    main()
