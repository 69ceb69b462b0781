"""Response distributions of a generalized linear mixed model.

A family is what penalized IRLS (:mod:`~sklmm._engine.pirls`) needs of the conditional
distribution of y given the random effects: the inverse link, the variance function, and
``-2 log p(y | eta)`` per row (the deviance on lme4's scale: the Laplace criterion adds
``|u|^2 + log|L|^2`` to its sum). The binomial's and Poisson's links are canonical, so the
working weights are ``w var(mu)`` and Fisher scoring is Newton's method: each PIRLS step is
exact to second order.

:class:`Gamma` has the log link, which is not its canonical link, and a dispersion ``phi``.
Its ``working`` gives PIRLS Newton's (observed) weights ``w y / mu``, positive for every
``y > 0``: the steps keep their quadratic convergence, and the factor at the mode holds the
observed information that the Laplace approximation needs (Wood 2011; mgcv's REML score uses
these weights in its log-determinant). The inference after the fit reads Fisher's weights
``w`` (``working(..., observed=False)``), as mgcv's ``Vp`` and edf do. The mode does not
depend on ``phi`` (the penalized deviance is ``(D + |u|^2) / phi``), so the restricted
criterion profiles ``phi`` at the mode (:meth:`Gamma.profile_scale`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, expit, gammaln, polygamma

__all__ = ["Binomial", "Poisson", "Gamma", "FAMILIES"]

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

    @classmethod
    def mu_eta(cls, eta):
        """``d mu / d eta`` (the variance: a canonical link)."""
        return cls.variance(cls.mean(eta))

    @classmethod
    def weight_derivative(cls, y, eta, w):
        """``d W / d eta`` of the working weight ``W = w mu (1 - mu)``: ``W (1 - 2 mu)``."""
        mu = cls.mean(eta)
        return w * mu * (1.0 - mu) * (1.0 - 2.0 * mu)

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

    @classmethod
    def mu_eta(cls, eta):
        """``d mu / d eta`` (the variance: a canonical link)."""
        return cls.variance(cls.mean(eta))

    @classmethod
    def weight_derivative(cls, y, eta, w):
        """``d W / d eta`` of the working weight ``W = w mu``: W itself."""
        return w * cls.mean(eta)

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


class Gamma:
    """Positive responses with the log link, variance ``phi mu^2``; a prior weight w gives
    row i the dispersion ``phi / w_i`` (mgcv's and glm's weights; rows of weight 0 count for
    nothing)."""

    name = "gamma"
    link = "log"
    #: the dispersion phi is estimated (the criterion profiles it, :meth:`profile_scale`)
    scale_estimated = True

    @staticmethod
    def mean(eta):
        return np.exp(np.clip(eta, -700.0, 700.0))

    @staticmethod
    def variance(mu):
        return np.maximum(mu * mu, VARIANCE_FLOOR)

    @staticmethod
    def mu_eta(eta):
        """``d mu / d eta``."""
        return np.exp(np.clip(eta, -700.0, 700.0))

    @staticmethod
    def working(y, eta, w, observed=True):
        """Working weights and residual for PIRLS: Newton's ``w y / mu`` with ``(y - mu) / y``
        (``observed``), else Fisher's ``w`` with ``(y - mu) / mu``. Both solve to the same mode."""
        mu = np.exp(np.clip(eta, -700.0, 700.0))
        if observed:
            return w * (y / mu), (y - mu) / y
        return np.array(w, dtype=float), (y - mu) / mu

    @staticmethod
    def scale_function(y, w):
        """The rows' terms of the criterion in phi alone, reduced to one per distinct weight
        (what :meth:`profile_scale` evaluates; O(1) per call once formed)."""
        return _GammaScale(y, w)

    @staticmethod
    def weight_derivative(y, eta, w):
        """``d W / d eta`` of Newton's working weight ``W = w y / mu``: ``-W``."""
        return -w * y * np.exp(-np.clip(eta, -700.0, 700.0))

    @staticmethod
    def minus2_loglik(y, eta, w):
        """``-2 log p(y | eta)`` at ``phi = 1`` without the terms free of eta, ``2 w (y / mu +
        log mu)``: the deviance up to a constant, which is all PIRLS compares."""
        return 2.0 * w * (y * np.exp(-np.clip(eta, -700.0, 700.0)) + eta)

    @staticmethod
    def deviance(y, eta, w):
        """``sum w d(y, mu)``, ``d = 2 (y / mu - 1 - log(y / mu))``."""
        r = y * np.exp(-np.clip(eta, -700.0, 700.0))
        return float(np.sum(2.0 * w * (r - 1.0 - np.log(r))))

    @staticmethod
    def scale_terms(y, w, phi):
        """``-2 sum_i log p(y_i | mu_i = y_i, phi / w_i)`` over the rows of positive weight
        (minus twice the saturated log-likelihood, mgcv's ``ls``): the full ``-2 log p`` at phi
        is this plus ``deviance / phi``."""
        return _GammaScale(y, w)(np.log(phi))[0]

    @staticmethod
    def profile_scale(y, w, penalized_deviance, n_fixed, phi0=None, terms=None):
        """The phi minimizing ``penalized_deviance / phi + scale_terms(phi) - n_fixed log phi``
        (the restricted criterion's dependence on phi at the mode, Wood 2011), by Newton's
        method in ``log phi`` with halving, from ``phi0`` (default: the penalized deviance
        over the residual rows). Returns ``(phi, value)``. ``terms``: the rows' scale terms
        from :meth:`scale_function` (formed here when not given; O(n))."""
        terms = _GammaScale(y, w) if terms is None else terms
        if phi0 is None:
            phi0 = max(penalized_deviance / max(terms.n - n_fixed, 1.0), 1e-300)

        def f(s):
            v, d1, d2 = terms(s)
            e = penalized_deviance * np.exp(-s)
            return v + e - n_fixed * s, d1 - e - n_fixed, d2 + e

        s = float(np.log(phi0))
        val, g, h = f(s)
        for _ in range(100):
            step = float(np.clip(-g / h if h > 0 else -np.sign(g), -2.0, 2.0))
            for _ in range(60):
                new = f(s + step)
                if new[0] <= val + 1e-13 * abs(val):
                    break
                step *= 0.5
            else:
                break
            s, (val, g, h) = s + step, new
            if abs(step) < 1e-11:
                break
        return float(np.exp(s)), float(val)

    @staticmethod
    def start_eta(y):
        """glm's start for a Gamma mean, ``mu = y``, on the log scale."""
        return np.log(y)

    @staticmethod
    def marginal_mean(eta, var, nodes=None, weights=None):
        """``E[exp(eta + e)] = exp(eta + var / 2)``, ``e ~ N(0, var)``."""
        return np.exp(np.minimum(eta + 0.5 * var, 700.0))

    @staticmethod
    def check(y):
        bad = ~(y > 0)
        if np.any(bad):
            raise ValueError(
                f"a Gamma response must be positive (> 0); y has {int(bad.sum())} value(s) that are "
                f"not, e.g. {y[bad][:3].tolist()}."
            )

    @staticmethod
    def draw(rng, mu, w, phi=1.0):
        """Responses simulated at means mu: Gamma with shape ``w / phi`` and mean mu (rows of
        weight 0 get mu)."""
        shape = np.where(w > 0, w, 1.0) / phi
        return np.where(w > 0, rng.gamma(shape, mu / shape), mu)


