"""The dense factorization: one Cholesky of the whole augmented PLS system.

For small models (a few dozen random-effect columns: sleepstudy, a penalized smooth), a handful
of BLAS calls on a matrix of side ``q + p + 1`` cost less than the blocked path's bookkeeping.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack, solve_triangular

from .crossprod import CrossProducts
from .system import Factorization, PLSFactor, _lambda_sandwich, dense_system

__all__ = ["DenseFactor", "DENSE_SANDWICH_FROM"]

#: above this many columns the update scales the level blocks of the system term by term
#: rather than forming ``Lambda' A Lambda`` by two dense products
DENSE_SANDWICH_FROM = 100


class DenseFactor(PLSFactor):
    """One dense Cholesky of the whole augmented system: for small models, where a handful of
    BLAS calls on a matrix of side ``q + p + 1`` cost less than the blocked path's bookkeeping."""

    name = "dense"

    def __init__(self, cp: CrossProducts, terms):
        super().__init__(cp, terms)
        z_off, q = self.z_offsets, self.q
        self.A = A = dense_system(cp, terms)  # [Z X y]'[Z X y], unscaled
        m = A.shape[0]
        self._lam = np.eye(m)
        # each term's diagonal blocks of Lambda as one writable (n_levels, p, p) strided view
        self._blocks = []
        flat, step = self._lam.reshape(-1), self._lam.strides[1]
        for k, t in enumerate(terms):
            start = int(z_off[k]) * (m + 1)
            view = np.lib.stride_tricks.as_strided(
                flat[start:], shape=(t.n_levels, t.n_coef, t.n_coef),
                strides=(t.n_coef * (m + 1) * step, m * step, step), writeable=True,
            )
            self._blocks.append(view)
        self._LA, self._M = np.empty((m, m)), np.empty((m, m), order="F")
        self._diag_q = np.arange(q) * (m + 1)
        self._state = None

    def update(self, theta):
        if self._LA.shape[0] > DENSE_SANDWICH_FROM:
            return self._update_by_blocks(theta)
        for view, t, s in zip(self._blocks, self.terms, self.theta_slices):
            if t.scalar:
                view[...] = t.template(theta[s])
            else:  # the zeros above the diagonal of each block stay as they are
                view[:, t.tri_rows, t.tri_cols] = theta[s]
        # M = Lambda' A Lambda + I (I on the random-effect diagonal) in preallocated buffers:
        # a sleepstudy fit takes about 40 of these updates at 18 microseconds each
        lam, M = self._lam, self._M
        np.matmul(lam.T, self.A, out=self._LA)
        np.matmul(self._LA, lam, out=M)
        M.T.reshape(-1)[self._diag_q] += 1.0  # (a view: M.T is C-contiguous)
        return self._factor(M)

    def _factor(self, M):
        """Factor M (Fortran-ordered, symmetric to rounding: its lower triangle is read) in
        place; the factor is valid until the next update."""
        L, info = lapack.dpotrf(M, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            self._state = None
            return None
        self._state = L
        logs = np.log(L.diagonal())
        q = self.q
        return Factorization(2.0 * float(logs[:q].sum()), 2.0 * float(logs[q:-1].sum()),
                             float(L[-1, -1] ** 2))

    def _update_by_blocks(self, theta):
        """The same update for a wide system: ``Lambda' A Lambda`` applied term by term to the
        level blocks of rows and columns (``O(m^2 p)`` for blocks of p coefficients) instead of
        two dense products (``O(m^3)``): a maximal crossed model 357 wide (kb07) takes 0.3 ms
        there instead of 10."""
        M = self._M
        np.copyto(M, self.A)
        for k, (t, s) in enumerate(zip(self.terms, self.theta_slices)):
            T = t.template(theta[s])
            # (M.T is C-ordered: its rows are M's columns, the same by symmetry)
            _lambda_sandwich(M.T, T, int(self.z_offsets[k]), t.n_levels)
        M.T.reshape(-1)[self._diag_q] += 1.0
        return self._factor(M)

    def fixed_part(self):
        """``(L_X, l_y)`` at the last updated theta (see :meth:`BlockedFactor.fixed_part`)."""
        L, q, p = self._state, self.q, self.p
        return L[q : q + p, q : q + p], L[-1, q : q + p]

    def whitened_norms(self, Az, Ax):
        """``|L^{-1} a|^2`` for ``a = [Az; Ax]`` (see :meth:`BlockedFactor.whitened_norms`)."""
        a = np.vstack([Az.toarray(), Ax])
        w = solve_triangular(self._state[:-1, :-1], a, lower=True)
        return np.einsum("ij,ij->j", w, w)

    def solve(self):
        """Conditional beta and spherical modes u at the last updated theta."""
        L = self._state
        x = solve_triangular(L[:-1, :-1], L[-1, :-1], lower=True, trans="T")
        return x[self.q :], x[: self.q]
