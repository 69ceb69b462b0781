"""The Schur update of the blocked factorization: ``sum_j C_j W_j C_j'`` over the first term's levels.

Eliminating the first (largest) term level by level leaves, for everything else (the other terms,
X and y), the dense block minus ``sum_j C_j W_j C_j'``, with ``C_j`` the cross-products of
everything else with level j and ``W_j = G_j G_j'`` a small matrix that changes with theta. The
update is linear in the entries of the ``W_j``, so its structure is built once per fit:

``_SchurUpdate``
    a precomputed sparse matrix (positions x classes of levels with equal ``Z_j'Z_j``), applied
    as one sparse matrix-vector product per evaluation (InstEval);
``_SchurScatter``
    the same map stored level by level and applied as a scatter by two threads, for many
    products (crossed designs with 10^4 levels and more).

:class:`~sklmm._engine.factor_blocked.BlockedFactor` chooses between them (or a sparse matrix
product per evaluation) by their size.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

__all__ = []


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




def _schur_weights(G, pairs_w):
    """The entries ``W_j[a, b]`` (a <= b) of ``W_j = G_j G_j'``, one column per pair."""
    if G.shape[1] == 1:
        return (G[:, 0, 0] ** 2)[:, None]
    if G.shape[1] == 2:  # written out: 30 times faster than a batched einsum at 10^5 levels
        g00, g01, g10, g11 = G[:, 0, 0], G[:, 0, 1], G[:, 1, 0], G[:, 1, 1]
        return np.stack([g00 * g00 + g01 * g01, g00 * g10 + g01 * g11, g10 * g10 + g11 * g11], axis=1)
    W = G @ G.transpose(0, 2, 1)
    return np.stack([W[:, a, b] for a, b in pairs_w], axis=1)


def _row_hash(words):
    """One 64-bit word per row of a (rows, k) uint64 array (FNV-style mixing; uint64 arrays
    wrap around without warnings)."""
    h = np.zeros(words.shape[0], dtype=np.uint64)
    for c in range(words.shape[1]):
        h ^= words[:, c]
        h *= np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return h


def _equal_blocks(D):
    """Class of each level's block ``D_j`` (levels with bit-identical blocks share one, numbered
    in order of first appearance), and the first level of each class.

    The blocks' bits are hashed to one 64-bit word per level and the words sorted (a sort of
    n_levels integers: 0.1 s at 10^6 levels, where a sort of the rows themselves takes 1.3 s);
    a hash collision, detected by comparing every block with its class's first, falls back to
    the exact sort of the rows.
    """
    n = D.shape[0]
    words = np.ascontiguousarray(D.reshape(n, -1)).view(np.uint64)
    _, first, inverse = np.unique(_row_hash(words), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not np.array_equal(words, words[first[inverse]]):  # a collision: sort the rows exactly
        keys = words.view(np.dtype((np.void, 8 * words.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    order = np.argsort(first, kind="stable")  # classes in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse], first[order].astype(np.intp)


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
        m, nw = pairs.m, len(pairs.pairs_w)
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
