"""The augmented penalized least-squares system and the block kernels its factors share.

For covariance parameters ``theta`` the PLS problem

    min_{u, beta} ||y - X beta - Z Lambda u||^2 + ||u||^2

is solved through one Cholesky factorization of the augmented cross-product matrix

    [ Lambda' Z'Z Lambda + I    Lambda' Z'X    Lambda' Z'y ]
    [ X'Z Lambda                X'X            X'y         ]
    [ y'Z Lambda                y'X            y'y         ]

whose factor gives ``log|L_theta|^2``, ``log|R_X|^2`` and the penalized residual sum of squares
``r^2`` (the square of its last diagonal element): a :class:`Factorization`. The factorizations
themselves (dense, blocked, CHOLMOD) are in the ``factor_*`` modules; the criteria built from a
:class:`Factorization` in :mod:`sklmm._engine.criteria`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from .crossprod import CrossProducts
from .terms import theta_layout

__all__ = ["Factorization", "PLSFactor", "dense_system", "sparse_system"]


@dataclass
class Factorization:
    """What one factorization at a theta yields."""

    logdet_L2: float  # log |L_theta|^2
    logdet_RX2: float  # log |R_X|^2
    r2: float  # penalized residual sum of squares


class PLSFactor:
    """What the factorizations of the PLS system share: the cross-products, the terms and the
    layout of theta; and the interface :func:`~sklmm._engine.factor.make_factor` promises.

    ``update(theta)`` factors the system at theta and returns a :class:`Factorization` (None
    where it is not positive definite); the other methods read that last factorization:
    ``solve()`` gives the conditional beta and spherical modes u, ``fixed_part()`` the
    fixed-effect block of the factor and the row below it, ``whitened_norms(Az, Ax)`` the
    norms ``|L^{-1} a|^2``. ``name`` is what the estimators report as ``solver_``.
    """

    name = None

    def __init__(self, cp: CrossProducts, terms):
        self.cp = cp
        self.terms = terms
        self.p = cp.p
        self.theta_slices, self.z_offsets = theta_layout(terms)
        self.q = int(self.z_offsets[-1])
        self._state = None

    def dense_side(self):
        """Columns of the largest dense block factored at each evaluation (what BLAS threads
        can speed up): the whole system here; the blocked factorization's is its rest."""
        return self.q + self.p + 1

    def refill(self, cp: CrossProducts):
        """The same system with new values of its cross-products (the same terms, levels and
        fixed columns; other weights or another response): what each step of penalized IRLS
        does. A factorization with a symbolic analysis keeps it."""
        self.__init__(cp, self.terms)


def _block_entries(rows, cols, pr, pc, row_off=0, col_off=0):
    """Row and column indices of the entries of ``(pr x pc)`` blocks at block positions."""
    a = np.arange(pr)
    b = np.arange(pc)
    r = (row_off + rows[:, None, None] * pr + a[None, :, None]) + 0 * b[None, None, :]
    c = (col_off + cols[:, None, None] * pc + b[None, None, :]) + 0 * a[None, :, None]
    return r.ravel(), c.ravel()


def _lambda_t_rows(M, T, offset, n_levels):
    """In place: rows ``offset : offset + n_levels p`` of M <- (I (x) T)' times those rows."""
    p = T.shape[0]
    if n_levels == 0:
        return
    block = M[offset : offset + n_levels * p]
    if p == 1:
        block *= T[0, 0]
    else:
        shaped = block.reshape(n_levels, p, -1)
        block[...] = np.matmul(T.T, shaped).reshape(block.shape)  # (3x a batched einsum's speed)


def _lambda_sandwich(M, T, offset, n_levels):
    """In place: ``M <- Lambda' M Lambda`` on one term's rows and columns (M symmetric)."""
    _lambda_t_rows(M, T, offset, n_levels)
    _lambda_t_rows(M.T, T, offset, n_levels)


def _tail_cholesky(M, overwrite=False, clean=True):
    """Lower Cholesky factor of a symmetric matrix, or None when it is not positive definite.

    Only the upper triangle of a C-ordered ``M`` is read (it is the lower triangle of the
    Fortran-ordered ``M.T``, which LAPACK factors without a copy when ``overwrite`` is True;
    ``M`` is then destroyed). The factor is returned in Fortran order; without ``clean`` its
    strict upper triangle is left as it was (for callers that only read the lower one).
    """
    if M.shape[0] == 0:
        return M
    L, info = lapack.dpotrf(M.T, lower=1, clean=int(clean), overwrite_a=int(overwrite))
    if info != 0:
        return None
    return L


