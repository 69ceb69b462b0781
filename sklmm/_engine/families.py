"""Response distributions of a generalized linear mixed model, with their canonical links.

A family is what penalized IRLS (:mod:`~sklmm._engine.pirls`) needs of the conditional
distribution of y given the random effects: the inverse link, the variance function, and
``-2 log p(y | eta)`` per row (the deviance on lme4's scale: the Laplace criterion adds
``|u|^2 + log|L|^2`` to its sum). Both links here are canonical, so the working weights are
``w var(mu)`` and Fisher scoring is Newton's method: each PIRLS step is exact to second order.

Another family or link would need, beyond these functions, the derivative ``d mu / d eta``
in the working weights ``w (d mu / d eta)^2 / var(mu)`` (no longer ``w var(mu)``), and a
dispersion parameter for the Gaussian-like families (Gamma, inverse Gaussian), which the
Laplace criterion then profiles or estimates with theta.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, gammaln

__all__ = ["Binomial", "Poisson", "FAMILIES"]

#: working variances are kept above this (machine epsilon, as R's ``binomial()$mu.eta``), so that
#: a fitted probability or mean that underflows (complete separation, a huge negative eta) gives
#: a finite working response and a system that can still be factored
VARIANCE_FLOOR = np.finfo(float).eps


class Binomial:
    """Bernoulli / binomial proportions with the logit link; case weights count rows."""

    name = "binomial"
    link = "logit"

    @staticmethod
    def mean(eta):
        e = np.exp(-np.abs(eta))  # (numpy's exp is vectorized; scipy's expit several times slower)
        return np.where(eta >= 0, 1.0, e) / (1.0 + e)

    @staticmethod
    def variance(mu):
        return np.maximum(mu * (1.0 - mu), VARIANCE_FLOOR)

    @staticmethod
    def minus2_loglik(y, eta, w):
        """``-2 w [y log mu + (1 - y) log(1 - mu)]`` per row, stable for any eta."""
        softplus = np.log1p(np.exp(-np.abs(eta))) + np.maximum(eta, 0.0)  # log(1 + e^eta), 2x logaddexp's speed
        return 2.0 * w * (softplus - y * eta)

    @staticmethod
    def start_eta(y):
        """glm's start for a binomial, ``mu = (y + 1/2) / 2``, on the logit scale."""
        mu = (y + 0.5) / 2.0
        return np.log(mu / (1.0 - mu))

    @staticmethod
    def marginal_mean(eta, var, nodes, weights):
        """``E[expit(eta + e)]``, ``e ~ N(0, var)``, by Gauss-Hermite quadrature."""
        return expit(eta[:, None] + np.sqrt(var)[:, None] * nodes[None, :]) @ weights

    @staticmethod
    def check(y):
        bad = (y < 0) | (y > 1)
        if np.any(bad):
            raise ValueError(
                f"a binomial response must lie in [0, 1] (0/1 outcomes or proportions with "
                f"sample_weight = trials); y has {int(bad.sum())} value(s) outside, e.g. "
                f"{y[bad][:3].tolist()}."
            )

    @staticmethod
    def draw(rng, mu, w):
        """Responses simulated at means mu: the proportion of successes in w trials (w whole),
        else Bernoulli draws."""
        trials = np.rint(w)
        if np.allclose(trials, w) and np.all(trials >= 1):
            return rng.binomial(trials.astype(np.int64), mu) / trials
        return (rng.random(mu.shape) < mu).astype(float)


class Poisson:
    """Counts with the log link."""

    name = "poisson"
    link = "log"

    @staticmethod
    def mean(eta):
        return np.exp(np.minimum(eta, 700.0))

    @staticmethod
    def variance(mu):
        return np.maximum(mu, VARIANCE_FLOOR)

    @staticmethod
    def minus2_loglik(y, eta, w):
        """``-2 w [y log mu - mu - log y!]`` per row."""
        return 2.0 * w * (np.exp(np.minimum(eta, 700.0)) - y * eta + gammaln(y + 1.0))

    @staticmethod
    def start_eta(y):
        """glm's start for a Poisson mean, ``mu = y + 1/10``, on the log scale."""
        return np.log(y + 0.1)

    @staticmethod
    def marginal_mean(eta, var, nodes=None, weights=None):
        """``E[exp(eta + e)] = exp(eta + var / 2)``, ``e ~ N(0, var)``."""
        return np.exp(np.minimum(eta + 0.5 * var, 700.0))

    @staticmethod
    def check(y):
        bad = y < 0
        if np.any(bad):
            raise ValueError(
                f"a Poisson response is a count (>= 0); y has {int(bad.sum())} negative value(s), "
                f"e.g. {y[bad][:3].tolist()}."
            )

    @staticmethod
    def draw(rng, mu, w):
        return rng.poisson(mu).astype(float)


FAMILIES = {"binomial": Binomial, "poisson": Poisson}
