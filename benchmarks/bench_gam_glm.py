"""Benchmark: non-Gaussian GAMs (binomial, logit), sklmm against mgcv's gam/bam and gamm4 in the same run.

Workloads:

* ``binary``: a gamSim(1)-like binary response with four smooths, at n = 10^5 and 10^6 rows
  (``--quick``: 10^4 and 10^5). ``x0..x3 ~ U(0, 1)``, ``f = 2 sin(pi x0) + exp(2 x1) +
  0.2 x2^11 (10 (1 - x2))^6 + 10 (10 x2)^3 (1 - x2)^10`` (x3 has no effect), ``eta = (f - 5)
  / 3`` (logits from about -1.3 to 4.4, mean of y about 0.68), ``y ~ Bernoulli(logistic(eta))``;
  simulated with numpy (seed 0) and written as raw float64 to a temporary file that R reads.
  Model ``y ~ s(x0, bs="cr", k=10) + s(x1, ...) + s(x2, ...) + s(x3, ...)``:
  ``PenalizedSplineClassifier(basis="cr", n_basis=10)`` (Laplace approximate REML) against
  mgcv's ``gam(method="REML")``, ``bam(method="fREML")`` and ``bam(method="fREML",
  discrete=TRUE)``. gam runs at a size only when its time at the previous size, scaled
  linearly in n, stays under ``--gam-limit`` seconds (default 300); otherwise the table says
  it was skipped and gives that estimate.
* ``contraception``: ``use ~ s(age, bs="cr", k=10) + livch + urban + (1 | district)``
  (1,934 rows, ``sklmm.datasets.load_contraception``): sklmm's
  ``PenalizedSplineClassifier.from_formula(..., reml=False)`` (the Laplace likelihood) against
  ``gamm4(use ~ s(age, bs="cr", k=10) + livch + urban, random = ~(1 | district),
  family = binomial)``; and the REML twin, sklmm's default ``reml=True``, against mgcv's
  ``gam(use ~ s(age, bs="cr", k=10) + livch + urban + s(district, bs="re"), family =
  binomial, method = "REML")``, the same model.

Columns of the binary table: the time of the fit (sklmm: median of ``--repeats`` fits in one
fresh process, ``time.perf_counter`` around ``fit``; R: ``system.time`` around the call, median
of its repeats, gam once); the largest absolute difference of the fitted probabilities from
mgcv gam's fit at the same n (from bam's where gam did not run); the edf of each smooth; and,
so that every optimum is compared on one scale, sklmm's Laplace REML criterion (``criterion_``,
twice the negative Laplace restricted log-likelihood) evaluated at each mgcv fit's smoothing
parameters (a sklmm fit with ``smoothing_params={x: sp / S.scale}``, mgcv's sp converted to
the raw penalty ``int f''^2``, as tests/test_mgcv_glm.py does) minus its value at sklmm's own
optimum: positive means that fit's smoothing parameters are worse for this criterion. bam's
``discrete=TRUE`` places its cr knots on the discretized covariate, so its basis differs
slightly from gam's and sklmm's (which agree); its lambda is still a multiplier of
``int f''^2``. Evaluations: sklmm's criterion evaluations (BOBYQA) and passes of penalized IRLS
over the rows; gam's outer Newton iterations (each a full P-IRLS) and bam's iterations
(``g$iter``). Peak memory: peak RSS of the fresh process (Python: ``ru_maxrss``, all repeats
and data included; R: ``/usr/bin/time -f %M``).

``--profile N`` instead fits sklmm once at N rows under cProfile in a fresh process and
prints where the time goes, by phase (basis construction, the PQL start, the Laplace REML
evaluations, the optimizer, the rest) and by kind of work (cross-products formed in each pass of
penalized IRLS, the linear predictor, the family's functions, factorizations, solves).

Every sklmm fit runs in a fresh worker process that imports the sklmm this script imports (the
installed one, or one put first on ``PYTHONPATH``, e.g. a ``git archive`` of a commit); the
report names it.

Run ``python benchmarks/bench_gam_glm.py`` (``--quick`` for 10^4 and 10^5 rows, ``--no-r`` to
skip R, ``--only binary|contraception``, ``--repeats K`` sklmm fits per size, ``--output FILE``
to also write the tables to a file, ``--profile 1000000`` for the profile).
"""
import argparse
import json
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
SMOOTHS = ("x0", "x1", "x2", "x3")
COLUMNS = SMOOTHS + ("y",)
R_FORMULA = "y ~ " + " + ".join(f's({x}, bs = "cr", k = 10)' for x in SMOOTHS)
R_METHODS = ("gam", "bam", "bam_discrete")
R_LABELS = {"gam": 'mgcv gam(method="REML")', "bam": 'mgcv bam(method="fREML")',
            "bam_discrete": 'mgcv bam(method="fREML", discrete=TRUE)'}
