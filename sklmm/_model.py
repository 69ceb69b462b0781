"""One fit of the mixed-model engine: terms and fixed columns in, fitted state out.

Shared by every estimator (MixedLinearRegressor, PenalizedSplineRegressor): cross-products once,
the optimizer loop over the profiled criterion, then the solution at the optimum.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from ._optimize import OptSummary, minimize_bobyqa
from ._pls import cross_products, dense_system, make_factor, profiled_criterion
from ._terms import templates, theta_layout

__all__ = ["MixedFit", "fit_mixed", "fit_cross_products", "SingularFitWarning", "SINGULAR_TOL", "RANK_TOL"]

#: lme4's default tolerance for ``isSingular``
SINGULAR_TOL = 1e-4
#: relative tolerance of the sequential rank check of the fixed-effects design (lme4: 1e-7)
RANK_TOL = 1e-7


class SingularFitWarning(UserWarning):
    """The fit is singular: a variance component is (numerically) zero, or a correlation is +-1."""


def independent_columns(XtX, tol=RANK_TOL):
    """Columns kept in order, each only when not in the span of the earlier kept ones."""
    d = np.sqrt(np.clip(np.diag(XtX), 0, None))
    keep = []
    for j in range(XtX.shape[0]):
        if d[j] == 0:
            continue
        if keep:
            S = XtX[np.ix_(keep, keep)] / np.outer(d[keep], d[keep])
            s = XtX[keep, j] / (d[keep] * d[j])
            resid = 1.0 - s @ np.linalg.solve(S, s)
        else:
            resid = 1.0
        if resid > tol:
            keep.append(j)
    return keep


def _keep_fixed(cp, keep):
    """Cross-products restricted to the kept fixed-effect columns (y stays last)."""
    idx = list(keep) + [cp.p]
    cp.xyxy = cp.xyxy[np.ix_(idx, idx)]
    cp.zxy = [z[:, :, idx] for z in cp.zxy]
    cp.p = len(keep)
    return cp


@dataclass
class MixedFit:
    """The fitted state of one model: what the estimators expose, and what inference needs."""

    terms: list
    theta: np.ndarray
    beta: np.ndarray  # one entry per fixed column, 0 for dropped (aliased) columns
    keep: list  # indices of the fixed columns that entered the fit
    u: np.ndarray  # spherical conditional modes, all terms
    b: list  # per term, (n_levels, p_k) conditional modes on the data scale
    sigma: float
    criterion: float
    reml: bool
    n: int
    cp: object
    factor: object
    optimizer: OptSummary

    @property
    def n_params(self):
        return self.cp.p + len(self.theta) + 1

    @property
    def loglik(self):
        return -0.5 * self.criterion

    @property
    def aic(self):
        return self.criterion + 2 * self.n_params

    @property
    def bic(self):
        return self.criterion + np.log(self.n) * self.n_params

    @property
    def is_singular(self):
        # grouping-factor terms only: a smooth whose variance is 0 is a straight line, not a
        # boundary fit in lme4's sense
        slices, _ = theta_layout(self.terms)
        for t, s in zip(self.terms, slices):
            if not t.scalar and np.any(self.theta[s][t.theta_lower() == 0] < SINGULAR_TOL):
                return True
        return False

    def theta_names(self):
        return [nm for t in self.terms for nm in t.theta_names()]

    def variance_table(self):
        """lme4's ``as.data.frame(VarCorr(fit))`` with sklmm's column names."""
        rows = []
        s2 = self.sigma**2
        for t, T in zip(self.terms, templates(self.terms, self.theta)):
            cov = s2 * (T @ T.T)
            sd = np.sqrt(np.diag(cov))
            names = [t.name] if t.scalar else t.column_names
            for a, nm in enumerate(names):
                rows.append((t.name, nm, None, cov[a, a], sd[a], np.nan))
            if t.correlated and not t.scalar:
                for a in range(t.n_coef):
                    for c in range(a + 1, t.n_coef):
                        denom = sd[a] * sd[c]
                        corr = cov[a, c] / denom if denom > 0 else np.nan
                        rows.append((t.name, t.column_names[a], t.column_names[c], cov[a, c], np.nan, corr))
        rows.append(("Residual", None, None, s2, self.sigma, np.nan))
        return pd.DataFrame(rows, columns=["factor", "term", "term2", "variance", "std_dev", "correlation"])

    def posterior_precision(self):
        """``M = [[Lambda'Z'Z Lambda + I, Lambda'Z'X], [X'Z Lambda, X'X]]`` (dense, kept columns).

        ``sigma^2 M^{-1}`` is the covariance of ``(u, beta)`` given y at theta (the Bayesian
        posterior covariance that mgcv reports as ``Vp`` for smooths).
        """
        M = dense_system(self.cp, self.terms, self.theta)
        return M[:-1, :-1]


def _progress_printer(verbose, n_theta, solver):
    """Print every evaluation (verbose >= 2) or every 10th and each new best (verbose == 1)."""
    best = [np.inf]
    print(f"[sklmm] optimizing {n_theta} covariance parameter(s) with BOBYQA ({solver} Cholesky)")

    def callback(k, x, f):
        improved = f < best[0]
        best[0] = min(best[0], f)
        if verbose >= 2 or k % 10 == 0 or (improved and k <= 5):
            th = np.array2string(np.asarray(x), precision=5, max_line_width=120)
            print(f"[sklmm] eval {k:5d}  criterion {f:.10g}  best {best[0]:.10g}  theta {th}")

    return callback


def fit_mixed(terms, Xf, y, fe_names, *, sample_weight=None, **options):
    """Fit the linear mixed model with these random-effect terms and fixed columns ``Xf``.

    ``sample_weight`` are prior (precision) weights, as lme4's ``weights``. The other keyword
    arguments are those of :func:`fit_cross_products`.
    """
    cp = cross_products(terms, Xf, y, sample_weight=sample_weight)
    options.setdefault("stacklevel", 4)
    return fit_cross_products(terms, cp, fe_names, **options)


def fit_cross_products(terms, cp, fe_names, *, reml, solver="auto", max_iter=10000,
                       theta_fixed=None, theta_start=None, verbose=0, stacklevel=3):
    """Fit the model from its cross-products ``cp`` (see :func:`sklmm._pls.cross_products`).

    The cross-products are sums over rows, so they may come from one array or be summed over
    chunks of a larger data set; nothing below touches the rows. ``theta_fixed`` maps positions
    of theta to values held fixed (e.g. a smooth with a given smoothing parameter); the optimizer
    works on the others. ``theta_start`` replaces lme4's start (warm start). ``verbose > 0``
    prints the optimizer's progress.
    """
    n = cp.n
    n_fixed = cp.p
    keep = independent_columns(cp.xyxy[:-1, :-1])
    if len(keep) < n_fixed:
        dropped = [fe_names[j] for j in range(n_fixed) if j not in keep]
        warnings.warn(
            f"fixed-effect model matrix is rank deficient, so dropping {len(dropped)} "
            f"column(s): {dropped} (as lme4 does); their coefficients are reported as 0.",
            UserWarning,
            stacklevel=stacklevel,
        )
        cp = _keep_fixed(cp, keep)
    for t in terms:
        t.strip_data()
    p = cp.p
    if reml and n <= p:
        raise ValueError(
            f"REML needs more observations (n_samples = {n}) than fixed effects ({p}); use "
            "reml=False or fewer features."
        )
    factor = make_factor(cp, terms, solver)
    lower = np.concatenate([t.theta_lower() for t in terms]) if terms else np.zeros(0)
    start = np.concatenate([t.theta_start() for t in terms]) if terms else np.zeros(0)
    step = None
    if theta_start is not None and len(theta_start) == len(start):
        start = np.maximum(np.asarray(theta_start, dtype=float), lower)
        step = np.maximum(0.05 * np.abs(start), 0.01)

    theta_fixed = theta_fixed or {}
    free = np.array([i for i in range(len(start)) if i not in theta_fixed], dtype=np.intp)
    full = start.copy()
    for i, v in theta_fixed.items():
        full[i] = v

    def expand(x):
        th = full.copy()
        th[free] = x
        return th

    def objective(x):
        return profiled_criterion(factor.update(expand(x)), n, p, reml, cp.sum_log_weights)

    callback = _progress_printer(verbose, len(free), factor.name) if verbose else None
    summ = minimize_bobyqa(objective, start[free], lower[free], max_evals=max_iter, callback=callback,
                           initial_step=None if step is None else step[free])
    if verbose:
        print(f"[sklmm] {summ.return_code} after {summ.n_evals} evaluations: criterion {summ.fmin:.10g}")
    summ.final = expand(summ.final)
    theta = summ.final
    fz = factor.update(theta)
    if fz is None or not np.isfinite(summ.fmin):
        raise ValueError(
            "the penalized least-squares system could not be factored at any theta: the "
            "response is fitted exactly by the fixed effects, or the data are degenerate."
        )
    beta_kept, u = factor.solve()
    beta = np.zeros(n_fixed)
    beta[keep] = beta_kept
    _, z_off = theta_layout(terms)
    b = [
        u[z_off[k] : z_off[k + 1]].reshape(t.n_levels, t.n_coef) @ T.T
        for k, (t, T) in enumerate(zip(terms, templates(terms, theta)))
    ]
    fit = MixedFit(
        terms=terms, theta=theta, beta=beta, keep=keep, u=u, b=b,
        sigma=float(np.sqrt(fz.r2 / (n - p if reml else n))),
        criterion=float(profiled_criterion(fz, n, p, reml, cp.sum_log_weights)),
        reml=reml, n=n, cp=cp, factor=factor, optimizer=summ,
    )
    if not summ.converged:
        warnings.warn(
            f"the optimizer stopped without converging ({summ.return_code} after "
            f"{summ.n_evals} evaluations); raise max_iter or check the model.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if fit.is_singular:
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is estimated as (near) zero or "
            "a correlation as +-1; see variance_components_. This is a legitimate estimate, "
            "often a sign the random-effect structure is richer than the data support.",
            SingularFitWarning,
            stacklevel=stacklevel,
        )
    return fit
