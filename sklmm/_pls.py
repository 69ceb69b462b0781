"""Penalized least squares: cross-products, the Cholesky factor, the profiled criteria.

For covariance parameters ``theta`` the PLS problem

    min_{u, beta} ||y - X beta - Z Lambda u||^2 + ||u||^2

is solved through one Cholesky factorization of the augmented cross-product matrix

    [ Lambda' Z'Z Lambda + I    Lambda' Z'X    Lambda' Z'y ]
    [ X'Z Lambda                X'X            X'y         ]
    [ y'Z Lambda                y'X            y'y         ]

Its blocks give ``log|L_theta|^2``, ``log|R_X|^2`` and the penalized residual sum of squares
``r^2`` (the square of the last diagonal element), hence the profiled deviance (ML)

    d(theta) = log|L|^2 + n (1 + log(2 pi r^2 / n))

and the profiled REML criterion

    d_R(theta) = log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r^2 / (n - p))).

The cross-products are formed once (:func:`cross_products`); an evaluation of the criterion
never touches the ``n`` rows again.  Two factorizations are provided:

``BlockedFactor`` (numpy / scipy only)
    The first term's block ``Lambda_1' Z_1'Z_1 Lambda_1 + I`` is block diagonal (one small
    ``p_1 x p_1`` block per level) and is factored level by level; the Schur complement of
    everything else (the other terms, X and y) is a dense matrix factored by LAPACK.  This is
    the blocked Cholesky of MixedModels.jl for the common case of one large factor and small
    others, and it is the path used when scikit-sparse is not installed.

``CholmodFactor`` (scikit-sparse / CHOLMOD)
    The whole ``Lambda' Z'Z Lambda + I`` as a sparse matrix with a fixed pattern, analysed once
    (fill-reducing permutation) and refactored in place for each theta.  Used when the other
    terms together are too wide for a dense Schur complement (deep nesting, many levels in
    several factors).

This module imports nothing from scikit-learn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import lapack, solve_triangular

from ._terms import theta_layout

try:  # pragma: no cover - exercised through the solver tests when installed
    from sksparse import cholmod as _cholmod
except ImportError:  # pragma: no cover
    _cholmod = None

__all__ = [
    "CrossProducts",
    "cross_products",
    "sum_cross_products",
    "make_factor",
    "profiled_criterion",
    "HAS_CHOLMOD",
    "DENSE_REST_LIMIT",
]

HAS_CHOLMOD = _cholmod is not None

#: Above this many columns in the terms after the first, ``solver="auto"`` uses CHOLMOD
#: (when installed) rather than a dense Schur complement.
DENSE_REST_LIMIT = 3000

_LOG_2PI = np.log(2.0 * np.pi)


# ----------------------------------------------------------------------------- cross-products


@dataclass
class CrossProducts:
    """The sums over rows that a fit needs; nothing here has ``n`` rows.

    Attributes
    ----------
    n : int
        Number of observations.
    p : int
        Number of fixed-effect columns.
    diag : list of ndarray, shape (n_levels_k, p_k, p_k)
        Diagonal blocks of ``Z_k' Z_k``.
    off : dict
        ``(l, k) -> (rows, cols, blocks)`` for ``l > k``: the nonzero ``p_l x p_k`` blocks of
        ``Z_l' Z_k`` with their level indices.
    zxy : list of ndarray, shape (n_levels_k, p_k, p + 1)
        ``Z_k' [X y]`` by level.
    xyxy : ndarray, shape (p + 1, p + 1)
        ``[X y]' [X y]``.
    sum_log_weights : float
        ``sum(log w)`` for prior weights (0 without weights).
    """

    n: int
    p: int
    diag: list
    off: dict
    zxy: list
    xyxy: np.ndarray
    sum_log_weights: float = 0.0


def _by_level(codes, A, B, n_levels):
    """``sum_i [codes_i == j] A_i B_i'`` for every level j: shape (n_levels, A.shape[1], B.shape[1])."""
    if n_levels == 1:
        return (A.T @ B)[None]
    out = np.empty((n_levels, A.shape[1], B.shape[1]))
    for a in range(A.shape[1]):
        for b in range(B.shape[1]):
            out[:, a, b] = np.bincount(codes, weights=A[:, a] * B[:, b], minlength=n_levels)
    return out