CONTRACEPTION = "use ~ s(age, bs='cr', k=10) + livch + urban + (1 | district)"
R_TIMEOUT = 3600  # seconds, hard stop for any R run
R_MEMORY_MB = 16000  # address-space cap of the R process (shared machine)


# --------------------------------------------------------------------------- data

def make_binary(n, seed=SEED):
    """The gamSim(1)-like binary data: columns ``x0..x3`` (features) and ``y`` (0/1 float)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 4))
    x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
    f = (2.0 * np.sin(np.pi * x0) + np.exp(2.0 * x1)
         + 0.2 * x2**11 * (10.0 * (1.0 - x2))**6 + 10.0 * (10.0 * x2)**3 * (1.0 - x2)**10)
    eta = (f - 5.0) / 3.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    d = pd.DataFrame(X, columns=list(SMOOTHS))
    d["y"] = y
    return d


def write_binary(data, folder):
    """Raw float64 columns (``data.bin``, column-major) and their names (``meta.json``) for R."""
    np.asfortranarray(data[list(COLUMNS)].to_numpy(np.float64)).ravel(order="F").tofile(
        os.path.join(folder, "data.bin"))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"n": len(data), "columns": list(COLUMNS)}, f)


def fit_binary(data, smoothing_params=None):
    """sklmm's fit of the binary workload."""
    from sklmm import PenalizedSplineClassifier

    return PenalizedSplineClassifier(basis="cr", n_basis=10, smoothing_params=smoothing_params).fit(
        data[list(SMOOTHS)], data["y"])


# --------------------------------------------------------------------------- sklmm workers

def _caught(caught):
    return sorted({f"{w.category.__name__}: {str(w.message)[:150]}" for w in caught})


def _binary_worker(n, repeats, fitted_path):
    """Fresh process: simulate, fit ``repeats`` times, save the fitted probabilities, report."""
    import warnings

    data = make_binary(n)
    times = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(repeats):
            t0 = time.perf_counter()
            est = fit_binary(data)
            times.append(time.perf_counter() - t0)
    np.save(fitted_path, est.predict_proba(data[list(SMOOTHS)])[:, 1])
    emit_result(time=statistics.median(times), times=times, criterion=float(est.criterion_),
                edf=[float(v) for v in est.edf_], lam=[float(v) for v in est.smoothing_params_],
                n_iter=int(est.n_iter_), n_passes=int(est._fit.n_passes),
                converged=bool(est.converged_), warnings=_caught(caught))


def _criterion_worker(n, lambda_sets, fitted_path):
    """Fresh process: sklmm's criterion with the smoothing parameters held at each set (and its
    fitted probabilities there, saved to ``fitted_path``)."""
    import warnings

    data = make_binary(n)
    out, fitted = {}, {}
    for key, lam in lambda_sets.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = fit_binary(data, dict(zip(SMOOTHS, lam)))
        out[key] = {"criterion": float(est.criterion_), "edf": [float(v) for v in est.edf_],
                    "n_passes": int(est._fit.n_passes), "warnings": _caught(caught)}
        fitted[key] = est.predict_proba(data[list(SMOOTHS)])[:, 1]
    np.savez(fitted_path, **fitted)
    emit_result(fixed=out)


def _contraception_worker(repeats, fitted_path):
    """Fresh process: the Contraception GAMM (reml=False) and its REML twin, ``repeats`` fits each."""
    import warnings

    from sklmm import PenalizedSplineClassifier
    from sklmm.datasets import load_contraception

    data = load_contraception()
    res, fitted = {}, {}
    for key, reml in (("gamm4", False), ("gam", True)):
        times = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(repeats):
                t0 = time.perf_counter()
                est = PenalizedSplineClassifier.from_formula(CONTRACEPTION, data, reml=reml)
                times.append(time.perf_counter() - t0)
        vc = est.variance_components_.set_index("factor")
        res[key] = {"time": statistics.median(times), "times": times,
                    "criterion": float(est.criterion_), "edf_age": float(est.edf_["s(age)"]),
                    "district_sd": float(vc.loc["district", "std_dev"]),
                    "n_iter": int(est.n_iter_), "n_passes": int(est._fit.n_passes),
                    "converged": bool(est.converged_), "warnings": _caught(caught)}
        fitted[key + "_conditional"] = est.predict_proba(data)[:, 1]
        fitted[key + "_population"] = est.predict_proba(data.drop(columns="district"))[:, 1]
    np.savez(fitted_path, **fitted)
    emit_result(contraception=res)


