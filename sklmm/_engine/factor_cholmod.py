"""The sparse factorization: CHOLMOD (scikit-sparse) on ``Lambda' Z'Z Lambda + I``.

The whole random-effect block as a sparse matrix with a fixed pattern, analysed once
(fill-reducing permutation) and refactored in place for each theta. Used when the terms after
the first are together too wide for a dense Schur complement (deep nesting, many levels in
several factors). Optional: without scikit-sparse, ``HAS_CHOLMOD`` is False.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solve_triangular

from .crossprod import CrossProducts
from .system import Factorization, PLSFactor, _block_entries, _tail_cholesky

__all__ = ["CholmodFactor", "HAS_CHOLMOD"]


try:  # pragma: no cover - exercised through the solver tests when installed
    from sksparse import cholmod as _cholmod
except ImportError:  # pragma: no cover
    _cholmod = None


HAS_CHOLMOD = _cholmod is not None


class CholmodFactor(PLSFactor):
    """Sparse Cholesky of ``Lambda' Z'Z Lambda + I`` by CHOLMOD, analysed once, refactored per theta."""

    name = "cholmod"

    def __init__(self, cp: CrossProducts, terms):
        if _cholmod is None:
            raise ImportError(
                "solver='cholmod' needs scikit-sparse (pip install scikit-sparse, with the "
                "SuiteSparse headers: apt-get install libsuitesparse-dev); use solver='blocked'."
            )
        super().__init__(cp, terms)
        q = self.q
        rows, cols = [], []
        for k, t in enumerate(terms):
            o = self.z_offsets[k]
            lv = np.arange(t.n_levels)
            r, c = _block_entries(lv, lv, t.n_coef, t.n_coef, o, o)
            rows.append(r)
            cols.append(c)
        self.pairs = sorted(cp.off)
        for l, k in self.pairs:
            rl, ck, _ = cp.off[(l, k)]
            r, c = _block_entries(rl, ck, terms[l].n_coef, terms[k].n_coef, self.z_offsets[l], self.z_offsets[k])
            rows += [r, c]
            cols += [c, r]
        rows = np.concatenate(rows) if rows else np.zeros(0, np.intp)
        cols = np.concatenate(cols) if cols else np.zeros(0, np.intp)
        order = np.arange(1, len(rows) + 1, dtype=float)
        A = sp.csc_matrix((order, (rows, cols)), shape=(q, q))
        self.perm = A.data.astype(np.intp) - 1
        self.A = A
        self.factor = None
        self._state = None

    def refill(self, cp: CrossProducts):
        """New values of the same pattern: the symbolic analysis (fill-reducing ordering) stays."""
        self.cp = cp
        self._state = None

    def update(self, theta):
        cp, terms = self.cp, self.terms
        Ts = [t.template(theta[s]) for t, s in zip(terms, self.theta_slices)]
        vals = [np.einsum("ba,jbc,cd->jad", T, D, T).ravel() for T, D in zip(Ts, cp.diag)]
        for l, k in self.pairs:
            B = np.einsum("ba,jbc,cd->jad", Ts[l], cp.off[(l, k)][2], Ts[k]).ravel()
            vals += [B, B]
        A = self.A
        A.data = np.concatenate(vals)[self.perm] if vals else A.data
        if self.factor is None:
            self.factor = _cholmod.analyze(A)
        self.factor.cholesky_inplace(A, beta=1.0)
        b = np.concatenate(
            [np.einsum("ba,nbm->nam", T, Z).reshape(-1, cp.p + 1) for T, Z in zip(Ts, cp.zxy)]
        )
        sol = self.factor.solve_A(b)
        M = cp.xyxy - b.T @ sol
        M = 0.5 * (M + M.T)
        Lm = _tail_cholesky(M)
        if Lm is None:
            self._state = None
            return None
        diag = np.diagonal(Lm)
        self._state = (Ts, b, sol, Lm)
        return Factorization(
            float(self.factor.logdet()), 2.0 * float(np.sum(np.log(diag[:-1]))), float(diag[-1] ** 2)
        )

    def fixed_part(self):
        """``(L_X, l_y)`` at the last updated theta (see :meth:`BlockedFactor.fixed_part`)."""
        Lm, p = self._state[-1], self.p
        return Lm[:p, :p], Lm[-1, :p]

    def whitened_norms(self, Az, Ax):
        """``|L^{-1} a|^2`` for ``a = [Az; Ax]`` (see :meth:`BlockedFactor.whitened_norms`)."""
        Ts, b, sol, Lm = self._state
        p = self.p
        total = np.zeros(Ax.shape[1])
        if self.q:
            wz = self.factor.solve_L(self.factor.apply_P(Az), use_LDLt_decomposition=False)
            wz = wz.toarray() if sp.issparse(wz) else np.asarray(wz)
            total += np.einsum("ij,ij->j", wz, wz)
            W = self.factor.solve_L(self.factor.apply_P(b[:, :p]), use_LDLt_decomposition=False)
            Ax = Ax - np.asarray(W).T @ wz
        if p:
            wx = solve_triangular(Lm[:p, :p], Ax, lower=True)
            total += np.einsum("ij,ij->j", wx, wx)
        return total

    def solve(self):
        Ts, b, sol, Lm = self._state
        p = self.p
        beta = solve_triangular(Lm[:p, :p], Lm[p, :p], lower=True, trans="T") if p else np.zeros(0)
        u = sol[:, p] - sol[:, :p] @ beta
        return beta, u
