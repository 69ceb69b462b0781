"""One fit of the mixed-model engine: terms and fixed columns in, fitted state out.

Shared by every estimator (MixedLinearRegressor, PenalizedSplineRegressor): cross-products once,
the optimizer loop over the profiled criterion, then the solution at the optimum.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from ._optimize import OptSummary, minimize_bobyqa
from ._pls import _tail_cholesky, cross_products, dense_system, make_factor, profiled_criterion
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
    if np.all(d > 0):  # the usual full-rank case at once: L_jj^2 is column j's residual
        L = _tail_cholesky(XtX / np.outer(d, d))
        if L is not None and np.all(np.diagonal(L) ** 2 > tol):
            return list(range(XtX.shape[0]))
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


#: below this ratio of the least-squares residual sum of squares to ``y'y`` the residual is lost
#: in the rounding of the cross-products: y is fitted exactly by the fixed effects
EXACT_FIT_RATIO = 1e-12
#: below this ratio the criterion is resolved to fewer than ~10 digits: a warning
IMPRECISE_FIT_RATIO = 1e-6
#: lme4's ``checkConv``: tolerance on the (scaled) gradient and finite-difference step on theta
GRAD_TOL = 2e-3
#: relative rounding of the criterion assumed by the convergence check: a gradient below
#: ``CRITERION_RESOLUTION * |criterion| / step`` cannot be told from rounding noise (it matters
#: from about 10^7 rows, where the deviance is ~10^7 and lme4's absolute 2e-3 is below the noise)
CRITERION_RESOLUTION = 1e-14
#: relative decrease of the criterion below which the scaled-gradient test passes (the
#: optimizer's own relative tolerance is 1e-12; a factor 10 of slack)
SCALED_RESOLUTION = 1e-11
GRAD_DELTA = 1e-4
#: a diagonal entry of T below this (in its unit) is probed as on its bound by mirrored_descent
NEAR_SINGULAR = 1e-2
#: covariance_probe examines a term only when the smallest singular value of its T_k (in its
#: coefficients' units) is below this: elsewhere theta maps smoothly onto the covariance, and
#: the Hessian-scaled gradient check is the sharper test
PROBE_BELOW = 0.01
#: a passing check still tries a Newton step when it predicts a decrease above this
POLISH_GAIN = 1e-9
#: after the last restart, a probe must lower the criterion by more than this to be reported
REPORT_GAIN = 1e-4
#: restarts of the optimizer when a check or a probe fails
RESTARTS = 2
#: first steps of a warm start, relative to its theta
WARM_STEP = 0.05


def residual_ratio(cp):
    """Least-squares residual sum of squares of y on the fixed columns, over ``y'y``.

    The last pivot of the Cholesky factor of the column-normalized ``[X y]'[X y]``; 0 when y is
    in the span of X to rounding (the factorization then fails or the pivot vanishes).
    """
    d = np.sqrt(np.diag(cp.xyxy))
    if d[-1] == 0:
        return 0.0
    d = np.where(d > 0, d, 1.0)
    try:
        L = np.linalg.cholesky(cp.xyxy / np.outer(d, d))
    except np.linalg.LinAlgError:
        return 0.0
    return float(L[-1, -1] ** 2)


def _check_response(cp, grouped, stacklevel):
    """Refuse a response the fixed effects fit exactly; warn when rounding limits the fit.

    Without grouping factors (smooths only) an exact fit is only warned about: the fitted
    values are exact whatever the smoothing parameters, which are then undetermined.
    """
    ratio = residual_ratio(cp)
    if ratio < EXACT_FIT_RATIO and not grouped:
        warnings.warn(
            "y is fitted exactly by the unpenalized part of the model (least-squares residual "
            f"sum of squares / sum(y^2) = {ratio:.1e}): the fitted values are exact, but the "
            "residual variance is 0 and the smoothing parameters are not determined.",
            UserWarning,
            stacklevel=stacklevel,
        )
        return
    if ratio < EXACT_FIT_RATIO:
        raise ValueError(
            "y is fitted exactly by the fixed effects (least-squares residual sum of squares / "
            f"sum(y^2) = {ratio:.1e}, at the rounding error of the cross-products), so the "
            "residual variance is 0 and no variance component can be estimated. Check that y "
            "is not a feature or a linear combination of features; if y has a huge constant "
            "offset, subtract it (the fit is equivariant)."
        )
    if ratio < IMPRECISE_FIT_RATIO:
        warnings.warn(
            "the residual variation of y is tiny relative to y itself (least-squares residual "
            f"sum of squares / sum(y^2) = {ratio:.1e}); sklmm's cross-products then resolve the "
            f"criterion to only about {max(int(np.log10(ratio / np.finfo(float).eps)), 0)} "
            "digits and the variance components may be inaccurate. If y has a large constant "
            "offset, subtract it (e.g. y - y.mean(); the fit is equivariant).",
            UserWarning,
            stacklevel=stacklevel,
        )


def optimum_problem(objective, x, lower, fx, tol=GRAD_TOL, delta=GRAD_DELTA, scale=None, polish=None):
    """lme4's ``checkConv`` at the optimizer's answer ``x``: None if it passes, else why not.

    Central differences of the criterion with step ``delta``. A parameter within ``delta`` of
    its lower bound is checked one-sided: it passes when stepping into the interior does not
    lower the criterion faster than ``tol`` (lme4 instead skips the whole check for singular
    fits). The others pass as in lme4 when ``min(|g|, |R^{-1} g|) <= tol``, with ``H = R'R``
    the finite-difference Hessian, which is computed only when the raw gradient fails (its
    off-diagonal entries by one forward difference per pair, where lme4 takes four).
    ``scale`` (see :func:`theta_scale`) runs the check in each parameter's natural unit.
    ``tol`` is raised to the gradient the differences can resolve, ``CRITERION_RESOLUTION *
    |fx| / delta``, so that very large data sets are not flagged for rounding noise.

    A check that passes with the Hessian while it still predicts a decrease above
    :data:`POLISH_GAIN` (BOBYQA can stop on a small step short of the optimum) appends the
    Newton step from ``x`` to the list ``polish``, for the caller to try.
    """
    x = np.asarray(x, dtype=float)
    tol = max(tol, CRITERION_RESOLUTION * abs(fx) / delta)
    if scale is not None:
        unscaled = objective

        def objective(z):
            return unscaled(z * scale)

        x, lower = x / scale, lower / scale
    k = x.size
    at_bound = x - lower < delta
    fp, fm = np.empty(k), np.full(k, np.nan)
    for j in range(k):
        e = np.zeros(k)
        e[j] = delta
        fp[j] = objective(x + e)
        if not at_bound[j]:
            fm[j] = objective(x - e)
    if not (np.all(np.isfinite(fp)) and np.all(np.isfinite(fm[~at_bound]))):
        return "the criterion is not finite next to the optimum"
    grad = np.where(at_bound, (fp - fx) / delta, (fp - np.where(at_bound, 0.0, fm)) / (2 * delta))
    off_bound = np.flatnonzero(at_bound & (grad < -tol))
    if off_bound.size:
        j = int(off_bound[0])
        return f"moving theta[{j}] off its bound lowers the criterion (slope {grad[j]:.3g})"
    idx = np.flatnonzero(~at_bound)
    if np.all(np.abs(grad[idx]) <= tol):
        return None
    # off the diagonal, one forward difference per pair reusing f(x + delta e_i): the Hessian
    # only scales the gradient (lme4 takes four central differences per pair)
    H = np.empty((idx.size, idx.size))
    for a, i in enumerate(idx):
        H[a, a] = (fp[i] - 2 * fx + fm[i]) / delta**2
        for c, j in enumerate(idx[:a]):
            z = x.copy()
            z[[i, j]] += delta
            H[a, c] = H[c, a] = (objective(z) - fp[i] - fp[j] + fx) / delta**2
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(H).T, grad[idx])  # lme4: solve(chol(H), g)
    except np.linalg.LinAlgError:
        return ("the criterion's Hessian is not positive definite there (a flat or "
                f"non-identifiable direction), with max|gradient| = {np.abs(grad[idx]).max():.3g}")
    worst = np.minimum(np.abs(scaled), np.abs(grad[idx]))
    # the scaled gradient is in units of sqrt(criterion): |s| predicts a possible decrease of
    # about s^2 / 2, so below sqrt(2 * SCALED_RESOLUTION * |fx|) it is within the optimizer's
    # relative accuracy (lme4's fixed 2e-3 flags fits at the optimum from about 10^6 rows)
    tol_scaled = max(tol, np.sqrt(2.0 * SCALED_RESOLUTION * abs(fx)))
    if np.all(worst <= tol_scaled):
        if polish is not None and 0.5 * scaled @ scaled > max(POLISH_GAIN, SCALED_RESOLUTION * abs(fx)):
            z = x.copy()
            z[idx] -= np.linalg.solve(H, grad[idx])  # one Newton step on the differences
            z = np.maximum(z, lower)
            polish.append(z * scale if scale is not None else z)
        return None
    a = int(np.argmax(worst))
    return f"max|scaled gradient| = {worst[a]:.3g} > {tol_scaled:.3g} (theta[{int(idx[a])}])"


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
    theta_unit: np.ndarray = None  # theta_scale(): singularity is judged in these units
    tables: dict = field(default_factory=dict)  # the estimators' tables, built on first access

    def __getstate__(self):
        # the factorization is rebuilt from the cross-products when needed: CHOLMOD factors do
        # not pickle, and the blocked factor's precomputed update can be large
        state = dict(self.__dict__)
        factor = state.pop("factor", None)
        state["_solver_name"] = getattr(factor, "name", None) or state.get("_solver_name", "blocked")
        return state

    def __getattr__(self, name):
        if name != "factor" or "_solver_name" not in self.__dict__:
            raise AttributeError(name)
        factor = make_factor(self.cp, self.terms, self._solver_name)
        if self.terms:
            factor.update(self.theta)
        self.factor = factor
        return factor

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
        # boundary fit in lme4's sense. theta in its natural units (lme4's, unless a slope
        # column's scale is far from 1), so that rescaling a column does not make a fit singular
        theta = self.theta if self.theta_unit is None else self.theta / self.theta_unit
        slices, _ = theta_layout(self.terms)
        for t, s in zip(self.terms, slices):
            if not t.scalar and np.any(theta[s][t.theta_lower() == 0] < SINGULAR_TOL):
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


def theta_scale(terms, cp):
    """The natural unit of each entry of theta: 1 / (root mean square of its row's column).

    Intercepts and smooths get 1 (lme4's unit), and so do slope columns whose RMS ``s`` lies in
    ``[0.1, 10]``, so that ordinary data start exactly where lme4 starts. A slope column
    outside that range gets ``1 / s``: the optimizer's start (lme4's start times this unit), its
    first steps and the convergence check then follow a rescaling ``x -> c x`` (``theta``'s slope
    rows divided by ``c``) instead of starting orders of magnitude away from the optimum.
    """
    out = []
    for t, D in zip(terms, cp.diag):
        unit = np.ones(t.n_coef)
        if not t.scalar:
            rms = np.sqrt(np.einsum("jaa->a", D) / cp.n)
            ok = (rms > 0) & np.isfinite(rms) & ((rms < 0.1) | (rms > 10.0))
            unit[ok] = 1.0 / rms[ok]
            if t.intercept:
                unit[0] = 1.0
        out.append(unit[t.tri_rows] if not t.scalar else np.ones(t.n_theta))
    return np.concatenate(out) if out else np.zeros(0)


#: the moment start's diagonal entries of T_k are kept within [MOMENT_FLOOR, MOMENT_CEILING]
#: (in each coefficient's unit, see :func:`theta_scale`)
MOMENT_FLOOR = 0.02
MOMENT_CEILING = 50.0
#: first steps from the moment start: at most this fraction of each coefficient's estimated
#: standard deviation (0.1 to 0.3 did about equally well on the lme4 reference models; 0.75,
#: MixedModels.jl's step from its start at 1, took up to twice as many steps) ...
MOMENT_STEP = 0.2
#: ... and at most this many standard errors of that estimate (see :func:`_moment_covariance`).
#: With many levels the criterion is much steeper than 0.2 sd: InstEval took 46 evaluations
#: with the first rule alone and 27 with both, the crossed 1M benchmark 51 and 26, the 10M
#: model 25 and 15; 0.5 to 2 standard errors all did about equally well.
MOMENT_STEP_SE = 1.0


def _regular_inverses(D):
    """Which symmetric blocks ``D_j`` (J, p, p) are regular (smallest eigenvalue above 1e-8 of
    the largest), and the inverses of those; 1 x 1 and 2 x 2 blocks in closed form (a batched
    LAPACK call costs more than the arithmetic at these sizes)."""
    pk = D.shape[1]
    if pk == 1:
        ok = D[:, 0, 0] > 0
        return ok, 1.0 / D[ok]
    if pk == 2:
        a, b, c = D[:, 0, 0], D[:, 0, 1], D[:, 1, 1]
        half = 0.5 * (a + c)
        top = half + np.hypot(0.5 * (a - c), b)
        det = a * c - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(top > 0, det / top, 0.0)  # the smaller eigenvalue, without cancellation
        ok = low > 1e-8 * np.maximum(top, np.finfo(float).tiny)
        a, b, c, det = a[ok], b[ok], c[ok], det[ok]
        inv = np.empty((len(a), 2, 2))
        inv[:, 0, 0], inv[:, 1, 1] = c / det, a / det
        inv[:, 0, 1] = inv[:, 1, 0] = -b / det
        return ok, inv
    ev = np.linalg.eigvalsh(D)
    ok = ev[:, 0] > 1e-8 * np.maximum(ev[:, -1], np.finfo(float).tiny)
    return ok, np.linalg.inv(D[ok])


def _moment_covariance(D, zr, rss, n, p, sigma2=None):
    """One-way method-of-moments estimate of a grouping term's relative covariance, or None.

    Each level's least-squares coefficients ``b_j = D_j^{-1} Z_j'r`` on the fixed-effect
    residuals ``r`` (``rss = r'r``) vary with covariance ``Sigma + sigma^2 E[D_j^{-1}]``;
    ``sigma^2`` comes from the residual sum of squares within levels. For a balanced one-way
    layout this is the classical ANOVA estimator ``(MSB - MSW) / (n_per_level MSW)``. Other
    terms are ignored, so in general it is a starting point only. Levels whose block ``D_j``
    is singular (a slope with one distinct value in the level) are left out. A ``sigma2`` given
    (from all factors at once, see :func:`moment_start`) replaces the within-level estimate.

    Returns
    -------
    S : ndarray of shape (pk, pk)
        The relative covariance ``Sigma / sigma^2``.
    se : ndarray of shape (pk,)
        Approximate standard errors of its diagonal: a sample variance of ``J`` level
        coefficients with variance ``v`` has standard error ``sqrt(2 / (J - 1)) v``.
    Or None when the estimate fails.
    """
    J, pk, _ = D.shape
    ok, Dinv = _regular_inverses(D)
    n_ok = int(np.sum(ok))
    # the term's columns are columns of X (an intercept, slopes), so [X, Z_j] has rank
    # p + pk (n_ok - 1): the classical within-groups degrees of freedom when X = the term
    df_within = n - pk * n_ok - max(p - pk, 0)
    if n_ok < 2 or df_within <= 0:
        return None
    b = np.einsum("jab,jb->ja", Dinv, zr[ok])
    if sigma2 is None:
        ss_within = rss - float(np.einsum("ja,ja->", zr[ok], b))
        if not ss_within > 0:
            return None
        sigma2 = ss_within / df_within
    bc = b - b.mean(axis=0)
    V = bc.T @ bc / (n_ok - 1) / sigma2
    S = V - Dinv.mean(axis=0)
    if not np.all(np.isfinite(S)):
        return None
    return 0.5 * (S + S.T), np.sqrt(2.0 / (n_ok - 1)) * np.diag(V)


def _residual_variance_all_fixed(terms, cp, scale, factor):
    """sigma^2 with every grouping factor's coefficients as fixed effects, or None.

    One evaluation of the factorization at ``T_k = 1000 I`` (in each coefficient's unit): the
    penalty on the random effects is then negligible and ``r^2`` is the residual sum of squares
    of y on ``[X, Z]``, whose rank is ``p + sum_k (q_k - p_k)`` (each term's columns repeat
    columns of X, summed over its levels).
    """
    big = np.concatenate([t.theta_start() for t in terms]) * scale * 1e3
    df = cp.n - cp.p - sum(t.q - t.n_coef for t in terms)
    fz = factor.update(big)
    if fz is None or df <= 0 or not fz.r2 > 0:
        return None
    return fz.r2 / df


def moment_start(terms, cp, scale, factor=None):
    """A start for theta, and the optimizer's first steps, from one-way moment estimates.

    lme4 starts every term at ``T_k = I``. Here each grouping term starts at the Cholesky
    factor of its one-way method-of-moments covariance (:func:`_moment_covariance`), with
    diagonal entries kept within [:data:`MOMENT_FLOOR`, :data:`MOMENT_CEILING`] units, and the
    first steps are :data:`MOMENT_STEP` times each row's standard deviation, or
    :data:`MOMENT_STEP_SE` standard errors of it when that is smaller: the optimizer then works
    in units of the expected answer and of the criterion's curvature (BOBYQA rescales each
    coordinate by its first step), which saves evaluations when the variances differ by orders
    of magnitude (lme4's InstEval: 0.28, 0.44 and 0.07) and when many levels make the criterion
    steep, and its first trust region is small because the start is already close (BOBYQA's
    region still grows when it is not).
    Smooth terms, and terms whose estimate fails (a level count too small, singular blocks),
    keep lme4's start and MixedModels.jl's steps. With two or more grouping factors (and no
    smooths) and a ``factor`` given, the residual variance comes from all factors at once
    (:func:`_residual_variance_all_fixed`, one evaluation): each factor's own within-level
    variance would include the others' variances (crossed subjects and items, InstEval's
    students and lecturers) and start every factor too low.

    Returns
    -------
    start, step : ndarray
    """
    start = np.concatenate([t.theta_start() for t in terms]) * scale if terms else np.zeros(0)
    step = np.where(np.isfinite(np.concatenate([t.theta_lower() for t in terms])), 0.75, 1.0) * scale \
        if terms else np.zeros(0)
    XtX, Xty, yty = cp.xyxy[:-1, :-1], cp.xyxy[:-1, -1], cp.xyxy[-1, -1]
    try:  # the fixed columns are linearly independent (aliased ones were dropped)
        beta = np.linalg.solve(XtX, Xty) if cp.p else np.zeros(0)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
    rss = float(yty - beta @ Xty)
    if not rss > 0:
        return start, step
    sigma2 = None
    if factor is not None and len(terms) > 1 and not any(t.scalar for t in terms):
        sigma2 = _residual_variance_all_fixed(terms, cp, scale, factor)
    slices, _ = theta_layout(terms)
    for t, sl, D, zxy in zip(terms, slices, cp.diag, cp.zxy):
        if t.scalar:
            continue
        zr = zxy[..., -1] - zxy[..., :-1] @ beta
        est = _moment_covariance(D, zr, rss, cp.n, cp.p, sigma2)
        if est is None:
            continue
        S, se_var = est
        unit = np.empty(t.n_coef)
        unit[t.tri_rows[t.tri_rows == t.tri_cols]] = scale[sl][t.tri_rows == t.tri_cols]
        var = np.clip(np.diag(S), 0.0, None)
        sd = np.clip(np.sqrt(var) / unit, MOMENT_FLOOR, MOMENT_CEILING) * unit
        if t.correlated:
            corr = S / np.sqrt(np.outer(var, var) + np.finfo(float).tiny)
            corr = np.clip(corr, -0.9, 0.9)
            np.fill_diagonal(corr, 1.0)
            if t.n_coef > 2:  # (2 x 2: the clipped correlation's eigenvalues are 1 +- r >= 0.1)
                w, V = np.linalg.eigh(corr)
                corr = (V * np.clip(w, 0.05, None)) @ V.T
                d = np.sqrt(np.diag(corr))
                corr = corr / np.outer(d, d)
            T = np.linalg.cholesky(corr * np.outer(sd, sd))
        else:
            T = np.diag(sd)
        start[sl] = T[t.tri_rows, t.tri_cols]
        # standard error of sd = sqrt(var): se(var) / (2 sd) (the delta method)
        row_step = np.minimum(MOMENT_STEP * sd, MOMENT_STEP_SE * se_var / (2 * sd))
        row_step = np.maximum(row_step, 1e-3 * unit)  # se_var is 0 when every b_j is equal
        step[sl] = row_step[t.tri_rows]
    return start, step


def column_mirrors(terms, free):
    """For each free diagonal entry ``T_jj`` of theta, ``(below, rest)``: the free positions of
    the entries below it in its column of ``T_k`` and, when a single row ``i`` lies below, of
    the rest of that row (``T_i,j+1..i``). While ``T_jj = 0`` the model (``T_k T_k'``) does not
    change when ``below`` is negated, nor when row ``i``'s part from column j on is rotated."""
    slices, _ = theta_layout(terms)
    pos = {int(i): a for a, i in enumerate(free)}
    out = {}
    for t, sl in zip(terms, slices):
        if t.scalar:
            continue
        for d in np.flatnonzero(t.tri_rows == t.tri_cols):
            j = t.tri_cols[d]
            below = np.flatnonzero((t.tri_cols == j) & (t.tri_rows > j))
            idx = [sl.start + int(b) for b in below]
            if not idx or sl.start + int(d) not in pos or not all(i in pos for i in idx):
                continue
            rest = []
            if len(below) == 1:
                i = t.tri_rows[below[0]]
                rest = [sl.start + int(r) for r in np.flatnonzero((t.tri_rows == i) & (t.tri_cols > j))]
            out[pos[sl.start + int(d)]] = ([pos[i] for i in idx], [pos[r] for r in rest if r in pos])
    return out


def mirrored_descent(objective, x, fx, mirrors, scale, tol=GRAD_TOL, delta=GRAD_DELTA, min_gain=0.0):
    """A point with the same criterion as ``x`` from which the optimizer can still descend.

    A diagonal entry of ``T_k`` at its bound 0 leaves free the sign of the entries below it
    and, with one row below, how that row's length is split between column j and the later
    columns (the correlation the variance would have if it grew): the model depends on
    ``T_k T_k'`` only. The criterion may rise into the interior for the split the optimizer
    happened to end with and fall for another: a boundary point that is a local optimum of
    theta only. lme4 stops there; here the other sign and the fully correlated splits are
    probed and, when one descends faster than ``tol`` (and by more than ``min_gain``), returned.
    """
    for j, (below, rest) in mirrors.items():
        if x[j] >= NEAR_SINGULAR * scale[j]:  # at or near the bound: the split barely matters
            continue
        candidates = []
        flipped = x.copy()
        flipped[below] = -flipped[below]
        candidates.append(flipped)
        if rest:
            r = np.sqrt(np.sum(x[below] ** 2) + np.sum(x[rest] ** 2))
            for sign in (1.0, -1.0):
                z = x.copy()
                z[below], z[rest] = sign * r, 0.0
                candidates.append(z)
        for z in candidates:
            step = z.copy()
            step[j] += delta * scale[j]
            if objective(step) < fx - max(tol * delta, min_gain):
                return z
    return None


def covariance_terms(terms, free, scale):
    """``(term, free positions of its theta, unit of each coefficient)`` for the grouping terms
    whose theta is entirely free (those :func:`covariance_probe` examines)."""
    slices, _ = theta_layout(terms)
    pos = {int(i): a for a, i in enumerate(free)}
    out = []
    for t, sl in zip(terms, slices):
        idx = list(range(sl.start, sl.stop))
        if t.scalar or not all(i in pos for i in idx):
            continue
        at = np.array([pos[i] for i in idx])
        diag = t.tri_rows == t.tri_cols
        unit = np.empty(t.n_coef)
        unit[t.tri_rows[diag]] = scale[at[diag]]
        out.append((t, at, unit))
    return out


def covariance_probe(objective, x, fx, candidates, min_gain=1e-6, eps=1e-6, tol=1e-3):
    """A point better than ``x`` found in covariance space, or None.

    The model depends on each term's relative covariance ``S = T T'`` (here in each
    coefficient's unit); at its optimum the derivative ``G = dcriterion/dS`` must be positive
    semi-definite (and vanish on the range of ``S``): the first-order condition on the cone of
    covariance matrices. Near a singular fit theta is a poor coordinate system for it: the
    covariance grows quadratically in theta along the null space of ``S``, and a correlation
    barely moves the criterion through theta when a variance is near 0, so neither BOBYQA's
    stopping rule nor lme4's gradient check can tell such a point from the optimum. ``G`` is
    found from directional derivatives along ``v v'`` (basis vectors and their pairwise sums:
    ``p(p+1)/2`` evaluations per term); if it has an eigenvalue below ``-tol``, the covariance is
    grown along that eigenvector at a few sizes and the best point returned when it lowers the
    criterion by more than ``min_gain``.
    """
    best, best_f = None, fx - min_gain

    def at(t, at_, unit, S):
        if t.correlated:
            T = np.linalg.cholesky(S + 1e-13 * max(1.0, np.trace(S)) * np.eye(t.n_coef))
        else:
            T = np.diag(np.sqrt(np.clip(np.diag(S), 0, None)))
        z = x.copy()
        z[at_] = (unit[:, None] * T)[t.tri_rows, t.tri_cols]
        return z

    for t, at_, unit, in candidates:
        Tn = t.template(x[at_]) / unit[:, None]
        if np.linalg.svd(Tn, compute_uv=False).min() >= PROBE_BELOW:
            continue  # theta is a good chart here: the gradient check has covered the term
        S = Tn @ Tn.T
        p = t.n_coef
        E = np.eye(p)

        def q(v):
            return (objective(at(t, at_, unit, S + eps * np.outer(v, v))) - fx) / eps

        G = np.diag([q(E[i]) for i in range(p)])
        if t.correlated:  # a diagonal covariance has no off-diagonal directions
            for i in range(p):
                for j in range(i):
                    G[i, j] = G[j, i] = q(E[i] + E[j]) - (G[i, i] + G[j, j]) / 2
        lam, U = np.linalg.eigh(G)
        if lam[0] >= -tol:
            continue
        v = U[:, 0] if t.correlated else E[int(np.argmin(np.diag(G)))]
        for size in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            z = at(t, at_, unit, S + size * max(1.0, np.trace(S)) * np.outer(v, v))
            f = objective(z)
            if f < best_f:
                best, best_f = z, f
    return best


def _verified(objective, summ, lower, max_iter, scale, mirrors=None, candidates=()):
    """The optimizer's answer after lme4's convergence check and the probes in covariance space
    (:func:`mirrored_descent`, :func:`covariance_probe`), with up to :data:`RESTARTS` restarts
    when any fails: from the better point a probe found, or from the answer itself."""
    boundary = ("it stopped where the criterion still decreases along a direction of a random-"
                "effect covariance (a singular or nearly singular point)")

    def check(x, fx, min_gain):
        polish = []
        problem = optimum_problem(objective, x, lower, fx, scale=scale, polish=polish)
        if problem is not None:
            return problem, x
        if polish:
            f = objective(polish[0])
            if f < fx:
                summ.final, summ.fmin = polish[0], f
                x, fx = summ.final, summ.fmin
        better = mirrored_descent(objective, x, fx, mirrors or {}, scale, min_gain=min_gain)
        if better is None:
            better = covariance_probe(objective, x, fx, candidates, min_gain=max(min_gain, 1e-6))
        return (None, None) if better is None else (boundary, better)

    # any gain is worth a restart; after the last one, only a gain above the optimizer's
    # accuracy where the criterion is flat (REPORT_GAIN) is reported as a failure to converge
    problem, restart = check(summ.final, summ.fmin, 0.0)
    n_evals = summ.n_evals
    for attempt in range(RESTARTS):
        if problem is None or n_evals >= max_iter:
            break
        again = minimize_bobyqa(objective, restart, lower, max_evals=max_iter - n_evals,
                                xtol_abs=1e-10 * scale,
                                initial_step=np.maximum(0.05 * np.abs(restart), 0.01 * scale))
        n_evals += again.n_evals
        if again.converged and again.fmin <= summ.fmin:
            summ = again
        problem, restart = check(summ.final, summ.fmin, REPORT_GAIN if attempt == RESTARTS - 1 else 0.0)
    summ.n_evals = n_evals
    if problem is not None:
        summ.converged = False
    return summ, problem


def fit_mixed(terms, Xf, y, fe_names, *, sample_weight=None, **options):
    """Fit the linear mixed model with these random-effect terms and fixed columns ``Xf``.

    ``sample_weight`` are prior (precision) weights, as lme4's ``weights``. The other keyword
    arguments are those of :func:`fit_cross_products`.
    """
    cp = cross_products(terms, Xf, y, sample_weight=sample_weight)
    options.setdefault("stacklevel", 4)
    return fit_cross_products(terms, cp, fe_names, **options)


def fit_cross_products(terms, cp, fe_names, *, reml, solver="auto", max_iter=10000,
                       theta_fixed=None, theta_start=None, verbose=0, stacklevel=3,
                       check_convergence=True):
    """Fit the model from its cross-products ``cp`` (see :func:`sklmm._pls.cross_products`).

    The cross-products are sums over rows, so they may come from one array or be summed over
    chunks of a larger data set; nothing below touches the rows. ``theta_fixed`` maps positions
    of theta to values held fixed (e.g. a smooth with a given smoothing parameter); the optimizer
    works on the others. ``theta_start`` replaces lme4's start (warm start). ``verbose > 0``
    prints the optimizer's progress. ``check_convergence`` runs lme4's gradient check at the
    optimum (:func:`optimum_problem`, ``2 len(theta)`` more evaluations when it passes at once)
    and probes singular and nearly singular covariances (:func:`mirrored_descent`,
    :func:`covariance_probe`, ``p(p+1)/2`` evaluations per term of ``p`` coefficients); on a
    failure the optimizer restarts (at most :data:`RESTARTS` times), and a failure after the
    last restart sets ``converged`` to False with a ConvergenceWarning. Turn it off for many
    refits of one model (a bootstrap) when speed matters more.
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
    grouped = any(not t.scalar for t in terms)
    if terms:
        _check_response(cp, grouped, stacklevel)
    factor = make_factor(cp, terms, solver)
    lower = np.concatenate([t.theta_lower() for t in terms]) if terms else np.zeros(0)
    scale = theta_scale(terms, cp)
    if theta_start is not None and len(theta_start) == len(lower):
        start = np.maximum(np.asarray(theta_start, dtype=float), lower)
        step = np.maximum(WARM_STEP * np.abs(start), 0.01 * scale)
    else:
        start, step = moment_start(terms, cp, scale, factor)

    theta_fixed = theta_fixed or {}
    free = np.array([i for i in range(len(start)) if i not in theta_fixed], dtype=np.intp)
    full = start.copy()
    for i, v in theta_fixed.items():
        full[i] = v

    def expand(x):
        if not theta_fixed:
            return x
        th = full.copy()
        th[free] = x
        return th

    def objective(x):
        return profiled_criterion(factor.update(expand(x)), n, p, reml, cp.sum_log_weights)

    callback = _progress_printer(verbose, len(free), factor.name) if verbose else None
    summ = minimize_bobyqa(objective, start[free], lower[free], max_evals=max_iter, callback=callback,
                           initial_step=step[free], xtol_abs=1e-10 * scale[free])
    if verbose:
        print(f"[sklmm] {summ.return_code} after {summ.n_evals} evaluations: criterion {summ.fmin:.10g}")
    problem = None
    if check_convergence and summ.converged and len(free) and np.isfinite(summ.fmin):
        summ, problem = _verified(objective, summ, lower[free], max_iter, scale[free],
                                  column_mirrors(terms, free), covariance_terms(terms, free, scale[free]))
    summ.final = expand(summ.final)
    theta = summ.final
    fz = factor.update(theta)
    if fz is None or not np.isfinite(summ.fmin):
        raise ValueError(
            "the penalized least-squares system could not be factored at any theta: y is fitted "
            "exactly by the model (its fixed effects, or fixed and random effects), leaving no "
            "residual, or the data are degenerate. Check that y is not computed from the "
            "features and group labels."
        )
    if grouped and fz.r2 < EXACT_FIT_RATIO * cp.xyxy[-1, -1]:
        raise ValueError(
            "y is fitted exactly by the fixed and random effects (the residual sum of squares "
            f"is {fz.r2 / cp.xyxy[-1, -1]:.1e} of sum(y^2) at theta = {np.round(theta, 4)}): the "
            "residual variance is 0, so the variance components are not estimable. Check that y "
            "is not computed from the features and group labels (e.g. a group mean); if y has a "
            "huge constant offset, subtract it (the fit is equivariant)."
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
        reml=reml, n=n, cp=cp, factor=factor, optimizer=summ, theta_unit=scale,
    )
    if problem is not None:
        warnings.warn(
            f"the optimizer stopped ({summ.return_code} after {summ.n_evals} evaluations) at a "
            f"point that fails lme4's convergence check: {problem}; converged_ is False and the "
            "estimates may be off. The criterion is badly scaled or flat there: center and scale "
            "the random-slope columns, or simplify the random-effect structure (see "
            "'Convergence' in the user guide, docs/user_guide.md).",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    elif not summ.converged:
        warnings.warn(
            f"the optimizer stopped without converging ({summ.return_code} after "
            f"{summ.n_evals} evaluations); raise max_iter or check the model (see "
            "'Convergence' in the user guide, docs/user_guide.md).",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if fit.is_singular:
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is estimated as (near) zero or "
            "a correlation as +-1; see variance_components_. This is a legitimate estimate, "
            "often a sign the random-effect structure is richer than the data support (see "
            "'Singular fits' in the user guide, docs/user_guide.md).",
            SingularFitWarning,
            stacklevel=stacklevel,
        )
    return fit
