"""One fit of the mixed-model engine: terms and fixed columns in, fitted state out.

Shared by every estimator (MixedLinearRegressor, PenalizedSplineRegressor): cross-products once
(:mod:`~sklmm._engine.crossprod`), the optimizer loop (:mod:`~sklmm._engine.optimize`) over the
profiled criterion (:mod:`~sklmm._engine.criteria`) evaluated through a factorization
(:mod:`~sklmm._engine.factor`) from a start (:mod:`~sklmm._engine.start`), the convergence checks
(:mod:`~sklmm._engine.checks`), then the solution at the optimum (:class:`MixedFit`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import optimize
from .checks import _verified, boundary_faces, column_mirrors, covariance_terms
from .criteria import profiled_criterion, residual_df
from .crossprod import cross_products, keep_fixed, rescale_weights
from .factor import check_cost, choose_solver, make_factor
from .gradient import make_gradient
from .optimize import OptSummary
from .smooth_search import SECOND_START_SIDE, WARM_STEP, search_smooths
from .start import moment_start, theta_scale
from .system import _tail_cholesky, dense_system
from .terms import templates, theta_layout, user_theta
from .threads import blas_limit

__all__ = ["MixedFit", "fit_mixed", "fit_cross_products", "kept_fixed_columns", "SingularFitWarning", "SINGULAR_TOL", "RANK_TOL"]


#: lme4's default tolerance for ``isSingular``
SINGULAR_TOL = 1e-4


#: relative tolerance of the sequential rank check of the fixed-effects design (lme4: 1e-7)
RANK_TOL = 1e-7


class SingularFitWarning(UserWarning):
    """The fit is singular: a variance component is (numerically) zero, or a correlation is +-1."""


def independent_columns(XtX, tol=RANK_TOL):
    """Columns kept in order, each only when not in the span of the earlier kept ones: as lme4's
    QR (LINPACK's, with ``tol``), a column is dropped when the norm of its residual on the kept
    ones is below ``tol`` times its own norm (the residual's sum of squares below ``tol^2``: a
    column such as a year, whose mean is a thousand times its sd, is kept)."""
    d = np.sqrt(np.clip(np.diag(XtX), 0, None))
    if np.all(d > 0):  # the usual full-rank case at once: L_jj is column j's residual norm
        L = _tail_cholesky(XtX / np.outer(d, d))
        if L is not None and np.all(np.diagonal(L) > tol):
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
        if resid > tol**2:
            keep.append(j)
    return keep


#: a kept fixed-effect column whose squared sine to the span of the earlier ones is below this
#: (a column whose |mean| is 10^5 of its sd, beside the intercept) keeps too few digits in the
#: cross-products ``[X y]'[X y]`` (lme4's QR of X keeps them): it is dropped with a warning that
#: says to centre it
CONDITION_FLOOR = 1e-10


def unresolved_columns(XtX, keep, names, stacklevel):
    """``keep`` without the columns nearly collinear with the earlier kept ones (squared sine to
    their span below :data:`CONDITION_FLOOR`), which lme4 fits but the cross-products cannot
    resolve; a warning names them and says to centre or rescale them."""
    if len(keep) < 2:
        return keep
    sub = XtX[np.ix_(keep, keep)]
    d = np.sqrt(np.diag(sub))
    L = _tail_cholesky(sub / np.outer(d, d))
    if L is None:
        return keep
    sine2 = np.diagonal(L) ** 2
    bad = [j for j, s2 in zip(keep, sine2) if s2 < CONDITION_FLOOR]
    if bad:
        warnings.warn(
            f"the fixed-effect column(s) {[names[j] for j in bad]} are nearly collinear with the "
            f"earlier columns (the sine of the angle to their span is down to "
            f"{float(np.sqrt(np.min(sine2))):.1e}; a column whose mean is about 1e5 times its sd, "
            "such as a time stamp, is so beside the intercept), so they are dropped and their "
            "coefficients reported as 0. lme4 keeps them (its QR of X resolves them); sklmm's "
            "cross-products cannot. Centre or rescale them to keep them (x - mean(x) changes only "
            "the intercept).", UserWarning, stacklevel=stacklevel + 1)
    return [j for j in keep if j not in bad]


def kept_fixed_columns(XtX, names, stacklevel):
    """The fixed-effect columns a fit keeps, from their cross-products ``X'X`` (weighted):
    those :func:`independent_columns` keeps (the others dropped with lme4's rank-deficiency
    warning) less :func:`unresolved_columns`' (their own warning)."""
    keep = independent_columns(XtX)
    resolved = unresolved_columns(XtX, keep, names, stacklevel + 1)
    if len(keep) < XtX.shape[0]:
        dropped = [names[j] for j in range(XtX.shape[0]) if j not in keep]
        warnings.warn(
            f"fixed-effect model matrix is rank deficient, so dropping {len(dropped)} "
            f"column(s): {dropped} (as lme4 does); their coefficients are reported as 0.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return resolved


#: below this ratio of the least-squares residual sum of squares to ``y'y`` the residual is lost
#: in the rounding of the cross-products: y is fitted exactly by the fixed effects
EXACT_FIT_RATIO = 1e-12


#: below this ratio the criterion is resolved to fewer than ~10 digits: a warning
IMPRECISE_FIT_RATIO = 1e-6


#: a criterion that varies by less than this (relative) over every evaluation is flat in theta
FLAT_CRITERION = 1e-12


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
    #: sqrt of the prior weights' geometric mean, which the fit divided them by
    #: (:func:`~sklmm._engine.crossprod.rescale_weights`): theta and sigma here are in those
    #: units; the user's are :meth:`user_sigma` and :meth:`user_theta`
    sigma_scale: float = 1.0
    tables: dict = field(default_factory=dict)  # the estimators' tables, built on first access
    #: held by whatever updates ``factor`` at another theta or fills a cache: a fitted model is
    #: read-only to its users, so that any number of threads may use it at once
    lock: object = field(default_factory=threading.RLock, repr=False, compare=False)

    def __getstate__(self):
        # the factorization is rebuilt from the cross-products when needed (CHOLMOD factors do
        # not pickle); a lock does not pickle either
        state = dict(self.__dict__)
        factor = state.pop("factor", None)
        state.pop("lock", None)
        state["_solver_name"] = getattr(factor, "name", None) or state.get("_solver_name", "blocked")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.RLock()

    def __getattr__(self, name):
        if name != "factor" or "_solver_name" not in self.__dict__:
            raise AttributeError(name)
        with self.lock:  # two threads asking at once build one factor
            if "factor" not in self.__dict__:
                factor = make_factor(self.cp, self.terms, self._solver_name)
                if self.terms:
                    factor.update(self.theta)
                self.factor = factor
        return self.__dict__["factor"]

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

    def user_sigma(self):
        """sigma in the units of the user's weights (lme4's ``sigma(fit)``)."""
        return self.sigma * self.sigma_scale

    def user_theta(self):
        """theta as lme4 reports it: in the user's coordinates (a centred term mapped back) and
        relative to :meth:`user_sigma`."""
        return np.asarray(user_theta(self.terms, self.theta), dtype=float) / self.sigma_scale

    def theta_names(self):
        return [nm for t in self.terms for nm in t.theta_names()]

    def posterior_precision(self):
        """``M = [[Lambda'Z'Z Lambda + I, Lambda'Z'X], [X'Z Lambda, X'X]]`` (dense, kept columns).

        ``sigma^2 M^{-1}`` is the covariance of ``(u, beta)`` given y at theta (the Bayesian
        posterior covariance that mgcv reports as ``Vp`` for smooths).
        """
        M = dense_system(self.cp, self.terms, self.theta)
        return M[:-1, :-1]


def _progress_printer(verbose, n_theta, solver, method="BOBYQA"):
    """Print every evaluation (verbose >= 2) or every 10th and each new best (verbose == 1)."""
    best = [np.inf]
    print(f"[sklmm] optimizing {n_theta} covariance parameter(s) with {method} ({solver} Cholesky)")

    def callback(k, x, f):
        improved = f < best[0]
        best[0] = min(best[0], f)
        if verbose >= 2 or k % 10 == 0 or (improved and k <= 5):
            th = np.array2string(np.asarray(x), precision=5, max_line_width=120)
            print(f"[sklmm] eval {k:5d}  criterion {f:.10g}  best {best[0]:.10g}  theta {th}")

    return callback


#: a response whose variance is below this fraction of its mean square (a constant offset
#: about 10^5 times its spread) is refused: its cross-products keep fewer than 6 of their 16
#: digits for the variation around the offset
OFFSET_RATIO = 1e-10


def _check_offset(Xf, y, sample_weight):
    """Refuse a response whose constant offset swamps its variation, with the fix, when the
    fixed columns hold a constant (the intercept then absorbs the offset: the fit is
    equivariant). The cross-products sum y^2 over the rows, so a Gaussian GAM of y + 1e9 saw an
    exact fit and collapsed its smooths; lme4 and mgcv work on the rows (QR) and do not."""
    y = np.asarray(y, dtype=float)
    if y.size < 2:
        return
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if w is not None and not np.sum(w) > 0:
        return
    mean = float(np.average(y, weights=w))
    var = float(np.average((y - mean) ** 2, weights=w))
    # (the constant column looked for only then: a pass over X in the rare case alone)
    if 0 < var < OFFSET_RATIO * (var + mean * mean) and np.any(np.all(Xf == Xf[:1], axis=0) & (Xf[0] != 0)):
        raise ValueError(
            f"y has a constant offset ({mean:.6g}) about {abs(mean) / np.sqrt(var):.1g} times its "
            f"spread (standard deviation {np.sqrt(var):.3g}): sklmm's cross-products would keep "
            "too few digits of the variation around it, and the fit would be meaningless. "
            "Subtract it first (y - y.mean()): the model has an intercept, so the fit is "
            "equivariant (only the intercept moves)."
        )


def fit_mixed(terms, Xf, y, fe_names, *, sample_weight=None, **options):
    """Fit the linear mixed model with these random-effect terms and fixed columns ``Xf``.

    ``sample_weight`` are prior (precision) weights, as lme4's ``weights``. The other keyword
    arguments are those of :func:`fit_cross_products`.
    """
    _check_offset(Xf, y, sample_weight)
    cp = cross_products(terms, Xf, y, sample_weight=sample_weight)
    options.setdefault("stacklevel", 4)
    return fit_cross_products(terms, cp, fe_names, **options)


def fit_cross_products(terms, cp, fe_names, *, reml, solver="auto", max_iter=10000,
                       theta_fixed=None, theta_start=None, verbose=0, stacklevel=3,
                       check_convergence=True):
    """Fit the model from its cross-products ``cp`` (see :func:`sklmm._engine.crossprod.cross_products`).

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
    # weights of order one: the model in units where their geometric mean is 1
    cp, weight_scale = rescale_weights(cp)
    keep = kept_fixed_columns(cp.xyxy[:-1, :-1], fe_names, stacklevel)
    if len(keep) < n_fixed:
        cp = keep_fixed(cp, keep)
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
    solver = choose_solver(cp, terms, solver)  # (once: the costs it weighs read the level pairs)
    check_cost(cp, terms, solver)  # before any large allocation: refuse or warn, with the fix
    factor = make_factor(cp, terms, solver)
    lower = np.concatenate([t.theta_lower() for t in terms]) if terms else np.zeros(0)
    scale = theta_scale(terms, cp)
    if theta_start is not None and len(theta_start) == len(lower):  # (given in the weights' units)
        start = np.maximum(np.asarray(theta_start, dtype=float) * np.sqrt(weight_scale), lower)
        step = np.maximum(WARM_STEP * np.abs(start), 0.01 * scale)
    else:
        start, step = moment_start(terms, cp, scale, factor)

    # (given, like theta_start, in the weights' units)
    theta_fixed = {i: v * np.sqrt(weight_scale) for i, v in (theta_fixed or {}).items()}
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

    seen = [np.inf, -np.inf]  # the lowest and highest finite criterion evaluated

    def objective(x):
        f = profiled_criterion(factor.update(expand(x)), n, p, reml, cp.sum_log_weights)
        if f < seen[0]:  # (inf and nan compare false)
            seen[0] = f
        if seen[1] < f < np.inf:
            seen[1] = f
        return f

    # many covariance parameters: L-BFGS-B on the analytic gradient (kb07's 20 theta: ~120
    # evaluations instead of ~1000); few: BOBYQA, derivative-free, as lme4
    evaluator = make_gradient(cp, terms, solver, reml, len(free))
    fun_grad = None
    if evaluator is not None:
        def fun_grad(x):
            f, g = evaluator(expand(x))
            if f < seen[0]:
                seen[0] = f
            if seen[1] < f < np.inf:
                seen[1] = f
            return f, g[free]

    method = "BOBYQA" if evaluator is None else "L-BFGS-B"
    callback = _progress_printer(verbose, len(free), factor.name, method) if verbose else None
    def thread_limit():  # (a fresh context each time: threadpoolctl applies it when made)
        return evaluator.threads() if evaluator is not None else blas_limit(factor.dense_side(), single_below=False)

    with thread_limit():
        logs = np.array([t.scalar for t, sl in zip(terms, theta_layout(terms)[0]) for _ in range(sl.stop - sl.start)],
                        dtype=bool)[free] if len(free) else np.zeros(0, dtype=bool)
        if evaluator is None and logs.any():
            summ = search_smooths(objective, start[free], lower[free], step[free], scale[free], logs, max_iter,
                                  callback, second_start=theta_start is None
                                  and sum(t.q for t in terms) + p + 1 <= SECOND_START_SIDE)  # (the whole system)
        elif evaluator is None:
            summ = optimize.minimize_bobyqa(objective, start[free], lower[free], max_evals=max_iter,
                                            callback=callback, initial_step=step[free],
                                            xtol_abs=1e-10 * scale[free])
        else:
            summ = optimize.minimize_lbfgsb(fun_grad, start[free], lower[free], max_evals=max_iter,
                                            callback=callback)
        optimize.snap_to_bounds(objective, summ, lower[free], scale[free])
        if verbose:
            print(f"[sklmm] {summ.return_code} after {summ.n_evals} evaluations: criterion {summ.fmin:.10g}")
        problem = None
        if check_convergence and summ.converged and len(free) and np.isfinite(summ.fmin):
            summ, problem = _verified(objective, summ, lower[free], max_iter, scale[free],
                                      column_mirrors(terms, free), covariance_terms(terms, free, scale[free]),
                                      boundary_faces(terms, free, [D.sum(axis=0) for D in cp.diag]),
                                      fun_grad=fun_grad)
    if len(free) and summ.n_evals > 2 * len(free) and seen[1] - seen[0] <= FLAT_CRITERION * max(1.0, abs(seen[0])):
        # every point the optimizer tried gave the same criterion: theta is not identified
        summ.converged = False
        problem = (f"the criterion does not change with the variance parameters (it varied by "
                   f"{seen[1] - seen[0]:.1e} over {summ.n_evals} evaluations): the data do not "
                   "identify them" + (f" (REML with n - p = {n - p} residual degree(s) of freedom)"
                                      if reml and n - p <= 2 else ""))
    summ.final = expand(summ.final)
    theta = summ.final
    with thread_limit():  # the final factorization as the evaluations (a busy CPU spared)
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
        sigma=float(np.sqrt(fz.r2 / residual_df(n, p, reml))),
        criterion=float(profiled_criterion(fz, n, p, reml, cp.sum_log_weights)),
        reml=reml, n=n, cp=cp, factor=factor, optimizer=summ, theta_unit=scale,
        sigma_scale=float(np.sqrt(weight_scale)),
    )
    if problem is not None:
        imprecise = terms and residual_ratio(cp) < IMPRECISE_FIT_RATIO
        advice = ("the criterion is resolved to few digits here (the warning above): subtract y's "
                  "large constant offset (e.g. y - y.mean(); the fit is equivariant)" if imprecise else
                  "the criterion is badly scaled or flat there: center and scale the random-slope "
                  "columns, or simplify the random-effect structure")
        warnings.warn(
            f"the optimizer stopped ({summ.return_code} after {summ.n_evals} evaluations) at a "
            f"point that fails lme4's convergence check: {problem}; converged_ is False and the "
            f"estimates may be off. Most likely {advice} (see 'Convergence' in the user guide, "
            "docs/user_guide.md).",
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


def _refit(fit, cp, fe_names, solver, reml=None, theta_start=None):
    """The same terms refitted to other cross-products ``cp`` (another response, ML instead of
    REML), from the fitted theta unless ``theta_start`` is given, its warnings silenced.

    ``cp`` is in the fit's units of the weights (its prior weights already divided by their
    geometric mean), and so is the refit: it keeps the fit's ``sigma_scale``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = fit_cross_products(
            fit.terms, cp, fe_names, reml=fit.reml if reml is None else reml, solver=solver,
            theta_start=fit.theta if theta_start is None else theta_start,
        )
    new.sigma_scale = fit.sigma_scale
    return new
