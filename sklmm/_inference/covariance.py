"""The covariance of the fixed effects (lme4 ``vcov``), Satterthwaite's degrees of freedom
(lmerTest) and the coefficient table and Wald intervals built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular

from .._engine.criteria import deviance_at_sigma, residual_df
from .._engine.factor_blocked import BlockedFactor
from .._engine.factor_dense import DenseFactor
from .._engine.gradient import BlockedGradient, DenseGradient
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


#: Richardson levels and first step of the deviance's differences behind Satterthwaite's df
#: where the factorization has no gradient (CHOLMOD's), in each parameter's natural unit: at
#: 0.002 they agree with the gradient's central differences to 4e-8 on forty random fits,
#: singular ones included, and to 7e-8 on InstEval (at 0.02, the step taken before: 3e-4 and
#: 8e-4, and 219 for 29.4 on a singular kb07-like model)
SATTERTHWAITE_LEVELS = 2
SATTERTHWAITE_NUMERICAL_STEP = 0.002


#: step of the differences of the analytic gradient behind Satterthwaite's df, in each theta's
#: natural unit: far above the gradient's rounding, and small beside the scale on which the
#: criterion's curvature changes away from a boundary
SATTERTHWAITE_STEP = 1e-6

#: below this (in natural units) a variance parameter's theta (a diagonal entry of a term's
#: template) makes the fit near-singular: the curvature changes within a small distance of the
#: estimate, and forward differences (error of the order of the step over that distance) give
#: way to central ones (error of its square). The benchmark's kb07-like singular model at
#: lme4's estimate: the df of one coefficient 31.0 by forward differences, 29.36 by central
#: ones at steps of 1e-5 to 1e-7 (lmerTest 29.38), where the deviance's own differences with
#: Richardson's extrapolation from a step of 0.02 (sklmm's earlier scheme) gave 219
NEAR_SINGULAR = 0.01


def _gradient_of(fit):
    """The analytic gradient's evaluator (:mod:`sklmm._engine.gradient`) on the fit's own
    factor, or None where the factor has none (CHOLMOD's)."""
    if isinstance(fit.factor, DenseFactor):
        return DenseGradient(fit.cp, fit.terms, fit.reml, factor=fit.factor)
    if isinstance(fit.factor, BlockedFactor):
        return BlockedGradient(fit.cp, fit.terms, fit.reml, factor=fit.factor)
    return None


def _near_singular(fit, unit):
    """Whether a variance parameter's theta (in its natural unit) is below
    :data:`NEAR_SINGULAR`: 0 at a boundary, or close to one."""
    theta = fit.theta / unit
    lower = np.concatenate([t.theta_lower() for t in fit.terms])
    return bool(np.any(np.abs(theta[lower == 0]) < NEAR_SINGULAR))


def _derivatives_from_gradient(fit, grad, unit, s0):
    """The Hessian of lmerTest's deviance in ``x = (theta / unit, sigma / s0)`` and the
    Jacobian of ``Var(beta_j) / Var(beta_j)(x0)`` in x, at the estimate, from the analytic
    gradient: sigma enters in closed form (``dev = log det + r^2 / sigma^2 + n' log sigma^2``
    with ``n' = n`` or ``n - p``), the theta block is the differences of the gradient at one
    step in each theta (forward, or central where the fit is near-singular:
    :data:`NEAR_SINGULAR`), and the Jacobian's theta columns those of
    ``diag((R_X'R_X)^{-1})`` at the same points. k + 1 gradients for k theta (2k + 1 central),
    the estimate's last (the factor is left there); None where a step's factorization fails
    (the numerical scheme then decides)."""
    k = len(fit.theta)
    h = SATTERTHWAITE_STEP
    signs = (1.0, -1.0) if _near_singular(fit, unit) else (1.0,)

    def at(theta):
        fz, dlogdet, dr2 = grad.parts(theta)
        if dlogdet is None:
            return None
        return fz, unit * (dlogdet + dr2 / s0**2), unit * dr2, np.diag(_fixed_cov_unscaled(fit.factor))

    steps = {}
    for i in range(k):
        for sign in signs:
            steps[i, sign] = at(fit.theta + sign * h * unit[i] * np.eye(k)[i])
            if steps[i, sign] is None:
                return None
    center = at(fit.theta)
    if center is None:
        return None
    fz0, g0, dr0, v0 = center
    H = np.empty((k + 1, k + 1))
    J = np.empty((len(v0), k + 1))
    for i in range(k):
        (_, g, _, v), (_, gb, _, vb) = steps[i, 1.0], steps.get((i, -1.0), center)
        width = h * len(signs)
        H[:k, i] = (g - gb) / width
        J[:, i] = (v - vb) / (width * v0)
    n_eff = residual_df(fit.n, fit.cp.p, fit.reml)
    H[:k, k] = H[k, :k] = -2.0 * dr0 / s0**2
    H[k, k] = 6.0 * fz0.r2 / s0**2 - 2.0 * n_eff
    J[:, k] = 2.0
    return H, J


def _derivatives_numerical(fit, unit, s0):
    """The same Hessian and Jacobian by central differences of the deviance itself with
    Richardson extrapolation (numDeriv's method, as lmerTest), each theta factored once."""
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
        return np.full(len(var0), np.nan) if v is None else x[-1] ** 2 * v / var0

    H = _hessian(dev, x0, h=SATTERTHWAITE_NUMERICAL_STEP, levels=SATTERTHWAITE_LEVELS)
    J = _jacobian(var_beta, x0, h=SATTERTHWAITE_NUMERICAL_STEP, levels=SATTERTHWAITE_LEVELS)
    return H, J


def satterthwaite_df(fit, cov):
    """Satterthwaite's denominator degrees of freedom for each fixed effect (as lmerTest).

    The covariance of the variance parameters ``(theta, sigma)`` is twice the inverse Hessian of
    the deviance in them; the gradient of each ``Var(beta_j)`` in them comes from the Jacobian of
    ``sigma^2 (R_X'R_X)^{-1}``; ``df = 2 Var^2 / (g' A g)``. Derivatives are taken in
    coordinates where every parameter is of order one: each theta in its natural unit
    (``fit.theta_unit``: a slope on a column of scale 1e90 has theta of order 1e-90) and sigma
    relative to its estimate; and df is formed from relative derivatives,
    ``2 / (g'A g / Var^2)``, so that nothing overflows however y is scaled (df do not depend
    on the parameterization).

    Where the fit's factor has the analytic gradient of the criterion (the dense and blocked
    factors), sigma's derivatives are in closed form and theta's are differences of that
    gradient (:func:`_derivatives_from_gradient`: k + 1 gradients for k theta, each about
    three factorizations; 2k + 1 for a near-singular fit); elsewhere (CHOLMOD) central
    differences of the deviance with Richardson extrapolation, as lmerTest's numDeriv
    (:func:`_derivatives_numerical`: 1 + 2 (2k + 2k(k - 1)) factorizations at most).
    """
    p = cov.shape[0]
    if p == 0:
        return np.zeros(0)
    if not fit.terms:  # no random effects: the ordinary least-squares residual df
        return np.full(p, float(fit.n - p))
    s0 = fit.sigma
    unit = theta_units(fit)
    grad = _gradient_of(fit)
    found = None
    try:
        if grad is not None:
            with grad.threads():
                found = _derivatives_from_gradient(fit, grad, unit, s0)
        H, J = found if found is not None else _derivatives_numerical(fit, unit, s0)
    finally:
        if found is None:  # (the gradient's differences end at the estimate)
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
