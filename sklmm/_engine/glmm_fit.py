"""One GLMM fit, in glmer's two stages.

Stage 1 (glmer's ``nAGQ = 0``): BOBYQA over theta alone, beta found with u by penalized IRLS
(:mod:`~sklmm._engine.pirls`) at each theta. Stage 2: BOBYQA over theta and beta together on
the Laplace approximation (or adaptive Gauss-Hermite quadrature,
:mod:`~sklmm._engine.quadrature`), from stage 1's optimum. Stage 2 works on beta in the
coordinates ``d = R_X (beta - beta_1)`` (``R_X`` the fixed-effect block of stage 1's factor, so
d has unit standard errors and no correlations): BOBYQA's trust region is then round in the
directions it searches. Each evaluation starts PIRLS from the previous evaluation's modes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.exceptions import ConvergenceWarning

from . import laml_iteration, optimize
from .factor import blas_threads, check_cost, choose_solver, make_factor
from .fit import MixedFit, SingularFitWarning, kept_fixed_columns
from .pirls import GlmmProblem
from .quadrature import agq_deviance
from .start import theta_scale_of_rows
from .terms import templates

__all__ = ["GlmmFit", "fit_glmm", "SeparationWarning"]

#: first steps of the optimizer: stage 1's in standard errors of theta (at theta = 1),
#: stage 2's in standard errors of theta and of beta
STAGE1_STEPS = 4.0
STAGE2_THETA_STEPS = 1.0
STAGE2_BETA_STEPS = 0.5

#: |eta| beyond this at the fit is a fitted probability within 1e-13 of 0 or 1
SEPARATION_ETA = 30.0


class SeparationWarning(UserWarning):
    """The fitted probabilities reach 0 or 1: a coefficient runs to infinity (separation)."""


@dataclass
class GlmmFit(MixedFit):
    """A :class:`MixedFit` of a GLMM: ``cp`` and ``factor`` hold the working weights at the mode
    (lme4's ``condVar`` and the Wald covariance use them; Fisher's weights for a non-canonical
    link), ``problem`` the rows for PIRLS (profiles, Hessians, predictions of the marginal
    mean). ``sigma`` is 1 for a family of known scale; for a family with a dispersion (Gamma)
    ``sigma^2`` is the Pearson estimate ``sum w (y - mu)^2 / V(mu) / (n - edf)`` (mgcv's
    ``scale``, the scale of ``sigma^2 M^{-1}``) and ``scale`` the dispersion at the minimum of
    the restricted criterion (mgcv's ``reml.scale``)."""

    family: object = None
    n_agq: int = 1
    problem: object = None
    stage1: object = None
    n_passes: int = 0
    scale: float = 1.0

    @property
    def n_params(self):
        return self.cp.p + len(self.theta) + int(getattr(self.family, "scale_estimated", False))

    def criterion_at(self, theta, beta_kept):
        """``-2 log L`` (Laplace or quadrature) at theta and the kept fixed effects."""
        with blas_threads(self.terms, self.cp.p):
            return _criterion(self.problem, theta, beta_kept, self.n_agq)


def _criterion(problem, theta, beta, n_agq):
    s = problem.pirls(theta, beta)
    if not np.isfinite(s.logdet):
        return np.inf
    return s.laplace if n_agq <= 1 else agq_deviance(problem, s, n_agq)


def _check_groups(terms, y, w, family, stacklevel):
    """Warn when every level of a grouping factor has a single binary outcome (all 0 or all 1):
    the random effects then separate the data, and their variance is not identified. (Some
    groups with one outcome among others are ordinary data for a GLMM.)"""
    if family.name != "binomial":
        return
    for t in terms:
        if t.n_levels == 1:  # (a penalized smooth: one "level", no grouping factor)
            continue
        ones = np.bincount(t.codes, w * y, minlength=t.n_levels)  # (rows of weight 0: nothing)
        zeros = np.bincount(t.codes, w * (1.0 - y), minlength=t.n_levels)
        if np.all((ones == 0) | (zeros == 0)):
            warnings.warn(
                f"every level of grouping factor {t.name!r} has a single outcome (all 0 or all 1): "
                "the random effects separate the data and their variance is not identified "
                "(it runs to infinity). Use a coarser grouping or drop the factor.",
                SeparationWarning, stacklevel=stacklevel,
            )


def fit_glmm(terms, Xf, y, fe_names, family, *, sample_weight=None, n_agq=1, solver="auto",
             max_iter=10000, verbose=0, stacklevel=3, reml=False, theta_fixed=None, pql_start=False):
    """Fit a GLMM (glmer's Laplace fit, or ``nAGQ = n_agq``) by the two stages above.

    ``reml=True`` fits the Laplace approximate restricted likelihood instead (Wood 2011, mgcv's
    ``method = "REML"`` for a GAM of a non-Gaussian family): beta is integrated out with u, so
    the criterion is stage 1's with ``log|R_X|^2`` added (:attr:`PirlsState.laml`), minimized
    over theta with beta at the joint mode, and there is no stage 2. A family with a
    dispersion (Gamma) has it profiled at each theta (:meth:`GlmmProblem.restricted`) and
    only this fit. ``theta_fixed`` maps positions of theta to values held fixed (a smooth's
    given smoothing parameter). ``pql_start`` starts the optimizer from penalized
    quasi-likelihood's estimates (:func:`_pql_start`) instead of glmer's theta = 1.
    """
    with blas_threads(terms, Xf.shape[1]):
        return _fit_glmm(terms, Xf, y, fe_names, family, sample_weight, n_agq, solver, max_iter,
                         verbose, stacklevel + 1, reml, theta_fixed or {}, pql_start)


#: restarts of the outer iteration (laml_iteration) from a lower basin of a smooth
LAML_RESTARTS = 2

#: stage 1's tolerances when it is the whole fit (the restricted criterion)
REML_TOLERANCES = dict(ftol_rel=1e-12, ftol_abs=1e-8, xtol_abs=1e-7)


#: iterations of the penalized quasi-likelihood start (each a PIRLS mode and a Gaussian fit)
PQL_ITERATIONS = 6
#: first steps from the PQL start, relative to its theta
PQL_STEP = 0.2


def _pql_start(problem, terms, fe_names, keep, full, free, lower):
    """A start for the Laplace fit of a penalized spline model: penalized quasi-likelihood
    iterations (Breslow and Clayton 1993; Wood's performance iteration), each the mode at theta
    by PIRLS and then the linear mixed model of its working response and weights fitted by REML
    (cross-products of one pass, and an optimizer whose evaluations do not depend on n). PQL is
    only a start: the Laplace criterion is then minimized from it, in far fewer evaluations than
    from theta = 1 when the smoothing parameters are far from their start (a wiggly smooth's
    theta of ~80)."""
    import copy

    from .fit import fit_cross_products

    theta = full.copy()
    names = [fe_names[j] for j in keep]
    for _ in range(PQL_ITERATIONS):
        st = problem.pirls(theta)
        if not np.isfinite(st.logdet):
            break
        W, r = problem.working(st.eta)
        cp = problem.plan.form(problem.X, st.eta + r, W)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gauss = fit_cross_products([copy.copy(t) for t in terms], cp, names, reml=True,
                                           check_convergence=False)
            except ValueError:
                break
        new = full.copy()
        new[free] = np.maximum(gauss.user_theta()[free] * gauss.user_sigma(), lower[free])
        done = np.allclose(new, theta, rtol=1e-3, atol=1e-6)
        theta = new
        if done:
            break
    return theta[free]


def _fit_glmm(terms, Xf, y, fe_names, family, sample_weight, n_agq, solver, max_iter, verbose, stacklevel,
              reml=False, theta_fixed=None, pql_start=False):
    n, n_fixed = Xf.shape
    if getattr(family, "scale_estimated", False) and not reml:
        raise ValueError(
            f"a {family.name} model has a dispersion parameter, and only its Laplace approximate "
            "REML fit is implemented (reml=True, mgcv's method='REML'); the Laplace likelihood "
            "(reml=False, glmer's / gamm4's) is not available for it."
        )
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    keep = kept_fixed_columns(Xf.T @ (Xf * w[:, None]), fe_names, stacklevel)  # (rows of weight 0 do not count)
    X = np.ascontiguousarray(Xf[:, keep])
    _check_groups(terms, y, w, family, stacklevel + 1)
    problem = GlmmProblem(terms, X, y, w, family, solver)
    pattern = problem.plan.pattern(X.shape[1])  # (only the pattern: before any algebra)
    solver = problem.solver = choose_solver(pattern, terms, solver)  # once, for every PIRLS step
    check_cost(pattern, terms, solver)
    lower = np.concatenate([t.theta_lower() for t in terms] + [np.zeros(0)])
    # lme4's start in each theta's natural unit (as the linear model's): a slope column of RMS
    # 1,000 starts at a slope sd of 1 / 1,000, not at an sd of 1 per unit that sends PIRLS's
    # linear predictor into the thousands (and BOBYQA's steps and tolerances in the same units)
    unit = theta_scale_of_rows(terms, w)
    start = np.concatenate([t.theta_start() for t in terms] + [np.zeros(0)]) * unit
    # stage 1: theta, with beta in PIRLS
    # each theta's first step in proportion to its standard error, about 1 / sqrt(2 levels):
    # the criterion is far more curved in the theta of a factor with 5,000 levels than in that
    # of one with 200, and steps of one size for both make BOBYQA crawl along the flat one
    levels = np.concatenate([np.full(t.n_theta, t.n_levels, dtype=float) for t in terms] + [np.zeros(0)])
    se_unit = 1.0 / np.sqrt(2.0 * np.maximum(levels, 1.0))
    free = np.array([i for i in range(len(start)) if i not in theta_fixed], dtype=np.intp)
    full = start.copy()
    for i, v in theta_fixed.items():
        full[i] = v

    def expand(x):
        th = full.copy()
        th[free] = x
        return th

    stage1 = problem.laml if reml else problem.laplace
    tolerances = dict(REML_TOLERANCES if reml else dict(ftol_rel=1e-7, ftol_abs=1e-4, xtol_abs=1e-4))
    tolerances["xtol_abs"] = tolerances["xtol_abs"] * unit[free]
    step = np.minimum(0.75, STAGE1_STEPS * se_unit[free]) * unit[free]
    x0 = start[free]
    iterated = None
    if pql_start and len(free) and laml_iteration.applies(problem, reml):
        iterated = laml_iteration.laml_iteration(problem, full, free, lower)
        # a lower basin of a heavily penalized smooth, seen on the last surrogate: iterate from
        # there, and keep whichever fixed point has the lower criterion
        for _ in range(LAML_RESTARTS):
            if iterated is None or iterated[2].restart_from is None:
                break
            again = laml_iteration.laml_iteration(problem, iterated[2].restart_from, free, lower)
            if again is None or not again[2].fmin < iterated[2].fmin:
                iterated[2].n_evals += 0 if again is None else again[2].n_evals
                break
            again[2].n_evals += iterated[2].n_evals
            again[2].initial = iterated[2].initial
            iterated = again
        if iterated is not None:
            problem.last = iterated[1]  # (PIRLS's warm start: the kept fixed point's mode)
    if iterated is not None:  # (a GAM's restricted fit: an outer iteration, one or two passes a step)
        theta_hat, st, s1 = iterated
        s1.final = theta_hat
    else:
        if pql_start and len(free):  # (penalized spline models: smoothing parameters far from 1)
            x0 = _pql_start(problem, terms, fe_names, keep, full, free, lower)
            step = np.maximum(PQL_STEP * x0, step * 0.1)
        s1 = optimize.minimize_bobyqa(lambda th: stage1(expand(th)), x0, lower[free], max_evals=max_iter,
                                      initial_step=step, **tolerances)
        s1.final = expand(s1.final)
        st = problem.pirls(s1.final)
    if not np.isfinite(st.logdet):
        raise ValueError("penalized IRLS failed at every variance parameter: the data are degenerate "
                         "(check that y varies and is not determined by the features).")
    beta1 = st.beta.copy()
    if not terms or reml:  # a GLM (PIRLS gives its ML estimate), or the restricted fit: no stage 2
        criterion, phi = problem.restricted(st) if reml else (st.laplace, 1.0)
        return _finish(problem, terms, s1, s1, s1.final, beta1, criterion, keep,
                       n_fixed, family, n_agq, solver, verbose, fe_names, X, stacklevel, unit, reml, phi, st)
    LX, _ = problem._factors[True].fixed_part()  # R_X' at stage 1's optimum
    LX = np.array(LX)

    def beta_of(d):
        return beta1 + (solve_triangular(LX.T, d, lower=False) if len(d) else d)

    def objective(x):
        return _criterion(problem, expand(x[:k]), beta_of(x[k:]), n_agq)

    k = len(free)
    x0 = np.concatenate([s1.final[free], np.zeros(len(beta1))])
    lower2 = np.concatenate([lower[free], np.full(len(beta1), -np.inf)])
    step = np.concatenate([np.maximum(np.abs(s1.final[free]), 0.1 * unit[free]) * se_unit[free] * STAGE2_THETA_STEPS,
                           np.full(len(beta1), STAGE2_BETA_STEPS)])
    s2 = optimize.minimize_bobyqa(objective, x0, lower2, max_evals=max_iter, initial_step=step,
                                  ftol_rel=1e-15, ftol_abs=1e-11, xtol_abs=np.concatenate(
                                      [1e-7 * unit[free], np.full(len(beta1), 1e-6)]))
    s2.n_evals += s1.n_evals
    s2.converged = bool(s1.converged and s2.converged)
    return _finish(problem, terms, s1, s2, expand(s2.final[:k]), beta_of(s2.final[k:]), objective(s2.final),
                   keep, n_fixed, family, n_agq, solver, verbose, fe_names, X, stacklevel, unit)


def _finish(problem, terms, s1, s2, theta, beta_kept, criterion, keep, n_fixed, family, n_agq, solver,
            verbose, fe_names, X, stacklevel, unit, reml=False, phi=1.0, state=None):
    """The fitted state at the optimum: the modes, and the system at the mode's weights
    (``state``: the joint mode there, when the fit has it); ``unit`` theta's natural units."""
    n = problem.n
    state, cp = problem.solution(theta, beta_kept, state)
    factor = make_factor(cp, terms, solver)
    factor.update(theta)
    beta = np.zeros(n_fixed)
    beta[keep] = beta_kept
    _, z_off = problem.slices, problem.z_off
    b = [state.u[z_off[j] : z_off[j + 1]].reshape(t.n_levels, t.n_coef) @ T.T
         for j, (t, T) in enumerate(zip(terms, templates(terms, theta)))]
    fit = GlmmFit(terms=terms, theta=theta, beta=beta, keep=keep, u=state.u, b=b, sigma=1.0,
                  criterion=float(criterion), reml=reml, n=n, cp=cp, factor=factor, optimizer=s2,
                  family=family, n_agq=n_agq, problem=problem, stage1=s1, n_passes=problem.n_passes,
                  scale=float(phi), theta_unit=unit)
    if getattr(family, "scale_estimated", False):
        fit.sigma = float(np.sqrt(_pearson_scale(fit, state.eta)))
    if verbose:
        print(f"[sklmm] GLMM fit: {s1.n_evals} + {s2.n_evals - s1.n_evals} evaluations, "
              f"{problem.n_passes} passes over the rows; -2 log L {criterion:.8g}")
    _warn_at_fit(fit, fe_names, X, stacklevel + 2)  # (two frames below _fit_glmm)
    return fit


def _pearson_scale(fit, eta):
    """``sum w (y - mu)^2 / V(mu) / (n - edf)``, the rows of positive weight and the trace of the
    hat matrix at Fisher's weights (``p + sum_u (1 - (M^{-1})_uu)``, dense: a GAM's few smooths)."""
    pr = fit.problem
    mu = fit.family.mean(eta)
    pearson = float(np.sum(pr.w * (pr.y - mu) ** 2 / fit.family.variance(mu)))
    M = fit.posterior_precision()
    q = M.shape[0] - len(fit.keep)
    edf = len(fit.keep) + float(np.sum(1.0 - np.diag(np.linalg.inv(M))[:q]))
    return pearson / max(float(np.sum(pr.w > 0)) - edf, 1.0)


def _warn_at_fit(fit, fe_names, X, stacklevel):
    eta = fit.problem.last.eta if fit.problem.last is not None else np.zeros(0)
    separated = fit.family.name == "binomial" and eta.size and np.max(np.abs(eta)) > SEPARATION_ETA
    if separated:
        names = [fe_names[j] for j in fit.keep]
        sd = X.std(axis=0)
        size = np.abs(fit.beta[fit.keep]) * np.where(sd > 0, sd, 1.0)
        worst = [names[j] for j in np.argsort(-size)[:3]]
        warnings.warn(
            f"fitted probabilities of 0 or 1 occur (|linear predictor| up to {np.max(np.abs(eta)):.0f}): "
            f"the data are (quasi-)completely separated and the largest coefficients ({worst}) run "
            "towards infinity, with meaningless standard errors. Remove or merge the separating "
            "feature, or penalize it.",
            SeparationWarning, stacklevel=stacklevel,
        )
    last = fit.problem.last
    if last is not None and not last.converged and not separated:
        warnings.warn(
            f"penalized IRLS did not converge at the optimum ({last.n_steps} steps): the conditional "
            "modes, and so the criterion and the estimates, are approximate. Check the data for "
            "extreme values of the features or counts.",
            ConvergenceWarning, stacklevel=stacklevel,
        )
    if not fit.optimizer.converged:
        warnings.warn(
            f"the optimizer stopped without converging ({fit.optimizer.return_code} after "
            f"{fit.optimizer.n_evals} evaluations); raise max_iter or simplify the model.",
            ConvergenceWarning, stacklevel=stacklevel,
        )
    if fit.is_singular:
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is estimated as (near) zero or a "
            "correlation as +-1; see variance_components_.",
            SingularFitWarning, stacklevel=stacklevel,
        )
