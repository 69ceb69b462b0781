"""Inference after a GLMM fit: the Wald covariance of the fixed effects from the Hessian of the
Laplace criterion (glmer's ``vcov``), z tests, simulation and the parametric bootstrap."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._engine.glmm_fit import fit_glmm
from .._engine.terms import templates
from .._input.arrays import check_level
from .bootstrap import percentile_intervals
from .covariance import _hessian, wald_intervals
from .mixin import InferenceMixin
from .parameters import parameter_names, sdcor_of_fit

__all__ = ["GlmmInferenceMixin", "glmm_fixed_cov", "glmm_fixed_table", "simulate_glmm", "draw_random_eta"]


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


def _sdcor(fit):
    return sdcor_of_fit(fit)[:-1]  # (no sigma)


def _parameter_names(est):
    return parameter_names(est._fit.terms)[:-1] + [est.fixed_effects_names_[j] for j in est._fit.keep]


class GlmmInferenceMixin:
    """What a glmer user expects after the fit: the z-test table, conditional variances of the
    random effects, simulation, the bootstrap and intervals. Needs ``self._fit`` (a GlmmFit)."""

    def _tables(self):
        check_is_fitted(self)
        cache = self.__dict__.setdefault("_inference_cache", {})
        if "fixed" not in cache:
            cache["fixed"] = glmm_fixed_table(self._fit, self.fixed_effects_names_)
        return cache["fixed"]

    @property
    def fixed_effects_(self):
        """DataFrame of the fixed effects as glmer's summary: ``estimate``, ``std_error``,
        ``z_value``, ``p_value`` (Wald z tests), indexed by term. The covariance is twice the
        inverse Hessian of ``-2 log L`` in the variance parameters and fixed effects together
        (glmer's default); computed on first access."""
        return self._tables()[0].copy()

    @property
    def fixed_effects_cov_(self):
        """DataFrame: covariance matrix of the fixed effects (glmer ``vcov``), by term name."""
        return self._tables()[1].copy()

    random_effects_std_ = InferenceMixin.random_effects_std_
    random_effects_cov = InferenceMixin.random_effects_cov
    plot_random_effects = InferenceMixin.plot_random_effects
    _condvar = InferenceMixin._condvar
    _cached = InferenceMixin._cached

    # ------------------------------------------------------------------ simulation and intervals

    def simulate(self, n_draws=1, random_state=None):
        """Responses simulated from the fitted model at the training rows (lme4 ``simulate``):
        new random effects from their fitted distribution, then responses from the family.

        Parameters
        ----------
        n_draws : int, default=1
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        y_sim : ndarray of shape (n_samples, n_draws)
            On the scale of the fit's y (0/1, or proportions for rows with whole-number
            weights, for the classifier; counts for the Poisson model).
        """
        check_is_fitted(self)
        if not isinstance(n_draws, numbers.Integral) or n_draws < 1:
            raise ValueError(f"n_draws must be a positive integer; got {n_draws!r}.")
        rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))
        return simulate_glmm(self._fit, int(n_draws), rng)

    def bootstrap(self, n_boot=200, random_state=None):
        """Parametric bootstrap (lme4 ``bootMer``): ``n_boot`` responses simulated from the fit,
        each refitted.

        Returns
        -------
        replicates : DataFrame of shape (n_boot, n_parameters)
            The random effects' standard deviations and correlations, then the fixed effects;
            a failed refit is a row of NaN.
        """
        check_is_fitted(self)
        rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))
        fit = self._fit
        p = fit.problem
        names = _parameter_names(self)
        rows = []
        for _ in range(int(n_boot)):
            y = simulate_glmm(fit, 1, rng)[:, 0]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    new = fit_glmm(fit.terms, p.X, y, [self.fixed_effects_names_[j] for j in fit.keep],
                                   fit.family, sample_weight=p.w, n_agq=fit.n_agq, solver=self.solver)
                beta = np.full(len(self.fixed_effects_names_), np.nan)
                beta[fit.keep] = new.beta[: len(fit.keep)]
                rows.append(np.concatenate([_sdcor(new), beta[fit.keep]]))
            except (ValueError, np.linalg.LinAlgError):
                rows.append(np.full(len(names), np.nan))
        return pd.DataFrame(np.array(rows), columns=names)

    def confidence_intervals(self, method="wald", level=0.95, *, n_boot=200, random_state=None):
        """Confidence intervals (lme4 ``confint``).

        Parameters
        ----------
        method : {"wald", "bootstrap"}, default="wald"
            "wald": ``estimate +- z std_error`` for the fixed effects. "bootstrap": percentile
            intervals of a parametric bootstrap (:meth:`bootstrap`) for the random effects'
            standard deviations and correlations and the fixed effects. (Profile intervals,
            lme4's default, are not available for GLMMs yet.)
        level : float, default=0.95
        n_boot, random_state
            For ``method="bootstrap"``.

        Returns
        -------
        intervals : DataFrame
            Columns ``estimate``, ``lower``, ``upper``.
        """
        check_is_fitted(self)
        level = check_level(level)
        if method == "wald":
            return wald_intervals(self.fixed_effects_.dropna(subset=["std_error"]), level)
        if method == "bootstrap":
            reps = self.bootstrap(n_boot, random_state=random_state)
            fit = self._fit
            est = pd.Series(np.concatenate([_sdcor(fit), fit.beta[fit.keep]]), index=reps.columns)
            return percentile_intervals(reps, est, level)
        if method == "profile":
            raise ValueError(
                "profile intervals are not available for GLMMs yet; use method='wald' (fixed "
                "effects) or method='bootstrap' (all parameters)."
            )
        raise ValueError(f"method must be 'wald' or 'bootstrap'; got {method!r}.")

