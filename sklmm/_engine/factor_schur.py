"""The Schur update of the blocked factorization: ``sum_j C_j W_j C_j'`` over the first term's levels.

Eliminating the first (largest) term level by level leaves, for everything else (the other terms,
X and y), the dense block minus ``sum_j C_j W_j C_j'``, with ``C_j`` the cross-products of
everything else with level j and ``W_j = G_j G_j'`` a small matrix that changes with theta.

:class:`SchurKernel` keeps the entries of C sorted level by level and forms the update at each
evaluation by a compiled loop (``_schur_kernel.c``): for each level, ``c_a' W_j c_b`` for its
pairs of nonzero rows ``a <= b``, subtracted at ``(row_a, row_b)`` of the dense block. It reads
the ``sum_j L_j p_1`` entries of C once per evaluation (``L_j`` the nonzero rows of ``C_j``) and
stores nothing else (with the rows and the sort order kept for refills): the 1M-row crossed
benchmark (20,000 subjects with slopes, about 50 items each) reads 20 MB per evaluation where a
precomputed map of the ``sum_j L_j (L_j + 1) / 2`` products streamed 800 MB, and needs no setup
to form them.

:class:`~sklmm._engine.factor_blocked.BlockedFactor` uses it unless dense BLAS products of C are
estimated cheaper (every level meets most of the rest: kb07).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _schur_kernel

__all__ = ["SchurKernel", "upper_entries", "scaled_upper_fill", "level_runs_product", "group_rows_product",
           "group_block_products"]


def upper_entries(A):
    """The nonzero entries of the upper triangle of a square array: ``(rows, cols, values)``,
    rows and columns as int32 (what :func:`scaled_upper_fill` reads)."""
    rows, cols = np.nonzero(np.triu(A))
    return rows.astype(np.int32), cols.astype(np.int32), np.ascontiguousarray(A[rows, cols], dtype=float)


def scaled_upper_fill(entries, scale, out):
    """The upper triangle of the C-ordered m x m ``out`` set to ``diag(scale) A diag(scale)``,
    A the sparse upper triangle ``entries`` (:func:`upper_entries`), in one pass of the compiled
    loop: zeros, then the entries (the lower triangle of ``out`` is left as it is)."""
    rows, cols, values = entries
    _schur_kernel.scaled_upper_fill(rows, cols, values, scale, out.shape[0], out)


def level_runs_product(C, G):
    """``C @ blockdiag(G)`` for a dense C (rows, n1 p) and G (n1, p, p): each row's run of p values
    in a level's columns times that level's G, one pass of the compiled loop (numpy's batched
    product over the levels needs transposed copies of C: on 2,000 subjects x 100 items with
    slopes, 53 ms where the loop takes a few)."""
    C = np.ascontiguousarray(C, dtype=float)
    G = np.ascontiguousarray(G, dtype=float)
    n1, p, _ = G.shape
    if C.ndim != 2 or C.shape[1] != n1 * p or G.shape != (n1, p, p):
        raise ValueError(f"level_runs_product: C must have {n1} x {p} columns and G be square blocks, "
                         f"got {C.shape}, {G.shape}")
    out = np.empty_like(C)
    _schur_kernel.level_runs_product(C, G, C.shape[0], n1, p, out)
    return out


def group_rows_product(values, idx, T):
    """A copy of ``values`` (entries, p) in which each group of entries ``idx[g]`` (a later
    term's r rows of one level block within one level of the first term; ``idx`` (groups, r))
    is replaced by ``T' values[idx[g]]``, one pass of the compiled loop (a batched matmul of the
    gathered groups took several times as long)."""
    values = np.ascontiguousarray(values, dtype=float)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    T = np.ascontiguousarray(T, dtype=float)
    g, r = idx.shape
    if T.shape != (r, r) or values.ndim != 2:
        raise ValueError(f"group_rows_product: T must be {r} x {r} and values 2-D, got {T.shape}, {values.shape}")
    out = values.copy()
    _schur_kernel.group_rows_product(values, idx, T, values.shape[1], r, g, out)
    return out


def group_block_products(V, C, idx, first, block, M, n_out):
    """``W[b] = -sum over the groups g with block[g] = b of V_g M[first[g]] C_g'`` (n_out, r, r),
    ``V_g`` and ``C_g`` the rows ``idx[g]`` of V and C (entries, p), ``M`` (n1, p, p): the
    groups' products and their sums by block in one pass of the compiled loop."""
    V = np.ascontiguousarray(V, dtype=float)
    C = np.ascontiguousarray(C, dtype=float)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    M = np.ascontiguousarray(M, dtype=float)
    g, r = idx.shape
    n1, p = M.shape[0], V.shape[1]
    if V.shape != C.shape or M.shape != (n1, p, p) or len(first) != g or len(block) != g:
        raise ValueError(f"group_block_products: inconsistent shapes {V.shape}, {C.shape}, {M.shape}, "
                         f"{len(first)}, {len(block)} for {g} groups")
    out = np.zeros((n_out, r, r))
    _schur_kernel.group_block_products(V, C, idx, np.ascontiguousarray(first, dtype=np.int64),
                                       np.ascontiguousarray(block, dtype=np.int64), M, p, r, g, n1, n_out, out)
    return out


