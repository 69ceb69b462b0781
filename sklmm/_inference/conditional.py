"""Conditional variances: of the random effects (lme4 ``ranef(condVar = TRUE)``) and of the
predicted means, and the prior covariances of new levels."""

from __future__ import annotations

import numpy as np

from .._engine.crossprod import random_part_only
from .._engine.factor_blocked import BlockedFactor
from .._engine.leverage import whitened_row_norms
from .._engine.terms import templates, theta_layout
from .covariance import _restore

__all__ = ["conditional_covariances", "conditional_mean_variance", "prior_covariances"]


#: Largest number of random-effect columns beyond the first factor for conditional variances
CONDVAR_DENSE_LIMIT = 12_000


def conditional_covariances(fit, chunk_entries=4_000_000):
    """lme4's ``ranef(condVar = TRUE)``: per term, the (n_levels, p, p) conditional covariances
    (in the user's coordinates, as ``random_effects_``).

    Diagonal blocks of ``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda'`` (conditional on the
    estimated fixed effects, as lme4), from the blocked factorization: with the first term's
    level blocks ``L_j`` and the Schur complement's factor ``L_r``, level j of the first term has
    ``L_j^{-T} (I + Y_j'Y_j) L_j^{-1}``, ``Y = L_r^{-1} Lambda_r' C G``, and the other terms the
    diagonal blocks of ``L_r^{-T} L_r^{-1}``.
    """
    with fit.lock:  # it moves the shared factorization: one thread at a time
        terms = fit.terms
        if not terms:
            return []
        if not isinstance(fit.factor, BlockedFactor):
            rest = sum(t.q for t in terms[1:])
            if rest > CONDVAR_DENSE_LIMIT:
                raise ValueError(
                    f"conditional variances need a dense factor of the {rest} random-effect columns of "
                    f"the grouping factors after the first (limit {CONDVAR_DENSE_LIMIT}); this model is "
                    "too large for them. Predictions and their standard errors do not need them."
                )
        # the random part's blocks of the factor do not involve X or y: without them (a fit by
        # another factorization) nothing depends on the scale of the fixed columns
        bf = fit.factor if isinstance(fit.factor, BlockedFactor) else BlockedFactor(random_part_only(fit.cp), terms)
        try:
            bf.update(fit.theta)
            Ts, out = bf.spherical_covariances(chunk_entries)
        finally:
            if bf is fit.factor:
                _restore(fit)
        s2 = fit.sigma**2  # in the user's coordinates (a term fitted centred is mapped back)
        return [t.user_covariances(s2 * np.einsum("ab,jbc,dc->jad", T, V, T)) for t, T, V in zip(terms, Ts, out)]


def conditional_mean_variance(fit, A, seen_rows, chunk_entries=4_000_000):
    """Variance of ``x_i' beta_hat + z_i' b_hat`` as an estimate of ``x_i' beta + z_i' b``.

    ``A`` holds the kept fixed-effect columns at the rows; ``seen_rows`` lists per term
    ``(k, row index, level codes, model-matrix rows)`` for the rows whose level was seen in fit.
    The joint covariance of ``(u, beta)`` given the data at theta is ``sigma^2 M^{-1}``, M the
    penalized least-squares matrix, so the variance is ``sigma^2 |L^{-1} a_i|^2`` with L its
    Cholesky factor and ``a_i = [Lambda' z_i; x_i]``: one sparse triangular solve per row, in
    chunks, on the fit's own factorization.
    """
    if len(fit.terms) == 1 and ONE_TERM_CLOSED_FORM:  # closed forms level by level, no solves
        return _one_term_mean_variance(fit, A, seen_rows)
    with fit.lock:  # it moves the shared factorization: one thread at a time
        factor, terms = fit.factor, fit.terms
        factor.update(fit.theta)  # the norms read the factor's state, and do not change it
        _, z_off = theta_layout(terms)
        out = whitened_row_norms(factor, terms, templates(terms, fit.theta), z_off, A, seen_rows,
                                 chunk_entries)
        return fit.sigma**2 * out


#: prediction variances of one-term models by :func:`_one_term_mean_variance` (the solves
#: through the factor serve every model; tests compare the two)
ONE_TERM_CLOSED_FORM = True


