"""Benchmark: linear mixed models fitted by ML, sklmm against lme4, statsmodels and GPBoost.

Workloads (all maximum likelihood, lme4 ``REML = FALSE``):

* ``sleepstudy``: ``Reaction ~ Days + (Days | Subject)``, 180 rows (``load_sleepstudy``).
* ``kb07``: simulated (seed 1) like MixedModels.jl's kb07: 56 subjects x 32 items fully
  crossed, 1,790 rows, +-1 contrasts ``spkr``, ``prec``, ``load``; the maximal model
  ``y ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj)
  + (1 + spkr + prec + load | item)`` (20 theta); sklmm and lme4 only.
* ``maximal_large``: the same model on 200 subjects x 100 items fully crossed, one row per
  pair (20,000 rows); sklmm and lme4 only.
* ``insteval``: ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)``, lme4's ``InstEval``
  (73,421 rows, 2,972 + 1,128 + 14 levels), exported by Rscript into a temporary CSV.
* ``crossed``: simulated (seed 1), 20,000 subjects, 500 items, 1,000,000 rows, each row a
  random subject and item; ``y ~ 1 + x + (1 + x | subj) + (1 | item)``.
* ``large``: simulated (seed 1), 10,000,000 rows in 100,000 groups of 100;
  ``y ~ x + (x | g)``; sklmm and lme4 only.

Every Python fit runs in a fresh subprocess that loads the data, times the fits (median of
the repeats) and reports its own peak RSS; lme4 is timed inside R around ``lmer`` only.

Run ``python benchmarks/bench_mixed.py`` (``--quick`` for small versions, ``--only NAME``
for one workload, ``--output FILE`` to also write the markdown table to a file).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import (  # noqa: E402
    describe_failure,
    emit_result,
    fmt,
    git_commit,
    machine_info,
    markdown_table,
    median_time,
    r_available,
    report,
    run_python,
    run_r,
)

SEED = 1
TIMEOUT = 600  # seconds, for every lme4 and GPBoost run
R_MEMORY_LIMIT_MB = 14_000  # address-space cap of R in the "large" workload
WORKLOADS = ("sleepstudy", "kb07", "maximal_large", "insteval", "crossed", "large")

# Covariance of the simulated (intercept, slope) random effects: sd 1 and 0.3, correlation 0.2.
_SLOPE_COV = np.array([[1.0, 0.2 * 0.3], [0.2 * 0.3, 0.3**2]])

# The kb07-like maximal model: contrasts, fixed effects (intercept first) and the sds of the
# independent subject and item effects (intercept, spkr, prec, load).
_KB07_CONTRASTS = ["spkr", "prec", "load"]
_KB07_BETA = np.array([2000.0, 60.0, -330.0, 80.0])
_KB07_SUBJ_SD = np.array([300.0, 50.0, 100.0, 30.0])
_KB07_ITEM_SD = np.array([350.0, 20.0, 200.0, 40.0])
_KB07_FORMULA = ("y ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) "
                 "+ (1 + spkr + prec + load | item)")


# --------------------------------------------------------------------------- data

def simulate_crossed(n_rows, n_subjects, n_items, seed=SEED):
    """Crossed subjects and items with a correlated random slope for the subjects.

    ``y = 1 + 0.5 x + u0[subj] + u1[subj] x + w[item] + e`` with ``(u0, u1)`` of sd 1 and 0.3
    and correlation 0.2, ``w ~ N(0, 0.5^2)``, ``x, e ~ N(0, 1)``; every row draws its subject
    and its item uniformly.

    Returns
    -------
    DataFrame
        Columns ``y``, ``x`` (float64), ``subj``, ``item`` (int32 codes).
    """
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, n_subjects, n_rows).astype(np.int32)
    item = rng.integers(0, n_items, n_rows).astype(np.int32)
    x = rng.normal(size=n_rows)
    u = rng.multivariate_normal([0.0, 0.0], _SLOPE_COV, size=n_subjects)
    w = rng.normal(0.0, 0.5, size=n_items)
    y = 1.0 + 0.5 * x + u[subj, 0] + u[subj, 1] * x + w[item] + rng.normal(size=n_rows)
    return pd.DataFrame({"y": y, "x": x, "subj": subj, "item": item})


def simulate_slopes(n_rows, n_groups, seed=SEED):
    """One grouping factor with a correlated random intercept and slope, balanced groups.

    ``y = 1 + 0.5 x + u0[g] + u1[g] x + e`` with ``(u0, u1)`` as in :func:`simulate_crossed`;
    each group has ``n_rows // n_groups`` rows, in random order.

    Returns
    -------
    DataFrame
        Columns ``y``, ``x`` (float64), ``g`` (int32 codes).
    """
    rng = np.random.default_rng(seed)
    g = rng.permutation(np.repeat(np.arange(n_groups, dtype=np.int32), n_rows // n_groups))
    n = g.size
    x = rng.normal(size=n)
    u = rng.multivariate_normal([0.0, 0.0], _SLOPE_COV, size=n_groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def simulate_maximal(n_subjects, n_items, n_rows=None, seed=SEED):
    """Fully crossed subjects and items with three +-1 contrasts, shaped like kb07.

    ``y = 2000 + 60 spkr - 330 prec + 80 load + s0[subj] + s1[subj] spkr + s2[subj] prec
    + s3[subj] load + i0[item] + i1[item] spkr + i2[item] prec + i3[item] load + e`` with
    independent normal subject effects of sd 300, 50, 100, 30, item effects of sd 350, 20, 200,
    40 and ``e ~ N(0, 700^2)``; each row draws each contrast as -1 or +1 with equal chance.
    The rows are the ``n_subjects x n_items`` grid (subject-major); ``n_rows`` below its size
    drops that many rows of the grid at random (kb07: 56 x 32 = 1,792 cells, 1,790 rows).

    Returns
    -------
    DataFrame
        Columns ``y``, ``spkr``, ``prec``, ``load`` (float64), ``subj``, ``item`` (int32 codes).
    """
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects, dtype=np.int32), n_items)
    item = np.tile(np.arange(n_items, dtype=np.int32), n_subjects)
    if n_rows is not None and n_rows < subj.size:
        keep = np.sort(rng.choice(subj.size, n_rows, replace=False))
        subj, item = subj[keep], item[keep]
    n = subj.size
    C = np.column_stack([np.ones(n), rng.choice([-1.0, 1.0], size=(n, 3))])
    s = rng.normal(size=(n_subjects, 4)) * _KB07_SUBJ_SD
    w = rng.normal(size=(n_items, 4)) * _KB07_ITEM_SD
    y = (C @ _KB07_BETA + np.einsum("ij,ij->i", C, s[subj] + w[item])
         + rng.normal(0.0, 700.0, size=n))
    data = pd.DataFrame(C[:, 1:], columns=_KB07_CONTRASTS)
    data.insert(0, "y", y)
    data["subj"], data["item"] = subj, item
    return data


def workload_spec(name, quick=False):
    """Size, formula and repeats of one workload.

    Returns
    -------
    dict
        ``label`` (for the table), ``formula`` (lme4), ``formula_uncorrelated`` (the model
        GPBoost can fit, or None), ``n``, sizes for the simulations, ``repeats`` per tool and
        ``tools`` (the Python tools that run), and optionally ``unsupported`` (tool to the
        table note of a tool that cannot fit the model; it gets an n/a row).
    """
    if name == "sleepstudy":
        reps = 3 if quick else 20
        return dict(label="sleepstudy (Days|Subject), n=180",
                    formula="Reaction ~ Days + (Days | Subject)",
                    formula_uncorrelated="Reaction ~ Days + (Days || Subject)",
                    repeats={"sklmm": reps, "statsmodels": reps, "gpboost": reps, "lme4": reps},
                    tools=("sklmm", "statsmodels", "gpboost"))
    if name in ("kb07", "maximal_large"):
        unsupported = {"statsmodels": "n/a (no crossed effects)",
                       "gpboost": "n/a (no correlated random slopes)"}
        if name == "kb07":
            return dict(label="kb07-like maximal, 56 subj x 32 items, n=1,790", n_subjects=56,
                        n_items=32, n=1790, formula=_KB07_FORMULA, formula_uncorrelated=None,
                        repeats={"sklmm": 1 if quick else 3, "lme4": 1},
                        tools=("sklmm", "statsmodels", "gpboost"), unsupported=unsupported)
        n_subj, n_items = (60, 40) if quick else (200, 100)
        return dict(label=f"maximal, {n_subj} subj x {n_items} items, n={n_subj * n_items:,}",
                    n_subjects=n_subj, n_items=n_items, n=n_subj * n_items,
                    formula=_KB07_FORMULA, formula_uncorrelated=None,
                    repeats={"sklmm": 1, "lme4": 1},
                    tools=("sklmm", "statsmodels", "gpboost"), unsupported=unsupported)
    if name == "insteval":
        return dict(label="InstEval (1|s)+(1|d)+(1|dept), n=73,421",
                    formula="y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
                    formula_uncorrelated=None,
                    repeats={"sklmm": 1 if quick else 3, "gpboost": 1, "lme4": 1},
                    tools=("sklmm", "statsmodels", "gpboost"),
                    unsupported={"statsmodels": "n/a (no crossed effects)"})
    if name == "crossed":
        n = 50_000 if quick else 1_000_000
        n_subj = n // 50
        return dict(label=f"crossed (1+x|subj)+(1|item), n={n:,}", n=n, n_subjects=n_subj,
                    n_items=500, formula="y ~ 1 + x + (1 + x | subj) + (1 | item)",
                    formula_uncorrelated="y ~ 1 + x + (1 + x || subj) + (1 | item)",
                    repeats={"sklmm": 1, "gpboost": 1, "lme4": 1},
                    tools=("sklmm", "statsmodels", "gpboost"),
                    unsupported={"statsmodels": "n/a (no crossed effects)"})
    if name == "large":
        n = 200_000 if quick else 10_000_000
        return dict(label=f"large (x|g), n={n:,}, {n // 100:,} groups", n=n, n_groups=n // 100,
                    formula="y ~ x + (x | g)", formula_uncorrelated=None,
                    repeats={"sklmm": 1, "lme4": 1}, tools=("sklmm",))
    raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")


def load_data(name, quick=False, data_path=None):
    """The workload's data as one DataFrame (InstEval from the CSV at ``data_path``)."""
    spec = workload_spec(name, quick)
    if name == "sleepstudy":
        from sklmm.datasets import load_sleepstudy

        return load_sleepstudy()
    if name == "insteval":
        return pd.read_csv(data_path, dtype={"s": str, "d": str, "dept": str})
    if name == "crossed":
        return simulate_crossed(spec["n"], spec["n_subjects"], spec["n_items"])
    if name in ("kb07", "maximal_large"):
        return simulate_maximal(spec["n_subjects"], spec["n_items"], spec["n"])
    return simulate_slopes(spec["n"], spec["n_groups"])


