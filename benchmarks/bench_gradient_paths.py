"""Benchmark: a maximal model on a first factor of many thousand levels, by L-BFGS-B on the
gradient through the Schur kernel's pattern against BOBYQA, in the same run.

Data (seed 0): 10,000 subjects, each rated on 20 of 200 items (200,000 rows), three +-1
contrasts; model ``y ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) +
(1 + spkr + prec + load | item)`` by ML (20 theta). The subjects' dense products with the items
would take 800 x 40,000 entries, above what the blocked factor forms densely, so the gradient
(``sklmm/_engine/gradient.py``) reads the inverse of the dense block only on the Schur
kernel's pattern; before, such models fell back to BOBYQA. The BOBYQA row is the same package
with the gradient path switched off.

    python benchmarks/bench_gradient_paths.py            # about 3 minutes
    python benchmarks/bench_gradient_paths.py --quick    # 2,000 subjects, 100 items

The quick design's dense products fit in memory (800 x 8,000 entries): its gradient takes the
dense products' path, shown in the table's ``gradient`` column.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import git_commit, machine_info, markdown_table, report  # noqa: E402

CONTRASTS = ["spkr", "prec", "load"]


def simulate(n_subjects, n_items, per_subject, seed=0):
    """Each subject rates ``per_subject`` items drawn at random; kb07-like effect sizes."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), per_subject)
    item = rng.integers(0, n_items, len(subj))
    n = len(subj)
    C = rng.choice([-1.0, 1.0], size=(n, 3))
    X = np.column_stack([np.ones(n), C])
    bs = rng.normal(size=(n_subjects, 4)) * [300, 50, 100, 30]
    bi = rng.normal(size=(n_items, 4)) * [350, 20, 200, 40]
    y = X @ [2000, 60, -330, 80] + (X * (bs[subj] + bi[item])).sum(axis=1) + rng.normal(0, 700, n)
    return pd.DataFrame({"y": y, "spkr": C[:, 0], "prec": C[:, 1], "load": C[:, 2], "subj": subj, "item": item})


def fit(d, gradient=True):
    """Seconds, evaluations, criterion and optimizer of one fit (``gradient=False``: BOBYQA)."""
    from sklmm import MixedLinearRegressor
    from sklmm._engine import fit as engine_fit

    real = engine_fit.make_gradient
    if not gradient:
        engine_fit.make_gradient = lambda *a, **k: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            m = MixedLinearRegressor(reml=False, random_slopes=CONTRASTS).fit(d[CONTRASTS], d["y"], groups=d[["subj", "item"]])
            seconds = time.perf_counter() - t
    finally:
        engine_fit.make_gradient = real
    return seconds, m.n_iter_, m.criterion_, m._fit.optimizer.return_code.split(":")[0], m._fit


def gradient_path(fit):
    """How the fit's gradient reads the inverse: "Schur kernel's pattern" or "dense products"."""
    from sklmm._engine.gradient import make_gradient

    ev = make_gradient(fit.cp, fit.terms, "blocked", fit.reml, len(fit.theta))
    return "none" if ev is None else "Schur kernel's pattern" if ev.factor.schur is not None else "dense products"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 subjects x 100 items, 20 each")
    ap.add_argument("--output", help="also write the markdown table to this file")
    args = ap.parse_args()
    n_subjects, n_items = (2000, 100) if args.quick else (10_000, 200)
    d = simulate(n_subjects, n_items, 20)
    rows = []
    results = {}
    for label, gradient in (("L-BFGS-B on the gradient", True), ("BOBYQA", False)):
        seconds, evals, crit, code, f = fit(d, gradient)
        results[gradient] = crit
        rows.append(dict(optimizer=label, gradient=gradient_path(f) if gradient else "",
                         seconds=f"{seconds:.1f}", evaluations=evals,
                         seconds_per_evaluation=f"{seconds / max(evals, 1):.3f}",
                         criterion=f"{crit:.6f}", stop=code))
    rows[0]["criterion"] += f" ({(results[True] - results[False]) / abs(results[False]):+.1e} rel.)"
    print(f"maximal model, {n_subjects:,} subjects x {n_items} items, {len(d):,} rows, ML, 20 theta\n")
    report(markdown_table(rows), machine_info(r_packages=()), args.output, git_commit(HERE))


if __name__ == "__main__":
    main()
