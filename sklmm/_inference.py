"""Inference after a fit: covariances, degrees of freedom, intervals, conditional variances,
simulation, the parametric bootstrap and likelihood-ratio tests.

Everything here works from the fitted :class:`~sklmm._model.MixedFit` (its cross-products and its
factorization, re-updated at other values of theta when a quantity needs them) and, for
simulation, the training design kept by the estimator. Conventions are lme4's (``vcov``,
``confint``, ``ranef(condVar = TRUE)``, ``anova``, ``simulate``, ``bootMer``) and lmerTest's
(Satterthwaite degrees of freedom); ``docs/inference.md`` states them.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from scipy.linalg import solve_triangular
from scipy.optimize import brentq

from ._optimize import minimize_bobyqa
from ._pls import _LOG_2PI, BlockedFactor, Factorization, _by_level, _lambda_t_rows, profiled_criterion
from ._terms import templates, theta_layout

__all__ = [
    "TrainingDesign",
    "LikelihoodRatioTestResult",
    "fixed_effects_table",
    "parameter_names",
    "sdcor_from_theta",
    "profile_intervals",
    "conditional_covariances",
    "simulate_responses",
    "bootstrap_replicates",
    "likelihood_ratio_test",
]


# ----------------------------------------------------------------------------- the training design


@dataclass
class TrainingDesign:
    """The rows a fit came from, kept for simulation (lme4 keeps its model frame likewise).

    ``Xf`` holds every fixed-effect column (dropped, aliased ones included), ``codes`` the level
    index of each row per random-effect term (in the fit's term order), ``values`` the term's
    model-matrix rows (None for an intercept-only term: a column of ones).
    """

    Xf: np.ndarray
    codes: list
    values: list
    sample_weight: np.ndarray | None = None

    @classmethod
    def from_terms(cls, Xf, terms, sample_weight=None):
        values = [None if (t.values.shape[1] == 1 and t.intercept) else t.values for t in terms]
        return cls(Xf=Xf, codes=[t.codes for t in terms], values=values, sample_weight=sample_weight)

    def term_values(self, k):
        v = self.values[k]
        return np.ones((self.Xf.shape[0], 1)) if v is None else v

    def random_part(self, b):
        """``Z b`` for per-term coefficient arrays ``b[k]`` of shape (n_levels_k, p_k)."""
        out = np.zeros(self.Xf.shape[0])
        for k, bk in enumerate(b):
            out += np.einsum("ij,ij->i", self.term_values(k), bk[self.codes[k]])
        return out


# ----------------------------------------------------------------------------- deviance in (theta, sigma)


def deviance_theta_sigma(fit, theta, sigma):
    """-2 log-likelihood (ML) or -2 REML log-likelihood at ``(theta, sigma)``, beta profiled.

    ``log|L|^2 + r^2/sigma^2 + n log(2 pi sigma^2)`` (REML: ``+ log|R_X|^2 - p log(2 pi sigma^2)``),
    lmerTest's ``devfun_vp``; at ``sigma = sigma_hat(theta)`` it equals the profiled criterion.
    """
    if not sigma > 0:
        return np.inf
    fz = fit.factor.update(np.asarray(theta, dtype=float))
    if fz is None:
        return np.inf
    s2 = sigma * sigma
    n_eff = fit.n - fit.cp.p if fit.reml else fit.n
    dev = fz.logdet_L2 + fz.r2 / s2 + n_eff * (_LOG_2PI + np.log(s2)) - fit.cp.sum_log_weights
    if fit.reml:
        dev += fz.logdet_RX2
    return float(dev)


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


def satterthwaite_df(fit, cov):
    """Satterthwaite's denominator degrees of freedom for each fixed effect (as lmerTest).

    The covariance of the variance parameters ``(theta, sigma)`` is twice the inverse Hessian of
    the deviance in them; the gradient of each ``Var(beta_j)`` in them comes from the Jacobian of
    ``sigma^2 (R_X'R_X)^{-1}``; ``df = 2 Var^2 / (g' A g)``. Derivatives are numerical (central
    differences with Richardson extrapolation, as numDeriv), with sigma scaled by its estimate so
    that every parameter is of order one.
    """
    p = cov.shape[0]
    if p == 0:
        return np.zeros(0)
    if not fit.terms:  # no random effects: the ordinary least-squares residual df
        return np.full(p, float(fit.n - p))
    s0 = fit.sigma
    x0 = np.append(fit.theta, 1.0)

    def dev(x):
        return deviance_theta_sigma(fit, x[:-1], x[-1] * s0)

    def var_beta(x):
        if fit.factor.update(x[:-1]) is None:
            return np.full(p, np.nan)
        return (x[-1] * s0) ** 2 * np.diag(_fixed_cov_unscaled(fit.factor))

    try:
        H = _hessian(dev, x0)
        J = _jacobian(var_beta, x0)
    finally:
        _restore(fit)
    H = 0.5 * (H + H.T)
    A = 2.0 * np.linalg.pinv(H)
    denom = np.einsum("jk,kl,jl->j", J, A, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 * np.diag(cov) ** 2 / denom
    return np.where(np.isfinite(df) & (df > 0), df, np.nan)


def fixed_effects_table(fit, names):
    """lmerTest's coefficient table as a DataFrame and lme4's ``vcov`` as a DataFrame.

    Aliased (dropped) columns appear with NaN everywhere: they were not estimated.
    """
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


# ----------------------------------------------------------------------------- sd / cor parameters


def parameter_names(terms):
    """lme4's ``oldNames = FALSE`` names of the variance parameters: sd_, cor_, then sigma."""
    out = []
    for t in terms:
        for i, j in zip(t.tri_rows, t.tri_cols):
            ci, cj = t.column_names[i], t.column_names[j]
            out.append(f"sd_{ci}|{t.name}" if i == j else f"cor_{ci}.{cj}|{t.name}")
    return out + ["sigma"]


def sdcor_from_theta(terms, theta, sigma):
    """Standard deviations and correlations (in theta's order), then sigma."""
    out = []
    for t, T in zip(terms, templates(terms, theta)):
        S = T @ T.T
        sd = np.sqrt(np.diag(S))
        for i, j in zip(t.tri_rows, t.tri_cols):
            if i == j:
                out.append(sigma * sd[i])
            else:
                d = sd[i] * sd[j]
                out.append(S[i, j] / d if d > 0 else 0.0)
    out.append(sigma)
    return np.asarray(out, dtype=float)


def _psd_cholesky(S):
    """Lower-triangular factor with non-negative diagonal of a positive semi-definite S, or None."""
    p = S.shape[0]
    L = np.zeros_like(S)
    scale = max(float(np.max(np.abs(np.diag(S)))), 1e-300)
    for j in range(p):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10 * scale:
            return None
        L[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, p):
            r = S[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 0:
                L[i, j] = r / L[j, j]
            elif abs(r) > 1e-8 * scale:
                return None
    return L


def theta_from_sdcor(terms, psi):
    """Inverse of :func:`sdcor_from_theta`: ``(theta, sigma)``, or None outside the domain."""
    sigma = psi[-1]
    if not sigma > 0:
        return None
    theta, k = [], 0
    for t in terms:
        vals = psi[k : k + t.n_theta]
        k += t.n_theta
        p = t.n_coef
        sd, R = np.zeros(p), np.eye(p)
        for (i, j), v in zip(zip(t.tri_rows, t.tri_cols), vals):
            if i == j:
                sd[i] = v
            else:
                R[i, j] = R[j, i] = v
        if np.any(sd < 0) or np.any(np.abs(R) > 1 + 1e-12):
            return None
        T = _psd_cholesky(np.outer(sd, sd) * R / sigma**2)
        if T is None:
            return None
        theta.append(T[t.tri_rows, t.tri_cols])
    return np.concatenate(theta) if theta else np.zeros(0), sigma


# ----------------------------------------------------------------------------- profile intervals


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
    """Where the profile ``g`` (0 at est) reaches ``target`` on one side; ``limit`` if never."""
    br = _bracket_root(g, est, step, limit, target)
    if br is None:
        return limit if limit is not None else np.nan
    a, b = br
    return brentq(lambda v: g(v) - target, a, b, xtol=xtol, rtol=1e-10)


def _profile_sdcor(fit, j, cutoff):
    """Profile interval for variance parameter j (sd, cor or sigma) by root finding on zeta."""
    terms = fit.terms
    psi_hat = sdcor_from_theta(terms, fit.theta, fit.sigma)
    names = parameter_names(terms)
    is_cor = np.array([nm.startswith("cor_") for nm in names])
    m = len(psi_hat)
    free = np.array([i for i in range(m) if i != j], dtype=np.intp)
    scale = np.where(is_cor, 1.0, np.maximum(np.abs(psi_hat), 1e-3 * fit.sigma))
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
            ts = theta_from_sdcor(terms, psi)
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
        step = 0.25 * max(est, 0.05 * fit.sigma)
    xtol = 1e-6 * (1.0 if is_cor[j] else max(est, fit.sigma))
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
        res = minimize_bobyqa(lambda th: crit(th, b), warm["x"], lower, ftol_rel=1e-10,
                              ftol_abs=1e-9, xtol_abs=1e-8, max_evals=4000,
                              initial_step=np.full(len(lower), 0.05))
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
    cutoff = stats.norm.ppf(0.5 + level / 2.0)
    if fit.reml:
        fit = _refit(fit, copy.copy(fit.cp), [fe_names[j] for j in fit.keep], fit.factor.name, reml=False)
    names = parameter_names(fit.terms)
    est = sdcor_from_theta(fit.terms, fit.theta, fit.sigma)
    rows = []
    for j, nm in enumerate(names):
        lo, hi = _profile_sdcor(fit, j, cutoff)
        rows.append((nm, est[j], lo, hi))
    for jk, col in enumerate(fit.keep):
        lo, hi = _profile_beta(fit, jk, cutoff)
        rows.append((fe_names[col], fit.beta[col], lo, hi))
    return pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"]).set_index("parameter")


# ----------------------------------------------------------------------------- conditional variances


#: Largest number of random-effect columns beyond the first factor for conditional variances
CONDVAR_DENSE_LIMIT = 12_000


def conditional_covariances(fit, chunk_entries=4_000_000):
    """lme4's ``ranef(condVar = TRUE)``: per term, the (n_levels, p, p) conditional covariances.

    Diagonal blocks of ``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda'`` (conditional on the
    estimated fixed effects, as lme4), from the blocked factorization: with the first term's
    level blocks ``L_j`` and the Schur complement's factor ``L_r``, level j of the first term has
    ``L_j^{-T} (I + Y_j'Y_j) L_j^{-1}``, ``Y = L_r^{-1} Lambda_r' C G``, and the other terms the
    diagonal blocks of ``L_r^{-T} L_r^{-1}``.
    """
    terms = fit.terms
    if not terms:
        return []
    if not isinstance(fit.factor, BlockedFactor):
        rest = sum(t.q for t in terms[1:])
        if rest > CONDVAR_DENSE_LIMIT:
            raise ValueError(
                f"conditional variances need a dense factor of the {rest} random-effect columns of "
                f"the grouping factors after the first (limit {CONDVAR_DENSE_LIMIT}); this model is "
                "too large for them. Predictions and their standard errors do not need them."
            )
    bf = fit.factor if isinstance(fit.factor, BlockedFactor) else BlockedFactor(fit.cp, terms)
    try:
        bf.update(fit.theta)
        Ts, L11, G, Lm = bf._state
        qr = bf.qr
        n1, p1, _ = L11.shape
        Linv11 = np.linalg.inv(L11)
        first = np.einsum("jca,jcb->jab", Linv11, Linv11)
        out = [None] * len(terms)
        if qr:
            Lr = Lm[:qr, :qr]
            Sz, _ = bf._scaled_C(G)
            Sz = Sz.tocsc()
            per = max(1, int(chunk_entries // max(qr * p1, 1)))
            for a in range(0, n1, per):
                b_ = min(n1, a + per)
                Y = Sz[:, a * p1 : b_ * p1].toarray()
                for i, t in enumerate(terms[1:], start=1):
                    _lambda_t_rows(Y, Ts[i], bf.rest_offsets[i - 1], t.n_levels)
                Y = solve_triangular(Lr, Y, lower=True).reshape(qr, b_ - a, p1)
                inner = np.einsum("rja,rjb->jab", Y, Y) + np.eye(p1)
                first[a:b_] = np.einsum("jca,jcd,jdb->jab", Linv11[a:b_], inner, Linv11[a:b_])
            Lrinv = solve_triangular(Lr, np.eye(qr), lower=True)
            for i, t in enumerate(terms[1:], start=1):
                o = bf.rest_offsets[i - 1]
                cols = Lrinv[:, o : o + t.q].reshape(qr, t.n_levels, t.n_coef)
                out[i] = np.einsum("rja,rjb->jab", cols, cols)
        out[0] = first
    finally:
        if bf is fit.factor:
            _restore(fit)
    s2 = fit.sigma**2
    return [s2 * np.einsum("ab,jbc,dc->jad", T, V, T) for T, V in zip(Ts, out)]


# ----------------------------------------------------------------------------- prediction variance


def conditional_mean_variance(fit, A, seen_rows, chunk=2048):
    """Variance of ``x_i' beta_hat + z_i' b_hat`` as an estimate of ``x_i' beta + z_i' b``.

    ``A`` holds the kept fixed-effect columns at the rows; ``seen_rows`` lists per term
    ``(k, row index, level codes, model-matrix rows)`` for the rows whose level was seen in fit.
    The joint covariance of ``(u, beta)`` given the data at theta is ``sigma^2 M^{-1}``, M the
    penalized least-squares matrix, so the variance is ``sigma^2 |L^{-1} a_i|^2`` with L its
    Cholesky factor and ``a_i = [Lambda' z_i; x_i]``: one sparse triangular solve per row, in
    chunks, on the fit's own factorization.
    """
    m = A.shape[0]
    out = np.empty(m)
    factor, terms = fit.factor, fit.terms
    factor.update(fit.theta)  # whitened_norms reads the factor's state, and does not change it
    Ts = templates(terms, fit.theta)
    _, z_off = theta_layout(terms)
    q = int(z_off[-1])
    for a in range(0, m, chunk):
        b = min(m, a + chunk)
        rows, cols, vals = [], [], []
        for k, idx, codes, v in seen_rows:
            sel = (idx >= a) & (idx < b)
            if not sel.any():
                continue
            t = terms[k]
            av = v[sel] @ Ts[k]  # (Lambda' z)_level = T' v, as rows
            base = z_off[k] + codes[sel].astype(np.int64) * t.n_coef
            rows.append((base[:, None] + np.arange(t.n_coef)).ravel())
            cols.append(np.repeat(idx[sel] - a, t.n_coef))
            vals.append(av.ravel())
        Az = sp.csc_matrix(
            (np.concatenate(vals) if vals else np.zeros(0),
             (np.concatenate(rows) if rows else np.zeros(0, np.intp),
              np.concatenate(cols) if cols else np.zeros(0, np.intp))),
            shape=(q, b - a),
        )
        out[a:b] = factor.whitened_norms(Az, A[a:b].T)
    return fit.sigma**2 * out


# ----------------------------------------------------------------------------- simulation, bootstrap


def prior_covariances(fit):
    """Each term's covariance of one level's random effects, ``sigma^2 T_k T_k'``."""
    return [fit.sigma**2 * (T @ T.T) for T in templates(fit.terms, fit.theta)]


def _draw_random_effects(fit, rng):
    """New random effects ``b_k = (u_k T_k')``, ``u ~ N(0, sigma^2 I)``, per term."""
    return [
        fit.sigma * rng.standard_normal((t.n_levels, t.n_coef)) @ T.T
        for t, T in zip(fit.terms, templates(fit.terms, fit.theta))
    ]


def simulate_responses(fit, design, n_draws, rng):
    """lme4's ``simulate``: responses with new random effects and residuals, (n, n_draws)."""
    n = design.Xf.shape[0]
    mean = design.Xf @ fit.beta
    out = np.empty((n, n_draws))
    sd = fit.sigma / np.sqrt(design.sample_weight) if design.sample_weight is not None else fit.sigma
    for d in range(n_draws):
        out[:, d] = mean + design.random_part(_draw_random_effects(fit, rng)) + sd * rng.standard_normal(n)
    return out


def _with_response(fit, design, y):
    """The fit's cross-products with the response replaced by ``y`` (Z and X parts reused)."""
    cp = copy.copy(fit.cp)
    w = design.sample_weight
    yw = y if w is None else y * w
    X = design.Xf[:, fit.keep]
    xy = np.append(X.T @ yw, y @ yw)
    cp.xyxy = cp.xyxy.copy()
    cp.xyxy[-1, :] = xy
    cp.xyxy[:, -1] = xy
    cp.zxy = []
    for k, (t, zxy) in enumerate(zip(fit.terms, fit.cp.zxy)):
        z = zxy.copy()
        z[:, :, -1] = _by_level(design.codes[k], design.term_values(k), yw[:, None], t.n_levels)[:, :, 0]
        cp.zxy.append(z)
    return cp


def _refit(fit, cp, fe_names, solver, reml=None, theta_start=None):
    from ._model import fit_cross_products  # deferred: _model imports nothing from here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_cross_products(
            fit.terms, cp, fe_names, reml=fit.reml if reml is None else reml, solver=solver,
            theta_start=fit.theta if theta_start is None else theta_start,
        )


def _bootstrap_chunk(fit, design, fe_names, solver, seeds):
    kept_names = [fe_names[j] for j in fit.keep]
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        y = simulate_responses(fit, design, 1, rng)[:, 0]
        try:
            f = _refit(fit, _with_response(fit, design, y), kept_names, solver)
            rows.append(np.concatenate([sdcor_from_theta(f.terms, f.theta, f.sigma), f.beta]))
        except (ValueError, np.linalg.LinAlgError):
            rows.append(np.full(len(fit.theta) + 1 + len(fit.keep), np.nan))
    return rows


def bootstrap_replicates(fit, design, fe_names, n_boot, random_state, n_jobs, progress):
    """Parametric bootstrap (lme4 ``bootMer``): refit to ``n_boot`` simulated responses.

    Each replicate reuses the fit's cross-products of Z and X (only the response's are
    recomputed) and starts the optimizer at the fitted theta. Replicates run in parallel with
    joblib in chunks; ``progress`` shows a tqdm bar over chunks.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from sklearn.utils import check_random_state
    from tqdm.auto import tqdm

    rng = check_random_state(random_state)
    seeds = rng.randint(0, 2**31 - 1, size=n_boot)  # one seed per replicate: same draws for any n_jobs
    n_chunks = min(n_boot, max(4 * effective_n_jobs(n_jobs), n_boot // 25))
    chunks = [c for c in np.array_split(seeds, n_chunks) if len(c)]
    gen = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_bootstrap_chunk)(fit, design, fe_names, fit.factor.name, c) for c in chunks
    )
    rows = []
    with tqdm(total=n_boot, disable=not progress, desc="bootstrap", unit="fit") as bar:
        for res, c in zip(gen, chunks):
            rows.extend(res)
            bar.update(len(c))
    cols = parameter_names(fit.terms) + [fe_names[j] for j in fit.keep]
    return pd.DataFrame(np.asarray(rows), columns=cols)


# ----------------------------------------------------------------------------- likelihood-ratio test


@dataclass(frozen=True)
class LikelihoodRatioTestResult:
    """A likelihood-ratio test between two nested fits (lme4 ``anova(smaller, larger)``).

    Unpacks as ``statistic, df, p_value``; ``table`` holds lme4's anova table (npar, AIC, BIC,
    logLik, deviance, Chisq, Df, Pr(>Chisq)), ``refitted`` whether REML fits were refitted by ML.
    """

    statistic: float
    df: int
    p_value: float
    refitted: bool
    table: pd.DataFrame

    def __iter__(self):
        return iter((self.statistic, self.df, self.p_value))


def _ml_fit(est):
    """The estimator's fit by maximum likelihood (refitted from its cross-products if REML)."""
    fit = est._fit
    if not fit.reml:
        return fit
    kept = [est.fixed_effects_names_[j] for j in fit.keep]
    return _refit(fit, copy.copy(fit.cp), kept, fit.factor.name, reml=False)


def _structure(est):
    fixed = {est.fixed_effects_names_[j] for j in est._fit.keep}
    random = {}
    for t in est._fit.terms:
        for i, j in zip(t.tri_rows, t.tri_cols):
            random.setdefault(t.name, set()).add((t.column_names[i], t.column_names[j]))
    return fixed, random


def likelihood_ratio_test(smaller, larger, refit=True):
    """Compare two fitted mixed models, the smaller nested in the larger (see the public wrapper)."""
    from sklearn.utils.validation import check_is_fitted

    from .mixed import MixedLinearRegressor

    for nm, est in (("smaller", smaller), ("larger", larger)):
        if not isinstance(est, MixedLinearRegressor):
            raise TypeError(f"{nm} must be a fitted MixedLinearRegressor; got {type(est).__name__}.")
        check_is_fitted(est)
    if smaller._data_fingerprint != larger._data_fingerprint:
        raise ValueError(
            "the two models were not fitted to the same data (the number of rows, the response or "
            "the sample weights differ); a likelihood-ratio test compares fits to the same rows."
        )
    fs, rs = _structure(smaller)
    fl, rl = _structure(larger)
    nested = fs <= fl and all(f in rl and cols <= rl[f] for f, cols in rs.items())
    k_s, k_l = smaller._fit.n_params, larger._fit.n_params
    if not nested or k_s >= k_l:
        raise ValueError(
            "the models are not nested: every fixed effect and every random-effect term "
            "(grouping factor and coefficient pair) of `smaller` must also be in `larger`, and "
            f"`larger` must have more parameters ({k_l} vs {k_s}). Check the order of the arguments."
        )
    refitted = bool(refit and (smaller.reml or larger.reml))
    if refitted:
        a, b = _ml_fit(smaller), _ml_fit(larger)
    else:
        if smaller.reml != larger.reml:
            raise ValueError("one fit is REML and the other ML; use refit=True to compare both by ML.")
        if smaller.reml and fs != fl:
            raise ValueError(
                "REML likelihoods of models with different fixed effects are not comparable; "
                "use refit=True (refit both by ML), as lme4's anova does."
            )
        a, b = smaller._fit, larger._fit
    stat = max(a.criterion - b.criterion, 0.0)
    df = int(k_l - k_s)
    pval = float(stats.chi2.sf(stat, df))
    table = pd.DataFrame(
        {
            "npar": [k_s, k_l],
            "AIC": [a.aic, b.aic],
            "BIC": [a.bic, b.bic],
            "logLik": [a.loglik, b.loglik],
            "deviance": [a.criterion, b.criterion],
            "Chisq": [np.nan, stat],
            "Df": [np.nan, df],
            "Pr(>Chisq)": [np.nan, pval],
        },
        index=["smaller", "larger"],
    )
    return LikelihoodRatioTestResult(float(stat), df, pval, refitted, table)


def wald_intervals(table, level):
    """Wald intervals ``estimate +- z se`` for the fixed effects (lme4 ``confint(method="Wald")``)."""
    z = stats.norm.ppf(0.5 + level / 2.0)
    return pd.DataFrame(
        {"estimate": table["estimate"], "lower": table["estimate"] - z * table["std_error"],
         "upper": table["estimate"] + z * table["std_error"]}
    ).rename_axis("parameter")


def percentile_intervals(replicates, estimates, level):
    """Percentile intervals of bootstrap replicates (lme4 ``confint(method="boot", boot.type="perc")``)."""
    a = (1.0 - level) / 2.0
    ok = replicates.dropna()
    lo = ok.quantile(a)
    hi = ok.quantile(1.0 - a)
    return pd.DataFrame({"estimate": estimates, "lower": lo, "upper": hi}).rename_axis("parameter")

