"""Benchmark: large GAMs and tensor products, sklmm against mgcv's gam / bam in the same run.

Workloads (the speed workloads of the GAM-terms issue):

* ``additive``: gamSim(1)-like data at n = 10^5 and 10^6 rows (``--quick``: 10^4 and
  2 x 10^4). ``x0..x3 ~ U(0, 1)``, ``f0 = 2 sin(pi x0)``, ``f1 = exp(2 x1)``, ``f2 = 0.2 x2^11
  (10 (1 - x2))^6 + 10 (10 x2)^3 (1 - x2)^10``, ``f3 = 0``, ``y = f0 + f1 + f2 + f3 + N(0,
  2^2)``; simulated with numpy (seed 0) and written as CSV (``%.17g``) for R. Model ``y ~ s(x0,
  bs="cr", k=10) + ... + s(x3, bs="cr", k=10)`` by REML: sklmm's
  ``PenalizedSplineRegressor(basis="cr", n_basis=10)`` against mgcv's ``gam(method="REML")``
  (only up to 10^5 rows: at 10^6 it takes 2.5 to 3 minutes and 4 GB here, run it with
  ``--full``), ``bam(method="fREML")`` and ``bam(method="fREML", discrete=TRUE)``. The issue's
  target: sklmm at least twice as fast as ``bam(discrete=TRUE)`` at 10^6 rows, at gam's optimum.
* ``te``: 10^5 rows (``--quick``: 2 x 10^4), ``x0, x1 ~ U(0, 1)``, ``y = f(x0, x1) + N(0,
  0.5^2)`` with f gamSim(2)'s bivariate function (two Gaussian bumps, ``(pi^0.3 0.4) (1.2
  exp(-(x0 - 0.2)^2 / 0.3^2 - (x1 - 0.3)^2 / 0.4^2) + 0.8 exp(-(x0 - 0.7)^2 / 0.3^2 - (x1 -
  0.8)^2 / 0.4^2))``). sklmm's ``te("x0", "x1")`` (cr margins, k=5) against sklmm's additive
  ``s(x0, bs="cr", k=10) + s(x1, bs="cr", k=10)`` on the same data (the issue's target: te
  within 2x of the additive fit's time), with mgcv's ``gam(y ~ te(x0, x1), method="REML")``,
  ``gam(y ~ s(x0, bs="cr", k=10) + s(x1, bs="cr", k=10), method="REML")`` and ``bam(y ~
  te(x0, x1), method="fREML", discrete=TRUE)`` for context.
* ``profile``: where the time of sklmm's warm fits goes (the additive workload at each size,
  the te workload's two models), with default BLAS threads and with BLAS limited to one thread
  (fresh processes): wall-clock phases from timing wrappers around sklmm's functions (basis
  construction, cross-products, the optimizer and its evaluations of the criterion, the
  convergence check, the posterior / edf / tables / tests after the fit), and at the largest
  size also one fit under cProfile (the parts and the functions with the most own time).

Times: sklmm, in a fresh process per model and size, fits once (the first, cold fit: lazy
imports and first calls included) and then ``--repeats`` more times (default 3; te:
``--te-repeats``, default 7); the median of those warm fits is reported (``time.perf_counter``
around ``fit``). R, one fresh process per function: ``system.time`` around the call after the
data are read; ``bam`` is fitted ``1 + repeats`` times like sklmm (the first reported apart;
with one repeat, as ``--quick``, only once), ``gam`` once. Each sklmm model is fitted a second
time in a fresh process inside ``threadpoolctl.threadpool_limits(1, "blas")``: on a shared
machine the default BLAS threads make sklmm's times depend on the other processes. Peak memory:
peak RSS of that process over all its fits (Python: ``ru_maxrss``; R: ``/usr/bin/time -f %M``,
``data.table::fread`` of the CSV included).

Run ``python benchmarks/bench_gam_large.py`` (``--quick`` for a smoke run with one warm
repeat, ``--no-r`` to skip R, ``--full`` to also fit gam at 10^6 rows, ``--only additive|te|
profile``, ``--output FILE`` to also write the tables to a file).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import (  # noqa: E402
    LoadSampler,
    describe_failure,
    emit_result,
    fmt,
    git_commit,
    machine_info,
    markdown_table,
    r_available,
    report,
    run_python,
    run_r,
)

SEED = 0
ADD_COLUMNS = ("x0", "x1", "x2", "x3")
TE_COLUMNS = ("x0", "x1")
TE_NOISE_SD = 0.5
SKLMM_PATHS = set()  # where the fresh processes imported sklmm from
R_TIMEOUT = 3600  # seconds, hard stop for any R run
R_MEMORY_MB = 16000  # address-space cap of the R process (shared machine)
GAM_MAX_N = 100_000  # gam(method="REML") beyond this only with --full

R_FORMULAS = {
    "add4": "y ~ " + " + ".join(f's({x}, bs = "cr", k = 10)' for x in ADD_COLUMNS),
    "add2": "y ~ " + " + ".join(f's({x}, bs = "cr", k = 10)' for x in TE_COLUMNS),
    "te": "y ~ te(x0, x1)",
}
SKLMM_LABELS = {
    "add4": 'sklmm PenalizedSplineRegressor(basis="cr", n_basis=10)',
    "add2": 'sklmm s("x0", bs="cr", k=10) + s("x1", bs="cr", k=10)',
    "te": 'sklmm te("x0", "x1")',
}
R_LABELS = {"gam": 'mgcv gam(method="REML")', "bam": 'mgcv bam(method="fREML")',
            "bam_discrete": 'mgcv bam(method="fREML", discrete=TRUE)'}


# --------------------------------------------------------------------------- data

def make_additive(n, seed=SEED):
    """gamSim(1)-like data: columns ``x0..x3`` (features) and ``y``."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 4))
    x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
    f = (2.0 * np.sin(np.pi * x0) + np.exp(2.0 * x1)
         + 0.2 * x2**11 * (10.0 * (1.0 - x2))**6 + 10.0 * (10.0 * x2)**3 * (1.0 - x2)**10)
    d = pd.DataFrame(X, columns=list(ADD_COLUMNS))
    d["y"] = f + rng.normal(0.0, 2.0, size=n)
    return d


