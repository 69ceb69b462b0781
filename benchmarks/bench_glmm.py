"""Benchmark: binomial and Poisson GLMMs (Laplace), sklmm against lme4::glmer in the same run.

Workloads (glmer's defaults: Laplace approximation, ``nAGQ = 1``; the same formula in both):

* ``cbpp``: ``cbind(incidence, size - incidence) ~ period + (1 | herd)``, binomial, 56 rows
  (``load_cbpp``; sklmm's ``from_formula`` turns ``cbind`` into two case-weighted rows per
  observation).
* ``grouseticks``: ``TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)``,
  Poisson, 403 rows, HEIGHT centred (``HEIGHT - mean(HEIGHT)``) in both.
* ``contraception``: ``use ~ age + I(age^2) + livch + urban + (1 | district)``, binomial,
  1,934 rows.
* ``verbagg``: ``r2 ~ Anger + Gender + btype + situ + mode + (1 | id) + (1 | item)``, binomial,
  7,584 rows, 316 x 24 crossed levels.
* ``crossed``: simulated (seed 1), 200,000 rows, 5,000 subjects, 200 items, each row a random
  subject and item; ``eta = -0.5 + 0.8 x + u[subj] + w[item]``, ``x, u ~ N(0, 1)``,
  ``w ~ N(0, 0.5^2)``, ``y ~ Bernoulli(logistic(eta))``; ``y ~ x + (1 | subj) + (1 | item)``.

R fits the same rows: every workload's data frame is written by Python to a CSV in a temporary
folder (with the factor levels in sklmm's order, which is R's), and read back by Rscript.
sklmm runs in a fresh subprocess that loads the data and times ``from_formula`` (the median of
the repeats); glmer is timed inside R around the ``glmer`` call. Both times include turning the
formula into model matrices.

The criterion is ``-2 log L`` at the optimum: sklmm's ``criterion_``, lme4's
``-2 * logLik(fit)``. For ``cbpp`` sklmm's likelihood of the case-weighted rows lacks lme4's
binomial coefficients ``sum(lchoose(size, incidence))`` (a positive log-likelihood term), so
``-2 * logLik`` of lme4 is sklmm's ``criterion_`` minus ``2 * sum(lchoose(size, incidence))``;
the table shows sklmm's value with that constant subtracted (and says so). "glmer warned"
reports the convergence warnings of glmer's last fit (``optinfo$conv$lme4$messages`` and any
``warning()`` raised); a "boundary (singular) fit" message is noted but is not a convergence
warning.

Run ``python benchmarks/bench_glmm.py`` (``--quick`` for a 20,000-row ``crossed`` and single
repeats, ``--only NAME`` for one workload, ``--no-r`` to skip glmer, ``--output FILE`` to also
write the markdown table to a file).
"""
import argparse
import json
import math
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
TIMEOUT = 1800  # seconds, for every glmer run
WORKLOADS = ("cbpp", "grouseticks", "contraception", "verbagg", "crossed")


# --------------------------------------------------------------------------- data

def simulate_binary_crossed(n_rows, n_subjects, n_items, seed=SEED):
    """Binary responses with crossed random intercepts for subjects and items.

    ``eta = -0.5 + 0.8 x + u[subj] + w[item]`` with ``x, u ~ N(0, 1)``, ``w ~ N(0, 0.5^2)``;
    ``y ~ Bernoulli(1 / (1 + exp(-eta)))``; every row draws its subject and its item
    uniformly.

    Returns
    -------
    DataFrame
        Columns ``y`` (0/1 float64), ``x`` (float64), ``subj``, ``item`` (int32 codes).
    """
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, n_subjects, n_rows).astype(np.int32)
    item = rng.integers(0, n_items, n_rows).astype(np.int32)
    x = rng.normal(size=n_rows)
    u = rng.normal(size=n_subjects)
    w = rng.normal(0.0, 0.5, size=n_items)
    eta = -0.5 + 0.8 * x + u[subj] + w[item]
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    return pd.DataFrame({"y": y, "x": x, "subj": subj, "item": item})


