"""Comparing GAMs as mgcv does: degrees of freedom corrected for smoothing-parameter
uncertainty (``edf2``), mgcv's ``AIC()`` and ``anova(m0, m1, test = ...)``.

The smoothing parameters are estimates, and the coefficients move with them. mgcv (Wood, Pya
and Saefken 2016, JASA 111:1548) widens the posterior covariance ``V_p`` of the coefficients by
that movement: ``V_c = V_p + J V_rho J' (+ V_c2)``, with ``J = d beta / d rho`` the derivative of
the coefficients in the log smoothing parameters ``rho`` and ``V_rho`` the inverse Hessian of the
REML score in ``rho`` (eigenvalues at or below 0 dropped). The edf of that covariance, ``edf2 =
tr(V_c X'WX) / scale``, is never taken above ``edf1 = tr(2F - F^2)`` (``F`` the map from the data to
the fitted coefficients). mgcv's ``AIC()`` counts ``edf2`` (plus 1 for an estimated scale)
against the conditional log-likelihood, and its ``anova`` between GAMs gives each model the
residual df ``n - edf1 - (edf2 - edf)``.

What sklmm computes: ``J`` and the Hessian by central differences at the optimum, in
``log theta`` (``rho = -2 log theta`` plus a constant, so ``J V_rho J'`` is the same), with the
coefficients in the basis of the fit (each smooth's ``Lambda u`` and the fixed effects) and
``X'WX`` from the fit's cross-products: no pass over the rows for a Gaussian model (each point a
factor update), a penalized IRLS per point otherwise. mgcv adds a second-order term ``V_c2``
from the derivatives of a Cholesky factor of the penalized Hessian, which depends on the basis
the coefficients are written in (mgcv's constrained spline bases); sklmm leaves it out. Where
mgcv's ``edf2`` is not capped at ``edf1`` the two differ by that term (0.39 df of 16 for a
three-smooth Gaussian model and 0.17 of 6.7 for a binary one in ``tools/mgcv_anova_reference.R``);
where it is capped, they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._engine.criteria import profiled_criterion
from .._engine.system import dense_system
from .._engine.terms import theta_layout
from .gam_family import known_scale

__all__ = ["edf_totals", "GamAnovaResult", "gam_anova"]

#: central-difference steps in log theta: for the coefficients, and for the Hessian
COEF_STEP = 1e-4
HESSIAN_STEP = 2e-3


class _Evaluator:
    """The criterion and the coefficients ``(Lambda u, beta)`` of a fit at any theta (the fit's
    factorization or its PIRLS problem, restored by :meth:`restore`)."""

    def __init__(self, fit):
        self.fit = fit
        self.slices, self.z_off = theta_layout(fit.terms)
        self.problem = getattr(fit, "problem", None)

    def criterion(self, theta):
        fit = self.fit
        if self.problem is None:
            return profiled_criterion(fit.factor.update(theta), fit.n, fit.cp.p, fit.reml, fit.cp.sum_log_weights)
        return self.problem.laml(theta) if fit.reml else self.problem.pirls(theta).laplace

    def coefficients(self, theta):
        fit = self.fit
        if self.problem is None:
            fit.factor.update(theta)
            beta, u = fit.factor.solve()
        else:
            s = self.problem.pirls(theta)
            beta, u = s.beta, s.u
        b = []
        for t, s, a, z in zip(fit.terms, self.slices, self.z_off[:-1], self.z_off[1:]):
            b.append((u[a:z].reshape(t.n_levels, t.n_coef) @ t.template(theta[s]).T).ravel())
        return np.concatenate(b + [beta])

    def restore(self):
        fit = self.fit
        if self.problem is None:
            fit.factor.update(fit.theta)
        else:
            self.problem.pirls(fit.theta)


def edf_totals(est):
    """``{"edf", "edf1", "edf2"}`` of a fitted GAM without grouping factors (cached on it)."""
    cached = getattr(est, "_edf_totals", None)
    if cached is not None:
        return cached
    fit = est._fit
    if getattr(est, "_group_factors", None):
        raise ValueError(
            "edf2 (and mgcv's AIC and anova) are computed for GAMs without grouping factors; a GAMM "
            "fitted with groups is gamm4's model, which mgcv compares through its mixed-model form.")
    fixed = set(est._fixed_theta(fit.terms))
    free = [j for j in range(len(fit.theta)) if fit.theta[j] > 0 and j not in fixed]
    q = int(theta_layout(fit.terms)[1][-1])
    Minv = est._Vp.matrix / fit.sigma**2  # M^-1 over (u, kept beta): no grouping factors
    edf = float(len(fit.keep) + np.sum(1.0 - np.diag(Minv)[:q]))
    edf1 = float(len(fit.keep) + q - np.sum(Minv[:q, :q] ** 2))
    edf2 = edf
    if free:
        ev = _Evaluator(fit)
        try:
            s0 = np.log(fit.theta[free])

            def at(s):
                th = fit.theta.copy()
                th[free] = np.exp(s)
                return th

            J = np.column_stack([(ev.coefficients(at(s0 + COEF_STEP * e)) - ev.coefficients(at(s0 - COEF_STEP * e)))
                                 / (2 * COEF_STEP) for e in np.eye(len(free))])
            H = _hessian(lambda s: ev.criterion(at(s)), s0, HESSIAN_STEP)
        finally:
            ev.restore()
        # mgcv's REML score is half the criterion: V_rho is the inverse of H / 2, its eigenvalues
        # at or below 0 dropped
        d, E = np.linalg.eigh(0.5 * (H + H.T) / 2.0)
        keep = d > 0
        root = (E[:, keep] / np.sqrt(d[keep])).T  # V = root' root
        A = dense_system(fit.cp, fit.terms)[:-1, :-1]  # X'WX over (b, beta), unscaled
        JA = root @ J.T
        edf2 = edf + float(np.einsum("ij,jk,ik->", JA, A, JA)) / fit.sigma**2
    totals = {"edf": edf, "edf1": edf1, "edf2": min(edf2, edf1)}
    est._edf_totals = totals
    return totals


def _hessian(f, x0, h):
    """The Hessian of f at x0 by central differences (step h in every coordinate)."""
    m = len(x0)
    f0 = f(x0)
    H = np.empty((m, m))
    E = np.eye(m) * h
    for i in range(m):
        H[i, i] = (f(x0 + E[i]) - 2 * f0 + f(x0 - E[i])) / h**2
        for j in range(i):
            H[i, j] = H[j, i] = (f(x0 + E[i] + E[j]) - f(x0 + E[i] - E[j]) - f(x0 - E[i] + E[j])
                                 + f(x0 - E[i] - E[j])) / (4 * h**2)
    return H


@dataclass(frozen=True)
class GamAnovaResult:
    """mgcv's ``anova(m0, m1, test = ...)`` between two GAMs: unpacks as ``statistic, df,
    p_value`` (the F or the deviance difference, the difference in residual df, its p-value);
    ``table`` is mgcv's analysis of deviance table."""

    statistic: float
    df: float
    p_value: float
    test: str
    table: pd.DataFrame

    def __iter__(self):
        return iter((self.statistic, self.df, self.p_value))

    def __str__(self):
        return f"Analysis of Deviance Table (as mgcv's anova, test={self.test!r})\n\n{self.table.to_string()}"

    def __repr__(self):
        return (f"GamAnovaResult(statistic={self.statistic!r}, df={self.df!r}, p_value={self.p_value!r}, "
                f"test={self.test!r})\n{self}")