def make_te(n, seed=SEED, noise_sd=TE_NOISE_SD):
    """gamSim(2)'s bivariate function of (x0, x1) plus N(0, noise_sd^2): columns x0, x1, y."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    x, z = X[:, 0], X[:, 1]
    sx, sz = 0.3, 0.4
    f = (np.pi**sx * sz) * (1.2 * np.exp(-(x - 0.2)**2 / sx**2 - (z - 0.3)**2 / sz**2)
                            + 0.8 * np.exp(-(x - 0.7)**2 / sx**2 - (z - 0.8)**2 / sz**2))
    d = pd.DataFrame(X, columns=list(TE_COLUMNS))
    d["y"] = f + rng.normal(0.0, noise_sd, size=n)
    return d


def make_data(workload, n):
    return make_additive(n) if workload == "additive" else make_te(n)


def make_model(model):
    """The sklmm estimator of a model key, and the feature columns it takes."""
    from sklmm import PenalizedSplineRegressor, s, te

    if model == "add4":
        return PenalizedSplineRegressor(basis="cr", n_basis=10), list(ADD_COLUMNS)
    if model == "add2":
        return PenalizedSplineRegressor(smooths=[s(x, bs="cr", k=10) for x in TE_COLUMNS]), list(TE_COLUMNS)
    if model == "te":
        return PenalizedSplineRegressor(smooths=[te(*TE_COLUMNS)]), list(TE_COLUMNS)
    raise ValueError(model)


# --------------------------------------------------------------------------- sklmm worker

def _caught(caught):
    return sorted({f"{w.category.__name__}: {str(w.message)[:150]}" for w in caught})


def criterion_at(est, lam):
    """sklmm's REML criterion with the smoothing parameters at ``lam`` (mgcv's sp / S.scale,
    one per penalty in mgcv's order), from the fitted factorization (no refit)."""
    from sklmm._engine.criteria import profiled_criterion

    fit, lam = est._fit, np.asarray(lam, dtype=float)
    thetas, i = [], 0
    for sm in est.smooths_:
        thetas.append(sm.thetas(lam[i:i + sm.n_lambda]))
        i += sm.n_lambda
    if i != len(lam):
        raise ValueError(f"{len(lam)} smoothing parameters for {i} penalties")
    theta = np.concatenate(thetas)
    value = profiled_criterion(fit.factor.update(theta), fit.n, fit.cp.p, True, fit.cp.sum_log_weights)
    fit.factor.update(fit.theta)  # (restore the fitted state)
    return float(value)


def _sklmm_worker(workload, model, n, repeats, fitted_path, lam_sets=None, one_thread=False):
    """Fresh process: simulate, fit once cold and ``repeats`` times warm, save the fitted values,
    sklmm's criterion at each set of mgcv's smoothing parameters; report."""
    import contextlib
    import warnings

    import sklmm

    data = make_data(workload, n)
    est, cols = make_model(model)
    X, y = data[cols], data["y"]
    if one_thread:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    else:
        limit = contextlib.nullcontext()
    times = []
    load = [os.getloadavg()[0]]
    with limit, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(1 + repeats):
            est, _ = make_model(model)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    np.save(fitted_path, est.predict(X))
    fixed = {k: criterion_at(est, lam) for k, lam in (lam_sets or {}).items()}
    emit_result(first=times[0], warm=times[1:], time=statistics.median(times[1:] or times[:1]),
                criterion=float(est.criterion_), edf=[float(v) for v in est.edf_],
                edf_total=float(est.edf_total_), sigma2=float(est.sigma_**2),
                lam=[float(v) for v in est.smoothing_params_], n_iter=int(est.n_iter_),
                converged=bool(est.converged_), warnings=_caught(caught), fixed=fixed, load=load,
                sklmm_path=os.path.dirname(sklmm.__file__))


def _run_worker(call, timeout=None):
    code = f"import sys; sys.path.insert(0, {HERE!r})\nimport bench_gam_large\nbench_gam_large.{call}\n"
    return run_python(code, timeout=timeout)


# --------------------------------------------------------------------------- R

R_SCRIPT = """\
suppressPackageStartupMessages(library(mgcv))
args <- commandArgs(trailingOnly = TRUE)
p <- args[1]; method <- args[2]; repeats <- as.integer(args[3]); fo <- as.formula(args[4])
label <- args[5]
d <- if (requireNamespace("data.table", quietly = TRUE)) {
  data.table::fread(file.path(p, "data.csv"), data.table = FALSE)
} else read.csv(file.path(p, "data.csv"))
fit <- function() switch(method,
  gam = gam(fo, data = d, method = "REML"),
  bam = bam(fo, data = d, method = "fREML"),
  bam_discrete = bam(fo, data = d, method = "fREML", discrete = TRUE))
warns <- character(0)
times <- numeric(1 + repeats)
for (i in seq_along(times))
  times[i] <- system.time(g <- withCallingHandlers(fit(), warning = function(w) {
    warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") }))[["elapsed"]]
edf <- vapply(g$smooth, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
writeBin(as.double(fitted(g)), file.path(p, paste0("fitted_", label, ".bin")))
iter <- if (!is.null(g$outer.info$iter)) g$outer.info$iter else g$iter
cat(jsonlite::toJSON(list(first = times[1], warm = times[-1],
                          time = if (repeats > 0) median(times[-1]) else times[1],
                          edf = unname(edf), edf_total = sum(g$edf), sigma2 = g$sig2,
                          sp = unname(g$sp),
                          S_scale = unlist(lapply(g$smooth, function(s) s$S.scale)),
                          score = as.numeric(g$gcv.ubre), iter = iter,
                          outer_conv = if (is.null(g$outer.info$conv)) "" else g$outer.info$conv,
                          warnings = if (length(warns)) unique(warns) else character(0)),
                     auto_unbox = TRUE, digits = NA), "\\n")
"""