def workload_spec(name, quick=False):
    """Formula, family, size and repeats of one workload.

    Returns
    -------
    dict
        ``label`` (for the table), ``formula`` (the same for lme4 and sklmm), ``family``
        (``"binomial"`` or ``"poisson"``), ``repeats`` per tool, and ``r_prep``: R code run on
        ``d`` after it is read (the same transformation :func:`load_data` made in Python).
    """
    reps = 1 if quick else 3
    if name == "cbpp":
        return dict(label="cbpp, binomial cbind, n=56", family="binomial", r_prep="",
                    formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    repeats={"sklmm": reps, "glmer": reps})
    if name == "grouseticks":
        return dict(label="grouseticks, Poisson, 3 crossed intercepts, n=403", family="poisson",
                    formula="TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                    r_prep="d$HEIGHT <- d$HEIGHT - mean(d$HEIGHT)",
                    repeats={"sklmm": reps, "glmer": reps})
    if name == "contraception":
        return dict(label="Contraception, binomial, n=1,934", family="binomial", r_prep="",
                    formula="use ~ age + I(age^2) + livch + urban + (1 | district)",
                    repeats={"sklmm": reps, "glmer": reps})
    if name == "verbagg":
        return dict(label="VerbAgg, binomial, (1|id)+(1|item), n=7,584", family="binomial",
                    formula="r2 ~ Anger + Gender + btype + situ + mode + (1 | id) + (1 | item)",
                    r_prep="", repeats={"sklmm": reps, "glmer": 1})
    if name == "crossed":
        n = 20_000 if quick else 200_000
        n_subj = n // 40
        return dict(label=f"simulated binary, (1|subj)+(1|item), n={n:,}, {n_subj:,} x 200",
                    family="binomial", formula="y ~ x + (1 | subj) + (1 | item)", n=n,
                    n_subjects=n_subj, n_items=200,
                    r_prep="d$subj <- factor(d$subj); d$item <- factor(d$item)",
                    repeats={"sklmm": 1, "glmer": 1})
    raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")


def load_data(name, quick=False):
    """The workload's data frame, as both tools fit it (grouseticks' HEIGHT centred)."""
    from sklmm import datasets

    if name == "cbpp":
        return datasets.load_cbpp()
    if name == "grouseticks":
        d = datasets.load_grouseticks()
        return d.assign(HEIGHT=d["HEIGHT"] - d["HEIGHT"].mean())
    if name == "contraception":
        return datasets.load_contraception()
    if name == "verbagg":
        return datasets.load_verbagg()
    spec = workload_spec(name, quick)
    return simulate_binary_crossed(spec["n"], spec["n_subjects"], spec["n_items"])


def binomial_constant(name, data):
    """``2 * sum(log choose(size, incidence))`` for cbpp (lme4's binomial coefficients), else 0."""
    if name != "cbpp":
        return 0.0
    return 2.0 * sum(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                     for n, k in zip(data["size"], data["incidence"]))


def write_for_r(name, data, folder):
    """Write the frame R fits: ``data.csv`` (numbers at full precision) and ``levels.json``
    (the categories of every category column, R's factor levels in R's order)."""
    os.makedirs(folder, exist_ok=True)
    cats = {c: [str(v) for v in data[c].cat.categories] for c in data.columns
            if isinstance(data[c].dtype, pd.CategoricalDtype)}
    data.to_csv(os.path.join(folder, "data.csv"), index=False, float_format="%.17g")
    with open(os.path.join(folder, "levels.json"), "w") as f:
        json.dump(cats, f)


# --------------------------------------------------------------------------- sklmm

def fit_sklmm(name, data, quick=False):
    """Fit the workload's formula with sklmm (Laplace); return the estimator."""
    from sklmm import MixedLogisticRegression, MixedPoissonRegressor

    spec = workload_spec(name, quick)
    cls = MixedPoissonRegressor if spec["family"] == "poisson" else MixedLogisticRegression
    return cls.from_formula(spec["formula"], data)


def _worker(name, quick=False, repeats=1):
    """Body of one fresh subprocess: load the data, fit ``repeats`` times, report."""
    import warnings

    import sklmm  # noqa: F401  (imported before timing)

    data = load_data(name, quick)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, est = median_time(lambda: fit_sklmm(name, data, quick), repeats)
    emit_result(time=seconds, criterion=float(est.criterion_), n_iter=int(est.n_iter_),
                n_passes=int(est.n_passes_), converged=bool(est.converged_),
                singular=bool(est.is_singular_), theta=[float(t) for t in est.theta_],
                fixef=[float(v) for v in est.fixed_effects_["estimate"]],
                constant=binomial_constant(name, data),
                warnings=sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                                 for w in caught}))