def gam_anova(smaller, larger, test=None):
    """mgcv's ``anova(smaller, larger, test = test)`` for two fitted GAMs (see the module
    docstring): each model's residual df ``n - edf1 - (edf2 - edf)`` and deviance, and the test
    of the difference with the dispersion of the model with fewer residual df (F on that
    model's residual df when the scale is estimated; chi-squared otherwise, the default for a
    family of known scale)."""
    models = [smaller, larger]
    if smaller.n_obs_ != larger.n_obs_:
        raise ValueError(f"the two GAMs were fitted to different numbers of rows ({smaller.n_obs_} and "
                         f"{larger.n_obs_}); compare fits to the same data.")
    known = [known_scale(m._family) for m in models]
    if test is None:
        test = "Chisq" if known[0] else "F"
    if test not in ("F", "Chisq"):
        raise ValueError(f"test must be 'F' or 'Chisq'; got {test!r}.")
    n = smaller.n_obs_
    resid_df, resid_dev = [], []
    for m in models:
        t = edf_totals(m)
        resid_df.append(n - t["edf1"] - (t["edf2"] - t["edf"]))
        resid_dev.append(m.deviance_)
    big = int(np.argmin(resid_df))
    dispersion = 1.0 if known[big] else float(models[big].sigma_**2)
    df = resid_df[0] - resid_df[1]
    dev = resid_dev[0] - resid_dev[1]
    if test == "F":
        df_scale = np.inf if known[big] else min(resid_df)
        stat = (dev / df) / dispersion if df != 0 else np.nan
        p = float(stats.f.sf(stat, abs(df), df_scale)) if np.isfinite(stat) and stat >= 0 else np.nan
        cols = {"F": [np.nan, stat], "Pr(>F)": [np.nan, p]}
    else:
        stat = dev / dispersion * np.sign(df) if df != 0 else np.nan
        p = float(stats.chi2.sf(stat, abs(df))) if np.isfinite(stat) and stat >= 0 else np.nan
        cols = {"Pr(>Chi)": [np.nan, p]}
    table = pd.DataFrame({"Resid. Df": resid_df, "Resid. Dev": resid_dev, "Df": [np.nan, df],
                          "Deviance": [np.nan, dev], **cols}, index=pd.Index([1, 2], name="model"))
    return GamAnovaResult(statistic=float(stat), df=float(df), p_value=p, test=test, table=table)