def _as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _run_r(tmp, method, model, repeats, log, prefix):
    label = f"{model}_{method}"
    log(f"{prefix}: {R_LABELS[method]} {R_FORMULAS[model]} ({1 + repeats} fit(s)) ...")
    try:
        res = run_r(R_SCRIPT, tmp, timeout=R_TIMEOUT,
                    args=(method, repeats, R_FORMULAS[model], label), memory_limit_mb=R_MEMORY_MB)
    except (subprocess.TimeoutExpired, RuntimeError) as exc:
        log(f"{prefix}: {method} {describe_failure(exc, R_TIMEOUT)}")
        return {"skipped": describe_failure(exc, R_TIMEOUT)}
    res["fitted"] = np.fromfile(os.path.join(tmp, f"fitted_{label}.bin"))
    res["lambda"] = (np.asarray(_as_list(res["sp"]), dtype=float)
                     / np.asarray(_as_list(res["S_scale"]), dtype=float)).tolist()
    log(f"{prefix}: {method} first {res['first']:.3g} s, warm {_as_list(res['warm'])} s")
    return res


def _run_sklmm(workload, model, n, repeats, tmp, lam_sets, log, prefix, one_thread=False):
    path = os.path.join(tmp, f"fitted_sklmm_{model}_{int(one_thread)}.npy")
    log(f"{prefix}: {SKLMM_LABELS[model]}{' (one BLAS thread)' if one_thread else ''} "
        f"(1 + {repeats} fits) ...")
    try:
        res = _run_worker(f"_sklmm_worker({workload!r}, {model!r}, {n}, {repeats}, {path!r}, "
                          f"{lam_sets!r}, one_thread={one_thread})")
    except (subprocess.TimeoutExpired, RuntimeError) as exc:
        log(f"{prefix}: sklmm {describe_failure(exc, None)}")
        return {"skipped": "sklmm " + describe_failure(exc, None)}
    res["fitted"] = np.load(path)
    SKLMM_PATHS.add(res["sklmm_path"])
    log(f"{prefix}: sklmm first {res['first']:.3g} s, warm {[round(t, 3) for t in res['warm']]} s, "
        f"load {res['load']}")
    return res


# --------------------------------------------------------------------------- workloads

def run_additive(n, repeats, have_r, full, log=print):
    """All tools on the additive workload at n rows; a dict of their results."""
    prefix = f"additive n={n:,}"
    out = {"n": n, "tools": {}, "order": []}
    data = make_additive(n)
    out["sd_y"] = float(data["y"].std())
    r_repeats = repeats if repeats > 1 else 0
    with tempfile.TemporaryDirectory() as tmp:
        lam_sets = {}
        if have_r:
            data.to_csv(os.path.join(tmp, "data.csv"), index=False, float_format="%.17g")
            del data
            for method in ("gam", "bam", "bam_discrete"):
                key = f"r_{method}"
                out["order"].append(key)
                if method == "gam" and n > GAM_MAX_N and not full:
                    out["tools"][key] = {"skipped": "not run: about 3 min and 4 GB at 10^6 "
                                                    "rows (run with --full)"}
                    continue
                res = _run_r(tmp, method, "add4", 0 if method == "gam" else r_repeats, log, prefix)
                out["tools"][key] = res
                if "lambda" in res:
                    lam_sets[key] = res["lambda"]
        for one_thread in (False, True):
            key = "sklmm_1thread" if one_thread else "sklmm"
            out["order"].insert(int(one_thread), key)
            out["tools"][key] = _run_sklmm("additive", "add4", n, repeats, tmp, lam_sets, log,
                                           prefix, one_thread=one_thread)
    out["ref"] = next((k for k in ("r_gam", "r_bam") if "fitted" in out["tools"].get(k, {})), None)
    return out


def run_te(n, repeats, have_r, log=print):
    """te and the additive two-smooth model at n rows, sklmm and mgcv."""
    prefix = f"te n={n:,}"
    out = {"n": n, "tools": {}, "order": ["sklmm_te", "sklmm_add2", "sklmm_te_1thread", "sklmm_add2_1thread"]}
    data = make_te(n)
    out["sd_y"] = float(data["y"].std())
    r_repeats = repeats if repeats > 1 else 0
    with tempfile.TemporaryDirectory() as tmp:
        lam_sets = {"te": {}, "add2": {}}
        if have_r:
            data.to_csv(os.path.join(tmp, "data.csv"), index=False, float_format="%.17g")
            for model, method, reps in (("te", "gam", 0), ("add2", "gam", 0),
                                        ("te", "bam_discrete", r_repeats)):
                key = f"r_{model}_{method}"
                out["order"].append(key)
                res = _run_r(tmp, method, model, reps, log, prefix)
                out["tools"][key] = res
                if "lambda" in res:
                    lam_sets[model][key] = res["lambda"]
        for one_thread in (False, True):
            for model in ("te", "add2"):
                key = f"sklmm_{model}" + ("_1thread" if one_thread else "")
                out["tools"][key] = _run_sklmm("te", model, n, repeats, tmp, lam_sets[model], log,
                                               prefix, one_thread=one_thread)
    return out


# --------------------------------------------------------------------------- tables

def _times_note(res):
    warm = _as_list(res.get("warm"))
    note = f"first {res['first']:.3g} s"
    if warm:
        note += "; warm fits " + ", ".join(f"{t:.3g}" for t in warm) + " s"
    return note