def sparse_system(cp: CrossProducts, terms, theta):
    """:func:`dense_system` at theta as a scipy CSC matrix (the same entries): for systems with
    many random-effect columns, whose dense form would not fit in memory."""
    import scipy.sparse as sp

    slices, z_off = theta_layout(terms)
    q = int(z_off[-1])
    m = q + cp.p + 1
    Ts = [t.template(theta[s]) for t, s in zip(terms, slices)]
    rows, cols, vals = [], [], []

    def put(r, c, v):
        rows.append(r)
        cols.append(c)
        vals.append(v)

    for k, t in enumerate(terms):
        lv = np.arange(t.n_levels)
        r, c = _block_entries(lv, lv, t.n_coef, t.n_coef, z_off[k], z_off[k])
        put(r, c, (np.matmul(np.matmul(Ts[k].T[None], cp.diag[k]), Ts[k][None]) + np.eye(t.n_coef)).ravel())
        zx = Ts[k].T @ cp.zxy[k].reshape(t.n_levels, t.n_coef, cp.p + 1)  # Lambda_k' Z_k'[X y]
        rr = np.repeat(np.arange(z_off[k], z_off[k + 1]), cp.p + 1)
        cc = np.tile(np.arange(q, m), t.q)
        put(rr, cc, zx.ravel())
        put(cc, rr, zx.ravel())
    for (a, b), (lr, lc, blocks) in cp.off.items():
        r, c = _block_entries(lr, lc, terms[a].n_coef, terms[b].n_coef, z_off[a], z_off[b])
        v = np.matmul(np.matmul(Ts[a].T[None], blocks), Ts[b][None]).ravel()
        put(r, c, v)
        put(c, r, v)
    xr, xc = np.meshgrid(np.arange(q, m), np.arange(q, m), indexing="ij")
    put(xr.ravel(), xc.ravel(), cp.xyxy.ravel())
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))


def dense_positions(cp: CrossProducts, terms):
    """Where :func:`dense_system` puts the cross-products' blocks: for each term its level
    blocks' ``(rows, columns)``, and for each pair of terms in ``cp.off`` those of its blocks
    (the same for every refill of the same pattern: penalized IRLS keeps them)."""
    _, z_off = theta_layout(terms)
    diag = []
    for k, t in enumerate(terms):
        lv = np.arange(t.n_levels)
        diag.append(_block_entries(lv, lv, t.n_coef, t.n_coef, z_off[k], z_off[k]))
    off = {key: _block_entries(rows, cols, terms[key[0]].n_coef, terms[key[1]].n_coef, z_off[key[0]], z_off[key[1]])
           for key, (rows, cols, _) in cp.off.items()}
    return diag, off


def fill_dense(M, cp: CrossProducts, terms, positions):
    """Write ``[Z X y]'[Z X y]`` into M (zeros elsewhere) at the :func:`dense_positions`."""
    _, z_off = theta_layout(terms)
    q = int(z_off[-1])
    diag, off = positions
    M.fill(0.0)
    for k, t in enumerate(terms):
        r, c = diag[k]
        M[r, c] = cp.diag[k].ravel()
        zx = cp.zxy[k].reshape(t.q, cp.p + 1)
        M[z_off[k] : z_off[k + 1], q:] = zx
        M[q:, z_off[k] : z_off[k + 1]] = zx.T
    for key, (_, _, blocks) in cp.off.items():
        r, c = off[key]
        M[r, c] = blocks.ravel()
        M[c, r] = blocks.ravel()
    M[q:, q:] = cp.xyxy
    return M


def dense_system(cp: CrossProducts, terms, theta=None):
    """The augmented PLS matrix at theta as a dense array (random-effect columns, X, y).

    ``[[Lambda'Z'Z Lambda + I, Lambda'Z'X, Lambda'Z'y], [., X'X, X'y], [., ., y'y]]``. Its size is
    ``q + p + 1``: meant for models with few random-effect columns (penalized smooths) and for
    quantities needed once per fit (effective degrees of freedom, posterior covariances).
    ``theta=None`` gives the unscaled cross-products ``[Z X y]'[Z X y]`` (no Lambda, no I).
    """
    slices, z_off = theta_layout(terms)
    q = int(z_off[-1])
    m = q + cp.p + 1
    M = fill_dense(np.empty((m, m)), cp, terms, dense_positions(cp, terms))
    if theta is None:
        return M
    for k, t in enumerate(terms):
        T = t.template(theta[slices[k]])
        _lambda_sandwich(M, T, z_off[k], t.n_levels)
    idx = np.arange(q)
    M[idx, idx] += 1.0
    return M
