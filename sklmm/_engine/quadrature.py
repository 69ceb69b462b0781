"""Adaptive Gauss-Hermite quadrature for a GLMM with one scalar random effect per group.

With a single grouping factor and a random intercept only, the likelihood is a product over
groups of one-dimensional integrals

    L_j = int exp(-f_j(u) / 2) du / sqrt(2 pi),   f_j(u) = sum_{i in j} -2 log p(y_i | eta_i(u)) + u^2.

Centred at the conditional mode ``u_j`` and scaled by the conditional standard deviation
``s_j = 1 / L_jj`` (``L_jj^2 = theta^2 sum_{i in j} W_i + 1``, the diagonal of the PLS factor),
``u = u_j + s_j z`` turns each into ``s_j exp(-f_j(u_j) / 2) E[exp(-(f_j(u_j + s_j z) -
f_j(u_j)) / 2 + z^2 / 2)]`` over a standard normal z, and the Gauss-Hermite rule with K nodes
gives the expectation. One node (z = 0) is the Laplace approximation; glmer's ``nAGQ = K``.
The criterion is ``-2 log L`` itself (with every constant), so it is on the Laplace fit's scale.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_hermite", "agq_deviance"]


def gauss_hermite(k):
    """Nodes and weights of the K-point rule for a standard normal (weights sum to 1)."""
    z, w = hermegauss(int(k))
    return z, w / np.sqrt(2.0 * np.pi)


def agq_deviance(problem, state, n_points):
    """``-2 log L`` by adaptive Gauss-Hermite quadrature at the converged PIRLS ``state``."""
    term = problem.terms[0]
    th = float(state.theta[0])
    codes, J = term.codes, term.n_levels
    fam, y, w = problem.family, problem.y, problem.w
    W, _ = problem.working(state.eta)
    a = th * th * np.bincount(codes, W, minlength=J) + 1.0  # L_jj^2
    s = 1.0 / np.sqrt(a)
    u = state.u
    base = state.eta - th * u[codes]

    def group_dev(uk):
        return np.bincount(codes, fam.minus2_loglik(y, base + th * uk[codes], w), minlength=J) + uk * uk

    f_mode = group_dev(u)
    nodes, weights = gauss_hermite(n_points)
    # log-sum-exp over the nodes, each group's terms relative to the mode
    terms = np.empty((len(nodes), J))
    for k, (z, wk) in enumerate(zip(nodes, weights)):
        problem.n_passes += 1
        terms[k] = np.log(wk) - 0.5 * (group_dev(u + s * z) - f_mode) + 0.5 * z * z
    top = terms.max(axis=0)
    log_sum = top + np.log(np.exp(terms - top).sum(axis=0))
    return float(f_mode.sum() + np.log(a).sum() - 2.0 * log_sum.sum())
