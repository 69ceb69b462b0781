"""GAMs of a non-Gaussian family: the fit through the GLMM engine, and the family's numbers.

A smooth of a binomial or Poisson GAM is the same random-effect term as in a Gaussian one (its
penalized coefficients iid ``N(0, 1 / lambda)`` on the link scale); the fit is penalized IRLS
with the Laplace approximation (:func:`~sklmm._engine.glmm_fit.fit_glmm`): with ``reml=True``
the Laplace approximate REML of Wood (2011) that mgcv's ``gam(method = "REML")`` maximizes,
with ``reml=False`` glmer's Laplace likelihood, which gamm4 fits. Everything after the fit
reads the system at the working weights of the mode, as mgcv does: edf, the posterior
covariance (``Vp``), the tests.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.special import xlogy

from .._engine.families import FAMILIES
from .._engine.fit import fit_mixed
from .._engine.glmm_fit import fit_glmm

__all__ = ["engine_family", "fit_family", "unit_deviance", "deviance_residuals", "glm_table"]


def engine_family(name):
    """The engine's family object for a family name; None for "gaussian" (the linear engine)."""
    return None if name == "gaussian" else FAMILIES[name]()


def fit_family(family, terms, Xf, y, fe_names, *, sample_weight, reml, solver, max_iter, verbose,
               theta_fixed, theta_start=None):
    """The engine's fit: the linear mixed model for a Gaussian family (``family`` None), else the
    GLMM engine with the restricted (``reml``) or the full Laplace criterion."""
    if family is None:
        return fit_mixed(terms, Xf, y, fe_names, sample_weight=sample_weight, reml=reml, solver=solver,
                         max_iter=max_iter, theta_start=theta_start, verbose=verbose,
                         theta_fixed=theta_fixed, stacklevel=5)
    family.check(y)
    with warnings.catch_warnings():
        # a smooth term is one "group" with many coefficients: the GLMM's checks of grouping
        # factors (one outcome per level) do not apply to it
        warnings.filterwarnings("ignore", message="every level of grouping factor")
        return fit_glmm(terms, Xf, y, fe_names, family, sample_weight=sample_weight, solver=solver,
                        max_iter=max_iter, verbose=verbose, reml=reml, theta_fixed=theta_fixed,
                        stacklevel=5)


def unit_deviance(family, y, mu, w):
    """Each row's contribution to the deviance, ``w d(y, mu)``."""
    if family.name == "binomial":
        mu = np.clip(mu, 1e-300, 1.0 - 1e-16)
        return 2.0 * w * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
    return 2.0 * w * (xlogy(y, y / np.maximum(mu, 1e-300)) - (y - mu))


def deviance_residuals(family, y, mu, w):
    """``sign(y - mu) sqrt(w d(y, mu))``, mgcv's default residuals (what ``k.check`` orders)."""
    return np.sign(y - mu) * np.sqrt(np.maximum(unit_deviance(family, y, mu, w), 0.0))


def glm_table(family, Vp, beta, q, keep, names, y, mu, sample_weight, edf_total):
    """mgcv's ``summary.gam`` numbers for a family of known scale: the parametric terms with z
    tests (posterior standard errors from ``Vp``), the residual df ``n - edf``, the adjusted
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
    table = pd.DataFrame({"estimate": est, "std_error": se, "z_value": z, "p_value": 2.0 * stats.norm.sf(np.abs(z))},
                         index=pd.Index(names, name="term"))
    return table, residual_df, r2_adj, 1.0 - deviance / null if null > 0 else np.nan