def _one_term_mean_variance(fit, A, seen_rows):
    """:func:`conditional_mean_variance` for a single random-effect term, from the
    cross-products: with ``M = [[D, B], [B', E]]`` (``D`` block diagonal by level,
    ``D_j = T'Z_j'Z_j T + I``, ``B_j = T'Z_j'X``, ``E = X'X``) and ``S = E - B'D^{-1}B``,

        a'M^{-1}a = a_z' D_j^{-1} a_z + c' S^{-1} c,   c = a_x - B_j' D_j^{-1} a_z,

    for a row of level j (``a_z = T'z``; 0 for a level not seen in fit). O(n) and vectorized:
    the 500,000 rows of 5,000 groups with slopes take a fraction of the fit."""
    cp, p = fit.cp, A.shape[1]
    T = templates(fit.terms, fit.theta)[0]
    D = T.T @ cp.diag[0] @ T + np.eye(T.shape[0])
    Dinv = np.linalg.inv(D)
    B = T.T @ cp.zxy[0][:, :, :p]  # (levels, p1, p)
    DinvB = Dinv @ B
    S = cp.xyxy[:p, :p] - np.einsum("jab,jac->bc", B, DinvB)
    Sinv = np.linalg.inv(S) if p else np.zeros((0, 0))
    # per level, in the model rows' own coordinates (z, not T'z): K_j = T D_j^{-1} T' and
    # H_j = T D_j^{-1} B_j, gathered for all rows at once as one table of their entries
    p1 = T.shape[0]
    K = T @ Dinv @ T.T
    H = T @ DinvB
    iu, ju = np.triu_indices(p1)
    # (entries x levels: gathered by np.take along rows into contiguous columns, 3x the speed
    # of a gather of rows; the arithmetic below on contiguous columns, 5x that on strided ones)
    table = np.concatenate([K[:, iu, ju], H.reshape(len(H), p1 * p)], axis=1).T.copy()
    c = np.array(A, dtype=float, copy=True).T.copy()  # (p, rows)
    out = np.zeros(A.shape[0])
    for _, idx, codes, v in seen_rows:
        g = np.take(table, codes, axis=1)  # (pairs + p1 p, rows)
        v = np.asarray(v, dtype=float).T.copy()  # (p1, rows)
        quad = np.zeros(len(codes))
        for k, (a, b) in enumerate(zip(iu, ju)):
            quad += (v[a] * v[b] if a == b else 2.0 * v[a] * v[b]) * g[k]
        out[idx] += quad
        off = len(iu)
        for col in range(p):
            cz = np.zeros(len(codes))
            for a in range(p1):
                cz += v[a] * g[off + a * p + col]
            c[col, idx] -= cz
    for a, b in zip(*np.triu_indices(p)):  # c' S^{-1} c over the pairs of the small S
        out += (1.0 if a == b else 2.0) * Sinv[a, b] * c[a] * c[b]
    return fit.sigma**2 * out


def prior_covariances(fit):
    """Each term's covariance of one level's random effects, ``sigma^2 T_k T_k'``."""
    return [fit.sigma**2 * (T @ T.T) for T in templates(fit.terms, fit.theta)]


#: nodes of the Gauss-Hermite rule for a marginal mean (the mean averaged over random effects
#: that a prediction leaves out)
MARGINAL_NODES = 40


def left_out_variance(fit, group_terms, X, rows=None):
    """Per row, the variance of the linear predictor's random effects that a prediction leaves
    out: every grouping factor's without groups (``rows`` None), else those of levels unseen in
    fit (``rows``: the estimators' ``_group_rows``). ``group_terms``: ``(index, term)`` pairs."""
    prior = prior_covariances(fit)
    var = np.zeros(X.shape[0])
    if rows is None:
        for k, t in group_terms:
            v = t.rows(X)
            var += np.einsum("ij,jk,ik->i", v, prior[k], v)
        return var
    for k, t, _, seen, _ in rows:
        if (~seen).any():
            v = t.rows(X[~seen])
            var[~seen] += np.einsum("ij,jk,ik->i", v, prior[k], v)
    return var


def marginal_mean(family, eta, var):
    """The mean response at ``eta``, averaged where ``var > 0`` over a normal random effect of
    that variance (Gauss-Hermite quadrature, or the family's closed form)."""
    from .._engine.quadrature import gauss_hermite

    mu = family.mean(eta)
    out = var > 0
    if out.any():
        nodes, weights = gauss_hermite(MARGINAL_NODES)
        mu[out] = family.marginal_mean(eta[out], var[out], nodes, weights)
    return mu