def _schur_weights(G, pairs_w):
    """The entries ``W_j[a, b]`` (a <= b) of ``W_j = G_j G_j'``, one column per pair."""
    if G.shape[1] == 1:
        return (G[:, 0, 0] ** 2)[:, None]
    if G.shape[1] == 2:  # written out: 30 times faster than a batched einsum at 10^5 levels
        g00, g01, g10, g11 = G[:, 0, 0], G[:, 0, 1], G[:, 1, 0], G[:, 1, 1]
        return np.stack([g00 * g00 + g01 * g01, g00 * g10 + g01 * g11, g10 * g10 + g11 * g11], axis=1)
    W = G @ G.transpose(0, 2, 1)
    return np.stack([W[:, a, b] for a, b in pairs_w], axis=1)


class SchurKernel:
    """``M -= sum_j C_j W_j C_j'`` by the compiled level-by-level loop.

    Parameters
    ----------
    rows, levels : int arrays
        Each nonzero entry's row of the dense block (``m`` rows) and level of the first term;
        a (row, level) appears once.
    values : (entries, p1) array
        Each entry's ``p1`` values (the level's columns).
    n_levels, m : int
    n_threads : int
        Threads that share the levels (spans of about equal work; each but the first into an
        array of its own, the loop releasing the GIL).
    """

    def __init__(self, rows, levels, values, n_levels, m, n_threads=1):
        self.m, self.p1 = int(m), values.shape[1]
        self.pairs_w = [(a, b) for a in range(self.p1) for b in range(a, self.p1)]
        rows = np.asarray(rows)
        if len(rows) and not (0 <= int(rows.min()) and int(rows.max()) < self.m):
            raise ValueError("Schur kernel: a row outside the dense block")  # pragma: no cover
        self._order = np.lexsort((rows, levels))  # by level, rows ascending: the upper triangle
        self.rows = rows[self._order].astype(np.int32)
        self.refill(values)
        lengths = np.bincount(levels, minlength=n_levels)
        self.indptr = np.zeros(n_levels + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.indptr[1:])
        self._work = np.cumsum(lengths * (lengths + 1) // 2)  # pairs of rows up to each level
        #: pairs of rows ``a <= b`` over all levels: the loop's work per evaluation
        self.pairs = int(self._work[-1]) if n_levels else 0
        self._out = self._upper = self._pool = self._ones = None
        self.share(n_threads)

    def share(self, n_threads):
        """Split the levels into ``n_threads`` spans of about equal work (:attr:`pairs`)."""
        n_levels = len(self._work)
        n_threads = max(1, min(int(n_threads), n_levels))
        cuts = np.searchsorted(self._work, self.pairs * np.arange(1, n_threads) / n_threads) if n_levels else []
        bounds = np.unique(np.r_[0, cuts, n_levels].astype(int))
        self.spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])] or [(0, 0)]
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._out = self._pool = None  # (sized for the spans)

    def refill(self, values):
        """New values of the same entries (in the order of the constructor's)."""
        self.values = np.ascontiguousarray(values[self._order], dtype=float)

    def _weights(self, G):
        """The full symmetric ``W_j = G_j G_j'``, (levels, p1, p1) C-contiguous."""
        cols = _schur_weights(G, self.pairs_w)
        W = np.empty((G.shape[0], self.p1, self.p1))
        for k, (a, b) in enumerate(self.pairs_w):
            W[:, a, b] = cols[:, k]
            W[:, b, a] = cols[:, k]
        return W

    def _on_spans(self, run):
        """``run(k)`` for each span k of levels: the first here, the others on the pool's
        threads (the loops release the GIL), all finished on return."""
        if len(self.spans) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.spans) - 1)
            others = [self._pool.submit(run, k) for k in range(1, len(self.spans))]
            run(0)
            for f in others:
                f.result()
        else:
            run(0)

    def apply(self, M, G, mirror=True, scale=None):
        """In place: ``M -= S (sum_j C_j G_j G_j' C_j') S`` (M dense, m x m, C-ordered), on the
        upper triangle only unless ``mirror``; ``S = diag(scale)``, the identity by default."""
        W = self._weights(G)
        if scale is None:
            if self._ones is None:
                self._ones = np.ones(self.m)
            scale = self._ones
        if mirror:  # the upper triangle's update apart, to add it to both triangles
            if self._upper is None:
                self._upper = np.empty((self.m, self.m))
            upper = self._upper
            upper.fill(0.0)
        else:
            upper = M
        # the first span into `upper` itself, the others into zeroed arrays of their own
        if len(self.spans) > 1 and self._out is None:
            self._out = [np.empty((self.m, self.m)) for _ in range(len(self.spans) - 1)]
        outs = [upper] + (self._out if len(self.spans) > 1 else [])
        for out in outs[1:]:
            out.fill(0.0)

        def run(k):
            lo, hi = self.spans[k]
            _schur_kernel.schur_accumulate(self.rows, self.indptr, self.values, W, scale, self.p1, lo,
                                           hi, self.m, outs[k])

        self._on_spans(run)
        for out in outs[1:]:
            upper += out
        if mirror:
            M += upper
            M += np.triu(upper, 1).T

    def gather(self, B, values=None):
        """The update's adjoint (the gradient reads it): for each entry ``a`` (row ``r_a``, in the
        kernel's order, :attr:`rows`), ``sum_b B[r_a, r_b] c_b`` over the entries of its level,
        an (entries, p1) array. B is dense, symmetric, n x n with ``n <= m`` (its upper triangle
        read in C order; rows past n count as zeros); ``values`` replace the entries' own (the
        same pattern and order). The spans' threads write disjoint entries of one output."""
        B = np.ascontiguousarray(B, dtype=float)
        n = B.shape[0]
        if B.shape != (n, n) or n > self.m:
            raise ValueError(f"gather: B must be square with at most {self.m} rows, got {B.shape}")
        values = self.values if values is None else np.ascontiguousarray(values, dtype=float)
        if values.shape != self.values.shape:
            raise ValueError(f"gather: values must have shape {self.values.shape}, got {values.shape}")
        out = np.empty_like(values)

        def run(k):
            lo, hi = self.spans[k]
            _schur_kernel.schur_gather(self.rows, self.indptr, values, B, self.p1, lo, hi, n, out)

        self._on_spans(run)
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = state["_out"] = state["_upper"] = None
        return state
