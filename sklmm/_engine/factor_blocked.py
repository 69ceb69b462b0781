"""The blocked factorization: the first term level by level, the rest as a dense Schur complement.

The first term's block ``Lambda_1' Z_1'Z_1 Lambda_1 + I`` is block diagonal (one small
``p_1 x p_1`` block per level) and is factored level by level; the Schur complement of
everything else (the other terms, X and y) is a dense matrix factored by LAPACK. This is the
blocked Cholesky of MixedModels.jl for the common case of one large factor and small others,
and the path used when scikit-sparse is not installed. The update of the dense block by the
first term is in :mod:`sklmm._engine.factor_schur`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas, solve_triangular

from .crossprod import CrossProducts
from .factor_schur import (
    SchurKernel,
    level_runs_product,
    scaled_upper_fill,
    upper_entries,
)
from .system import (
    Factorization,
    PLSFactor,
    _block_entries,
    _lambda_sandwich,
    _lambda_t_rows,
    _tail_cholesky,
)
from .threads import free_cpus, single_threaded_blas

__all__ = ["BlockedFactor", "KERNEL_THREADS_PAIRS"]


#: the Schur kernel shares its levels between the free CPUs from this many pairs of rows (about
#: 10 ms of work on one thread), each thread taking at least half as many; below, one thread
#: (and BLAS keeps its threads)
KERNEL_THREADS_PAIRS = 5_000_000

#: memory for the outputs of the kernel's threads after the first (one dense block each)
KERNEL_THREADS_BYTES = 256 * 2**20


def kernel_threads(pairs, m):
    """Threads for a Schur kernel of ``pairs`` pairs of rows into an m x m block: the free CPUs
    (:func:`~sklmm._engine.threads.free_cpus`), at most one per half of
    :data:`KERNEL_THREADS_PAIRS` pairs and as many extra outputs as
    :data:`KERNEL_THREADS_BYTES` holds; 1 below :data:`KERNEL_THREADS_PAIRS` pairs."""
    if pairs < KERNEL_THREADS_PAIRS:
        return 1
    by_memory = 1 + KERNEL_THREADS_BYTES // (8 * m * m)
    return max(1, min(free_cpus(), 2 * pairs // KERNEL_THREADS_PAIRS, by_memory))


def _forward_substitution(L, b):
    """``L_r^{-1} b_r`` for a stack of small lower-triangular ``L`` (r, p, p) and ``b`` (r, p):
    p vectorized steps (a batched general solve costs an LU per row)."""
    w = np.empty_like(b)
    for a in range(L.shape[1]):
        acc = b[:, a] - np.einsum("rb,rb->r", L[:, a, :a], w[:, :a]) if a else b[:, a]
        w[:, a] = acc / L[:, a, a]
    return w


def _back_substitution(Lm):
    """``L_top^{-T} l`` for the dense block's lower factor ``[[L_top, 0], [l', d]]`` (the
    rest's modes and beta). With ``d > 0``: the solution of ``L' z = d e_m`` through the whole
    Fortran-ordered factor has last entry 1 and ``z_top = -L_top^{-T} l`` above it, one BLAS
    ``trsv`` without a copy of ``L_top`` or a scan for non-finite values (InstEval: 1 ms
    instead of 9)."""
    m = Lm.shape[0]
    if m <= 1:
        return np.zeros(0)
    d = Lm[-1, -1]
    if d > 0 and Lm.flags.f_contiguous:
        rhs = np.zeros(m)
        rhs[-1] = d
        z = blas.dtrsv(Lm, rhs, lower=1, trans=1, overwrite_x=1)
        return -z[:-1]
    return solve_triangular(Lm[:-1, :-1], Lm[-1, :-1], lower=True, trans="T")


#: dense products of the first term's columns with the rest are formed only up to this many
#: entries of C (200 MB)
DENSE_CZ_ENTRIES = 25_000_000


#: a pair of rows of the Schur kernel costs about this many dense BLAS flops per entry of W_j
SPARSE_FLOP_RATIO = 5.0


def schur_costs(cp, terms):
    """Estimated flops of the Schur update of the other terms, X and y by the first term, per
    evaluation: ``(sparse, dense)``. Sparse: ``L_j (L_j + 1) / 2`` products for each level j of
    the first term (``L_j`` its entries against the rest, one product per entry of ``W_j``) at
    sparse speed; dense: one symmetric rank-k update of the ``qr + p + 1`` rows with all ``q1``
    columns (inf where the dense ``qr x q1`` products would pass :data:`DENSE_CZ_ENTRIES`). Where every subject meets every item (kb07: 128 rows, 224 columns) the dense one is
    several times cheaper; where each level meets few of the rest (InstEval), the sparse one."""
    first = terms[0]
    L = np.full(first.n_levels, (cp.p + 1) * first.n_coef, dtype=float)
    for i in range(1, len(terms)):
        _, cols, _ = cp.off[(i, 0)]
        L += np.bincount(cols, minlength=first.n_levels) * terms[i].n_coef * first.n_coef
    n_w = first.n_coef * (first.n_coef + 1) / 2.0
    sparse = SPARSE_FLOP_RATIO * n_w * float(np.sum(L * (L + 1) / 2.0)) / first.n_coef**2
    rest = sum(t.q for t in terms[1:])
    dense = float(rest + cp.p + 1) ** 2 * first.q if rest * first.q <= DENSE_CZ_ENTRIES else np.inf
    return sparse, dense


class BlockedFactor(PLSFactor):
    """Blocked Cholesky: first term level by level, the rest as a dense Schur complement."""

    name = "blocked"

    def __init__(self, cp: CrossProducts, terms, dense_products=None):
        super().__init__(cp, terms)
        first, rest = (terms[0], terms[1:]) if terms else (None, [])
        self.q1 = first.q if first is not None else 0
        self.rest_offsets = np.cumsum([0] + [t.q for t in rest])
        self.qr = int(self.rest_offsets[-1])
        # Lambda_R'(RR - Schur update)Lambda_R + I; zeros: where only its upper triangle is
        # written (scalar later terms), the rest must still be finite for scipy's checks
        self._M = np.zeros((self.qr + cp.p + 1,) * 2)
        self._scale = np.ones(self._M.shape[0])  # diag(Lambda_R) where the later terms are scalar
        self._scalar_rest = all(t.n_coef == 1 for t in rest)
        self._cz_order = None
        self._Cz_dense = None
        self._rr_entries = None  # (rows, columns, values) of RR's upper triangle (see _fill)
        self.schur = None
        self._fill(cp)
        if first is None:
            return
        if self.qr:
            if dense_products is None:  # by estimated cost per evaluation
                sparse, dense = schur_costs(cp, terms)
                dense_products = dense < sparse
            if dense_products:  # dense products of C with itself at each evaluation
                self._Cz_dense = self.Cz.toarray()
                return
        rows, levels = self._kernel_pattern(cp)
        m = self._M.shape[0]
        self.schur = SchurKernel(rows, levels, self._kernel_values(cp), first.n_levels, m)
        self.schur.share(kernel_threads(self.schur.pairs, m))

    def _kernel_pattern(self, cp):
        """Rows of the dense block and levels of the first term of the entries of
        ``C = [Z_rest; X; y]' Z_1``, in the order of :meth:`_kernel_values`."""
        n1 = self.terms[0].n_levels
        e_rows, e_lev = [], []
        for i, t in enumerate(self.terms[1:], start=1):
            rows, cols, _ = cp.off[(i, 0)]
            o = self.rest_offsets[i - 1]
            e_rows.append((o + rows[:, None] * t.n_coef + np.arange(t.n_coef)).ravel())
            e_lev.append(np.repeat(cols, t.n_coef))
        for i in range(cp.p + 1):
            e_rows.append(np.full(n1, self.qr + i))
            e_lev.append(np.arange(n1))
        return np.concatenate(e_rows), np.concatenate(e_lev)

    def _kernel_values(self, cp):
        """The entries' ``p1`` values, (entries, p1), in the order of :meth:`_kernel_pattern`."""
        n1, p1 = self.terms[0].n_levels, self.terms[0].n_coef
        e_val = [cp.off[(i, 0)][2].reshape(-1, p1) for i in range(1, len(self.terms))]
        e_val += [self.Cxy[i].reshape(n1, p1) for i in range(cp.p + 1)]
        return np.concatenate(e_val)

    def _rest_block(self, cp):
        """``RR``: the other terms', X's and y's cross-products as one dense array (the terms'
        level blocks and their products with each other, X and y)."""
        terms, qr = self.terms, self.qr
        m = qr + cp.p + 1
        RR = np.zeros((m, m))
        for i, t in enumerate(terms[1:], start=1):
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
        return RR

    def _fill(self, cp):
        """The values of the system's blocks from the cross-products: the dense block of the
        other terms, X and y (``RR``), the first term's level blocks and its products with the
        rest (``Cz``: its sparsity pattern is found on the first call and kept)."""
        terms, qr = self.terms, self.qr
        RR = self.RR = self._rest_block(cp)
        if self._scalar_rest:
            # the upper triangle's entries that the cross-products fill: each evaluation's
            # block starts from them alone (InstEval: 5,700 of 656,000 entries; a scaled copy
            # of RR read 5 MB from memory, 1.2 ms of each 17 ms evaluation). Their places come
            # from cross-products of ones, once: a value that is 0 in one refill (a balanced
            # contrast's sum) need not be in the next
            if self._rr_entries is None:
                ones = CrossProducts(cp.n, cp.p, [np.ones_like(d) for d in cp.diag],  # (the first
                                     {key: (r, c, np.ones_like(b))  # term's products: not read)
                                      for key, (r, c, b) in cp.off.items() if key[1] > 0},
                                     [np.ones_like(z) for z in cp.zxy], np.ones_like(cp.xyxy))
                self._rr_entries = upper_entries(self._rest_block(ones))
            rows, cols, _ = self._rr_entries
            self._rr_entries = (rows, cols, np.ascontiguousarray(RR[rows, cols]))
        if not terms:
            return
        p1 = terms[0].n_coef
        self.D1 = cp.diag[0]
        self.Cxy = np.ascontiguousarray(cp.zxy[0].reshape(self.q1, cp.p + 1).T)
        if not qr:
            return
        vals = np.concatenate([cp.off[(i, 0)][2].ravel() for i in range(1, len(terms))])
        if self._cz_order is not None:  # the same pattern: new values in CSR order
            self.Cz.data = vals[self._cz_order]
            if self._Cz_dense is not None:
                self._Cz_dense = self.Cz.toarray()
            return
        rr, cc = [], []
        for i, t in enumerate(terms[1:], start=1):
            rows, cols, _ = cp.off[(i, 0)]
            r, c = _block_entries(rows, cols, t.n_coef, p1, self.rest_offsets[i - 1], 0)
            rr.append(r)
            cc.append(c)
        # each (row, column) is one entry: CSR of the positions 1..N gives the order of the values
        order = sp.csr_matrix((np.arange(1, len(vals) + 1, dtype=float),
                               (np.concatenate(rr), np.concatenate(cc))), shape=(qr, self.q1))
        order.sort_indices()
        self._cz_order = order.data.astype(np.intp) - 1
        order.data = vals[self._cz_order]
        self.Cz = order
        self._Cz_dense = None

    def refill(self, cp: CrossProducts):
        """New values of the same cross-products' pattern (a step of penalized IRLS): the blocks
        and the Schur update's entries are refilled in place, its form (kernel or dense
        products) kept."""
        self.cp = cp
        self._fill(cp)
        if self.schur is not None:
            self.schur.refill(self._kernel_values(cp))
        self._state = None

    def _row_scale(self, Ts):
        """``diag(Lambda_R)`` over the dense block's rows when every later term is scalar:
        each term's theta on its columns, 1 on X and y (a buffer kept between evaluations)."""
        offs = self.rest_offsets
        for a, T in enumerate(Ts[1:]):
            self._scale[offs[a] : offs[a + 1]] = T[0, 0]
        return self._scale

    def _scale_first(self, C, G):
        """``C @ blockdiag(G)`` for a dense C with q1 columns."""
        if G.shape[1] == 1:
            return C * G[:, 0, 0]
        return level_runs_product(C, G)  # (the compiled loop: no transposed copies of C)

    def update(self, theta):
        terms, qr, p = self.terms, self.qr, self.p
        self._scaled = None  # C scaled by this theta's G, formed once when asked for
        self._dense_scaled = None
        self.level_inverses = None  # the L_j^{-1} where formed (the gradient reads them)
        Ts = [t.template(theta[s]) for t, s in zip(terms, self.theta_slices)]
        M = self._M  # a buffer of its own: a fresh m x m array would be page-faulted in each time
        # every later term scalar and the kernel's update: Lambda_R is diag(scale), applied as
        # the block's start is written and inside the kernel (LAPACK reads the upper triangle alone)
        scale = self._row_scale(Ts) if self.schur is not None and self._scalar_rest else None
        if scale is not None:
            scaled_upper_fill(self._rr_entries, scale, M)
        else:
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
                self.level_inverses = np.linalg.inv(L11)
                G = T1 @ self.level_inverses.transpose(0, 2, 1)  # T1 L_j^{-T}
            if not G.any():  # the first term at 0 (a boundary face): no update
                pass
            elif self.schur is not None:
                self.schur.apply(M, G, mirror=not self._scalar_rest, scale=scale)
            elif self._Cz_dense is not None:  # dense products (cheaper where C is dense)
                Sxy = self._scale_first(self.Cxy, G)
                Sd = self._scale_first(self._Cz_dense, G)
                self._dense_scaled = (Sd, Sxy)  # (what solve() needs, dense)
                # every product by scipy's BLAS, as the factorization below (numpy's and scipy's
                # OpenBLAS threads spin against each other when their calls alternate: a
                # 405-column Cholesky took 8 ms instead of 0.3), on Fortran-ordered transposes
                M[qr:, qr:] -= blas.dgemm(1.0, Sxy.T, Sxy.T, trans_a=1)
                if self._scalar_rest:  # Sd Sd': its upper triangle only
                    M[:qr, :qr] -= blas.dsyrk(1.0, Sd.T, trans=1, lower=0)
                else:  # the rest's Lambda blocks mix both triangles: the whole product (kb07:
                    # 0.15 ms, where the upper triangle and its mirror took 0.22)
                    M[:qr, :qr] -= blas.dgemm(1.0, Sd.T, Sd.T, trans_a=1)
                Pzx = blas.dgemm(1.0, Sd.T, Sxy.T, trans_a=1)
                M[:qr, qr:] -= Pzx
                M[qr:, :qr] -= Pzx.T
            # Lambda_R' M Lambda_R on the rest terms (X and y columns are not scaled)
            if scale is not None:  # (applied above)
                pass
            elif self._scalar_rest:  # Lambda_R = theta_i I per term: scale the upper blocks
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
        keep = self._nonzero_rows(Ts)
        if keep is not None:  # later terms at 0 are rows and columns of the identity in M
            sub = _tail_cholesky(M[np.ix_(keep, keep)], overwrite=True)
            Lm = M.T  # (the lower triangle read; the identity's rows are already in place)
            if sub is not None:
                Lm[np.ix_(keep, keep)] = sub
            else:
                Lm = None
        elif self.schur is not None and len(self.schur.spans) > 1:
            # the kernel's threads would compete with OpenBLAS's, which keep spinning for a
            # while after each call: the dense block is factored on one thread (1M-row crossed
            # benchmark: about 50 instead of 88 ms per evaluation with the earlier stored map)
            with single_threaded_blas():
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

    def _nonzero_rows(self, Ts):
        """The dense block's rows to factor when later terms whose ``T_k`` is 0 (a boundary
        face, a singular fit's variance at 0) make up at least half of it, else None: their
        rows and columns of ``Lambda_R' (...) Lambda_R + I`` are the identity's, and so are
        the factor's (InstEval's faces without the lecturers: a 17-wide Cholesky instead of
        1,145; a crossed fit whose item variance is 0 spends a fifth of its evaluations there)."""
        zero = [i for i, T in enumerate(Ts[1:]) if not T.any()]
        m = self._M.shape[0]
        offs = self.rest_offsets
        if sum(offs[i + 1] - offs[i] for i in zero) * 2 < m:
            return None
        out = np.ones(m, dtype=bool)
        for i in zero:
            out[offs[i] : offs[i + 1]] = False
        return np.flatnonzero(out)

    def dense_side(self):
        """Columns of the dense block factored at each evaluation (the rest, X and y)."""
        return self.qr + self.p + 1

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
                w1 = _forward_substitution(L11[levels], a1)
                total[rows_c] += np.einsum("ij,ij->i", w1, w1)
                Sz, Sxy = self._scaled_current()
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

    def _scaled_current(self):
        """:meth:`_scaled_C` at the last updated theta, formed once (predictions' standard errors
        ask for it once per chunk of rows)."""
        if getattr(self, "_scaled", None) is None:
            self._scaled = self._scaled_C(self._state[2])
        return self._scaled

    def _scaled_C(self, G):
        """``C_z G`` (sparse) and ``C_xy G`` (dense): the first term's columns scaled by G."""
        Sxy = self._scale_first(self.Cxy, G)
        Sz = None
        if self.qr:
            Sz = self.Cz.copy()
            p1 = G.shape[1]
            if p1 == 1:
                Sz.data *= G[Sz.indices, 0, 0]
            else:  # each row meets a level in all its p1 columns, side by side (sorted CSR): each
                # run of p1 values times that level's G, in place of a sparse product by blockdiag(G)
                runs = Sz.data.reshape(-1, 1, p1)
                Sz.data = np.matmul(runs, G[Sz.indices[::p1] // p1]).reshape(-1)
        return Sz, Sxy

    def spherical_covariances(self, chunk_entries=4_000_000):
        """The templates ``T_k`` and, per term, the (n_levels, p, p) diagonal blocks of
        ``(Lambda'Z'Z Lambda + I)^{-1}`` (the spherical modes' conditional covariance over
        sigma^2, given beta) at the last updated theta.

        Level j of the first term has ``L_j^{-T} (I + Y_j'Y_j) L_j^{-1}``, with ``L_j`` its level
        block, ``Y = L_r^{-1} Lambda_r' C G`` and ``L_r`` the Schur complement's factor (formed
        ``chunk_entries`` entries at a time); the other terms have the diagonal blocks of
        ``L_r^{-T} L_r^{-1}``.
        """
        Ts, L11, G, Lm = self._state
        terms, qr = self.terms, self.qr
        n1, p1, _ = L11.shape
        Linv11 = np.linalg.inv(L11)
        first = np.einsum("jca,jcb->jab", Linv11, Linv11)
        out = [None] * len(terms)
        if qr:
            Lr = Lm[:qr, :qr]
            Sz, _ = self._scaled_current()
            Sz = Sz.tocsc()
            per = max(1, int(chunk_entries // max(qr * p1, 1)))
            for a in range(0, n1, per):
                b_ = min(n1, a + per)
                Y = Sz[:, a * p1 : b_ * p1].toarray()
                for i, t in enumerate(terms[1:], start=1):
                    _lambda_t_rows(Y, Ts[i], self.rest_offsets[i - 1], t.n_levels)
                Y = solve_triangular(Lr, Y, lower=True).reshape(qr, b_ - a, p1)
                inner = np.einsum("rja,rjb->jab", Y, Y) + np.eye(p1)
                first[a:b_] = np.einsum("jca,jcd,jdb->jab", Linv11[a:b_], inner, Linv11[a:b_])
            Lrinv = solve_triangular(Lr, np.eye(qr), lower=True)
            for i, t in enumerate(terms[1:], start=1):
                o = self.rest_offsets[i - 1]
                cols = Lrinv[:, o : o + t.q].reshape(qr, t.n_levels, t.n_coef)
                out[i] = np.einsum("rja,rjb->jab", cols, cols)
        out[0] = first
        return Ts, out

    def solve(self):
        """Conditional beta and spherical modes u at the last updated theta."""
        Ts, L11, G, Lm = self._state
        qr = self.qr
        x_rest = _back_substitution(Lm)
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
        n1, p1, _ = L11.shape
        if getattr(self, "_dense_scaled", None) is not None:  # (formed by the update)
            Sz, Sxy = self._dense_scaled
            rhs = Sxy[-1] - Sxy[:-1].T @ beta
            if qr:
                rhs = rhs - Sz.T @ lam_u
            rhs = rhs.reshape(n1, p1)
        else:  # (C G)'v = G_j' (C'v)_j level by level: C G is not formed (on 10,000 subjects x
            # 200 items, 90 ms an evaluation of the gradient, which solves at every theta)
            rhs = self.Cxy[-1] - self.Cxy[:-1].T @ beta
            if qr:
                rhs = rhs - self.Cz.T @ lam_u
            rhs = np.matmul(G.transpose(0, 2, 1), rhs.reshape(n1, p1, 1))[:, :, 0]
        if p1 == 1:
            u1 = rhs / L11[:, :, 0]
        else:
            u1 = np.empty_like(rhs)
            for a in range(p1 - 1, -1, -1):  # back substitution with L_j' (upper)
                acc = rhs[:, a] - np.einsum("jb,jb->j", L11[:, a + 1 :, a], u1[:, a + 1 :])
                u1[:, a] = acc / L11[:, a, a]
        return beta, np.concatenate([u1.ravel(), u_rest])