def _run_worker(call, timeout=None):
    """Run ``bench_gam_glm.<call>`` in a fresh process. ``python -c`` puts the working directory
    first on ``sys.path``; it is dropped, so that the worker imports the sklmm this process
    imports (the installed one, or the one on ``PYTHONPATH``) even when run from the repository
    root, and the worker says which one it imported (``sklmm_path``)."""
    code = (f"import sys; sys.path[:] = [p for p in sys.path if p != '']; sys.path.insert(0, {HERE!r})\n"
            f"import os, sklmm, bench_gam_glm\n"
            f"from _harness import emit_result\n"
            f"emit_result(sklmm_path=os.path.dirname(sklmm.__file__))\n"
            f"bench_gam_glm.{call}\n")
    res = run_python(code, timeout=timeout)
    WORKER_SKLMM.add(res.get("sklmm_path"))
    return res


WORKER_SKLMM = set()  # where the workers imported sklmm from


# --------------------------------------------------------------------------- R

R_BINARY = """\
suppressPackageStartupMessages(library(mgcv))
args <- commandArgs(trailingOnly = TRUE)
p <- args[1]; method <- args[2]; repeats <- as.integer(args[3])
meta <- jsonlite::fromJSON(file.path(p, "meta.json"))
m <- matrix(readBin(file.path(p, "data.bin"), "double", meta$n * length(meta$columns)),
            meta$n, length(meta$columns))
d <- as.data.frame(m); names(d) <- meta$columns; rm(m)
fo <- %FORMULA%
fit <- function() switch(method,
  gam = gam(fo, data = d, family = binomial, method = "REML"),
  bam = bam(fo, data = d, family = binomial, method = "fREML"),
  bam_discrete = bam(fo, data = d, family = binomial, method = "fREML", discrete = TRUE))
warns <- character(0)
times <- numeric(repeats)
for (i in seq_along(times))
  times[i] <- system.time(g <- withCallingHandlers(fit(), warning = function(w) {
    warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") }))[["elapsed"]]
edf <- vapply(g$smooth, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
writeBin(as.double(fitted(g)), file.path(p, paste0("fitted_", method, ".bin")))
cat(jsonlite::toJSON(list(time = median(times), times = times, edf = unname(edf),
                          sp = unname(g$sp), S_scale = vapply(g$smooth, function(s) s$S.scale, 0),
                          score = as.numeric(g$gcv.ubre), iter = g$iter,
                          outer_iter = if (is.null(g$outer.info$iter)) NA else g$outer.info$iter,
                          outer_conv = if (is.null(g$outer.info$conv)) "" else g$outer.info$conv,
                          converged = isTRUE(g$converged),
                          warnings = if (length(warns)) unique(warns) else character(0)),
                     auto_unbox = TRUE, digits = NA), "\\n")
"""

R_CONTRACEPTION = """\
suppressPackageStartupMessages({library(mgcv); library(gamm4)})
args <- commandArgs(trailingOnly = TRUE)
p <- args[1]; repeats <- as.integer(args[2])
lv <- jsonlite::fromJSON(file.path(p, "levels.json"))
d <- read.csv(file.path(p, "data.csv"), colClasses = setNames(rep("character", length(lv)), names(lv)))
for (nm in names(lv)) d[[nm]] <- factor(d[[nm]], levels = lv[[nm]])
d$use <- as.numeric(d$use == "Y")
warns <- character(0)
catch <- function(expr) withCallingHandlers(expr, warning = function(w) {
  warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
t4 <- numeric(repeats); tg <- numeric(repeats)
for (i in seq_len(repeats)) {
  t4[i] <- system.time(m <- catch(gamm4(use ~ s(age, bs = "cr", k = 10) + livch + urban,
                                         random = ~(1 | district), family = binomial,
                                         data = d)))[["elapsed"]]
  tg[i] <- system.time(g <- catch(gam(use ~ s(age, bs = "cr", k = 10) + livch + urban +
                                        s(district, bs = "re"), family = binomial, data = d,
                                      method = "REML")))[["elapsed"]]
}
th <- getME(m$mer, "theta")
edf_g <- vapply(g$smooth, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
re <- g$smooth[[2]]
cat(jsonlite::toJSON(list(
  gamm4 = list(time = median(t4), times = t4, minus2loglik = -2 * as.numeric(logLik(m$mer)),
               district_sd = unname(th[names(th) == "district.(Intercept)"]),
               edf_age = unname(summary(m$gam)$edf[1]),
               fitted_conditional = unname(fitted(m$mer)), fitted_population = unname(fitted(m$gam)),
               feval = m$mer@optinfo$feval,
               messages = if (is.null(m$mer@optinfo$conv$lme4$messages)) character(0)
                          else m$mer@optinfo$conv$lme4$messages),
  gam = list(time = median(tg), times = tg, score = as.numeric(g$gcv.ubre),
             edf_age = unname(edf_g[1]), district_sd = 1 / sqrt(g$sp[2] / re$S.scale),
             fitted = unname(fitted(g)), outer_iter = g$outer.info$iter),
  warnings = if (length(warns)) unique(warns) else character(0)), auto_unbox = TRUE, digits = NA), "\\n")
"""