def model_arrays(name, data):
    """Response, fixed-effect features, groups and sklmm's random_slopes for a workload."""
    if name == "sleepstudy":
        return data["Reaction"], data[["Days"]], data["Subject"], {"Subject": ["Days"]}
    if name == "insteval":
        return data["y"], data[["service"]], data[["s", "d", "dept"]], None
    if name == "crossed":
        return data["y"], data[["x"]], data[["subj", "item"]], {"subj": ["x"]}
    if name in ("kb07", "maximal_large"):  # a list of slopes applies to both factors
        return data["y"], data[_KB07_CONTRASTS], data[["subj", "item"]], list(_KB07_CONTRASTS)
    return data["y"], data[["x"]], data["g"], {"g": ["x"]}


def write_binary_columns(data, folder):
    """Write each column as raw native-endian numbers (float64 or int32) for R's readBin."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "n.txt"), "w") as f:
        f.write(str(len(data)))
    for col in data.columns:
        arr = data[col].to_numpy()
        arr = arr.astype(np.int32 if np.issubdtype(arr.dtype, np.integer) else np.float64)
        arr.tofile(os.path.join(folder, col + ".bin"))


# --------------------------------------------------------------------------- python fits

def fit_sklmm(name, data):
    """Fit the workload's model with sklmm by ML; return the estimator."""
    from sklmm import MixedLinearRegressor

    y, X, groups, slopes = model_arrays(name, data)
    return MixedLinearRegressor(random_slopes=slopes, reml=False).fit(X, y, groups=groups)


