"""Benchmark: what the quantities after the fit cost, next to the fit itself.

Data: ``y = 1 + x + b0_g + b1_g x + e`` with 5,000 groups and 500,000 rows (seed 0); model
``y ~ x + (x | g)`` by REML. For one fit (the median of ``--repeats`` fits) it times
``predict(X, groups=g, return_std=True)`` on the 500,000 training rows and the fixed-effects
table with Satterthwaite df (``fixed_effects_``, computed on first access), each the median
over fresh fits so that no cache is reused. Issue 17's targets: prediction standard errors in
no more than the fit's time, the df in under half of it. Where Rscript and lme4 are available,
also lme4's InstEval (73,421 rows, ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)`` by ML,
the issue's row for the df): its fit and ``fixed_effects_``, medians of as many fresh fits.

Run ``python benchmarks/bench_postfit.py`` (``--quick``: 50,000 rows and 500 groups, no
InstEval; ``--output FILE`` also writes the table).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import git_commit, machine_info, markdown_table, r_available, report  # noqa: E402


def simulate(n, groups, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(size=groups)[g] + rng.normal(0, 0.5, groups)[g] * x + rng.normal(size=n)
    return x[:, None], y, g


def measure(n, groups, repeats):
    """Median seconds of the fit, of predict(return_std=True) and of fixed_effects_."""
    import statistics

    from sklmm import MixedLinearRegressor

    X, y, g = simulate(n, groups)
    fit_t, pse_t, df_t = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = MixedLinearRegressor(random_slopes=[0]).fit(X, y, groups=g)
        t1 = time.perf_counter()
        m.predict(X, groups=g, return_std=True)
        t2 = time.perf_counter()
        m.fixed_effects_
        t3 = time.perf_counter()
        fit_t.append(t1 - t0)
        pse_t.append(t2 - t1)
        df_t.append(t3 - t2)
    return statistics.median(fit_t), statistics.median(pse_t), statistics.median(df_t), m


def measure_insteval(repeats):
    """Median seconds of InstEval's fit (ML) and of its fixed_effects_, or None without R."""
    import statistics
    import tempfile

    import pandas as pd
    from bench_mixed import write_insteval_csv

    from sklmm import MixedLinearRegressor

    if not r_available(("lme4",)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        d = pd.read_csv(write_insteval_csv(os.path.join(tmp, "insteval.csv")),
                        dtype={"s": str, "d": str, "dept": str})
    fit_t, df_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = MixedLinearRegressor(reml=False).fit(d[["service"]], d["y"], groups=d[["s", "d", "dept"]])
        t1 = time.perf_counter()
        m.fixed_effects_
        fit_t.append(t1 - t0)
        df_t.append(time.perf_counter() - t1)
    return statistics.median(fit_t), statistics.median(df_t), m


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 rows, 500 groups")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args()
    n, groups = (50_000, 500) if args.quick else (500_000, 5_000)
    fit, pse, df, m = measure(n, groups, args.repeats)
    rows = [
        dict(quantity="fit", seconds=f"{fit:.3f}", ratio_to_fit="1.00", target="", notes=f"solver={m.solver_}, {m.n_iter_} evals"),
        dict(quantity=f"predict(return_std=True), {n:,} rows", seconds=f"{pse:.3f}", ratio_to_fit=f"{pse / fit:.2f}",
             target="<= 1", notes=""),
        dict(quantity="fixed_effects_ (Satterthwaite df)", seconds=f"{df:.3f}", ratio_to_fit=f"{df / fit:.2f}",
             target="< 0.5", notes=""),
    ]
    insteval = None if args.quick else measure_insteval(args.repeats)
    if insteval is not None:
        ifit, idf, im = insteval
        rows += [
            dict(quantity="InstEval fit (ML)", seconds=f"{ifit:.3f}", ratio_to_fit="1.00", target="",
                 notes=f"solver={im.solver_}, {im.n_iter_} evals"),
            dict(quantity="InstEval fixed_effects_ (Satterthwaite df)", seconds=f"{idf:.3f}",
                 ratio_to_fit=f"{idf / ifit:.2f}", target="< 0.5", notes=""),
        ]
    print(f"y ~ x + (x | g), REML, {n:,} rows, {groups:,} groups; medians of {args.repeats} fresh fits"
          + ("; InstEval below, ratios to its own fit" if insteval is not None else "") + "\n")
    report(markdown_table(rows), machine_info(r_packages=()), args.output, git_commit(HERE))


if __name__ == "__main__":
    main()