def _as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


# --------------------------------------------------------------------------- binary workload

def run_binary(n, repeats, have_r, gam_estimate=None, gam_limit=300.0, log=print):
    """Fit the binary workload at n rows with every tool; return a dict with the rows' data.

    ``gam_estimate``: seconds expected for gam at this n (None: unknown); gam is skipped when
    it exceeds ``gam_limit``.
    """
    out = {"n": n, "sk": None, "r": {}, "fixed": {}, "notes": [], "ref": None}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_binary(n)
        y_mean = float(data["y"].mean())
        if have_r:
            write_binary(data, tmp)
        del data
        for method in R_METHODS if have_r else ():
            if method == "gam" and gam_estimate is not None and gam_estimate > gam_limit:
                out["r"][method] = {"skipped": f"skipped: about {gam_estimate:.0f} s expected "
                                               f"(10 x its time at n/10) > {gam_limit:.0f} s"}
                log(f"binary n={n}: gam {out['r'][method]['skipped']}")
                continue
            reps = 1 if method == "gam" else (1 if n > 10**6 else 3)
            log(f"binary n={n}: {method} ({reps} fit(s)) ...")
            try:
                res = run_r(R_BINARY.replace("%FORMULA%", R_FORMULA), tmp, timeout=R_TIMEOUT,
                            args=(method, reps), memory_limit_mb=R_MEMORY_MB)
                res["fitted"] = np.fromfile(os.path.join(tmp, f"fitted_{method}.bin"))
                res["repeats"] = reps
                out["r"][method] = res
                log(f"binary n={n}: {method} {res['time']:.3g} s")
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                out["r"][method] = {"skipped": describe_failure(exc, R_TIMEOUT)}
                log(f"binary n={n}: {method} {out['r'][method]['skipped']}")
        log(f"binary n={n}: sklmm ({repeats} fits) ...")
        path = os.path.join(tmp, "fitted_sklmm.npy")
        try:
            out["sk"] = _run_worker(f"_binary_worker({n}, {repeats}, {path!r})")
            out["sk"]["fitted"] = np.load(path)
            log(f"binary n={n}: sklmm {out['sk']['times']} s")
        except (subprocess.TimeoutExpired, RuntimeError) as exc:
            out["notes"].append("sklmm " + describe_failure(exc, None))
            log(out["notes"][-1])
        lam_sets = {m: (np.asarray(_as_list(r["sp"])) / np.asarray(_as_list(r["S_scale"]))).tolist()
                    for m, r in out["r"].items() if "sp" in r}
        if out["sk"] is not None and lam_sets:
            log(f"binary n={n}: sklmm's criterion at mgcv's smoothing parameters ...")
            path = os.path.join(tmp, "fitted_fixed.npz")
            try:
                out["fixed"] = _run_worker(f"_criterion_worker({n}, {lam_sets!r}, {path!r})")["fixed"]
                with np.load(path) as z:
                    for m in out["fixed"]:  # sklmm at that fit's lambda against that fit
                        out["fixed"][m]["dp_own"] = float(np.max(np.abs(z[m] - out["r"][m]["fitted"])))
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                out["notes"].append("criterion at mgcv's sp: " + describe_failure(exc, None))
    out["y_mean"] = y_mean
    for m in ("gam", "bam"):
        if "fitted" in out["r"].get(m, {}):
            out["ref"] = m
            break
    return out


def _edf_text(edf):
    return " / ".join(f"{v:.3f}" for v in _as_list(edf))