def cross_products(terms, X, y, sample_weight=None) -> CrossProducts:
    """Form every cross-product of ``[Z X y]`` once (cost O(n), done once per fit)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    Xy = np.column_stack([X, y])
    values = [t.values for t in terms]
    sum_log_w = 0.0
    if sample_weight is not None:
        sw = np.sqrt(sample_weight)
        Xy = Xy * sw[:, None]
        values = [v * sw[:, None] for v in values]
        sum_log_w = float(np.sum(np.log(sample_weight)))
    diag, zxy, off = [], [], {}
    for t, v in zip(terms, values):
        diag.append(_by_level(t.codes, v, v, t.n_levels))
        zxy.append(_by_level(t.codes, v, Xy, t.n_levels))
    for k, tk in enumerate(terms):
        for l in range(k + 1, len(terms)):
            tl = terms[l]
            if tl.n_levels == 1 and tk.n_levels == 1:
                off[(l, k)] = (np.zeros(1, np.intp), np.zeros(1, np.intp), (values[l].T @ values[k])[None])
                continue
            key = tl.codes.astype(np.int64) * tk.n_levels + tk.codes
            uniq, inv = np.unique(key, return_inverse=True)
            blocks = _by_level(inv.ravel(), values[l], values[k], len(uniq))
            off[(l, k)] = (uniq // tk.n_levels, uniq % tk.n_levels, blocks)
    return CrossProducts(
        n=X.shape[0], p=X.shape[1], diag=diag, off=off, zxy=zxy, xyxy=Xy.T @ Xy,
        sum_log_weights=sum_log_w,
    )



def _aggregate_blocks(rows, cols, blocks, n_cols):
    """Sum the blocks that share a ``(row, col)`` position; positions sorted as in :func:`cross_products`."""
    key = rows.astype(np.int64) * n_cols + cols
    uniq, inv = np.unique(key, return_inverse=True)
    out = np.zeros((len(uniq),) + blocks.shape[1:])
    np.add.at(out, inv.ravel(), blocks)
    return uniq // n_cols, uniq % n_cols, out


def sum_cross_products(parts, level_maps=None, n_levels=None) -> CrossProducts:
    """The cross-products of the union of disjoint chunks of rows, from each chunk's.

    Every part must come from the same terms (same coefficients per term, same fixed columns).
    Without ``level_maps`` the parts share their levels. With them, ``level_maps[i][k]`` maps
    level j of term k in part i to level ``level_maps[i][k][j]`` of the sum (an injective int
    array; None maps level j to level j) and ``n_levels[k]`` is the number of levels of term k in the sum;
    levels of the sum that no part maps to get zero blocks. Diagonal blocks, ``Z'[X y]`` and
    ``[X y]'[X y]`` add; the off-diagonal block triplets are concatenated and re-aggregated by
    ``(row, col)``.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("sum_cross_products needs at least one part.")
    first = parts[0]
    n_terms = len(first.diag)
    for c in parts[1:]:
        if c.p != first.p or len(c.diag) != n_terms or any(
            a.shape[1:] != b.shape[1:] for a, b in zip(c.diag, first.diag)
        ):
            raise ValueError("the parts were formed from different terms or fixed columns.")
    if level_maps is None:
        level_maps = [[None] * n_terms for _ in parts]
        n_levels = [d.shape[0] for d in first.diag]
    diag = [np.zeros((n_levels[k],) + first.diag[k].shape[1:]) for k in range(n_terms)]
    zxy = [np.zeros((n_levels[k],) + first.zxy[k].shape[1:]) for k in range(n_terms)]
    for c, maps in zip(parts, level_maps):
        for k in range(n_terms):
            m = maps[k]
            if m is None:
                nk = c.diag[k].shape[0]
                diag[k][:nk] += c.diag[k]
                zxy[k][:nk] += c.zxy[k]
            else:  # m is injective: no repeated index in the fancy-indexed update
                diag[k][m] += c.diag[k]
                zxy[k][m] += c.zxy[k]
    off = {}
    for l, k in first.off:
        rows, cols, blocks = [], [], []
        for c, maps in zip(parts, level_maps):
            r, cc, b = c.off[(l, k)]
            rows.append(r if maps[l] is None else maps[l][r])
            cols.append(cc if maps[k] is None else maps[k][cc])
            blocks.append(b)
        off[(l, k)] = _aggregate_blocks(np.concatenate(rows), np.concatenate(cols),
                                        np.concatenate(blocks), n_levels[k])
    xyxy = first.xyxy.copy()
    for c in parts[1:]:
        xyxy += c.xyxy
    return CrossProducts(
        n=sum(c.n for c in parts), p=first.p, diag=diag, off=off, zxy=zxy, xyxy=xyxy,
        sum_log_weights=float(sum(c.sum_log_weights for c in parts)),
    )

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
        block[...] = np.einsum("ba,nbm->nam", T, shaped).reshape(block.shape)


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


# ----------------------------------------------------------------------------- factorizations


@dataclass
class Factorization:
    """What one factorization at a theta yields."""

    logdet_L2: float  # log |L_theta|^2
    logdet_RX2: float  # log |R_X|^2
    r2: float  # penalized residual sum of squares


