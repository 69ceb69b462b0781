"""The REML search over the theta of models with smooth terms (mgcv's smoothing parameters).

A smooth's criterion changes with the ratio of its theta, not with its difference, and can have
several local minima: :func:`search_smooths` searches on the log scale (:func:`_bobyqa_log_smooths`),
probes heavily penalized smooths inside (:func:`_probe_smooth_interiors`,
:func:`~sklmm._engine.checks.interior_probe`) and, where an evaluation is cheap, searches a second
time from the less penalized side. :func:`~sklmm._engine.fit.fit_cross_products` calls it for
models with smooths; the convergence checks follow as for any model.
"""

from __future__ import annotations

import numpy as np

from . import optimize
from .checks import interior_probe

__all__ = ["search_smooths", "SECOND_START_SIDE", "WARM_STEP"]

#: a warm start's first steps, relative to theta (the fit's own restarts use it too)
WARM_STEP = 0.05


#: a smooth's theta is searched as log(theta) within these bounds (relative to its unit) ...
LOG_THETA_BOUNDS = (-25.0, 15.0)
#: ... and, ended below this (relative to its unit), tried at 0 (the smooth's null space alone)
LOG_THETA_SNAP = 1e-3


def _bobyqa_log_smooths(objective, x0, lower, step, scale, logs, max_iter, callback):
    """BOBYQA with the smooths' theta (``logs``) searched on the log scale, the others as they
    are; the result in theta. A smooth's criterion changes with the ratio of its theta, not
    with its difference, and its optimum may be orders of magnitude from the start: a
    population smooth beside a factor-smooth interaction ends at 40 times its start, which
    BOBYQA's trust region reaches in 742 evaluations on the linear scale and 109 on the log
    scale (mgcv searches log smoothing parameters alike). A theta ended below
    :data:`LOG_THETA_SNAP` of its unit is tried at 0, its bound (BOBYQA stops where the
    criterion no longer changes, short of it), and kept there when no worse; then BOBYQA on the
    linear scale finishes from there in small steps (the linear search's tolerances, and 0
    within reach)."""
    lo, hi = LOG_THETA_BOUNDS
    floor = scale * np.exp(lo)

    def to_theta(z):
        return np.where(logs, np.exp(np.clip(z, lo + np.log(scale), hi + np.log(scale))), z)

    z0 = np.where(logs, np.log(np.maximum(x0, floor)), x0)
    zl = np.where(logs, lo + np.log(scale), lower)
    zu = np.where(logs, hi + np.log(scale), np.inf)
    zstep = np.where(logs, 1.0, step)
    summ = optimize.minimize_bobyqa(lambda z: objective(to_theta(z)), z0, zl, upper=zu, max_evals=max_iter,
                                    callback=None if callback is None else (lambda i, z, f: callback(i, to_theta(z), f)),
                                    initial_step=zstep, xtol_abs=np.where(logs, 1e-10, 1e-10 * scale))
    theta, n_evals = to_theta(np.asarray(summ.final)), summ.n_evals
    low = logs & (theta <= LOG_THETA_SNAP * scale)
    if n_evals < max_iter and low.any() and np.isfinite(summ.fmin):
        n_evals += 1
        f0 = objective(np.where(low, 0.0, theta))
        if f0 <= summ.fmin:
            theta, summ.fmin = np.where(low, 0.0, theta), f0
    if n_evals >= max_iter:  # the budget spent: the log scale's result, its status and all
        summ.final, summ.initial, summ.lower, summ.n_evals = theta, x0.copy(), lower, n_evals
        return summ
    # then the search on the linear scale from there, in small steps: theta at 0 (a bound)
    # is reached there, and the end does not depend on the log scale's path
    polish = optimize.minimize_bobyqa(objective, theta, lower, max_evals=max_iter - n_evals,
                                      callback=callback, xtol_abs=1e-10 * scale,
                                      initial_step=np.maximum(WARM_STEP * np.abs(theta), 0.01 * scale))
    polish.initial, polish.n_evals = x0.copy(), polish.n_evals + n_evals
    return polish


#: models with at least this many smooths' theta, whose whole PLS system is at most this wide
#: (an evaluation costs microseconds; not a GAMM with a large grouping factor), are searched a
#: second time from the smooths' theta times SECOND_START, the less penalized side (the lower
#: optimum kept)
SECOND_START_SMOOTHS, SECOND_START_SIDE, SECOND_START = 2, 300, 3.0

#: restarts of the search from a better point that :func:`~sklmm._engine.checks.interior_probe` found
INTERIOR_RESTARTS = 3


def _probe_smooth_interiors(objective, summ, lower, step, scale, logs, max_iter, callback):
    """The log-scale search of :func:`_bobyqa_log_smooths` restarted while a heavily penalized
    smooth (theta below :data:`~sklmm._engine.checks.INTERIOR_BELOW` of its unit) has a better
    point at a smaller lambda (:func:`~sklmm._engine.checks.interior_probe`).

    A smooth's REML criterion can have a local minimum at a large lambda (up to lambda = inf: the
    straight line, or a tensor product margin's null space) beside a lower basin at a much
    smaller one, with a ridge between: from theta = 1 the search can slide into the first, from
    where neither it nor the convergence checks (which look at the slope there) see the other
    (six smooths and two ti terms on 120 rows: 6.3 above mgcv's optimum). The search restarts
    from the probe's point when it is lower, at most :data:`INTERIOR_RESTARTS` times. mgcv's
    Newton iteration, from its own initial smoothing parameters, is as exposed to such basins.
    """
    for _ in range(INTERIOR_RESTARTS):
        if not np.isfinite(summ.fmin):
            return summ
        best, n_probe = interior_probe(objective, summ.final, summ.fmin, logs, scale, budget=max_iter - summ.n_evals)
        summ.n_evals += n_probe
        if best is None:
            return summ
        again = _bobyqa_log_smooths(objective, best, lower, step, scale, logs, max_iter - summ.n_evals, callback)
        again.n_evals += summ.n_evals
        again.initial = summ.initial
        if not again.fmin < summ.fmin:
            summ.n_evals = again.n_evals
            return summ
        summ = again
    return summ


def search_smooths(objective, start, lower, step, scale, logs, max_iter, callback, second_start=True):
    """The optimizer's summary for a model whose positions ``logs`` of theta are smooths': the
    log-scale search with interior probes from ``start``, and with ``second_start`` (and at
    least :data:`SECOND_START_SMOOTHS` smooths) a second one from the smooths' theta times
    :data:`SECOND_START`, the lower optimum kept (40 random six-smooth models: 8 ended above
    mgcv's optimum with neither, 3 with the probes, 1 with both; docs/gam.md, "Several optima")."""
    summ = _bobyqa_log_smooths(objective, start, lower, step, scale, logs, max_iter, callback)
    summ = _probe_smooth_interiors(objective, summ, lower, step, scale, logs, max_iter, callback)
    if not (second_start and np.sum(logs) >= SECOND_START_SMOOTHS and summ.n_evals < max_iter):
        return summ
    x1 = np.where(logs, SECOND_START * start, start)
    other = _bobyqa_log_smooths(objective, x1, lower, step, scale, logs, max_iter - summ.n_evals, callback)
    other.n_evals += summ.n_evals
    other = _probe_smooth_interiors(objective, other, lower, step, scale, logs, max_iter, callback)
    if other.converged and other.fmin < summ.fmin:
        other.initial = summ.initial
        return other
    summ.n_evals = other.n_evals
    return summ