def binary_rows(res):
    """Table rows of one size of the binary workload."""
    n, sk, ref = res["n"], res["sk"], res["ref"]
    p_ref = res["r"][ref]["fitted"] if ref else None
    label = f"binary, 4 cr smooths k=10, n={n:,}"
    rows = []

    def diff(p):
        return None if p_ref is None or p is None else f"{np.max(np.abs(p - p_ref)):.1e}"

    if sk is not None:
        times = ", ".join(f"{t:.3g}" for t in sk["times"])
        note = f"fits: {times} s; criterion_ {sk['criterion']:.10g}"
        if not sk["converged"]:
            note += "; NOT converged"
        if sk["warnings"]:
            note += "; " + "; ".join(sk["warnings"])
        rows.append({"workload": label,
                     "tool": f"sklmm PenalizedSplineClassifier (median of {len(sk['times'])})",
                     "time (s)": fmt(sk["time"], ".3g"),
                     f"max abs diff of fitted p vs {ref or 'n/a'}": diff(sk["fitted"]),
                     "edf s(x0) / s(x1) / s(x2) / s(x3)": _edf_text(sk["edf"]),
                     "REML criterion at this fit's lambda - at sklmm's [a]": "0 (its optimum)",
                     "evaluations": f"{sk['n_iter']} evals, {sk['n_passes']} PIRLS passes",
                     "peak MB": fmt(sk["peak_mb"], ".0f"), "notes": note})
    for m in R_METHODS:
        r = res["r"].get(m)
        if r is None:
            continue
        if "skipped" in r:
            rows.append({"workload": label, "tool": R_LABELS[m], "time (s)": None,
                         f"max abs diff of fitted p vs {ref or 'n/a'}": None,
                         "edf s(x0) / s(x1) / s(x2) / s(x3)": None,
                         "REML criterion at this fit's lambda - at sklmm's [a]": None,
                         "evaluations": None, "peak MB": None, "notes": r["skipped"]})
            continue
        fx = res["fixed"].get(m)
        crit = None
        if fx is not None and sk is not None:
            crit = f"{fx['criterion'] - sk['criterion']:+.3g}"
        if m == "gam":
            evals = f"{r['outer_iter']} Newton steps (P-IRLS iter of the last: {r['iter']})"
        else:
            evals = f"{r['iter']} iterations"
        note = f"score {r['score']:.10g}; sp {', '.join(f'{v:.4g}' for v in _as_list(r['sp']))}"
        if len(_as_list(r["times"])) > 1:
            note = "fits: " + ", ".join(f"{t:.3g}" for t in _as_list(r["times"])) + " s; " + note
        if r.get("outer_conv"):
            note += f"; {r['outer_conv']}"
        if r.get("warnings"):
            note += "; warned: " + "; ".join(_as_list(r["warnings"]))[:200]
        if fx is not None:
            note += (f"; sklmm at this lambda: edf {_edf_text(fx['edf'])}, max abs diff of p "
                     f"from this fit's {fx['dp_own']:.1e}")
        reps = r.get("repeats", 1)
        rows.append({"workload": label,
                     "tool": R_LABELS[m] + (f" (median of {reps})" if reps > 1 else ""),
                     "time (s)": fmt(r["time"], ".3g"),
                     f"max abs diff of fitted p vs {ref or 'n/a'}":
                         "(reference)" if m == ref else diff(r["fitted"]),
                     "edf s(x0) / s(x1) / s(x2) / s(x3)": _edf_text(r["edf"]),
                     "REML criterion at this fit's lambda - at sklmm's [a]": crit,
                     "evaluations": evals, "peak MB": fmt(r["peak_mb"], ".0f"), "notes": note})
    for row in rows:  # one column name for every size
        key = next(k for k in row if k.startswith("max abs diff"))
        row["max abs diff of fitted p [b]"] = row.pop(key)
    order = ["workload", "tool", "time (s)", "max abs diff of fitted p [b]",
             "edf s(x0) / s(x1) / s(x2) / s(x3)",
             "REML criterion at this fit's lambda - at sklmm's [a]", "evaluations", "peak MB",
             "notes"]
    rows = [{k: row[k] for k in order} for row in rows]
    if res["notes"]:
        rows[-1]["notes"] = (rows[-1]["notes"] or "") + "; " + "; ".join(res["notes"])
    return rows


# --------------------------------------------------------------------------- Contraception

def run_contraception(have_r, repeats=5, log=print):
    """Fit the Contraception GAMM and its REML twin with sklmm, gamm4 and gam."""
    from sklmm.datasets import load_contraception

    out = {"sk": None, "r": None, "notes": []}
    with tempfile.TemporaryDirectory() as tmp:
        if have_r:
            data = load_contraception()
            cats = {c: [str(v) for v in data[c].cat.categories] for c in data.columns
                    if isinstance(data[c].dtype, pd.CategoricalDtype)}
            data.to_csv(os.path.join(tmp, "data.csv"), index=False, float_format="%.17g")
            with open(os.path.join(tmp, "levels.json"), "w") as f:
                json.dump(cats, f)
            log(f"contraception: gamm4 and gam ({repeats} fits each) ...")
            try:
                out["r"] = run_r(R_CONTRACEPTION, tmp, timeout=R_TIMEOUT, args=(repeats,))
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                out["notes"].append("R " + describe_failure(exc, R_TIMEOUT))
        log(f"contraception: sklmm ({repeats} fits each) ...")
        path = os.path.join(tmp, "fitted_sklmm.npz")
        try:
            out["sk"] = _run_worker(f"_contraception_worker({repeats}, {path!r})")
            with np.load(path) as z:
                out["fitted"] = dict(z)
        except (subprocess.TimeoutExpired, RuntimeError) as exc:
            out["notes"].append("sklmm " + describe_failure(exc, None))
    return out


