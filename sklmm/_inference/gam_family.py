"""GAMs of a non-Gaussian family: the fit through the GLMM engine, and the family's numbers.

A smooth of a binomial or Poisson GAM is the same random-effect term as in a Gaussian one (its
penalized coefficients iid ``N(0, 1 / lambda)`` on the link scale); the fit is penalized IRLS
with the Laplace approximation (:func:`~sklmm._engine.glmm_fit.fit_glmm`): with ``reml=True``
the Laplace approximate REML of Wood (2011) that mgcv's ``gam(method = "REML")`` maximizes,
with ``reml=False`` glmer's Laplace likelihood, which gamm4 fits. Everything after the fit
reads the system at the working weights of the mode, as mgcv does: edf, the posterior
covariance (``Vp``), the tests.

A Gamma GAM (log link) has a dispersion phi: its coefficients are iid ``N(0, phi / lambda)``,
the restricted criterion is minimized over phi as well (mgcv's ``reml.scale``, the fit's
``scale``), and the numbers after the fit use the Pearson estimate of phi (mgcv's ``scale``,
the fit's ``sigma^2``): ``Vp = phi M^{-1}``, t tests of the parametric terms and F tests of the
smooths on the residual df, as mgcv's ``summary.gam`` for an estimated scale. Only
``reml=True`` is available for it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.special import gammaln, xlogy

from .._engine.families import FAMILIES
from .._engine.fit import fit_mixed
from .._engine.glmm_fit import fit_glmm

__all__ = ["engine_family", "known_scale", "tweedie_power", "fit_family", "unit_deviance", "deviance_residuals",
           "glm_table"]


def engine_family(name):
    """The engine's family object for a family name; None for "gaussian" (the linear engine)."""
    return None if name == "gaussian" else FAMILIES[name]()


def known_scale(family):
    """Whether the family's scale is known (binomial, Poisson): z tests and Chi.sq smooth tests;
    else (Gaussian, ``family`` None, and Gamma) t and F tests on the residual df."""
    return family is not None and not getattr(family, "scale_estimated", False)


def tweedie_power(family):
    """The power of the family's deviance for ``d2_tweedie_score``: 1 Poisson, 2 Gamma."""
    return {"poisson": 1, "gamma": 2}[family.name]


def fit_family(family, terms, Xf, y, fe_names, *, sample_weight, reml, solver, max_iter, verbose,
               theta_fixed, theta_start=None):
    """The engine's fit: the linear mixed model for a Gaussian family (``family`` None), else the
    GLMM engine with the restricted (``reml``) or the full Laplace criterion."""
    if family is None:
        return fit_mixed(terms, Xf, y, fe_names, sample_weight=sample_weight, reml=reml, solver=solver,
                         max_iter=max_iter, theta_start=theta_start, verbose=verbose,
                         theta_fixed=theta_fixed, stacklevel=5)
    family.check(y)
    live = np.asarray(y, dtype=float)[np.ones(len(y), bool) if sample_weight is None
                                      else np.asarray(sample_weight, dtype=float) > 0]
    if live.size and np.ptp(live) == 0:  # (as the GLMMs: an intercept at infinity, or a deviance of 0)
        if family.name == "binomial":
            raise ValueError(f"y has a single class among the rows of positive weight (every value is "
                             f"{live[0]:g}): a classifier needs samples of both classes.")
        raise ValueError(
            f"y has no variation among the rows of positive weight (every value is {live[0]:g}): no "
            f"{family.name} model can be fitted (its intercept would run to infinity, or its deviance "
            "is 0 and the smooths are not determined)."
        )
    if getattr(family, "scale_estimated", False) and not reml:
        raise ValueError(
            f"family={family.name!r} is fitted by the Laplace approximate REML only (reml=True, "
            "mgcv's method='REML'); reml=False (the Laplace likelihood of gamm4 / glmer) is not "
            "available for a family with a dispersion parameter."
        )
    with warnings.catch_warnings():
        # a smooth term is one "group" with many coefficients: the GLMM's checks of grouping
        # factors (one outcome per level) do not apply to it
        warnings.filterwarnings("ignore", message="every level of grouping factor")
        return fit_glmm(terms, Xf, y, fe_names, family, sample_weight=sample_weight, solver=solver,
                        max_iter=max_iter, verbose=verbose, reml=reml, theta_fixed=theta_fixed, pql_start=True,
                        stacklevel=5)


