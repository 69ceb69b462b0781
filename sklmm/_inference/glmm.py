"""Inference after a GLMM fit: the Wald covariance of the fixed effects from the Hessian of the
Laplace criterion (glmer's ``vcov``), z tests, simulation and the parametric bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular

from .._engine.terms import templates
from .covariance import _hessian

__all__ = ["glmm_fixed_cov", "glmm_fixed_table", "simulate_glmm", "draw_random_eta"]


def _rx_cov(fit):
    """``(R_X' R_X)^{-1}`` at the mode's working weights (glmer's ``use.hessian = FALSE``)."""
    fit.factor.update(fit.theta)
    LX, _ = fit.factor.fixed_part()
    if LX.shape[0] == 0:
        return np.zeros((0, 0))
    Linv = solve_triangular(LX, np.eye(LX.shape[0]), lower=True)
    return Linv.T @ Linv


def glmm_fixed_cov(fit):
    """glmer's ``vcov``: twice the inverse Hessian of ``-2 log L`` in ``(theta, beta)``, its
    fixed-effect block; and which of the two it is (``"hessian"``, or ``"rx"`` where the Hessian
    is not positive definite and, as glmer, ``(R_X'R_X)^{-1}`` serves instead).

    The Hessian is by central differences with Richardson extrapolation, each parameter in
    units of its own scale (beta in units of its ``R_X`` standard error, theta in units of
    ``max(theta, 0.1)``), so that its steps suit any scaling of the features."""
    rx = _rx_cov(fit)
    k = len(fit.theta)
    beta = fit.beta[fit.keep]
    if k == 0 or len(beta) == 0:
        return rx, "rx"
    unit = np.concatenate([np.maximum(np.abs(fit.theta), 0.1), np.sqrt(np.diag(rx))])
    x0 = np.concatenate([fit.theta, beta])
    problem = fit.problem
    saved = problem.last

    def f(x):  # (a step below a theta of 0 is allowed: the criterion is even in a scalar theta)
        return fit.criterion_at(x[:k] * unit[:k], x[k:] * unit[k:])

    try:
        H = _hessian(f, x0 / unit, h=0.01, levels=2)
    finally:
        problem.last = saved
    H = 0.5 * (H + H.T)
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return rx, "rx"
    cov = 2.0 * np.linalg.inv(H)[k:, k:] * np.outer(unit[k:], unit[k:])
    return 0.5 * (cov + cov.T), "hessian"


def glmm_fixed_table(fit, names):
    """glmer's coefficient table (estimate, std_error, z_value, p_value) and ``vcov``, as
    DataFrames over every fixed-effect name (aliased, dropped columns NaN)."""
    with fit.lock:
        cov_k, how = glmm_fixed_cov(fit)
        fit.factor.update(fit.theta)
    m = len(names)
    keep = list(fit.keep)
    cov = np.full((m, m), np.nan)
    cov[np.ix_(keep, keep)] = cov_k
    est = np.full(m, np.nan)
    est[keep] = fit.beta[keep]
    se = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = est / se
    table = pd.DataFrame({"estimate": est, "std_error": se, "z_value": z,
                          "p_value": 2.0 * stats.norm.sf(np.abs(z))}, index=pd.Index(names, name="term"))
    table.attrs["covariance"] = how
    return table, pd.DataFrame(cov, index=names, columns=names)


def draw_random_eta(fit, rng):
    """``Z b`` at the training rows for new random effects ``b ~ N(0, Sigma_theta)``."""
    problem = fit.problem
    u = rng.standard_normal(problem.q)
    return problem.random_eta(fit.theta, u)


def simulate_glmm(fit, n_draws, rng):
    """lme4's ``simulate`` for a GLMM: new random effects, then responses from the family at the
    training rows; (n, n_draws)."""
    problem = fit.problem
    fixed = problem.X @ fit.beta[fit.keep]
    out = np.empty((problem.n, n_draws))
    for d in range(n_draws):
        mu = fit.family.mean(fixed + draw_random_eta(fit, rng))
        out[:, d] = fit.family.draw(rng, mu, problem.w)
    return out


def random_effect_sds(fit):
    """Per term, the covariance ``T T'`` of one level's random effects (sigma = 1)."""
    return [T @ T.T for T in templates(fit.terms, fit.theta)]