def contraception_rows(res, repeats):
    sk = (res["sk"] or {}).get("contraception")
    r = res["r"]
    rows = []
    specs = [("gamm4", "Contraception GAMM, Laplace ML, (1 | district), n=1,934",
              "sklmm from_formula(..., reml=False)", "gamm4 (glmer Laplace)"),
             ("gam", "Contraception GAM, Laplace REML, s(district, bs=\"re\"), n=1,934",
              "sklmm from_formula(...) (reml=True)", 'mgcv gam(method="REML")')]
    for key, label, sk_label, r_label in specs:
        s = None if sk is None else sk[key]
        q = None if r is None else r[key]
        agree, crit_diff = None, None
        if s is not None and q is not None:
            f = res["fitted"]
            if key == "gamm4":
                dc = np.max(np.abs(f["gamm4_conditional"] - np.asarray(q["fitted_conditional"])))
                dp = np.max(np.abs(f["gamm4_population"] - np.asarray(q["fitted_population"])))
                agree = f"{dc:.1e} (conditional), {dp:.1e} (population)"
                crit_diff = f"{s['criterion'] - q['minus2loglik']:+.2e}"
            else:
                agree = f"{np.max(np.abs(f['gam_conditional'] - np.asarray(q['fitted']))):.1e}"
        if s is not None:
            note = "fits: " + ", ".join(f"{t:.3g}" for t in s["times"]) + " s"
            if not s["converged"]:
                note += "; NOT converged"
            if s["warnings"]:
                note += "; " + "; ".join(s["warnings"])
            rows.append({"workload": label, "tool": f"{sk_label} (median of {repeats})",
                         "time (s)": fmt(s["time"], ".3g"),
                         "-2 log L (ML) or REML criterion": f"{s['criterion']:.10g}",
                         "sklmm - R": crit_diff, "max abs diff of fitted p vs R": agree,
                         "edf s(age)": fmt(s["edf_age"], ".4f"),
                         "district sd": fmt(s["district_sd"], ".5f"),
                         "evaluations": f"{s['n_iter']} evals, {s['n_passes']} PIRLS passes",
                         "notes": note})
        if q is not None:
            if key == "gamm4":
                crit = f"{q['minus2loglik']:.10g}"
                evals = f"{q['feval']} glmer evals"
                note = "; ".join(_as_list(q.get("messages"))) or ""
            else:
                crit = f"score {q['score']:.10g} [c]"
                evals = f"{q['outer_iter']} Newton steps"
                note = ""
            note = ("fits: " + ", ".join(f"{t:.3g}" for t in _as_list(q["times"])) + " s"
                    + (f"; {note}" if note else ""))
            if key == "gamm4" and _as_list(r.get("warnings")):
                note += "; R warned: " + "; ".join(_as_list(r["warnings"]))[:200]
            rows.append({"workload": label, "tool": f"{r_label} (median of {repeats})",
                         "time (s)": fmt(q["time"], ".3g"), "-2 log L (ML) or REML criterion": crit,
                         "sklmm - R": None, "max abs diff of fitted p vs R": None,
                         "edf s(age)": fmt(q["edf_age"], ".4f"),
                         "district sd": fmt(q["district_sd"], ".5f"), "evaluations": evals,
                         "notes": note})
    if rows and res["notes"]:
        rows[-1]["notes"] = (rows[-1]["notes"] or "") + "; " + "; ".join(res["notes"])
    return rows


# --------------------------------------------------------------------------- profile