def _diff(fitted, ref, sd_y):
    if fitted is None or ref is None:
        return None
    return f"{np.max(np.abs(fitted - ref)) / sd_y:.1e}"


def additive_rows(res):
    n, tools, sd_y = res["n"], res["tools"], res["sd_y"]
    ref = res["ref"]
    ref_fit = tools[ref]["fitted"] if ref else None
    sk = tools.get("sklmm", {})
    workload = f"4 cr smooths k=10, n={n:,}"
    rows = []
    for key in res["order"]:
        r = tools.get(key, {})
        if key.startswith("sklmm"):
            tool = SKLMM_LABELS["add4"] + (", BLAS limited to 1 thread [e]" if key.endswith("1thread") else "")
        else:
            tool = R_LABELS[key[2:]]
        row = {"workload": workload, "tool": tool, "time (s) [a]": None, "first fit (s)": None,
               "total edf": None, "sigma^2": None, "REML criterion at its lambda - sklmm's [b]": None,
               "max abs fitted diff / sd(y) [c]": None,
               "iterations": None, "peak MB [d]": None, "notes": None}
        if "skipped" in r:
            row["notes"] = r["skipped"]
            rows.append(row)
            continue
        row.update({"time (s) [a]": fmt(r["time"], ".3g"), "first fit (s)": fmt(r["first"], ".3g"),
                    "total edf": fmt(r["edf_total"], ".5g"), "sigma^2": fmt(r["sigma2"], ".6g"),
                    "max abs fitted diff / sd(y) [c]":
                        "0 (reference)" if key == ref else _diff(r["fitted"], ref_fit, sd_y),
                    "peak MB [d]": fmt(r["peak_mb"], ".0f")})
        note = _times_note(r)
        if key.startswith("sklmm"):
            row["REML criterion at its lambda - sklmm's [b]"] = "0 (its optimum)"
            row["iterations"] = f"{r['n_iter']} evals"
            note += (f"; criterion_ {r['criterion']:.10g}; load {r['load'][0]:.2f} -> "
                     f"{r['load'][1]:.2f}")
            if not r["converged"]:
                note += "; NOT converged"
            if r["warnings"]:
                note += "; " + "; ".join(r["warnings"])
        else:
            fx = sk.get("fixed", {}).get(key)
            if fx is not None:
                row["REML criterion at its lambda - sklmm's [b]"] = f"{fx - sk['criterion']:+.3g}"
            row["iterations"] = (f"{r['iter']} Newton steps" if key == "r_gam"
                                 else f"{r['iter']} iterations")
            note += f"; score {r['score']:.10g}"
            if key == "r_gam" and "criterion" in sk:
                note += f" (sklmm's criterion_ - 2 x score = {sk['criterion'] - 2 * r['score']:+.2e})"
            if r.get("outer_conv") and r["outer_conv"] != "full convergence":
                note += f"; {r['outer_conv']}"
            if _as_list(r.get("warnings")):
                note += "; warned: " + "; ".join(_as_list(r["warnings"]))[:200]
        row["notes"] = note
        rows.append(row)
    if ref:
        rows[0]["workload"] += f" (agreement vs {ref[2:]})"
    return rows


def additive_summary(res):
    tools, n = res["tools"], res["n"]
    sk = tools.get("sklmm", {})
    if "time" not in sk:
        return ""
    lines = []
    for key in ("r_gam", "r_bam", "r_bam_discrete"):
        r = tools.get(key, {})
        if "time" in r:
            lines.append(f"n={n:,}: {R_LABELS[key[2:]]} / sklmm = {r['time'] / sk['time']:.2f} "
                         f"(median warm {r['time']:.3g} s / {sk['time']:.3g} s; first fits "
                         f"{r['first']:.3g} s / {sk['first']:.3g} s)")
    bd = tools.get("r_bam_discrete", {})
    if "time" in bd:
        ratio = bd["time"] / sk["time"]
        lines.append(f"n={n:,}: TARGET sklmm at least 2x as fast as bam(discrete=TRUE): ratio "
                     f"{ratio:.2f} -> {'met' if ratio >= 2 else 'NOT met'}")
    one = tools.get("sklmm_1thread", {})
    if "time" in one:
        lines.append(f"n={n:,}: sklmm with one BLAS thread / default threads = "
                     f"{one['time'] / sk['time']:.2f} ({one['time']:.3g} s / {sk['time']:.3g} s)")
    return "\n".join("- " + ln for ln in lines)


