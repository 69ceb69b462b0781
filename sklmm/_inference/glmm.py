"""Inference after a GLMM fit: the Wald covariance of the fixed effects from the Hessian of the
Laplace criterion (glmer's ``vcov``), z tests, simulation and the parametric bootstrap."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._engine.glmm_fit import fit_glmm
from .._engine.optimize import minimize_bobyqa
from .._input.arrays import check_level
from .bootstrap import percentile_intervals
from .covariance import _hessian, fixed_cov, wald_intervals
from .mixin import InferenceMixin
from .parameters import parameter_names, sdcor_of_fit
from .profile import _interval_side

__all__ = ["GlmmInferenceMixin", "glmm_fixed_cov", "glmm_fixed_table", "glmm_profile_intervals", "simulate_glmm",
           "draw_random_eta"]


def glmm_fixed_cov(fit):
    """glmer's ``vcov``: twice the inverse Hessian of ``-2 log L`` in ``(theta, beta)``, its
    fixed-effect block; and which of the two it is (``"hessian"``, or ``"rx"`` where the Hessian
    is not positive definite and, as glmer, ``(R_X'R_X)^{-1}`` serves instead).

    The Hessian is by central differences with Richardson extrapolation, each parameter in
    units of its own scale (beta in units of its ``R_X`` standard error, theta in units of
    ``max(theta, 0.1)``), so that its steps suit any scaling of the features."""
    rx = fixed_cov(fit)  # (R_X'R_X)^{-1}: sigma is 1, glmer's use.hessian = FALSE
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


def _sdcor(fit):
    return sdcor_of_fit(fit)[:-1]  # (no sigma)


def _parameter_names(est):
    return parameter_names(est._fit.terms)[:-1] + [est.fixed_effects_names_[j] for j in est._fit.keep]


class GlmmInferenceMixin:
    """What a glmer user expects after the fit: the z-test table, conditional variances of the
    random effects, simulation, the bootstrap and intervals. Needs ``self._fit`` (a GlmmFit)."""

    def _tables(self):
        return self._cached("fixed", lambda: glmm_fixed_table(self._fit, self.fixed_effects_names_))

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
        if not isinstance(n_boot, numbers.Integral) or n_boot < 1:
            raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}.")
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
        method : {"wald", "profile", "bootstrap"}, default="wald"
            "wald": ``estimate +- z std_error`` for the fixed effects. "profile":
            profile-likelihood intervals (lme4's default) for the fixed effects and the
            standard deviations of random intercepts (one-coefficient terms; the parameters of
            terms with slopes are NaN). "bootstrap": percentile intervals of a parametric
            bootstrap (:meth:`bootstrap`) for the random effects' standard deviations and
            correlations and the fixed effects.
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
            with self._fit.lock:
                return glmm_profile_intervals(self._fit, self.fixed_effects_names_, level)
        raise ValueError(f"method must be 'wald', 'profile' or 'bootstrap'; got {method!r}.")



def glmm_profile_intervals(fit, names, level):
    """Profile-likelihood intervals (lme4 ``confint(method = "profile")``) for the fixed effects
    and the standard deviations of scalar random-effect terms (``sd = theta`` there, sigma being
    1); parameters of vector terms (intercept and slopes) are NaN.

    Each point of a profile fixes one parameter and minimizes ``-2 log L`` over the others by
    BOBYQA, in coordinates scaled by their standard errors, from the previous point's optimum;
    the interval's ends are where the profile rises by ``chi2_1(level)``."""
    k = len(fit.theta)
    beta = fit.beta[fit.keep]
    x_hat = np.concatenate([fit.theta, beta])
    f_hat = fit.criterion
    cutoff = stats.chi2.ppf(level, 1)
    cov, _ = glmm_fixed_cov(fit)
    levels = np.concatenate([np.full(t.n_theta, t.n_levels, dtype=float) for t in fit.terms] + [np.zeros(0)])
    scale = np.concatenate([np.maximum(np.abs(fit.theta), 0.1) / np.sqrt(2.0 * np.maximum(levels, 1)),
                            np.sqrt(np.diag(cov))])
    lower = np.concatenate([np.concatenate([t.theta_lower() for t in fit.terms] + [np.zeros(0)]),
                            np.full(len(beta), -np.inf)])
    profiled = [i for i in range(k) if _scalar_theta(fit, i)] + list(range(k, k + len(beta)))
    saved = fit.problem.last
    out = {}
    try:
        for i in profiled:
            free = np.array([j for j in range(len(x_hat)) if j != i], dtype=np.intp)
            lo_free = (lower[free] - x_hat[free]) / scale[free]
            warm = {}

            def g(v, i=i, free=free, lo_free=lo_free, warm=warm):
                side = v > x_hat[i]
                z0 = np.maximum(warm.get(side, np.zeros(len(free))), lo_free)

                def obj(z):
                    x = x_hat.copy()
                    x[free] += scale[free] * z
                    x[i] = v
                    return fit.criterion_at(x[:k], x[k:])

                res = minimize_bobyqa(obj, z0, lo_free, initial_step=np.full(len(free), 0.5),
                                      ftol_rel=1e-10, ftol_abs=1e-6, xtol_abs=1e-5)
                warm[side] = res.final
                return max(res.fmin - f_hat, 0.0)

            limit = 0.0 if i < k else None
            lo = _interval_side(g, x_hat[i], -scale[i], limit, cutoff, 1e-6 * scale[i])
            hi = _interval_side(g, x_hat[i], scale[i], None, cutoff, 1e-6 * scale[i])
            out[i] = (lo, hi)
    finally:
        fit.problem.last = saved
    pnames = parameter_names(fit.terms)[:-1] + [names[j] for j in fit.keep]
    est = np.concatenate([sdcor_of_fit(fit)[:-1], beta])
    lo = np.array([out.get(i, (np.nan, np.nan))[0] for i in range(len(pnames))])
    hi = np.array([out.get(i, (np.nan, np.nan))[1] for i in range(len(pnames))])
    return pd.DataFrame({"estimate": est, "lower": lo, "upper": hi},
                        index=pd.Index(pnames, name="parameter"))


def _scalar_theta(fit, i):
    """Whether theta i is the only parameter of a one-coefficient term (so that sd = theta)."""
    start = 0
    for t in fit.terms:
        if start <= i < start + t.n_theta:
            return t.n_coef == 1
        start += t.n_theta
    return False