def run_sklmm(name, quick=False, repeats=1, timeout=None):
    """Run :func:`_worker` in a fresh Python process; return its report plus ``peak_mb``."""
    code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
            f"import bench_glmm\nbench_glmm._worker({name!r}, {quick!r}, {repeats!r})\n")
    return run_python(code, timeout=timeout)


# --------------------------------------------------------------------------- R

R_TEMPLATE = """\
suppressPackageStartupMessages(library(lme4))
p <- commandArgs(trailingOnly = TRUE)[1]
lv <- jsonlite::fromJSON(file.path(p, "levels.json"))
d <- read.csv(file.path(p, "data.csv"),
              colClasses = setNames(rep("character", length(lv)), names(lv)))
for (nm in names(lv)) d[[nm]] <- factor(d[[nm]], levels = lv[[nm]])
{prep}
times <- numeric({repeats})
for (i in seq_along(times)) {{
  warns <- character(0)
  notes <- character(0)
  times[i] <- system.time(f <- withCallingHandlers(
    glmer({formula}, data = d, family = {family}),
    warning = function(w) {{ warns <<- c(warns, conditionMessage(w))
                            invokeRestart("muffleWarning") }},
    message = function(m) {{ notes <<- c(notes, conditionMessage(m))
                            invokeRestart("muffleMessage") }}))[["elapsed"]]
}}
msgs <- unique(c(f@optinfo$conv$lme4$messages, warns))
cat(jsonlite::toJSON(list(time = median(times), times = times,
                          criterion = -2 * as.numeric(logLik(f)),
                          theta = unname(getME(f, "theta")), fixef = unname(fixef(f)),
                          feval = f@optinfo$feval, singular = isSingular(f),
                          messages = if (length(msgs)) msgs else character(0),
                          notes = if (length(notes)) trimws(notes) else character(0)),
                     auto_unbox = TRUE, digits = NA), "\\n")
"""


def run_glmer(name, data_path, quick=False, timeout=TIMEOUT):
    """Fit the workload with lme4::glmer in a fresh Rscript; return run_r's dict."""
    spec = workload_spec(name, quick)
    script = R_TEMPLATE.format(prep=spec["r_prep"], repeats=spec["repeats"]["glmer"],
                               formula=spec["formula"], family=spec["family"])
    return run_r(script, data_path, timeout=timeout)


def _as_list(v):
    """toJSON(auto_unbox = TRUE) unboxes a length-1 vector; box it again."""
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def glmer_warning(out):
    """"no", or "yes: ..." with glmer's convergence warnings (singular-fit notes excluded)."""
    msgs = [" ".join(m.split()) for m in _as_list(out.get("messages"))
            if "singular" not in m]
    return "yes: " + "; ".join(msgs) if msgs else "no"


# --------------------------------------------------------------------------- driver