def _gpboost_inputs(name, data):
    y, X, groups, slopes = model_arrays(name, data)
    G = groups.to_frame() if isinstance(groups, pd.Series) else groups
    codes = np.column_stack([pd.factorize(G[c])[0] for c in G.columns])
    kw = {"group_data": codes}
    if slopes is not None:
        kw["group_rand_coef_data"] = X.to_numpy(dtype=float)
        kw["ind_effect_group_rand_coef"] = [1]  # slopes on the first grouping factor
    Xf = np.column_stack([np.ones(len(X)), X.to_numpy(dtype=float)])
    return y.to_numpy(dtype=float), Xf, kw


def _worker(tool, name, quick=False, data_path=None, repeats=1, params=None):
    """Body of one fresh subprocess: load the data, fit, report (see :func:`run_tool`)."""
    import warnings

    data = load_data(name, quick, data_path)
    caught = []
    if tool == "sklmm":
        import sklmm  # noqa: F401  (imported before timing)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds, est = median_time(lambda: fit_sklmm(name, data), repeats)
        emit_result(time=seconds, criterion=est.criterion_, n_iter=int(est.n_iter_),
                    solver=est.solver_, converged=bool(est.converged_),
                    theta=[float(t) for t in est.theta_])
    elif tool == "statsmodels":
        import statsmodels.formula.api as smf

        def fit():
            return smf.mixedlm("Reaction ~ Days", data, groups=data["Subject"],
                               re_formula="~Days").fit(reml=False)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds, res = median_time(fit, repeats)
        emit_result(time=seconds, criterion=-2.0 * float(res.llf), converged=bool(res.converged))
    elif tool == "gpboost":
        import gpboost as gpb

        y, Xf, kw = _gpboost_inputs(name, data)

        def fit():
            model = gpb.GPModel(likelihood="gaussian", **kw)
            model.fit(y=y, X=Xf)
            return model

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds, model = median_time(fit, repeats)
        n_cov = kw["group_data"].shape[1] + 1 + ("group_rand_coef_data" in kw)
        cov_pars = np.ravel(model.get_cov_pars().to_numpy())[:n_cov]
        coef = np.ravel(model.get_coef().to_numpy())[:Xf.shape[1]]
        emit_result(time=seconds, criterion_reported=2.0 * model.get_current_neg_log_likelihood(),
                    cov_pars=[float(v) for v in cov_pars], coef=[float(v) for v in coef])
    elif tool == "gpboost_eval":
        # -2 x the exact (Cholesky) log-likelihood at GPBoost's estimates.
        import gpboost as gpb

        y, Xf, kw = _gpboost_inputs(name, data)
        model = gpb.GPModel(likelihood="gaussian", matrix_inversion_method="cholesky", **kw)
        nll = model.neg_log_likelihood(cov_pars=np.asarray(params["cov_pars"]), y=y,
                                       fixed_effects=Xf @ np.asarray(params["coef"]))
        emit_result(criterion=2.0 * float(nll))
    else:
        raise ValueError(tool)
    if tool != "gpboost_eval":
        emit_result(warnings=sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                                     for w in caught}))