def te_rows(res):
    n, tools, sd_y = res["n"], res["tools"], res["sd_y"]
    refs = {"te": tools.get("r_te_gam", {}).get("fitted"), "add2": tools.get("r_add2_gam", {}).get("fitted")}
    ref_edf = {"te": tools.get("r_te_gam", {}).get("edf"), "add2": tools.get("r_add2_gam", {}).get("edf")}
    workload = f"te vs additive, n={n:,}"
    rows = []
    for key in res["order"]:
        r = tools.get(key, {})
        if key.startswith("sklmm"):
            model = key.split("_")[1]
            tool = SKLMM_LABELS[model] + (", BLAS limited to 1 thread [e]" if key.endswith("1thread") else "")
        else:
            model, method = key.split("_")[1], "_".join(key.split("_")[2:])
            tool = f"{R_LABELS[method]}: {R_FORMULAS[model]}"
        row = {"workload": workload, "tool": tool, "time (s) [a]": None, "first fit (s)": None,
               "edf of the smooths": None, "total edf": None, "sigma^2": None,
               "REML criterion at its lambda - sklmm's [b]": None,
               "max abs fitted diff / sd(y) vs mgcv gam of the same model [c]": None,
               "iterations": None, "peak MB [d]": None, "notes": None}
        if "skipped" in r:
            row["notes"] = r["skipped"]
            rows.append(row)
            continue
        edf = _as_list(r["edf"])
        row.update({"time (s) [a]": fmt(r["time"], ".3g"), "first fit (s)": fmt(r["first"], ".3g"),
                    "edf of the smooths": " / ".join(f"{v:.4f}" for v in edf),
                    "total edf": fmt(r["edf_total"], ".5g"), "sigma^2": fmt(r["sigma2"], ".6g"),
                    "peak MB [d]": fmt(r["peak_mb"], ".0f")})
        is_ref = key == f"r_{model}_gam"
        row["max abs fitted diff / sd(y) vs mgcv gam of the same model [c]"] = (
            "0 (reference)" if is_ref else _diff(r["fitted"], refs[model], sd_y))
        note = _times_note(r)
        sk = tools.get(key if key.startswith("sklmm") else f"sklmm_{model}", {})
        if key.startswith("sklmm"):
            row["REML criterion at its lambda - sklmm's [b]"] = "0 (its optimum)"
            row["iterations"] = f"{r['n_iter']} evals"
            note += f"; criterion_ {r['criterion']:.10g}; load {r['load'][0]:.2f} -> {r['load'][1]:.2f}"
            if ref_edf[model] is not None:
                d = np.abs(np.asarray(edf) - np.asarray(_as_list(ref_edf[model])))
                note += f"; edf - gam's: max {d.max():.1e}"
            if not r["converged"]:
                note += "; NOT converged"
            if r["warnings"]:
                note += "; " + "; ".join(r["warnings"])
        else:
            fx = sk.get("fixed", {}).get(key)
            if fx is not None:
                row["REML criterion at its lambda - sklmm's [b]"] = f"{fx - sk['criterion']:+.3g}"
            row["iterations"] = (f"{r['iter']} Newton steps" if method == "gam"
                                 else f"{r['iter']} iterations")
            note += f"; score {r['score']:.10g}"
            if method == "gam" and "criterion" in sk:
                note += f" (sklmm's criterion_ - 2 x score = {sk['criterion'] - 2 * r['score']:+.2e})"
            if _as_list(r.get("warnings")):
                note += "; warned: " + "; ".join(_as_list(r["warnings"]))[:200]
        row["notes"] = note
        rows.append(row)
    return rows


def te_summary(res):
    tools, n = res["tools"], res["n"]
    te, add = tools.get("sklmm_te", {}), tools.get("sklmm_add2", {})
    lines = []
    for suffix, label in (("", "default BLAS threads"), ("_1thread", "BLAS limited to 1 thread")):
        t, a = tools.get("sklmm_te" + suffix, {}), tools.get("sklmm_add2" + suffix, {})
        if "time" in t and "time" in a:
            ratio = t["time"] / a["time"]
            lines.append(f"n={n:,}: TARGET sklmm te within 2x of the additive fit's time ({label}): "
                         f"te / additive = {ratio:.2f} ({t['time']:.3g} s / {a['time']:.3g} s; first "
                         f"fits {t['first']:.3g} s / {a['first']:.3g} s) -> "
                         f"{'met' if ratio <= 2 else 'NOT met'}")
    gt, ga = tools.get("r_te_gam", {}), tools.get("r_add2_gam", {})
    if "time" in gt and "time" in ga:
        lines.append(f"n={n:,}: mgcv gam te / gam additive = {gt['time'] / ga['time']:.2f} "
                     f"({gt['time']:.3g} s / {ga['time']:.3g} s)")
    for key, sk in (("r_te_gam", te), ("r_te_bam_discrete", te), ("r_add2_gam", add)):
        r = tools.get(key, {})
        if "time" in r and "time" in sk:
            lines.append(f"n={n:,}: {R_LABELS['_'.join(key.split('_')[2:])]} {R_FORMULAS[key.split('_')[1]]}"
                         f" / sklmm = {r['time'] / sk['time']:.1f}")
    return "\n".join("- " + ln for ln in lines)


NOTES = (
    "[a] sklmm: median of the warm fits in one fresh process (the first, cold fit apart); "
    "mgcv bam: median of the fits after the first in one R process; mgcv gam: one fit. "
    "Every fit's time is in the notes.\n\n"
    "[b] sklmm's REML criterion (lme4 scale: twice the negative restricted log-likelihood, "
    "which for these models is twice mgcv's REML score) with the smoothing parameters held at "
    "each mgcv fit's sp / S.scale, evaluated from sklmm's factorization, minus its value at "
    "sklmm's optimum: positive = that fit's smoothing parameters are worse on this criterion. "
    "bam(discrete=TRUE) places its cr knots on the discretized covariate, so its basis "
    "differs slightly from gam's and sklmm's (which agree).\n\n"
    "[c] largest |fitted - fitted of the reference| over the rows, divided by sd(y); the "
    "reference is mgcv gam's fit where gam ran, else bam(method=\"fREML\")'s.\n\n"
    "[d] peak RSS of the fresh process over all its fits (Python `ru_maxrss`, data simulated "
    "in the process; R `/usr/bin/time -f %M`, the CSV read by data.table::fread).\n\n"
    "[e] the same fits inside `threadpoolctl.threadpool_limits(1, \"blas\")` (sklmm's own "
    "thread limits during the optimizer still apply)."
)


# --------------------------------------------------------------------------- profile