#: Largest number of stored products for which :class:`_SchurUpdate` is precomputed; above it the
#: update is formed by :class:`_SchurScatter` (within :data:`SCHUR_SCATTER_BYTES`) or by a sparse
#: matrix product per evaluation (less memory, more time).
SCHUR_UPDATE_BUDGET = 20_000_000
#: Memory allowed for the products stored by :class:`_SchurScatter`.
SCHUR_SCATTER_BYTES = 1_500_000_000


class _LevelPairs:
    """The entries of C (everything else against the first term) arranged for its Schur update.

    ``sum_j C_j W_j C_j'`` is linear in the entries of the ``W_j``: its upper triangle is a sum
    over levels j, over pairs of rows ``s <= t`` of ``C_j`` (rows sorted), of ``W_j[a, b]`` times
    ``C_j[s, a] C_j[t, b]`` (plus ``C_j[s, b] C_j[t, a]`` for ``a != b``) at the position
    ``(row_s, row_t)`` of the dense block. This class sorts the entries by level, orders the
    levels by their number of rows L (``perm``) and forms those products group by group: all
    levels of a group share the upper-triangle pattern of an ``L x L`` block, so each product is
    one vectorized ``take`` and multiply.
    """

    def __init__(self, rows, levels, values, n_levels, m):
        order = np.lexsort((rows, levels))
        self.m = m
        self.p1 = values.shape[1]
        self.pairs_w = [(a, b) for a in range(self.p1) for b in range(a, self.p1)]
        self.lengths = np.bincount(levels, minlength=n_levels)
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.perm = np.argsort(self.lengths, kind="stable")
        counts = (self.lengths * (self.lengths + 1) // 2)[self.perm]  # pairs per level
        self.indptr = np.zeros(n_levels + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self.total = int(self.indptr[-1])
        self.index_type = np.int32 if m * m < 2**31 and self.total < 2**31 else np.int64
        self.rows = rows[order].astype(self.index_type)
        self.columns = [np.ascontiguousarray(values[order, a]) for a in range(self.p1)]

    def groups(self):
        """``(g0, g1, L)``: positions ``g0:g1`` of ``perm`` hold the levels with L rows (L > 0)."""
        sorted_lengths = self.lengths[self.perm]
        bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
        for g0, g1 in zip(np.r_[0, bounds], np.r_[bounds, len(self.perm)]):
            if sorted_lengths[g0] > 0:
                yield int(g0), int(g1), int(sorted_lengths[g0])

    def products(self, l0, l1, L, pos_out=None, data_out=None):
        """Positions and products of the levels at ``perm[l0:l1]`` (all with L rows), as
        ``(levels, L(L+1)/2)`` arrays, written into ``pos_out`` and ``data_out`` when given."""
        iu, ju = np.triu_indices(L)
        at = self.starts[self.perm[l0:l1]][:, None] + np.arange(L)  # (levels, L) entries of C
        shape = (l1 - l0, len(iu))
        R = self.rows[at]
        pos = pos_out if pos_out is not None else np.empty(shape, dtype=self.index_type)
        # np.take along the columns: several times faster than fancy indexing here
        np.multiply(np.take(R, iu, axis=1), self.m, out=pos)
        pos += np.take(R, ju, axis=1)
        V = [col[at] for col in self.columns]  # per coefficient, (levels, L)
        data = []
        for k, (a, b) in enumerate(self.pairs_w):
            c = data_out[k] if data_out is not None else np.empty(shape)
            np.multiply(np.take(V[a], iu, axis=1), np.take(V[b], ju, axis=1), out=c)
            if a != b:
                c += np.take(V[b], iu, axis=1) * np.take(V[a], ju, axis=1)
            data.append(c)
        return pos, data


_BLAS_CONTROLLER = []


def _single_threaded_blas():
    """Context: BLAS libraries limited to one thread (a controller built once, ~10 us a call)."""
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _schur_weights(G, pairs_w):
    """The entries ``W_j[a, b]`` (a <= b) of ``W_j = G_j G_j'``, one column per pair."""
    if G.shape[1] == 1:
        return (G[:, 0, 0] ** 2)[:, None]
    if G.shape[1] == 2:  # written out: 30 times faster than a batched einsum at 10^5 levels
        g00, g01, g10, g11 = G[:, 0, 0], G[:, 0, 1], G[:, 1, 0], G[:, 1, 1]
        return np.stack([g00 * g00 + g01 * g01, g00 * g10 + g01 * g11, g10 * g10 + g11 * g11], axis=1)
    W = G @ G.transpose(0, 2, 1)
    return np.stack([W[:, a, b] for a, b in pairs_w], axis=1)


def _equal_blocks(D):
    """Class of each level's block ``D_j`` (levels with bit-identical blocks share one), and the
    first level of each class; by hashing, in O(n_levels)."""
    n = D.shape[0]
    rows = np.ascontiguousarray(D.reshape(n, -1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    klass, uniques = pd.factorize(keys)
    rep = np.empty(len(uniques), dtype=np.intp)
    rep[klass[::-1]] = np.arange(n)[::-1]  # the last write wins: the first level of each class
    return klass, rep


class _SchurUpdate:
    """``sum_j C_j W_j C_j'`` as one precomputed sparse matrix-vector product.

    ``C_j`` is the block of ``C`` (the cross-products of everything else with the first term)
    belonging to level j of the first term, and ``W_j = G_j G_j'`` a small symmetric matrix that
    changes with theta. The update is linear in the entries of the ``W_j``, so its upper
    triangle is ``K @ vec(W)`` with ``K`` (distinct positions x classes of levels) built once from
    :class:`_LevelPairs`; an evaluation is one sparse matvec, with no allocation of a sparse
    product and no densification.
    """

    def __init__(self, pairs: _LevelPairs, D):
        n_levels, m, nw = len(pairs.perm), pairs.m, len(pairs.pairs_w)
        self.pairs_w = pairs.pairs_w
        # levels with the same block D_j = Z_j'Z_j have the same W_j at every theta: one column
        # of K serves them all (InstEval: 2,972 students, 86 distinct counts; half the entries)
        klass, self.rep = _equal_blocks(D)
        klass = klass[pairs.perm]
        key = np.empty(pairs.total, dtype=np.int64)
        data = [np.empty(pairs.total) for _ in self.pairs_w]
        cls = np.empty(pairs.total, dtype=np.int64)
        for g0, g1, L in pairs.groups():
            sl = slice(int(pairs.indptr[g0]), int(pairs.indptr[g1]))
            shape = (g1 - g0, L * (L + 1) // 2)
            out = key[sl].reshape(shape)
            pairs.products(g0, g1, L, pos_out=out, data_out=[d[sl].reshape(shape) for d in data])
            cls[sl] = np.repeat(klass[g0:g1], shape[1])
        # distinct positions through a dense m x m lookup (cheaper than sorting the keys)
        present = np.zeros(m * m, dtype=bool)
        present[key] = True
        self.idx = np.flatnonzero(present)
        slot = np.cumsum(present, dtype=np.int64) - 1
        inv = slot[key]
        del present, slot, key
        self.K = sp.csr_matrix(  # duplicate (position, class) entries are summed
            (np.concatenate(data), (np.tile(inv, nw), np.concatenate([cls * nw + w for w in range(nw)]))),
            shape=(len(self.idx), len(self.rep) * nw),
        )
        r, c = self.idx // m, self.idx % m
        off = r != c
        self.idx_t = (c * m + r)[off]
        self.off = off

    def apply(self, M, G, mirror=True):
        """In place: ``M -= sum_j C_j G_j G_j' C_j'`` (M dense, m x m), on the upper triangle
        only unless ``mirror``."""
        vals = self.K @ _schur_weights(G[self.rep], self.pairs_w).ravel()
        flat = M.reshape(-1)
        flat[self.idx] -= vals
        if mirror:
            flat[self.idx_t] -= vals[self.off]


class _SchurScatter:
    """``sum_j C_j W_j C_j'`` for many products: the same linear map as :class:`_SchurUpdate`,
    stored level by level (one sparse column per level and entry of W, with the flat position
    in M of each product), so that it is built without sorting and applied as a scatter into a
    dense vector of ``m^2`` positions (scipy's CSC matrix-vector product, which releases the
    GIL: the levels are split into two halves applied by two threads).

    Used where the first term has many levels with many products each (crossed designs:
    20,000 subjects with slopes times 50 items each), where :class:`_SchurUpdate` would need a
    sort of tens of millions of entries.
    """

    def __init__(self, pairs: _LevelPairs):
        n_levels, m, indptr = len(pairs.perm), pairs.m, pairs.indptr
        self.pairs_w, self.perm, self.m = pairs.pairs_w, pairs.perm, m
        # two halves of about equal size, one per thread, each in arrays of its own (a CSC
        # matrix on a slice of a larger array would be copied by scipy)
        cut = int(np.searchsorted(indptr, pairs.total // 2))
        spans = [(0, cut), (cut, n_levels)]
        pos = [np.empty(int(indptr[hi] - indptr[lo]), dtype=pairs.index_type) for lo, hi in spans]
        data = [[np.empty(len(ph)) for _ in self.pairs_w] for ph in pos]
        groups = list(pairs.groups())

        def fill(h):
            lo, hi = spans[h]
            for g0, g1, L in groups:  # the group's levels in this half
                l0, l1 = max(g0, lo), min(g1, hi)
                if l0 >= l1:
                    continue
                shape = (l1 - l0, L * (L + 1) // 2)
                dst = slice(int(indptr[l0] - indptr[lo]), int(indptr[l1] - indptr[lo]))
                pairs.products(l0, l1, L, pos_out=pos[h][dst].reshape(shape),
                               data_out=[d[dst].reshape(shape) for d in data[h]])

        # one thread per half (numpy releases the GIL): the first writes to hundreds of MB cost
        # as much as the products (page faults), and they too proceed in parallel
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(fill, range(2)))
        self.halves = []
        for h, (lo, hi) in enumerate(spans):
            ip = (indptr[lo : hi + 1] - indptr[lo]).astype(pairs.index_type)
            mats = [sp.csc_matrix((d, pos[h], ip), shape=(m * m, hi - lo), copy=False) for d in data[h]]
            self.halves.append((lo, hi, mats))
        self._pool = None

    def _half(self, k, w):
        lo, hi, mats = self.halves[k]
        y = np.zeros(self.m * self.m)
        for c, A in enumerate(mats):
            y += A @ w[lo:hi, c]
        return y

    def apply(self, M, G, mirror=True):
        """In place: ``M -= sum_j C_j G_j G_j' C_j'`` (see :meth:`_SchurUpdate.apply`)."""
        w = _schur_weights(G, self.pairs_w)[self.perm]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2)
        other = self._pool.submit(self._half, 1, w)
        y = self._half(0, w)
        y += other.result()
        Y = y.reshape(self.m, self.m)
        M -= Y
        if mirror:
            M -= np.triu(Y, 1).T

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = None
        return state


class BlockedFactor:
    """Blocked Cholesky: first term level by level, the rest as a dense Schur complement."""

    name = "blocked"

    def __init__(self, cp: CrossProducts, terms):
        self.cp = cp
        self.terms = terms
        self.p = cp.p
        self.theta_slices, _ = theta_layout(terms)
        first, rest = (terms[0], terms[1:]) if terms else (None, [])
        self.q1 = first.q if first is not None else 0
        self.rest_offsets = np.cumsum([0] + [t.q for t in rest])
        qr = int(self.rest_offsets[-1])
        self.qr = qr
        m = qr + cp.p + 1
        RR = np.zeros((m, m))
        for i, t in enumerate(rest, start=1):
            o = self.rest_offsets[i - 1]
            r, c = _block_entries(np.arange(t.n_levels), np.arange(t.n_levels), t.n_coef, t.n_coef, o, o)
            RR[r, c] = cp.diag[i].ravel()
            zx = cp.zxy[i].reshape(t.q, cp.p + 1)
            RR[o : o + t.q, qr:] = zx
            RR[qr:, o : o + t.q] = zx.T
            for k in range(1, i):
                rows, cols, blocks = cp.off[(i, k)]
                ok = self.rest_offsets[k - 1]
                r, c = _block_entries(rows, cols, t.n_coef, terms[k].n_coef, o, ok)
                RR[r, c] = blocks.ravel()
                RR[c, r] = blocks.ravel()
        RR[qr:, qr:] = cp.xyxy
        self.RR = RR
        self._M = np.empty_like(RR)  # Lambda_R'(RR - Schur update)Lambda_R + I, factored in place
        self.schur = None
        self._scalar_rest = all(t.n_coef == 1 for t in rest)
        if first is not None:
            p1 = first.n_coef
            n1 = first.n_levels
            self.D1 = cp.diag[0]
            self.Cxy = np.ascontiguousarray(cp.zxy[0].reshape(self.q1, cp.p + 1).T)
            # entries of C = [Z_rest; X; y]' Z_1 as (row, level of term 1, p1 values)
            e_rows, e_lev, e_val = [], [], []
            if qr:
                rr, cc, vv = [], [], []
                for i, t in enumerate(rest, start=1):
                    rows, cols, blocks = cp.off[(i, 0)]
                    r, c = _block_entries(rows, cols, t.n_coef, p1, self.rest_offsets[i - 1], 0)
                    rr.append(r)
                    cc.append(c)
                    vv.append(blocks.ravel())
                    o = self.rest_offsets[i - 1]
                    e_rows.append((o + rows[:, None] * t.n_coef + np.arange(t.n_coef)).ravel())
                    e_lev.append(np.repeat(cols, t.n_coef))
                    e_val.append(blocks.reshape(-1, p1))
                self.Cz = sp.csr_matrix(
                    (np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))), shape=(qr, self.q1)
                )
                self.Cz.sort_indices()
            for i in range(cp.p + 1):
                e_rows.append(np.full(n1, qr + i))
                e_lev.append(np.arange(n1))
                e_val.append(self.Cxy[i].reshape(n1, p1))
            pairs = _LevelPairs(np.concatenate(e_rows), np.concatenate(e_lev), np.concatenate(e_val), n1, m)
            n_w = len(pairs.pairs_w)
            if pairs.total * n_w <= SCHUR_UPDATE_BUDGET:
                self.schur = _SchurUpdate(pairs, self.D1)
            elif pairs.total * (8 * n_w + 4) <= SCHUR_SCATTER_BYTES:
                self.schur = _SchurScatter(pairs)
        self._state = None

    def _scale_first(self, C, G):
        """``C @ blockdiag(G)`` for a dense C with q1 columns."""
        n1, p1, _ = G.shape
        if p1 == 1:
            return C * G[:, 0, 0]
        return np.einsum("mja,jab->mjb", C.reshape(C.shape[0], n1, p1), G).reshape(C.shape)

    def update(self, theta):
        terms, qr, p = self.terms, self.qr, self.p
        Ts = [t.template(theta[s]) for t, s in zip(terms, self.theta_slices)]
        M = self._M  # a buffer of its own: a fresh m x m array would be page-faulted in each time
        np.copyto(M, self.RR)
        logdet = 0.0
        L11 = G = None
        if terms:
            T1 = Ts[0]
            p1 = T1.shape[0]
            if p1 == 1:
                a = T1[0, 0] ** 2 * self.D1[:, 0, 0] + 1.0
                ell = np.sqrt(a)
                logdet += float(np.sum(np.log(a)))
                L11 = ell[:, None, None]
                G = (T1[0, 0] / ell)[:, None, None]
            elif p1 == 2:  # closed forms for the common intercept-and-slope case
                (t0, _), (t1, t2) = T1
                d00, d01, d11 = self.D1[:, 0, 0], self.D1[:, 0, 1], self.D1[:, 1, 1]
                l00 = np.sqrt(t0 * t0 * d00 + 2.0 * t0 * t1 * d01 + t1 * t1 * d11 + 1.0)
                l10 = (t0 * t2 * d01 + t1 * t2 * d11) / l00
                l11 = np.sqrt(t2 * t2 * d11 + 1.0 - l10 * l10)
                logdet += 2.0 * float(np.sum(np.log(l00)) + np.sum(np.log(l11)))
                L11 = np.zeros((len(l00), 2, 2))
                L11[:, 0, 0], L11[:, 1, 0], L11[:, 1, 1] = l00, l10, l11
                c = -l10 / (l00 * l11)  # (L^{-T})_{01}
                G = np.empty_like(L11)
                G[:, 0, 0] = t0 / l00
                G[:, 0, 1] = t0 * c
                G[:, 1, 0] = t1 / l00
                G[:, 1, 1] = t1 * c + t2 / l11
            else:
                A = T1.T @ self.D1 @ T1  # batched matmul (a batched einsum is several times slower)
                A += np.eye(p1)
                L11 = np.linalg.cholesky(A)
                logdet += 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
                G = T1 @ np.linalg.inv(L11).transpose(0, 2, 1)  # T1 L_j^{-T}
            if self.schur is not None:
                self.schur.apply(M, G, mirror=not self._scalar_rest)
            else:
                Sz, Sxy = self._scaled_C(G)
                M[qr:, qr:] -= Sxy @ Sxy.T
                if qr:
                    M[:qr, :qr] -= (Sz @ Sz.T).toarray()
                    Pzx = np.asarray(Sz @ Sxy.T)
                    M[:qr, qr:] -= Pzx
                    M[qr:, :qr] -= Pzx.T
            # Lambda_R' M Lambda_R on the rest terms (X and y columns are not scaled)
            if self._scalar_rest:  # Lambda_R = theta_i I per term: scale the upper blocks
                offs, th = self.rest_offsets, [T[0, 0] for T in Ts[1:]]
                for a in range(len(th)):
                    rows = slice(offs[a], offs[a + 1])
                    for b in range(a, len(th)):
                        M[rows, offs[b] : offs[b + 1]] *= th[a] * th[b]
                    M[rows, qr:] *= th[a]
            else:
                for i, t in enumerate(terms[1:], start=1):
                    o = self.rest_offsets[i - 1]
                    _lambda_sandwich(M, Ts[i], o, t.n_levels)
            M.reshape(-1)[:: M.shape[0] + 1][:qr] += 1.0
        if isinstance(self.schur, _SchurScatter):
            # the scatter's two threads would compete with OpenBLAS's, which keep spinning for a
            # while after each call: the small dense block is factored on one thread (1M-row
            # crossed benchmark: about 50 instead of 88 ms per evaluation)
            with _single_threaded_blas():
                Lm = _tail_cholesky(M, overwrite=True, clean=False)
        else:
            Lm = _tail_cholesky(M, overwrite=True, clean=False)  # every use reads the lower triangle
        if Lm is None:
            self._state = None
            return None
        diag = np.diagonal(Lm)
        logdet += 2.0 * float(np.sum(np.log(diag[:qr])))
        logdet_RX2 = 2.0 * float(np.sum(np.log(diag[qr : qr + p])))
        self._state = (Ts, L11, G, Lm)
        return Factorization(logdet, logdet_RX2, float(diag[-1] ** 2))

    def fixed_part(self):
        """``(L_X, l_y)`` at the last updated theta: the lower Cholesky factor of the fixed-effect
        block (``R_X'``) and the row below it, so that ``beta = L_X^{-T} l_y``."""
        Lm, qr, p = self._state[-1], self.qr, self.p
        return np.tril(Lm[qr : qr + p, qr : qr + p]), Lm[-1, qr : qr + p]

    def whitened_norms(self, Az, Ax):
        """``|L^{-1} a|^2`` for the columns ``a = [Az; Ax]`` (Az sparse over the random-effect
        columns, already scaled by Lambda'; Ax over the kept fixed columns), L the Cholesky factor
        of the full penalized least-squares matrix at the last updated theta."""
        Ts, L11, G, Lm = self._state
        qr, p, m = self.qr, self.p, Ax.shape[1]
        tail = np.zeros((qr + p, m))
        tail[qr:] = Ax
        total = np.zeros(m)
        if self.terms:
            n1, p1, _ = L11.shape
            A1 = sp.coo_matrix(Az[: self.q1])
            tail[:qr] = Az[self.q1 :].toarray()
            # w1 = L_1^{-1} a_1, level block by level block (a row has at most one level)
            rows_c, first, inv = np.unique(A1.col, return_index=True, return_inverse=True)
            levels = A1.row[first] // p1
            a1 = np.zeros((len(rows_c), p1))
            a1[inv.ravel(), A1.row % p1] = A1.data
            if len(rows_c):
                w1 = np.linalg.solve(L11[levels], a1[..., None])[..., 0]
                total[rows_c] += np.einsum("ij,ij->i", w1, w1)
                Sz, Sxy = self._scaled_C(G)
                cols = (levels[:, None] * p1 + np.arange(p1)).ravel()
                # E_j = [Lambda_r' Sz; Sxy_X] at the rows' level blocks, times w1
                Ex = Sxy[:p][:, cols].reshape(p, len(rows_c), p1)
                np.subtract.at(tail[qr:].T, rows_c, np.einsum("rjb,jb->jr", Ex, w1))
                if qr:
                    Ez = Sz.tocsc()[:, cols].toarray()
                    for i, t in enumerate(self.terms[1:], start=1):
                        _lambda_t_rows(Ez, Ts[i], self.rest_offsets[i - 1], t.n_levels)
                    Ez = Ez.reshape(qr, len(rows_c), p1)
                    np.subtract.at(tail[:qr].T, rows_c, np.einsum("rjb,jb->jr", Ez, w1))
        if qr + p:
            w = solve_triangular(Lm[:-1, :-1], tail, lower=True)
            total += np.einsum("ij,ij->j", w, w)
        return total

    def _scaled_C(self, G):
        """``C_z G`` (sparse) and ``C_xy G`` (dense): the first term's columns scaled by G."""
        Sxy = self._scale_first(self.Cxy, G)
        Sz = None
        if self.qr:
            if G.shape[1] == 1:
                Sz = self.Cz.copy()
                Sz.data *= G[Sz.indices, 0, 0]
            else:
                n1 = G.shape[0]
                Gbd = sp.bsr_matrix((G, np.arange(n1), np.arange(n1 + 1)), shape=(self.q1, self.q1))
                Sz = (self.Cz @ Gbd).tocsr()
        return Sz, Sxy

    def solve(self):
        """Conditional beta and spherical modes u at the last updated theta."""
        Ts, L11, G, Lm = self._state
        Sz, Sxy = self._scaled_C(G) if self.terms else (None, None)
        qr = self.qr
        top = Lm[:-1, :-1]
        x_rest = solve_triangular(top, Lm[-1, :-1], lower=True, trans="T") if top.size else np.zeros(0)
        beta = x_rest[qr:]
        u_rest = x_rest[:qr]
        if not self.terms:
            return beta, np.zeros(0)
        # v = Lambda_R x_rest on the z part (T applied, not transposed)
        lam_u = u_rest.copy()
        for i, t in enumerate(self.terms[1:], start=1):
            o = self.rest_offsets[i - 1]
            seg = lam_u[o : o + t.q].reshape(t.n_levels, t.n_coef)
            seg[...] = seg @ Ts[i].T
        rhs = Sxy[-1] - Sxy[:-1].T @ beta
        if qr:
            rhs = rhs - Sz.T @ lam_u
        n1, p1, _ = L11.shape
        rhs = rhs.reshape(n1, p1)
        if p1 == 1:
            u1 = rhs / L11[:, :, 0]
        else:
            u1 = np.empty_like(rhs)
            for a in range(p1 - 1, -1, -1):  # back substitution with L_j' (upper)
                acc = rhs[:, a] - np.einsum("jb,jb->j", L11[:, a + 1 :, a], u1[:, a + 1 :])
                u1[:, a] = acc / L11[:, a, a]
        return beta, np.concatenate([u1.ravel(), u_rest])


class CholmodFactor:
    """Sparse Cholesky of ``Lambda' Z'Z Lambda + I`` by CHOLMOD, analysed once, refactored per theta."""

    name = "cholmod"

    def __init__(self, cp: CrossProducts, terms):
        if _cholmod is None:
            raise ImportError(
                "solver='cholmod' needs scikit-sparse (pip install scikit-sparse, with the "
                "SuiteSparse headers: apt-get install libsuitesparse-dev); use solver='blocked'."
            )
        self.cp = cp
        self.terms = terms
        self.p = cp.p
        self.theta_slices, self.z_offsets = theta_layout(terms)
        q = int(self.z_offsets[-1])
        self.q = q
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


class DenseFactor:
    """One dense Cholesky of the whole augmented system: for small models, where a handful of
    BLAS calls on a matrix of side ``q + p + 1`` cost less than the blocked path's bookkeeping."""

    name = "dense"

    def __init__(self, cp: CrossProducts, terms):
        self.cp = cp
        self.terms = terms
        self.p = cp.p
        self.theta_slices, z_off = theta_layout(terms)
        self.q = q = int(z_off[-1])
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
        # M (Fortran-ordered) is symmetric only to rounding: its lower triangle is factored, in
        # place; the factor is valid until the next update
        L, info = lapack.dpotrf(M, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            self._state = None
            return None
        self._state = L
        logs = np.log(L.diagonal())
        q = self.q
        return Factorization(2.0 * float(logs[:q].sum()), 2.0 * float(logs[q:-1].sum()),
                             float(L[-1, -1] ** 2))

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


#: ``"auto"`` uses :class:`DenseFactor` when the augmented system has at most this many columns
DENSE_SYSTEM_LIMIT = 120


def make_factor(cp, terms, solver="auto"):
    """Choose and build the factorization for these terms.

    ``"auto"`` takes the dense Cholesky for small systems (at most :data:`DENSE_SYSTEM_LIMIT`
    columns), the blocked Cholesky when the terms after the first have at most
    :data:`DENSE_REST_LIMIT` columns (or CHOLMOD is not installed), CHOLMOD otherwise.
    """
    if solver == "auto":
        rest = sum(t.q for t in terms[1:])
        if sum(t.q for t in terms) + cp.p + 1 <= DENSE_SYSTEM_LIMIT:
            solver = "dense"
        elif HAS_CHOLMOD and rest > DENSE_REST_LIMIT:
            solver = "cholmod"
        else:
            solver = "blocked"
    if solver == "blocked":
        return BlockedFactor(cp, terms)
    if solver == "cholmod":
        return CholmodFactor(cp, terms)
    if solver == "dense":
        return DenseFactor(cp, terms)
    raise ValueError(f"solver must be 'auto', 'blocked', 'cholmod' or 'dense'; got {solver!r}.")


def profiled_criterion(fz: Factorization | None, n, p, reml, sum_log_weights=0.0):
    """Profiled deviance (ML) or REML criterion on lme4's scale; inf when the factorization failed."""
    if fz is None or not fz.r2 > 0:
        return np.inf
    if reml:
        nmp = n - p
        return fz.logdet_L2 + fz.logdet_RX2 + nmp * (1.0 + _LOG_2PI + np.log(fz.r2 / nmp)) - sum_log_weights
    return fz.logdet_L2 + n * (1.0 + _LOG_2PI + np.log(fz.r2 / n)) - sum_log_weights


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
    M = np.zeros((m, m))
    for k, t in enumerate(terms):
        lv = np.arange(t.n_levels)
        r, c = _block_entries(lv, lv, t.n_coef, t.n_coef, z_off[k], z_off[k])
        M[r, c] = cp.diag[k].ravel()
        zx = cp.zxy[k].reshape(t.q, cp.p + 1)
        M[z_off[k] : z_off[k + 1], q:] = zx
        M[q:, z_off[k] : z_off[k + 1]] = zx.T
    for (l, k), (rows, cols, blocks) in cp.off.items():
        r, c = _block_entries(rows, cols, terms[l].n_coef, terms[k].n_coef, z_off[l], z_off[k])
        M[r, c] = blocks.ravel()
        M[c, r] = blocks.ravel()
    M[q:, q:] = cp.xyxy
    if theta is None:
        return M
    for k, t in enumerate(terms):
        T = t.template(theta[slices[k]])
        _lambda_sandwich(M, T, z_off[k], t.n_levels)
    idx = np.arange(q)
    M[idx, idx] += 1.0
    return M