def run_tool(tool, name, quick=False, data_path=None, repeats=1, params=None, timeout=None):
    """Run :func:`_worker` in a fresh Python process; return its report plus ``peak_mb``.

    ``"warnings"`` in the report lists the Python warnings of the fits and the lines that
    GPBoost itself printed as ``[Warning]``.
    """
    kwargs = dict(tool=tool, name=name, quick=quick, data_path=data_path, repeats=repeats,
                  params=params)
    code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
            f"import bench_mixed\nbench_mixed._worker(**{kwargs!r})\n")
    out = run_python(code, timeout=timeout, keep_output=True)
    printed = sorted({ln.strip()[:160] for ln in out.pop("output") if "[Warning]" in ln})
    out["warnings"] = out.get("warnings", []) + printed
    return out


# --------------------------------------------------------------------------- R

_R_READ = {
    "sleepstudy": "d <- read.csv(p)",
    "insteval": 'd <- read.csv(p, colClasses = c(s = "character", d = "character", '
                'dept = "character"))',
    "crossed": """n <- as.integer(readLines(file.path(p, "n.txt")))
rd <- function(nm, what, size) readBin(file.path(p, paste0(nm, ".bin")), what, n = n, size = size)
d <- data.frame(y = rd("y", "double", 8), x = rd("x", "double", 8),
                subj = factor(rd("subj", "integer", 4)),
                item = factor(rd("item", "integer", 4)))""",
    "large": """n <- as.integer(readLines(file.path(p, "n.txt")))
rd <- function(nm, what, size) readBin(file.path(p, paste0(nm, ".bin")), what, n = n, size = size)
d <- data.frame(y = rd("y", "double", 8), x = rd("x", "double", 8),
                g = factor(rd("g", "integer", 4)))""",
}
_R_READ["kb07"] = _R_READ["maximal_large"] = """n <- as.integer(readLines(file.path(p, "n.txt")))
rd <- function(nm, what, size) readBin(file.path(p, paste0(nm, ".bin")), what, n = n, size = size)
d <- data.frame(y = rd("y", "double", 8), spkr = rd("spkr", "double", 8),
                prec = rd("prec", "double", 8), load = rd("load", "double", 8),
                subj = factor(rd("subj", "integer", 4)),
                item = factor(rd("item", "integer", 4)))"""

