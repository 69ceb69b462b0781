"""The covariance of the fixed effects (lme4 ``vcov``), Satterthwaite's degrees of freedom
(lmerTest) and the coefficient table and Wald intervals built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular

from .._engine.criteria import deviance_at_sigma
from .parameters import theta_units

__all__ = ["fixed_cov", "satterthwaite_df", "fixed_effects_table", "wald_intervals"]


def _fixed_cov_unscaled(factor):
    """``(R_X' R_X)^{-1} = L_X^{-T} L_X^{-1}`` at the factor's last theta (vcov / sigma^2)."""
    LX, _ = factor.fixed_part()
    if LX.shape[0] == 0:
        return np.zeros((0, 0))
    Linv = solve_triangular(LX, np.eye(LX.shape[0]), lower=True)
    return Linv.T @ Linv


def _restore(fit):
    fit.factor.update(fit.theta)


def fixed_cov(fit):
    """lme4's ``vcov``: ``sigma^2 (R_X' R_X)^{-1}`` over the kept fixed-effect columns."""
    fit.factor.update(fit.theta)
    return fit.sigma**2 * _fixed_cov_unscaled(fit.factor)


def _richardson(estimate, h, levels):
    """Richardson extrapolation of a central-difference ``estimate(h)`` (error O(h^2))."""
    table = [estimate(h / 2**i) for i in range(levels)]
    for m in range(1, levels):
        f = 4.0**m
        table = [(f * table[i + 1] - table[i]) / (f - 1.0) for i in range(len(table) - 1)]
    return table[0]


def _hessian(f, x, h=0.02, levels=3):
    """Hessian of a smooth scalar function by central differences with Richardson extrapolation.

    numDeriv's method (used by lmerTest): ``2k^2`` evaluations per level for k parameters, where
    scipy.differentiate.hessian (nested adaptive Jacobians) needs thousands for k = 4.
    """
    k = len(x)
    f0 = f(x)
    E = np.eye(k)

    def est(s):
        H = np.empty((k, k))
        fp = [f(x + s * E[i]) for i in range(k)]
        fm = [f(x - s * E[i]) for i in range(k)]
        for i in range(k):
            H[i, i] = (fp[i] - 2.0 * f0 + fm[i]) / s**2
            for j in range(i):
                d = s * (E[i] + E[j])
                e = s * (E[i] - E[j])
                H[i, j] = H[j, i] = (f(x + d) - f(x + e) - f(x - e) + f(x - d)) / (4.0 * s**2)
        return H

    return _richardson(est, h, levels)


def _jacobian(f, x, h=0.02, levels=3):
    """Jacobian (outputs x inputs) by central differences with Richardson extrapolation."""
    E = np.eye(len(x))

    def est(s):
        return np.column_stack([(f(x + s * E[i]) - f(x - s * E[i])) / (2.0 * s) for i in range(len(x))])

    return _richardson(est, h, levels)


#: Richardson levels of the differences behind Satterthwaite's df: two (error O(h^4) at
#: h = 0.02 in each parameter's natural unit) agree with lmerTest as three do
SATTERTHWAITE_LEVELS = 2


def satterthwaite_df(fit, cov):
    """Satterthwaite's denominator degrees of freedom for each fixed effect (as lmerTest).

    The covariance of the variance parameters ``(theta, sigma)`` is twice the inverse Hessian of
    the deviance in them; the gradient of each ``Var(beta_j)`` in them comes from the Jacobian of
    ``sigma^2 (R_X'R_X)^{-1}``; ``df = 2 Var^2 / (g' A g)``. Derivatives are numerical (central
    differences with Richardson extrapolation, as numDeriv), in coordinates where every
    parameter is of order one: each theta in its natural unit (``fit.theta_unit``: a slope on a
    column of scale 1e90 has theta of order 1e-90) and sigma relative to its estimate; and df is
    formed from relative derivatives, ``2 / (g'A g / Var^2)``, so that nothing overflows however
    y is scaled (df do not depend on the parameterization).

    Each theta is factored once, ``factored`` keeping its parts: sigma enters the deviance and
    ``Var(beta)`` in closed form, so the points that differ in sigma alone and the Jacobian's
    points (the Hessian's) need no factorization of their own. Three theta: 37 factorizations
    where each point of numDeriv's scheme took one (81), the same numbers.
    """
    p = cov.shape[0]
    if p == 0:
        return np.zeros(0)
    if not fit.terms:  # no random effects: the ordinary least-squares residual df
        return np.full(p, float(fit.n - p))
    s0 = fit.sigma
    unit = theta_units(fit)
    x0 = np.append(fit.theta / unit, 1.0)
    factored = {}

    def at(theta_x):  # (the factorization's parts and Var(beta) / sigma^2) at theta, once each
        key = tuple(theta_x)
        if key not in factored:
            fz = fit.factor.update(np.asarray(theta_x) * unit)
            factored[key] = (fz, None if fz is None else np.diag(_fixed_cov_unscaled(fit.factor)))
        return factored[key]

    var0 = at(x0[:-1])[1]  # Var(beta_j) / sigma^2 at the estimate

    def dev(x):
        return deviance_at_sigma(at(x[:-1])[0], x[-1] * s0, fit.n, fit.cp.p, fit.reml, fit.cp.sum_log_weights)

    def var_beta(x):  # Var(beta_j)(x) / Var(beta_j)(x0)
        v = at(x[:-1])[1]
        return np.full(p, np.nan) if v is None else x[-1] ** 2 * v / var0

    try:
        H = _hessian(dev, x0, levels=SATTERTHWAITE_LEVELS)
        J = _jacobian(var_beta, x0, levels=SATTERTHWAITE_LEVELS)
    finally:
        _restore(fit)
    H = 0.5 * (H + H.T)
    A = 2.0 * np.linalg.pinv(H)
    denom = np.einsum("jk,kl,jl->j", J, A, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 / denom
    return np.where(np.isfinite(df) & (df > 0), df, np.nan)


def fixed_effects_table(fit, names):
    """lmerTest's coefficient table as a DataFrame and lme4's ``vcov`` as a DataFrame.

    Aliased (dropped) columns appear with NaN everywhere: they were not estimated.
    """
    with fit.lock:  # they move the shared factorization: one thread at a time
        cov_k = fixed_cov(fit)
        df_k = satterthwaite_df(fit, cov_k)
    m = len(names)
    cov = np.full((m, m), np.nan)
    keep = list(fit.keep)
    cov[np.ix_(keep, keep)] = cov_k
    est = np.full(m, np.nan)
    est[keep] = fit.beta[keep]
    se = np.sqrt(np.diag(cov))
    df = np.full(m, np.nan)
    df[keep] = df_k
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    pval = 2.0 * stats.t.sf(np.abs(t), df)
    table = pd.DataFrame(
        {"estimate": est, "std_error": se, "df": df, "t_value": t, "p_value": pval},
        index=pd.Index(names, name="term"),
    )
    return table, pd.DataFrame(cov, index=names, columns=names)


def wald_intervals(table, level):
    """Wald intervals ``estimate +- z se`` for the fixed effects (lme4 ``confint(method="Wald")``)."""
    z = stats.norm.ppf(0.5 + level / 2.0)
    return pd.DataFrame(
        {"estimate": table["estimate"], "lower": table["estimate"] - z * table["std_error"],
         "upper": table["estimate"] + z * table["std_error"]}
    ).rename_axis("parameter")
