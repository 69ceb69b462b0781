"""Profile-likelihood intervals (lme4 ``confint(method = "profile")``)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular
from scipy.optimize import brentq

from .._engine.criteria import deviance_theta_sigma, profiled_criterion
from .._engine.fit import _refit
from .._engine.optimize import minimize_bobyqa
from .._engine.system import Factorization
from .covariance import _fixed_cov_unscaled, _restore
from .parameters import (
    parameter_names,
    same_in_both_charts,
    sdcor_from_theta,
    sdcor_of_fit,
    theta_from_sdcor,
    theta_units,
)

__all__ = ["profile_intervals"]


def _bracket_root(g, x0, step, limit, target):
    """Walk from x0 by doubling steps towards ``limit`` until ``g >= target``; the bracket or None."""
    prev = x0
    for _ in range(60):
        x = x0 + step
        if (limit is not None) and ((step > 0 and x >= limit) or (step < 0 and x <= limit)):
            x = limit
        if g(x) >= target:
            return prev, x
        if x == limit:
            return None
        prev, step = x, 2.0 * step
    return None


def _interval_side(g, est, step, limit, target, xtol):
    """Where the profile ``g`` (0 at est) reaches ``target`` on one side; ``limit`` if never.

    ``g`` is remembered at each point: a profile is an inner optimization from a warm start,
    whose value at a point moves with the start by its tolerance, and the root finder must see
    the bracket's ends as the bracketing saw them (else 'f(a) and f(b) must have different
    signs')."""
    seen = {}

    def remembered(v):
        if v not in seen:
            seen[v] = g(v)
        return seen[v]

    br = _bracket_root(remembered, est, step, limit, target)
    if br is None:
        return limit if limit is not None else np.nan
    a, b = br
    return brentq(lambda v: remembered(v) - target, a, b, xtol=xtol, rtol=1e-10)


def _profile_sdcor(fit, j, cutoff):
    """Profile interval for variance parameter j (sd, cor or sigma) by root finding on zeta.

    The other parameters are optimized in the engine's chart where parameter j has the same
    value in both (a term fitted in centred coordinates is well conditioned there), else in the
    user's: a centred term's intercept at x = 0, far from the data, nearly collinear with its
    slope, whose profile is as hard to compute as lme4 finds it."""
    terms = fit.terms
    user = not same_in_both_charts(terms)[j]
    psi_hat = sdcor_from_theta(terms, fit.theta, fit.sigma, user=user)
    names = parameter_names(terms)
    is_cor = np.array([nm.startswith("cor_") for nm in names])
    m = len(psi_hat)
    free = np.array([i for i in range(m) if i != j], dtype=np.intp)
    # each sd in its natural unit: sigma times its coefficient's unit (a slope on a column of
    # scale 1e90 has an sd of order 1e-90), so that steps and tolerances follow any rescaling
    natural = fit.sigma * np.append(theta_units(fit), 1.0)
    scale = np.where(is_cor, 1.0, np.maximum(np.abs(psi_hat), 1e-3 * natural))
    lower = np.where(is_cor, -1.0, 0.0)
    lower[-1] = 1e-8 * fit.sigma
    upper = np.where(is_cor, 1.0, np.inf)
    dev_min = fit.criterion
    warm = {"x": psi_hat[free] / scale[free]}

    def prof(v):
        psi = psi_hat.copy()
        psi[j] = v

        def f(x):
            psi[free] = x * scale[free]
            ts = theta_from_sdcor(terms, psi, user=user)
            return np.inf if ts is None else deviance_theta_sigma(fit, *ts)

        if len(free) == 0:
            return f(np.zeros(0)) - dev_min
        x0 = np.clip(warm["x"], lower[free] / scale[free], upper[free] / scale[free])
        res = minimize_bobyqa(f, x0, lower[free] / scale[free], upper=upper[free] / scale[free],
                              ftol_rel=1e-10, ftol_abs=1e-9, xtol_abs=1e-8, max_evals=4000,
                              initial_step=np.full(len(free), 0.05))
        warm["x"] = res.final
        return res.fmin - dev_min

    def zeta2(v):
        return max(prof(v), 0.0)

    target = cutoff**2
    est = psi_hat[j]
    if is_cor[j]:
        lo_lim, hi_lim, step = -1.0, 1.0, 0.1
    else:
        lo_lim, hi_lim = (0.0 if j < m - 1 else None), None
        step = 0.25 * max(est, 0.05 * natural[j])
    xtol = 1e-6 * (1.0 if is_cor[j] else max(est, natural[j]))
    try:
        hi = _interval_side(zeta2, est, step, hi_lim, target, xtol)
        warm["x"] = psi_hat[free] / scale[free]
        if j == m - 1:  # sigma: approach 0 geometrically
            lo = _interval_side(lambda v: zeta2(np.exp(v)), np.log(est), -0.1, None, target, 1e-7)
            lo = float(np.exp(lo))
        else:
            lo = est if (est <= 0 and not is_cor[j]) else _interval_side(zeta2, est, -step, lo_lim, target, xtol)
    finally:
        _restore(fit)
    return lo, hi