R_TEMPLATE = """\
suppressPackageStartupMessages(library(lme4))
p <- commandArgs(trailingOnly = TRUE)[1]
{read}
times <- numeric({repeats})
for (i in seq_along(times))
  times[i] <- system.time(f <- lmer({formula}, data = d, REML = FALSE))[["elapsed"]]
msgs <- c(f@optinfo$conv$lme4$messages, unlist(f@optinfo$warnings))
cat(jsonlite::toJSON(list(time = median(times), criterion = deviance(f),
                          theta = unname(getME(f, "theta")), feval = f@optinfo$feval,
                          messages = if (length(msgs)) msgs else character(0)),
                     auto_unbox = TRUE, digits = NA), "\\n")
"""


def r_messages(out):
    """lme4's convergence messages from :func:`run_lme4`'s dict, as "; "-prefixed text."""
    msgs = out.get("messages") or []
    if isinstance(msgs, str):  # toJSON(auto_unbox = TRUE) unboxes a single message
        msgs = [msgs]
    return "".join("; " + " ".join(m.split()) for m in msgs)


def run_lme4(name, data_path, formula, repeats=1, timeout=TIMEOUT, memory_limit_mb=None):
    """Fit ``formula`` with lme4 in a fresh Rscript; return run_r's dict (time, criterion...)."""
    script = R_TEMPLATE.format(read=_R_READ[name], repeats=repeats, formula=formula)
    return run_r(script, data_path, timeout=timeout, memory_limit_mb=memory_limit_mb)


# --------------------------------------------------------------------------- driver



def write_insteval_csv(path):
    """lme4's InstEval as a CSV (y, service as 0/1, s, d, dept as labels), written by Rscript."""
    subprocess.run(["Rscript", "-e", 'd <- lme4::InstEval; write.csv(data.frame('
                    'y = d$y, service = as.numeric(d$service == "1"), '
                    's = as.character(d$s), d = as.character(d$d), '
                    'dept = as.character(d$dept)), commandArgs(TRUE)[1], '
                    'row.names = FALSE)', path], check=True)
    return path