def _profile_worker(n, stats_path):
    """Fresh process: one sklmm fit at n rows under cProfile; report the time by phase of the
    fit and by kind of work (cumulative times of sklmm's functions)."""
    import cProfile
    import pstats

    data = make_binary(n)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    est = fit_binary(data)
    prof.disable()
    wall = time.perf_counter() - t0
    prof.dump_stats(stats_path)
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def find(suffix, name, largest=False):
        """(calls, own seconds, cumulative seconds) of the functions ``name`` in files ending
        with ``suffix``, summed (or the one of largest cumulative time)."""
        hits = [(v[1], v[2], v[3]) for (f, _, fn), v in st.items()
                if fn == name and f.replace(os.sep, "/").endswith(suffix)]
        if largest and hits:
            hits = [max(hits, key=lambda h: h[2])]
        return (sum(h[0] for h in hits), sum(h[1] for h in hits), sum(h[2] for h in hits))

    def cum(*funcs):
        c = [find(*f) for f in funcs]
        return max((h[0] for h in c), default=0), sum(h[2] for h in c)

    fit_s = find("sklmm/gam_classifier.py", "fit")[2]
    basis = cum(("_input/smooth_terms.py", "make_smooths"), ("sklmm/gam.py", "_fixed_design"))
    pql = cum(("_engine/glmm_fit.py", "_pql_start"))
    laml = find("_engine/pirls.py", "laml", largest=True)  # (not the property PirlsState.laml)
    outer = find("_engine/laml_iteration.py", "laml_iteration")
    fused = find("_engine/laml_iteration.py", "_fused_pass")
    surrogate = find("_engine/laml_iteration.py", "surrogate")
    final = find("_engine/pirls.py", "pirls")
    phases = [
        ("basis construction and design (smooth terms, constraints, fixed columns)", *basis),
        ("outer iteration of the Laplace REML (laml_iteration), in all", *outer[::2]),
        ("- of which fused passes over the rows (eta, weights, Gram, leverages)", *fused[::2]),
        ("- of which the surrogate's evaluations (factorizations of the small system)", *surrogate[::2]),
        ("- of which PIRLS to the exact mode at the end", *final[::2]),
        ("fallback (when the iteration does not settle): PQL start", *pql),
        ("fallback: BOBYQA's evaluations of the criterion", laml[0], laml[2]),
        ("everything else: input checks, setup, the final state, edf, tables, tests", 1,
         fit_s - basis[1] - outer[2] - pql[1] - laml[2]),
    ]
    pirls_own = find("_engine/pirls.py", "pirls")[:2]
    gram = find("_engine/crossprod.py", "_dense_gram")
    byl = find("_engine/crossprod.py", "_by_level")
    cpf = find("_engine/crossprod.py", "form")
    work = [
        ("fused passes: eta, working weights, Gram of sqrt(W)[Z X z] and leverages by blocks of rows",
         *fused[::2]),
        ("- of which assembling the blocks of [Z X] (dense_rows)", *find("_engine/crossprod.py", "dense_rows")[::2]),
        ("leverages through the factor, general pass (whitened_row_norms)",
         *find("_engine/leverage.py", "whitened_row_norms")[::2]),
        ("cross-products of [Z X z] at the working weights, general pass (every call, PQL's included)",
         cpf[0], cpf[2]),
        ("- of which one syrk of sqrt(W)[Z X] and its product with z (_dense_gram)", *gram[::2]),
        ("- of which per-term products (_by_level)", *byl[::2]),
        ("- of which the rest (W times [X z], copies; own time)", cpf[0], cpf[1]),
        ("linear predictor Z Lambda u (random_eta)", *cum(("_engine/pirls.py", "random_eta"))),
        ("family: working weights and response, -2 log p(y | eta)",
         *cum(("_engine/pirls.py", "working"), ("_engine/pirls.py", "minus2ll"))),
        ("factorization: refill and Cholesky at theta (the PQL fits' evaluations included)",
         *cum(("_engine/pirls.py", "factor"), ("_engine/factor_dense.py", "update"),
              ("_engine/factor_blocked.py", "update"), ("_engine/factor_cholmod.py", "update"))),
        ("solves for (beta, u)", *cum(("_engine/factor_dense.py", "solve"),
                                      ("_engine/factor_blocked.py", "solve"),
                                      ("_engine/factor_cholmod.py", "solve"))),
        ("rest of PIRLS (X beta, step halving, convergence test; own time)", *pirls_own),
        ("PQL's Gaussian REML fits from the cross-products (fit_cross_products)",
         *cum(("_engine/fit.py", "fit_cross_products"))),
    ]
    emit_result(wall=wall, fit_seconds=fit_s, n_iter=int(est.n_iter_),
                n_passes=int(est._fit.n_passes), laml_seconds=outer[2] + laml[2],
                phases=[list(p) for p in phases], work=[list(w) for w in work if w[1]])


