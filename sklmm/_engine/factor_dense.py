"""The dense factorization: one Cholesky of the whole augmented PLS system.

For small models (a few dozen random-effect columns: sleepstudy, a penalized smooth), one
compiled call per theta on a matrix of side ``q + p + 1`` (``_dense_kernel.c``: the scaling by
Lambda and LAPACK's Cholesky) costs less than the blocked path's bookkeeping.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cython_lapack, solve_triangular

from . import _dense_kernel
from .crossprod import CrossProducts
from .system import Factorization, PLSFactor, dense_positions, fill_dense

__all__ = ["DenseFactor"]

# the compiled update calls scipy's LAPACK (the BLAS whose threads the package limits)
_dense_kernel.set_dpotrf(cython_lapack.__pyx_capi__["dpotrf"])


class DenseFactor(PLSFactor):
    """One dense Cholesky of the whole augmented system: for small models, where one compiled
    call on a matrix of side ``q + p + 1`` costs less than the blocked path's bookkeeping."""

    name = "dense"

    def __init__(self, cp: CrossProducts, terms):
        super().__init__(cp, terms)
        z_off = self.z_offsets
        self._positions = dense_positions(cp, terms)
        m = self.q + cp.p + 1
        self.A = fill_dense(np.empty((m, m)), cp, terms, self._positions)  # [Z X y]'[Z X y], unscaled
        self._lam = np.eye(m)
        # each term's diagonal blocks of Lambda as one writable (n_levels, p, p) strided view,
        # and the rows lo[j] <= r < hi[j] where column j of Lambda may be nonzero
        self._blocks = []
        self._lo = np.arange(m, dtype=np.int64)
        self._hi = self._lo + 1
        flat, step = self._lam.reshape(-1), self._lam.strides[1]
        for k, t in enumerate(terms):
            start = int(z_off[k]) * (m + 1)
            view = np.lib.stride_tricks.as_strided(
                flat[start:], shape=(t.n_levels, t.n_coef, t.n_coef),
                strides=(t.n_coef * (m + 1) * step, m * step, step), writeable=True,
            )
            self._blocks.append(view)
            if not t.scalar:  # (a scalar term's T is diagonal)
                first = z_off[k] + t.n_coef * np.arange(t.n_levels)[:, None]
                for c in range(t.n_coef):
                    rows = t.tri_rows[t.tri_cols == c]
                    self._lo[first[:, 0] + c] = first[:, 0] + rows.min()
                    self._hi[first[:, 0] + c] = first[:, 0] + rows.max() + 1
        # the other terms' theta entries at their positions in Lambda, all levels at once (the
        # zeros above each block's diagonal stay as they are): one indexed write per update
        at, src = [], []
        for k, (t, s) in enumerate(zip(terms, self.theta_slices)):
            if t.scalar:
                continue
            rows = z_off[k] + t.n_coef * np.arange(t.n_levels)[:, None]
            at.append(((rows + t.tri_rows) * m + rows + t.tri_cols).ravel())
            src.append(np.tile(np.arange(s.start, s.stop), t.n_levels))
        self._fill_at = np.concatenate(at) if at else np.zeros(0, dtype=np.intp)
        self._fill_from = np.concatenate(src) if src else np.zeros(0, dtype=np.intp)
        self._scalar_blocks = [(view, t, s) for view, t, s in zip(self._blocks, terms, self.theta_slices)
                               if t.scalar]
        self._work, self._M = np.empty((m, m)), np.empty((m, m), order="F")
        self._state = None

    def update(self, theta):
        theta = np.asarray(theta, dtype=float)
        self._lam.reshape(-1)[self._fill_at] = theta[self._fill_from]
        for view, t, s in self._scalar_blocks:
            view[...] = t.template(theta[s])
        # M = Lambda' A Lambda + I (I on the random-effect diagonal) and its Cholesky factor in
        # one compiled call, through the nonzero rows of Lambda's columns (O(m nnz(Lambda))): a
        # sleepstudy fit takes about 40 of these updates at about 10 us; a maximal crossed model
        # 357 wide (kb07) takes 1.2 ms, where scaling its blocks term by term took 1.7
        M = self._M
        parts = _dense_kernel.dense_update(self.A, self._lam, self._lo, self._hi, M.shape[0], self.q,
                                           self._work, M.T)
        if parts is None:
            self._state = None
            return None
        self._state = M  # lower, Fortran-ordered; valid until the next update
        return Factorization(*parts)

    def refill(self, cp: CrossProducts):
        """New values of the same cross-products (a step of penalized IRLS): ``A`` rewritten in
        place at the kept positions; Lambda's layout and the buffers kept (a binomial GLMM on
        cbpp refills some 200 times a fit)."""
        if cp.p != self.p or cp.off.keys() != self.cp.off.keys() or any(
                len(cp.off[k][0]) != len(self.cp.off[k][0]) or not np.array_equal(cp.off[k][0], self.cp.off[k][0])
                or not np.array_equal(cp.off[k][1], self.cp.off[k][1]) for k in cp.off):
            self.__init__(cp, self.terms)  # (another pattern of level pairs)
            return
        self.cp = cp
        fill_dense(self.A, cp, self.terms, self._positions)
        self._state = None

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