#: (label, [(file suffix, function)]): the parts of one fit, not nested in one another
PROFILE_PARTS = [
    ("input checks (_resolve_fit, _validate_X, by factors, weights)",
     [("sklmm/_base.py", "_resolve_fit"), ("sklmm/_base.py", "_validate_X"),
      ("_input/smooth_terms.py", "encode_by_factors"), ("_input/arrays.py", "check_sample_weight")]),
    ("basis construction (knots, cr basis, constraint, fixed/random split; make_smooths, _fixed_design)",
     [("_input/smooth_terms.py", "make_smooths"), ("sklmm/gam.py", "_fixed_design")]),
    ("cross-products of [X Z y] (cross_products)", [("_engine/crossprod.py", "cross_products")]),
    ("solver choice, factor set-up, moment start",
     [("_engine/factor.py", "choose_solver"), ("_engine/factor.py", "check_cost"),
      ("_engine/factor.py", "make_factor"), ("_engine/start.py", "moment_start"),
      ("_engine/gradient.py", "make_gradient"), ("_engine/fit.py", "independent_columns")]),
    ("optimizer: BOBYQA with its evaluations (minimize_bobyqa)", [("_engine/optimize.py", "minimize_bobyqa")]),
    ("convergence check after BOBYQA (lme4's gradient check, probes; _verified)",
     [("_engine/checks.py", "_verified")]),
    ("posterior covariance, edf, smoothing parameters (smooth_posterior)",
     [("_inference/smooth_summary.py", "smooth_posterior")]),
    ("tables after the fit (parametric, coefficients, conditional AIC, variance rows)",
     [("_inference/smooth_summary.py", "parametric_table"), ("_inference/smooth_summary.py", "coefficient_table"),
      ("_inference/gam_family.py", "conditional_aic"), ("_inference/smooth_summary.py", "variance_rows"),
      ("sklmm/_base.py", "_set_engine_attributes")]),
    ("smooth significance tests (significance_table)", [("_inference/smooth_tests.py", "significance_table")]),
    ("k-check state (basis_dimension_state)", [("_inference/smooth_tests.py", "basis_dimension_state")]),
]


def _profile_worker(n, one_thread=False):
    """Fresh process: a cold fit, a warm fit timed plainly, then a warm fit under cProfile."""
    import contextlib
    import cProfile
    import pstats

    data = make_additive(n)
    X, y = data[list(ADD_COLUMNS)], data["y"]
    if one_thread:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    else:
        limit = contextlib.nullcontext()
    with limit:
        make_model("add4")[0].fit(X, y)
        t0 = time.perf_counter()
        make_model("add4")[0].fit(X, y)
        plain = time.perf_counter() - t0
        est = make_model("add4")[0]
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        est.fit(X, y)
        prof.disable()
        wall = time.perf_counter() - t0
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def find(suffix, name):
        hits = [v for (f, _, fn), v in st.items()
                if fn == name and f.replace(os.sep, "/").endswith(suffix)]
        return sum(h[1] for h in hits), sum(h[2] for h in hits), sum(h[3] for h in hits)

    fit_total = find("sklmm/gam.py", "fit")[2]
    def from_caller(suffix, name, caller):
        """Calls and cumulative time of a function when called from ``caller`` only."""
        calls, cum = 0, 0.0
        for (f, _, fn), v in st.items():
            if fn == name and f.replace(os.sep, "/").endswith(suffix):
                for (_, _, cfn), c in v[4].items():
                    if cfn == caller:
                        calls, cum = calls + c[1], cum + c[3]
        return calls, 0.0, cum

    parts = []
    for label, funcs in PROFILE_PARTS:
        found = [from_caller(s, f, "fit_cross_products") if f == "minimize_bobyqa" else find(s, f)
                 for s, f in funcs]
        parts.append({"part": label, "calls": max(c for c, _, _ in found),
                      "seconds": sum(t for _, _, t in found)})
    parts.append({"part": "rest of fit (own lines: rug quantiles, fitted values, final solve, ...)",
                  "calls": 1, "seconds": fit_total - sum(p["seconds"] for p in parts)})
    n_obj, _, obj_cum = find("_engine/fit.py", "objective")
    n_upd, upd_cum = 0, 0.0
    for (f, _, fn), v in st.items():
        if fn == "update" and "/_engine/factor" in f.replace(os.sep, "/"):
            n_upd += v[1]
            upd_cum += v[3]
    detail = {
        "objective": (n_obj, obj_cum), "factor_update": (n_upd, upd_cum),
        "fit_design": find("_engine/smooth.py", "fit_design"),
        "cr_basis": find("_engine/smooth.py", "cr_basis"),
        "unique": find("numpy/lib/_arraysetops_impl.py", "unique"),
    }
    own = sorted(((v[2], v[1], f"{os.path.basename(f)}:{ln}({fn})") for (f, ln, fn), v in st.items()),
                 reverse=True)[:12]
    emit_result(plain=plain, wall=wall, fit_total=fit_total, parts=parts, detail=detail,
                top_own=[{"function": name, "calls": c, "own seconds": t} for t, c, name in own],
                n_iter=int(est.n_iter_))


#: (module, attribute, label): functions timed by wall-clock wrappers (no cProfile), in the
#: order of a fit; nested ones are subtracted from their parents where noted in run_profile
PHASES = [
    ("sklmm._input.smooth_terms", "make_smooths", "basis construction (make_smooths)"),
    ("sklmm._engine.smooth", "cr_basis", "  cr basis evaluations (cr_basis; all calls, mostly here)"),
    ("numpy", "unique", "  np.unique (all calls, mostly here: distinct values, knots)"),
    ("sklmm.gam._PenalizedSpline", "_fixed_design", "fixed columns [1, null spaces] (_fixed_design)"),
    ("sklmm._inference.gam_family", "fit_family", "engine fit (fit_family)"),
    ("sklmm._engine.fit", "cross_products", "  of which: cross-products (cross_products)"),
    ("sklmm._engine.fit", "moment_start", "  of which: moment start"),
    ("sklmm._engine.optimize", "minimize_bobyqa", "  of which: BOBYQA and its evaluations"),
    ("sklmm._engine.fit", "_verified", "  of which: convergence check (_verified)"),
    ("sklmm._inference.smooth_summary", "smooth_posterior", "posterior, edf, smoothing parameters"),
    ("sklmm._inference.smooth_summary", "parametric_table", "parametric table"),
    ("sklmm._inference.smooth_summary", "coefficient_table", "coefficient table"),
    ("sklmm._inference.gam_family", "conditional_aic", "conditional AIC"),
    ("sklmm._inference.smooth_tests", "significance_table", "smooth significance tests"),
    ("sklmm._inference.smooth_summary", "check_covariates", "k-check covariates"),
    ("sklmm._inference.smooth_tests", "basis_dimension_state", "k-check state"),
    ("sklmm._inference.smooth_summary", "variance_rows", "variance rows"),
]


