"""The profiled criteria: deviance (ML) and REML criterion as functions of theta alone.

From a :class:`~sklmm._engine.system.Factorization` at theta (lme4's formulation, the seed's
"profiled deviance"), with ``n`` observations and ``p`` fixed effects, the profiled deviance is

    d(theta) = log|L|^2 + n (1 + log(2 pi r^2 / n))

and the profiled REML criterion

    d_R(theta) = log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r^2 / (n - p))),

minus ``sum(log w)`` for prior weights. :func:`deviance_theta_sigma` is the same criterion
before sigma is profiled out (lmerTest's ``devfun_vp``), which inference differentiates.
"""

from __future__ import annotations

import numpy as np

from .system import Factorization

__all__ = ["profiled_criterion", "deviance_theta_sigma", "deviance_at_sigma", "residual_df"]


_LOG_2PI = np.log(2.0 * np.pi)


def residual_df(n, p, reml):
    """The residual degrees of freedom of the criterion: ``n - p`` for REML, ``n`` for ML (the
    divisor of ``r^2`` in sigma's estimate and the factor of ``log sigma^2``)."""
    return n - p if reml else n


def profiled_criterion(fz: Factorization | None, n, p, reml, sum_log_weights=0.0):
    """Profiled deviance (ML) or REML criterion on lme4's scale; inf when the factorization failed."""
    if fz is None or not fz.r2 > 0:
        return np.inf
    if reml:
        nmp = n - p
        return fz.logdet_L2 + fz.logdet_RX2 + nmp * (1.0 + _LOG_2PI + np.log(fz.r2 / nmp)) - sum_log_weights
    return fz.logdet_L2 + n * (1.0 + _LOG_2PI + np.log(fz.r2 / n)) - sum_log_weights


def deviance_theta_sigma(fit, theta, sigma):
    """-2 log-likelihood (ML) or -2 REML log-likelihood at ``(theta, sigma)``, beta profiled.

    ``log|L|^2 + r^2/sigma^2 + n log(2 pi sigma^2)`` (REML: ``+ log|R_X|^2 - p log(2 pi sigma^2)``),
    lmerTest's ``devfun_vp``; at ``sigma = sigma_hat(theta)`` it equals the profiled criterion.
    """
    if not sigma > 0:
        return np.inf
    fz = fit.factor.update(np.asarray(theta, dtype=float))
    return deviance_at_sigma(fz, sigma, fit.n, fit.cp.p, fit.reml, fit.cp.sum_log_weights)


def deviance_at_sigma(fz: Factorization | None, sigma, n, p, reml, sum_log_weights=0.0):
    """:func:`deviance_theta_sigma` from the factorization at theta (sigma enters in closed
    form: points that differ in sigma alone need one factorization)."""
    if fz is None or not sigma > 0:
        return np.inf
    s2 = sigma * sigma
    n_eff = residual_df(n, p, reml)
    dev = fz.logdet_L2 + fz.r2 / s2 + n_eff * (_LOG_2PI + np.log(s2)) - sum_log_weights
    if reml:
        dev += fz.logdet_RX2
    return float(dev)