def run_workload(name, quick=False, have_r=True, log=print):
    """Fit one workload with glmer and sklmm; return one row dict for the table."""
    spec = workload_spec(name, quick)
    row = dict(workload=spec["label"], formula=spec["formula"], reps=spec["repeats"],
               sk=None, r=None, notes=[])
    with tempfile.TemporaryDirectory() as tmp:
        if have_r:
            write_for_r(name, load_data(name, quick), tmp)
            log(f"{name}: glmer ...")
            try:
                row["r"] = run_glmer(name, tmp, quick)
            except (subprocess.TimeoutExpired, RuntimeError) as exc:
                row["notes"].append("glmer " + describe_failure(exc, TIMEOUT))
                log(f"{name}: {row['notes'][-1]}")
    log(f"{name}: sklmm ...")
    try:
        row["sk"] = run_sklmm(name, quick, spec["repeats"]["sklmm"])
    except (subprocess.TimeoutExpired, RuntimeError) as exc:
        row["notes"].append("sklmm " + describe_failure(exc, None))
        log(f"{name}: {row['notes'][-1]}")
    sk, r = row["sk"], row["r"]
    if sk is not None:
        if sk["constant"]:
            row["notes"].append(f"sklmm -2logL shown = criterion_ - 2*sum(lchoose(size, "
                                f"incidence)) = {sk['criterion']:.10g} - "
                                f"{sk['constant']:.10g}")
        if not sk["converged"]:
            row["notes"].append("sklmm NOT converged")
        if sk["singular"]:
            row["notes"].append("sklmm singular")
        row["notes"] += ["sklmm " + w for w in sk["warnings"]]
    if r is not None:
        row["notes"].append(f"glmer feval {r['feval']}")
        if r["singular"]:
            row["notes"].append("glmer singular")
        row["notes"] += ["glmer message: " + " ".join(m.split())
                         for m in _as_list(r.get("notes"))]
    if sk is not None and r is not None:
        fs, fr = np.asarray(sk["fixef"]), np.asarray(_as_list(r["fixef"]))
        ts, tr = np.asarray(sk["theta"]), np.asarray(_as_list(r["theta"]))
        if fs.shape == fr.shape and ts.shape == tr.shape:
            row["notes"].append(f"max |diff| fixef {np.max(np.abs(fs - fr)):.1e}, "
                                f"theta {np.max(np.abs(ts - tr)):.1e}")
    return row


def table(rows):
    """Markdown table of the rows from :func:`run_workload`."""
    def esc(text):
        return None if text is None else str(text).replace("|", "\\|")

    out = []
    for row in rows:
        sk, r = row["sk"] or {}, row["r"] or {}
        crit_sk = sk["criterion"] - sk["constant"] if sk else None
        crit_r = r.get("criterion")
        diff = None if crit_sk is None or crit_r is None else crit_sk - crit_r
        speed = (r["time"] / sk["time"]) if sk and r and sk["time"] > 0 else None
        out.append({
            "workload": esc(row["workload"]),
            "sklmm time (s)": fmt(sk.get("time"), ".3g"),
            "glmer time (s)": fmt(r.get("time"), ".3g"),
            "speed-up": None if speed is None else f"{speed:.2g}x",
            "sklmm -2logL": fmt(crit_sk, ".10f").rstrip("0") if crit_sk is not None else None,
            "glmer -2logL": fmt(crit_r, ".10f").rstrip("0") if crit_r is not None else None,
            "diff (sklmm - glmer)": fmt(diff, "+.2e"),
            "glmer warned": esc(glmer_warning(r)) if r else None,
            "n_iter_": sk.get("n_iter"), "n_passes_": sk.get("n_passes"),
            "peak MB (sklmm / glmer)": (None if not sk and not r else
                                        f"{fmt(sk.get('peak_mb'), '.0f') or 'n/a'} / "
                                        f"{fmt(r.get('peak_mb'), '.0f') or 'n/a'}"),
            "repeats (sklmm / glmer)": f"{row['reps']['sklmm']} / {row['reps']['glmer']}",
            "notes": esc("; ".join(row["notes"]))})
    return markdown_table(out)


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="crossed with 20,000 rows, one repeat everywhere")
    parser.add_argument("--only", action="append", choices=WORKLOADS,
                        help="run only this workload (repeatable)")
    parser.add_argument("--no-r", action="store_true", help="skip lme4::glmer")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    have_r = not args.no_r and r_available(["lme4"])
    commit = git_commit()
    rows = [run_workload(name, args.quick, have_r,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
            for name in args.only or WORKLOADS]
    text = table(rows)
    text += ("\n\n-2logL: sklmm's criterion_ and lme4's -2*logLik(fit) (Laplace). For cbpp, "
             "lme4's log-likelihood includes the binomial coefficients sum(lchoose(size, "
             "incidence)), which sklmm's case-weighted likelihood omits, so sklmm's value "
             "is shown as criterion_ - 2*sum(lchoose(size, incidence)). diff < 0: sklmm "
             "found a better optimum. speed-up = glmer time / sklmm time. Times are medians of "
             "the repeats; sklmm's include from_formula's model matrices, glmer's its "
             "model frame.")
    info = machine_info(r_packages=("lme4", "Matrix"))
    moved = "" if commit == git_commit() else f" (HEAD moved to {git_commit()} during the run)"
    report(text, info, args.output, commit=commit + moved)


if __name__ == "__main__":
    main()