class _GammaScale:
    """``-2 ls`` of the Gamma rows as a function of ``s = log phi``, with its first two
    derivatives; rows of one weight share their terms (all weights 1: one term)."""

    def __init__(self, y, w):
        pos = w > 0
        wp = w[pos]
        if wp.size and wp.min() == wp.max():
            self.w, self.counts = wp[:1], np.array([float(wp.size)])
        else:
            self.w, counts = np.unique(wp, return_counts=True)
            self.counts = counts.astype(float)
        self.n = float(wp.size)
        self.sum_log_y = float(np.sum(np.log(y[pos])))

    def __call__(self, s):
        nu = self.w * np.exp(-s)  # each row's shape; d nu / d s = -nu
        value = np.sum(self.counts * 2.0 * (gammaln(nu) - nu * np.log(nu) + nu)) + 2.0 * self.sum_log_y
        h1 = 2.0 * (digamma(nu) - np.log(nu))  # d/dnu of 2 (lgamma(nu) - nu log nu + nu)
        h2 = 2.0 * (polygamma(1, nu) - 1.0 / nu)
        return float(value), float(-np.sum(self.counts * nu * h1)), float(np.sum(self.counts * (nu * h1 + nu * nu * h2)))


FAMILIES = {"binomial": Binomial, "poisson": Poisson, "gamma": Gamma}
