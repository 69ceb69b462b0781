"""The posterior precision of a penalized spline model, without its dense inverse.

``M``, the penalized least-squares matrix of ``(u, kept beta)`` at the estimated variances
(``sigma^2 M^{-1}`` is mgcv's ``Vp``), splits into the grouping factors' random effects ``g``
(the first ``zg`` coordinates; thousands in a GAMM with many groups) and the rest ``r`` (the
smooths' u and the fixed effects; tens). Everything the GAM tables need is the rest's block of
``M^{-1}``, the diagonal of ``M^{-1}`` (for the edf) and products with ``A^{-1}``, ``A = M_gg``:

    M^{-1}_rr = S^{-1},  S = M_rr - M_rg A^{-1} M_gr,
    diag(M^{-1})_g = diag(A^{-1}) + diag(G S^{-1} G'),  G = A^{-1} M_gr,

with ``A`` sparse (block diagonal for one grouping factor: its inverse's diagonal blocks are
exact and cheap). A GAMM with 10,000 groups needed a 10,000-wide dense inverse (50 s, 3.4 GB);
this costs a sparse factorization and ``r`` solves.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import splu

from .._engine.system import dense_system, sparse_system
from .._engine.terms import theta_layout

__all__ = ["Posterior", "RestCovariance", "DENSE_GROUP_LIMIT"]

#: up to this many group coordinates the dense system is used (simpler, as fast)
DENSE_GROUP_LIMIT = 1500


class RestCovariance:
    """A covariance over the rest's coordinates indexed by full coordinates (``>= offset``):
    ``V[i, j]`` and ``V[np.ix_(a, b)]`` read the rest's block."""

    def __init__(self, matrix, offset):
        self.matrix, self.offset = matrix, int(offset)

    def __getitem__(self, key):
        key = tuple(np.asarray(k) - self.offset if not isinstance(k, slice) else k for k in key)
        for k in key:
            if not isinstance(k, slice) and np.any(k < 0):
                raise IndexError("a grouping factor's coordinate: its covariance is not kept")
        return self.matrix[key]

    def scaled(self, factor):
        return RestCovariance(self.matrix * factor, self.offset)


class Posterior:
    """The blocks of ``M`` and ``M^{-1}`` for a fit at theta (default: the fit's), with the
    first ``zg`` coordinates the grouping factors' (``n_group_terms`` terms)."""

    def __init__(self, fit, n_group_terms, theta=None):
        theta = fit.theta if theta is None else np.asarray(theta, dtype=float)
        terms = fit.terms
        _, z_off = theta_layout(terms)
        zg = self.zg = int(z_off[n_group_terms])
        if zg <= DENSE_GROUP_LIMIT:
            full = dense_system(fit.cp, terms, theta)
            M, rhs = full[:-1, :-1], full[:-1, -1]
            Mgg, self.Mrg, self.Mrr = M[:zg, :zg], M[zg:, :zg], M[zg:, zg:]
            Ainv = np.linalg.inv(Mgg) if zg else np.zeros((0, 0))
            self._solve = lambda B: Ainv @ B
            diag_Ainv = np.diag(Ainv)
        else:
            full = sparse_system(fit.cp, terms, theta)
            m = full.shape[0] - 1
            rhs = full[:m, m].toarray().ravel()
            A = full[:zg, :zg].tocsc()
            self.Mrg, self.Mrr = full[zg:m, :zg].toarray(), full[zg:m, zg:m].toarray()
            lu = splu(A)
            self._solve = lambda B: lu.solve(np.asarray(B, dtype=float))
            diag_Ainv = _inverse_diagonal(A, terms[:n_group_terms], self._solve)
        self.G = self._solve(self.Mrg.T) if zg else np.zeros((0, self.Mrr.shape[0]))
        S = self.Mrr - self.Mrg @ self.G
        rest_inv = np.linalg.inv(0.5 * (S + S.T))
        self.rest_inv = 0.5 * (rest_inv + rest_inv.T)
        self.cov = RestCovariance(self.rest_inv, zg)
        diag_g = diag_Ainv + np.einsum("ij,jk,ik->i", self.G, self.rest_inv, self.G) if zg else np.zeros(0)
        self.diag = np.concatenate([diag_g, np.diag(self.rest_inv)])
        # the posterior mean (u, beta) by the same blocks: x_r = S^{-1}(b_r - M_rg A^{-1} b_g)
        b_g, b_r = rhs[:zg], rhs[zg:]
        x_r = self.rest_inv @ (b_r - (self.G.T @ b_g if zg else 0.0))
        x_g = self._solve(b_g - self.Mrg.T @ x_r) if zg else np.zeros(0)
        self.mean = np.concatenate([x_g, x_r])

    def solve_groups(self, B):
        """``A^{-1} B`` for the grouping factors' block ``A`` of M."""
        return self._solve(B)


def _inverse_diagonal(A, group_terms, solve, chunk=512):
    """The diagonal of ``A^{-1}``: from the inverses of its level blocks for one grouping
    factor (A is then block diagonal), else by solves on chunks of the identity."""
    if len(group_terms) == 1:
        t = group_terms[0]
        p = t.n_coef
        idx = np.arange(t.q).reshape(t.n_levels, p)
        A = A.tocsr()
        blocks = np.empty((t.n_levels, p, p))
        for a in range(p):
            for b in range(p):
                blocks[:, a, b] = np.asarray(A[idx[:, a], idx[:, b]]).ravel()
        return np.diagonal(np.linalg.inv(blocks), axis1=1, axis2=2).ravel()
    n = A.shape[0]
    out = np.empty(n)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        E = np.zeros((n, b - a))
        E[np.arange(a, b), np.arange(b - a)] = 1.0
        out[a:b] = solve(E)[np.arange(a, b), np.arange(b - a)]
    return out