def run_profile(n, stats_path=None):
    """Profile one sklmm fit at n rows; return the markdown tables and a summary line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = stats_path or os.path.join(tmp, "fit.prof")
        res = _run_worker(f"_profile_worker({n}, {path!r})")
    total = res["fit_seconds"]

    def rows(items, first):
        return [{first: label, "calls": calls, "seconds": f"{sec:.2f}",
                 "share of the fit": f"{sec / total:.1%}",
                 "ms per call": f"{1e3 * sec / calls:.1f}" if calls else None}
                for label, calls, sec in items]

    line = (f"n = {n:,}: fit {res['wall']:.1f} s under cProfile ({total:.1f} s inside fit), "
            f"{res['n_iter']} evaluations of the criterion or its surrogate, {res['n_passes']} passes "
            f"over the rows in all; peak RSS "
            f"{res['peak_mb']:.0f} MB.")
    if stats_path is not None:
        line += f" Stats written to {path}."
    return ("By phase of the fit:\n\n" + markdown_table(rows(res["phases"], "phase"))
            + "\n\nBy kind of work (over the whole fit; the phases above overlap these):\n\n"
            + markdown_table(rows(res["work"], "work")) + "\n\n" + line + "\n")


# --------------------------------------------------------------------------- driver

def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="binary at 10^4 and 10^5 rows only")
    parser.add_argument("--sizes", type=float, nargs="+", help="rows of the binary workload "
                        "(default 1e5 1e6; --quick 1e4 1e5)")
    parser.add_argument("--only", action="append", choices=("binary", "contraception"),
                        help="run only this workload (repeatable)")
    parser.add_argument("--no-r", action="store_true", help="skip mgcv and gamm4")
    parser.add_argument("--repeats", type=int, default=2,
                        help="sklmm fits per size of the binary workload (median reported)")
    parser.add_argument("--gam-limit", type=float, default=300.0,
                        help="skip gam at a size when 10 x its time at n/10 exceeds this (s)")
    parser.add_argument("--profile", type=float, metavar="N",
                        help="only profile one sklmm fit at N rows (cProfile) and print it")
    parser.add_argument("--profile-stats", help="with --profile: keep the pstats file here")
    parser.add_argument("--output", help="also write the tables to this file")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    commit = git_commit()
    import sklmm

    here_sklmm = os.path.dirname(sklmm.__file__)
    where = f"sklmm imported from {here_sklmm}"
    if args.profile:
        text = "## Profile of one sklmm fit\n\n" + run_profile(int(args.profile), args.profile_stats)
        report(text + "\n" + where, machine_info(r_packages=()), args.output, commit=commit)
        return
    have_r = not args.no_r and r_available(["mgcv", "gamm4", "lme4"])
    sizes = [int(s) for s in (args.sizes or ([1e4, 1e5] if args.quick else [1e5, 1e6]))]
    workloads = args.only or ["binary", "contraception"]
    load = LoadSampler()
    parts = []
    if "binary" in workloads:
        rows, prev_gam = [], None
        for n in sizes:
            est = None if prev_gam is None else prev_gam[1] * n / prev_gam[0]
            res = run_binary(n, args.repeats, have_r, est, args.gam_limit, log)
            g = res["r"].get("gam", {})
            if "time" in g:
                prev_gam = (n, g["time"])
            elif prev_gam is not None:
                prev_gam = (n, prev_gam[1] * n / prev_gam[0])
            rows += binary_rows(res)
            log(f"binary n={n}: mean of y {res['y_mean']:.4f}")
        parts.append(markdown_table([{k: (None if v is None else str(v).replace("|", "\\|"))
                                      for k, v in r.items()} for r in rows]))
        parts.append(
            "[a] sklmm's criterion_ (twice the negative Laplace approximate REML, Wood 2011) with "
            "the smoothing parameters held at each mgcv fit's sp / S.scale, minus the criterion "
            "at sklmm's own optimum: positive = that fit's smoothing parameters are worse on "
            "this criterion (2 x mgcv's score differences, up to mgcv's convergence).\n\n"
            "[b] largest |p_tool - p_ref| over the rows, p_ref the fitted probabilities of "
            "mgcv gam at that n (bam's where gam did not run).")
    if "contraception" in workloads:
        reps = 5
        res = run_contraception(have_r, reps, log)
        parts.append(markdown_table([{k: (None if v is None else str(v).replace("|", "\\|"))
                                      for k, v in r.items()} for r in contraception_rows(res, reps)]))
        parts.append(
            "[c] mgcv's REML score (a negative log restricted likelihood; sklmm's REML "
            "criterion is twice it plus a constant that depends on the penalties' scaling, so "
            "the two are not compared directly; fitted values, edf and the district sd are).")
    if WORKER_SKLMM - {here_sklmm}:
        where += f" (but the workers imported {sorted(map(str, WORKER_SKLMM))})"
    text = "\n\n".join(parts) + "\n\n" + load.stop() + ".\n\n" + where
    info = machine_info(r_packages=("mgcv", "gamm4", "lme4"))
    moved = "" if commit == git_commit() else f" (HEAD moved to {git_commit()} during the run)"
    report(text, info, args.output, commit=commit + moved)


if __name__ == "__main__":
    main()