def run_workload(name, quick=False, have_r=True, log=print):
    """Fit one workload with every tool; return a list of row dicts for the table."""
    spec = workload_spec(name, quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # ---- data for R (and for InstEval, for Python too)
        data_path = None
        if name == "insteval":
            if not have_r:
                log("insteval: needs Rscript with lme4 for the data; skipped")
                return rows
            data_path = write_insteval_csv(os.path.join(tmp, "insteval.csv"))
        elif have_r:
            data = load_data(name, quick)
            if name == "sleepstudy":
                data_path = os.path.join(tmp, "sleepstudy.csv")
                data.to_csv(data_path, index=False, float_format="%.17g")
            else:
                data_path = os.path.join(tmp, name)
                write_binary_columns(data, data_path)
            del data

        # ---- lme4
        lme4 = None
        if have_r:
            log(f"{name}: lme4 ...")
            try:
                lme4 = run_lme4(name, data_path, spec["formula"], spec["repeats"]["lme4"],
                                memory_limit_mb=R_MEMORY_LIMIT_MB if name == "large" else None)
                note = f"{lme4['feval']} evals" + r_messages(lme4)
                rows.append(dict(tool=_label("lme4 lmer", spec["repeats"]["lme4"]),
                                 time=lme4["time"], criterion=lme4["criterion"],
                                 peak_mb=lme4["peak_mb"], notes=note))
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                rows.append(dict(tool="lme4 lmer", time=None, criterion=None, peak_mb=None,
                                 notes=describe_failure(exc, TIMEOUT)))
                log(f"{name}: lme4 {rows[-1]['notes']}")
        ref_uncorr, ref_uncorr_from = None, None
        if have_r and spec["formula_uncorrelated"] and "gpboost" in spec["tools"]:
            log(f"{name}: lme4 uncorrelated (reference for GPBoost) ...")
            try:
                ref_uncorr = run_lme4(name, data_path, spec["formula_uncorrelated"])["criterion"]
                ref_uncorr_from = "lme4 " + spec["formula_uncorrelated"].split("~")[1].strip()
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                log(f"{name}: lme4 uncorrelated {describe_failure(exc, TIMEOUT)}")
        ref = lme4["criterion"] if lme4 else None

        # ---- Python tools, each in a fresh process
        py_path = data_path if name == "insteval" else None
        for tool in spec["tools"]:
            log(f"{name}: {tool} ...")
            if tool in spec.get("unsupported", {}):
                label = {"statsmodels": "statsmodels MixedLM", "gpboost": "GPBoost GPModel"}[tool]
                rows.append(dict(tool=label, time=None, criterion=None, peak_mb=None,
                                 notes=spec["unsupported"][tool]))
                continue
            reps = spec["repeats"][tool]
            try:
                out = run_tool(tool, name, quick, py_path, reps,
                               timeout=None if tool == "sklmm" else TIMEOUT)
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                label = {"sklmm": "sklmm", "statsmodels": "statsmodels MixedLM",
                         "gpboost": "GPBoost GPModel"}[tool]
                rows.append(dict(tool=label, time=None, criterion=None, peak_mb=None,
                                 notes=describe_failure(exc, TIMEOUT)))
                log(f"{name}: {tool} {rows[-1]['notes']}")
                continue
            warn = "; ".join(out.get("warnings", []))
            if tool == "sklmm":
                note = (f"solver={out['solver']}, {out['n_iter']} evals"
                        + ("" if out["converged"] else ", NOT converged"))
                if ref is not None and abs(out["criterion"] - ref) > 1e-6 * abs(ref):
                    note += f"; differs from lme4 by {out['criterion'] - ref:+.3g} (> 1e-6 rel)"
                rows.append(dict(tool=_label("sklmm MixedLinearRegressor", reps),
                                 time=out["time"], criterion=out["criterion"],
                                 peak_mb=out["peak_mb"],
                                 notes=note + (f"; {warn}" if warn else "")))
            elif tool == "statsmodels":
                note = "same model" + ("" if out["converged"] else ", NOT converged")
                rows.append(dict(tool=_label("statsmodels MixedLM", reps), time=out["time"],
                                 criterion=out["criterion"], peak_mb=out["peak_mb"],
                                 notes=note + (f"; {warn}" if warn else "")))
            else:
                rows.append(_gpboost_row(name, quick, py_path, spec, reps, out, ref_uncorr,
                                         ref_uncorr_from, log))
        for r in rows:
            crit, base = r["criterion"], r.pop("ref", ref)
            r["diff"] = None if crit is None or base is None else (crit - base) / abs(base)
            r["workload"] = spec["label"]
    return rows


def _gpboost_row(name, quick, py_path, spec, reps, out, ref_uncorr, ref_uncorr_from, log):
    uncorr = spec["formula_uncorrelated"] is not None
    model = ("fits " + spec["formula_uncorrelated"].split("~")[1].strip()
             + " (no slope-intercept correlation)") if uncorr else "same model"
    exact = None
    try:
        exact = run_tool("gpboost_eval", name, quick, py_path, params=out,
                         timeout=TIMEOUT)["criterion"]
    except (subprocess.TimeoutExpired, RuntimeError) as exc:
        log(f"{name}: gpboost exact evaluation {describe_failure(exc, TIMEOUT)}")
    reported = out["criterion_reported"]
    crit = exact if exact is not None else reported
    note = model
    if exact is None:
        note += "; criterion = its own 2 x neg. log-likelihood"
    elif abs(reported - exact) > 1e-4:
        note += (f"; criterion = exact deviance at its estimates (its own 2 x neg. "
                 f"log-likelihood: {reported:.12g}, an approximation)")
    else:
        note += "; criterion = its own 2 x neg. log-likelihood (exact)"
    row = dict(tool=_label("GPBoost GPModel", reps), time=out["time"], criterion=crit,
               peak_mb=out["peak_mb"], notes=note)
    if uncorr:
        if ref_uncorr is not None:
            row["ref"] = ref_uncorr
            row["notes"] += (f"; 'vs lme4' compares with {ref_uncorr_from} "
                             f"(deviance {ref_uncorr:.12g})")
        else:
            row["ref"] = None
    if out.get("warnings"):
        row["notes"] += "; " + "; ".join(out["warnings"])
    return row


def _label(tool, repeats):
    return tool + (f" (median of {repeats})" if repeats > 1 else "")


def table(rows):
    """Markdown table of the rows from :func:`run_workload`."""
    def esc(text):
        return None if text is None else str(text).replace("|", "\\|")

    return markdown_table([{
        "workload": esc(r["workload"]), "tool": r["tool"],
        "time (s)": fmt(r["time"], ".3g"),
        "criterion (ML deviance)": fmt(r["criterion"], ".12g"),
        "vs lme4 (relative)": fmt(r["diff"], "+.1e"),
        "peak memory (MB)": fmt(r["peak_mb"], ".0f"),
        "notes": esc(r["notes"] or "")} for r in rows])


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small versions: crossed 50k rows, large 200k rows, "
                             "maximal_large 60 x 40, 1-3 repeats")
    parser.add_argument("--only", action="append", choices=WORKLOADS,
                        help="run only this workload (repeatable)")
    parser.add_argument("--no-r", action="store_true", help="skip lme4")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    have_r = not args.no_r and r_available(["lme4"])
    commit = git_commit()
    rows = []
    for name in args.only or WORKLOADS:
        rows += run_workload(name, args.quick, have_r,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    info = machine_info(r_packages=("lme4", "Matrix"), python_packages=("statsmodels", "gpboost"))
    moved = "" if commit == git_commit() else f" (HEAD moved to {git_commit()} during the run)"
    report(table(rows), info, args.output, commit=commit + moved)


if __name__ == "__main__":
    main()