def _profile_beta(fit, jk, cutoff):
    """Profile interval of the kept fixed effect ``jk``: beta_j held fixed, theta re-optimized.

    With theta fixed the residual sum of squares is quadratic in beta_j:
    ``r^2(b) = r^2 + (b - beta_j(theta))^2 / c_jj(theta)``, ``c = (R_X'R_X)^{-1}``, and the
    REML log-determinant of the other columns is ``log|R_X|^2 + log c_jj``; so each value of the
    profile is one optimization over theta on the fitted factorization.
    """
    n, p, reml = fit.n, fit.cp.p, fit.reml
    lower = np.concatenate([t.theta_lower() for t in fit.terms]) if fit.terms else np.zeros(0)
    unit = theta_units(fit)
    warm = {"x": fit.theta.copy()}

    def crit(theta, b):
        fz = fit.factor.update(theta)
        if fz is None:
            return np.inf
        LX, ly = fit.factor.fixed_part()
        beta = solve_triangular(LX, ly, lower=True, trans="T")
        e = np.zeros(p)
        e[jk] = 1.0
        w = solve_triangular(LX, e, lower=True)
        c = float(w @ w)
        # the profiled criterion of the model with p - 1 fixed columns and the offset b x_j
        reduced = Factorization(fz.logdet_L2, fz.logdet_RX2 + np.log(c), fz.r2 + (b - beta[jk]) ** 2 / c)
        return profiled_criterion(reduced, n, p - 1, reml, fit.cp.sum_log_weights)

    dev_min = crit(fit.theta, fit.beta[fit.keep[jk]])

    def zeta2(b):
        if len(lower) == 0:
            return max(crit(np.zeros(0), b) - dev_min, 0.0)
        # theta in its natural units (see satterthwaite_df), so the steps follow any rescaling
        res = minimize_bobyqa(lambda z: crit(z * unit, b), warm["x"] / unit, lower, ftol_rel=1e-10,
                              ftol_abs=1e-9, xtol_abs=1e-8, max_evals=4000,
                              initial_step=np.full(len(lower), 0.05))
        res.final = res.final * unit
        warm["x"] = res.final
        return max(res.fmin - dev_min, 0.0)

    est = fit.beta[fit.keep[jk]]
    se = fit.sigma * np.sqrt(_fixed_cov_unscaled(fit.factor)[jk, jk])
    try:
        hi = _interval_side(zeta2, est, se, None, cutoff**2, 1e-7 * se)
        warm["x"] = fit.theta.copy()
        lo = _interval_side(zeta2, est, -se, None, cutoff**2, 1e-7 * se)
    finally:
        _restore(fit)
    return lo, hi


def profile_intervals(fit, fe_names, level):
    """lme4's ``confint(method = "profile")``: variance parameters, sigma, fixed effects.

    As lme4, the profiles are of the likelihood: a REML fit is refitted by maximum likelihood
    first, and the intervals (and the ``estimate`` column) are those of the ML fit.
    """
    with fit.lock:  # it moves the shared factorization: one thread at a time
        cutoff = stats.norm.ppf(0.5 + level / 2.0)
        if fit.reml:
            fit = _refit(fit, copy.copy(fit.cp), [fe_names[j] for j in fit.keep], fit.factor.name, reml=False)
        names = parameter_names(fit.terms)
        est = sdcor_of_fit(fit)
        rows = []
        for j, nm in enumerate(names):
            lo, hi = _profile_sdcor(fit, j, cutoff)
            if j == len(names) - 1:  # sigma, profiled in the fit's units of the weights
                lo, hi = lo * fit.sigma_scale, hi * fit.sigma_scale
            rows.append((nm, est[j], lo, hi))
        for jk, col in enumerate(fit.keep):
            lo, hi = _profile_beta(fit, jk, cutoff)
            rows.append((fe_names[col], fit.beta[col], lo, hi))
        return pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"]).set_index("parameter")