def unit_deviance(family, y, mu, w):
    """Each row's contribution to the deviance, ``w d(y, mu)``."""
    if family.name == "binomial":
        mu = np.clip(mu, 1e-300, 1.0 - 1e-16)
        return 2.0 * w * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
    if family.name == "gamma":
        r = y / np.maximum(mu, 1e-300)
        return 2.0 * w * (r - 1.0 - np.log(r))
    return 2.0 * w * (xlogy(y, y / np.maximum(mu, 1e-300)) - (y - mu))


def deviance_residuals(family, y, mu, w):
    """``sign(y - mu) sqrt(w d(y, mu))``, mgcv's default residuals (what ``k.check`` orders)."""
    return np.sign(y - mu) * np.sqrt(np.maximum(unit_deviance(family, y, mu, w), 0.0))


def glm_table(family, Vp, beta, q, keep, names, y, mu, sample_weight, edf_total):
    """mgcv's ``summary.gam`` numbers for a non-Gaussian family: the parametric terms with z
    tests (posterior standard errors from ``Vp``; t tests on the residual df for an estimated
    scale, Gamma's), the residual df ``n - edf``, the adjusted
    R^2 (on the response scale, prior weights as mgcv weighs them) and the deviance explained
    ``1 - D / D_0`` (``D_0`` the deviance of the weighted mean).

    Returns ``(table, residual_df, r2_adj, deviance_explained)``.
    """
    import pandas as pd

    n = len(y)
    w = np.ones(n) if sample_weight is None else sample_weight
    mean_y = np.sum(w * y) / np.sum(w)
    residual_df = float(np.sum(w > 0) - edf_total)
    sw = np.sqrt(w)
    r2_adj = float(1.0 - np.var(sw * (y - mu), ddof=1) * (n - 1) / (np.var(sw * (y - mean_y), ddof=1) * residual_df))
    deviance = float(np.sum(unit_deviance(family, y, mu, w)))
    null = float(np.sum(unit_deviance(family, y, np.full(n, mean_y), w)))
    k = len(names)
    kept_pos = {j: i for i, j in enumerate(keep)}
    var = np.array([Vp[q + kept_pos[j], q + kept_pos[j]] if j in kept_pos else np.nan for j in range(k)])
    est = np.where(np.isfinite(var), beta[:k], np.nan)
    se = np.sqrt(var)
    z = est / se
    if known_scale(family):
        stat, p = "z_value", 2.0 * stats.norm.sf(np.abs(z))
    else:
        stat, p = "t_value", 2.0 * stats.t.sf(np.abs(z), residual_df)
    table = pd.DataFrame({"estimate": est, "std_error": se, stat: z, "p_value": p}, index=pd.Index(names, name="term"))
    return table, residual_df, r2_adj, 1.0 - deviance / null if null > 0 else np.nan


def conditional_aic(family, y, mu, sample_weight, edf_total):
    """mgcv's ``gam$aic``: minus twice the log-likelihood of y at the fitted means (conditional
    on the smooths and random effects, the scale at its maximum-likelihood value) plus twice
    the effective degrees of freedom (and the scale's one when it is estimated). ``family``
    None is the Gaussian; prior weights as mgcv's families weigh them."""
    n = len(y)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    pos = w > 0
    if family is None:
        dev = float(np.sum(w * (y - mu) ** 2))
        m2ll = n * (np.log(2.0 * np.pi * dev / n) + 1.0) + 2.0 - float(np.sum(np.log(w[pos])))
    elif family.name == "gamma":
        disp = float(np.sum(unit_deviance(family, y[pos], mu[pos], w[pos]))) / float(np.sum(w))
        m2ll = -2.0 * float(np.sum(w[pos] * stats.gamma.logpdf(y[pos], 1.0 / disp, scale=mu[pos] * disp))) + 2.0
    elif family.name == "binomial":
        m = np.clip(mu, 1e-300, 1.0 - 1e-16)
        m2ll = -2.0 * float(np.sum(w * (xlogy(y, m) + xlogy(1.0 - y, 1.0 - m))))
    else:  # poisson
        m2ll = -2.0 * float(np.sum(w * (xlogy(y, mu) - mu - gammaln(y + 1.0))))
    return m2ll + 2.0 * edf_total