def _phase_worker(workload, model, n, one_thread=False, repeats=3):
    """Fresh process: wall-clock time of each phase of warm fits (wrappers around the functions
    in PHASES; their overhead is a few microseconds a call), median over ``repeats`` fits."""
    import contextlib
    import functools
    import importlib

    data = make_data(workload, n)
    X, y = data[make_model(model)[1]], data["y"]
    acc, calls = {}, {}

    def wrap(label, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[label] = acc.get(label, 0.0) + time.perf_counter() - t0
                calls[label] = calls.get(label, 0) + 1
        return timed

    missing = []
    for mod, attr, label in PHASES:
        modname, _, cls = mod.partition(".gam._")
        try:
            owner = (getattr(importlib.import_module(modname + ".gam"), "_" + cls) if cls
                     else importlib.import_module(mod))
            setattr(owner, attr, wrap(label, getattr(owner, attr)))
        except (ImportError, AttributeError):
            missing.append(f"{mod}.{attr}")
    import sklmm._engine.fit as engine_fit

    count = {"criterion": 0}
    criterion = engine_fit.profiled_criterion

    def counted(*a, **k):
        count["criterion"] += 1
        return criterion(*a, **k)

    engine_fit.profiled_criterion = counted
    if one_thread:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    else:
        limit = contextlib.nullcontext()
    runs = []
    with limit:
        make_model(model)[0].fit(X, y)  # (cold)
        for _ in range(repeats):
            acc.clear(), calls.clear()
            count["criterion"] = 0
            est = make_model(model)[0]
            t0 = time.perf_counter()
            est.fit(X, y)
            total = time.perf_counter() - t0
            runs.append({"total": total, "acc": dict(acc), "calls": dict(calls),
                         "criterion": count["criterion"]})
    runs.sort(key=lambda r: r["total"])
    med = runs[len(runs) // 2]
    emit_result(phase_run=med, phase_totals=[r["total"] for r in runs], missing=missing,
                n_iter=int(est.n_iter_), load=os.getloadavg()[0])


def phase_table(d, o):
    """Rows of the wall-clock phases, default threads (d) and one BLAS thread (o)."""
    rows = []
    for res, key in ((d, "default"), (o, "one")):
        run = res["phase_run"]
        acc = dict(run["acc"])
        top = [lbl for _, _, lbl in PHASES if not lbl.startswith("  ")]
        acc["rest of fit (input checks, rug quantiles, fitted values, engine set-up, ...)"] = (
            run["total"] - sum(acc.get(lbl, 0.0) for lbl in top))
        res["_acc"] = acc
    labels = [lbl for _, _, lbl in PHASES] + ["rest of fit (input checks, rug quantiles, fitted values, engine set-up, ...)"]
    for lbl in labels:
        a, b = d["_acc"].get(lbl), o["_acc"].get(lbl)
        if a is None and b is None:
            continue
        rows.append({"phase": ("- " + lbl.strip()) if lbl.startswith("  ") else lbl,
                     "calls": d["phase_run"]["calls"].get(lbl, o["phase_run"]["calls"].get(lbl, 1)),
                     "seconds (default BLAS threads)": fmt(a, ".3f"),
                     "share": None if a is None else f"{a / d['phase_run']['total']:.0%}",
                     "seconds (one BLAS thread)": fmt(b, ".3f"),
                     "share ": None if b is None else f"{b / o['phase_run']['total']:.0%}"})
    rows.append({"phase": "whole fit (median of the timed fits)", "calls": 1,
                 "seconds (default BLAS threads)": f"{d['phase_run']['total']:.3f}", "share": "100%",
                 "seconds (one BLAS thread)": f"{o['phase_run']['total']:.3f}", "share ": "100%"})
    return rows


def run_profile(n, log=print, with_cprofile=True, workload="additive", model="add4"):
    """Wall-clock phases of sklmm's fit at n rows (and, ``with_cprofile``, the cProfile tables
    of the additive model)."""
    results, phases = {}, {}
    for one_thread in (False, True):
        log(f"profile {model} n={n:,}: {'one BLAS thread' if one_thread else 'default BLAS threads'} ...")
        phases[one_thread] = _run_worker(f"_phase_worker({workload!r}, {model!r}, {n}, one_thread={one_thread})")
        log(f"profile {model} n={n:,}: wall-clock phases, fits {phases[one_thread]['phase_totals']} s")
        if with_cprofile:
            results[one_thread] = _run_worker(f"_profile_worker({n}, one_thread={one_thread})")
    text = ("Wall-clock phases of warm fits (timing wrappers around sklmm's functions, no "
            "cProfile; the fit with the median total of 3):\n\n"
            + markdown_table(phase_table(phases[False], phases[True])) + "\n\n")
    for label, r in (("default BLAS threads", phases[False]), ("one BLAS thread", phases[True])):
        text += (f"- {label}: fits {', '.join(f'{t:.3f}' for t in r['phase_totals'])} s; "
                 f"{r['n_iter']} evaluations reported (n_iter_), "
                 f"{r['phase_run']['criterion']} evaluations of the criterion in all; "
                 f"1-minute load {r['load']:.2f} at the end"
                 + (f"; not found: {', '.join(r['missing'])}" if r["missing"] else "") + "\n")
    if not with_cprofile:
        return text
    text += "\nThe same under cProfile (one warm fit; cProfile's overhead between calls changes how BLAS threads wait):\n\n"
    d, o = results[False], results[True]
    rows = []
    for pd_, po in zip(d["parts"], o["parts"]):
        rows.append({"part": pd_["part"], "calls": pd_["calls"],
                     "seconds (default BLAS threads)": f"{pd_['seconds']:.3f}",
                     "share": f"{pd_['seconds'] / d['fit_total']:.0%}",
                     "seconds (one BLAS thread)": f"{po['seconds']:.3f}",
                     "share ": f"{po['seconds'] / o['fit_total']:.0%}"})
    rows.append({"part": "whole fit under cProfile", "calls": 1,
                 "seconds (default BLAS threads)": f"{d['fit_total']:.3f}", "share": "100%",
                 "seconds (one BLAS thread)": f"{o['fit_total']:.3f}", "share ": "100%"})
    text += markdown_table(rows) + "\n\n"
    lines = []
    for label, r in (("default BLAS threads", d), ("one BLAS thread", o)):
        det = r["detail"]
        n_obj, obj = det["objective"]
        n_upd, upd = det["factor_update"]
        lines.append(
            f"{label}: the same warm fit without cProfile {r['plain']:.3f} s, under cProfile "
            f"{r['wall']:.3f} s; {r['n_iter']} evaluations reported (n_iter_), {n_obj} calls of "
            f"the criterion ({obj:.3f} s, {1e3 * obj / max(n_obj, 1):.2f} ms each), {n_upd} "
            f"factor updates ({upd:.3f} s); smooth fit_design {det['fit_design'][2]:.3f} s, of which "
            f"cr_basis {det['cr_basis'][2]:.3f} s and np.unique {det['unique'][2]:.3f} s "
            f"({det['unique'][0]} calls, all of fit)")
    text += "\n".join("- " + ln for ln in lines) + "\n\n"
    text += "Functions with the most own time (default BLAS threads):\n\n"
    text += markdown_table([{"function": t["function"], "calls": t["calls"],
                             "own seconds": f"{t['own seconds']:.3f}"} for t in d["top_own"]])
    text += "\n\nFunctions with the most own time (one BLAS thread):\n\n"
    text += markdown_table([{"function": t["function"], "calls": t["calls"],
                             "own seconds": f"{t['own seconds']:.3f}"} for t in o["top_own"]])
    return text + "\n"


# --------------------------------------------------------------------------- driver

def _escape(rows):
    return [{k: (None if v is None else str(v).replace("|", "\\|")) for k, v in r.items()} for r in rows]


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: additive at 10^4 and 2 x 10^4 rows, te at 2 x 10^4, one warm repeat")
    parser.add_argument("--no-r", action="store_true", help="skip mgcv")
    parser.add_argument("--full", action="store_true", help="also fit mgcv gam at 10^6 rows (about 5 min)")
    parser.add_argument("--repeats", type=int, help="warm sklmm (and bam) fits after the first (default 3; --quick 1)")
    parser.add_argument("--sizes", type=float, nargs="+", help="rows of the additive workload (default 1e5 1e6)")
    parser.add_argument("--te-n", type=float, help="rows of the te workload (default 1e5)")
    parser.add_argument("--te-repeats", type=int,
                        help="warm fits of the te workload's models (default 7, --quick 1): its "
                             "fits take a tenth of a second, so more of them steady the median")
    parser.add_argument("--only", action="append", choices=("additive", "te", "profile"),
                        help="run only this part (repeatable)")
    parser.add_argument("--output", help="also write the tables to this file")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    commit = git_commit()
    import sklmm

    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    sizes = [int(s) for s in (args.sizes or ([1e4, 2e4] if args.quick else [1e5, 1e6]))]
    te_n = int(args.te_n or (2e4 if args.quick else 1e5))
    parts_run = args.only or ["additive", "te", "profile"]
    have_r = not args.no_r and r_available(["mgcv"])
    load = LoadSampler()
    parts = []
    if "additive" in parts_run:
        rows, summaries = [], []
        for n in sizes:
            res = run_additive(n, repeats, have_r, args.full, log)
            rows += additive_rows(res)
            summaries.append(additive_summary(res))
        parts.append("### Additive model, four cr smooths (gamSim(1)-like)\n\n"
                     + markdown_table(_escape(rows)) + "\n\n" + "\n".join(s for s in summaries if s))
    if "te" in parts_run:
        te_repeats = args.te_repeats if args.te_repeats is not None else (1 if args.quick else 7)
        res = run_te(te_n, te_repeats, have_r, log)
        parts.append("### Tensor product te(x0, x1) against two additive smooths\n\n"
                     + markdown_table(_escape(te_rows(res))) + "\n\n" + te_summary(res))
    if parts:
        parts.append(NOTES)
    if "profile" in parts_run:
        for n in sorted(sizes):
            parts.append(f"### Where the time goes: sklmm's warm fits, additive workload, n={n:,}\n\n"
                         + run_profile(n, log, with_cprofile=n == max(sizes)))
        for model in ("te", "add2"):
            parts.append(f"### Where the time goes: sklmm's warm fits, {SKLMM_LABELS[model]}, te "
                         f"workload, n={te_n:,}\n\n"
                         + run_profile(te_n, log, with_cprofile=False, workload="te", model=model))
    where = sorted(SKLMM_PATHS | {os.path.dirname(sklmm.__file__)})
    text = ("\n\n".join(parts) + "\n\n" + load.stop() + ".\n\nsklmm imported from "
            + ", ".join(where))
    if any(os.path.dirname(w) != os.path.dirname(HERE) for w in where):
        text += " (not this repository's working tree: the commit below is the repository's, not the one measured)"
    info = machine_info(r_packages=("mgcv",) if have_r else (), python_packages=("threadpoolctl",))
    moved = "" if commit == git_commit() else f" (HEAD moved to {git_commit()} during the run)"
    report(text, info, args.output, commit=commit + moved)


if __name__ == "__main__":
    main()
