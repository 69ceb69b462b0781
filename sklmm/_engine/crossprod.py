"""Cross-products: every sum over rows a fit needs, formed once.

For random-effect terms ``Z = [Z_1 ... Z_K]`` and fixed columns ``X`` the fit needs ``Z'Z``
(level blocks of each term and the nonzero blocks between terms), ``Z'[X y]`` and
``[X y]'[X y]`` (the seed's "cross-products once"). Nothing else touches the ``n`` rows: an
evaluation of the criterion costs the same for 10^3 or 10^7 rows, and the sums may be formed
chunk by chunk and added (:func:`sum_cross_products`), which is how a Dask collection is fitted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .threads import single_threaded_blas

__all__ = ["CrossProducts", "CrossProductPlan", "cross_products", "sum_cross_products", "keep_fixed",
           "reorder_terms", "shift_term", "rescale_weights", "random_part_only"]


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


class CrossProductPlan:
    """The level structure of the cross-products of fixed terms, found once; :meth:`form` then
    gives the sums for any fixed columns, response and row weights in one vectorized pass over
    the rows. A GLMM forms them at every step of penalized IRLS, with new working weights and
    response; the pairs of levels of two terms that share rows are found once per fit."""

    def __init__(self, terms, repeated=False, fixed=None):
        self.terms = terms
        # terms whose rows are all ones (random intercepts): their weighted rows are the weights
        self.ones = [t.values.shape[1] == 1 and bool(np.all(t.values == 1.0)) for t in terms]
        # for many calls (PIRLS), each such term's level indicator as a sparse (levels x n)
        # matrix: its product with [w, W X, W y] gives all of the term's sums in one pass,
        # 2.5 times faster than a bincount per column
        self.indicators = [
            sp.csr_matrix((np.ones(len(t.codes)), t.codes, np.arange(len(t.codes) + 1)),
                          shape=(len(t.codes), t.n_levels)).T.tocsr() if one and repeated else None
            for t, one in zip(terms, self.ones)
        ]
        # terms of one "level" (penalized smooths), two or more: their columns, X and the
        # response are multiplied in one symmetric rank-k product, by blocks of rows (a binary
        # GAM's PIRLS step: 4x the speed of a product per pair of terms)
        one_level = [k for k, t in enumerate(terms) if t.n_levels == 1]
        self.dense = one_level if len(one_level) > 1 else []
        self._dense_q = sum(terms[k].values.shape[1] for k in self.dense)
        # with repeated calls, [Z X] of those terms and the fixed columns every call passes (as
        # penalized IRLS does) as its pieces, never stacked: :meth:`dense_rows` assembles blocks
        self._dense_parts = ([terms[k].values for k in self.dense] + [np.asarray(fixed, dtype=float)]
                             if self.dense and repeated and fixed is not None else None)
        self._dense_m = self._dense_q + (np.shape(fixed)[1] if self._dense_parts is not None else 0)
        mixed = {k for pair in self.pairs_keys(terms) for k in pair} if self.dense else set()
        self._need_left = [k not in self.dense or k in mixed for k in range(len(terms))]
        self.pairs = {}
        for k, tk in enumerate(terms):
            for l in range(k + 1, len(terms)):
                tl = terms[l]
                if tl.n_levels == 1 and tk.n_levels == 1:
                    self.pairs[(l, k)] = None
                    continue
                key = tl.codes.astype(np.int64) * tk.n_levels + tk.codes
                uniq, inv = np.unique(key, return_inverse=True)
                self.pairs[(l, k)] = (uniq // tk.n_levels, uniq % tk.n_levels, inv.ravel())

    @staticmethod
    def pairs_keys(terms):
        """The pairs of terms (l, k), l > k, one of them of several levels."""
        return [(l, k) for k in range(len(terms)) for l in range(k + 1, len(terms))
                if terms[l].n_levels > 1 or terms[k].n_levels > 1]

    def pattern(self, p):
        """What the choice of a factorization reads of the cross-products, without forming them:
        the number of fixed columns and which levels of two terms share rows."""
        zero = np.zeros(1, np.intp)
        off = {key: (zero, zero, None) if pair is None else (pair[0], pair[1], None)
               for key, pair in self.pairs.items()}
        return dataclasses.replace(CrossProducts(n=0, p=p, diag=[], off={}, zxy=[], xyxy=None), off=off)

    def form(self, X, y, weights=None, Xy=None) -> CrossProducts:
        """Cross-products of ``[Z X y]`` with row weights (``Z'WZ``, ...); O(n) per call.

        ``Xy`` may give ``[X y]`` as one array (a buffer the caller refills), else it is formed."""
        if Xy is None:
            Xy = np.column_stack([X, y])
        n, m = Xy.shape
        values = [t.values for t in self.terms]
        fast = bool(self.dense)
        gram = self._dense_gram(Xy, weights) if fast else None
        if gram is not None and len(gram[0]) == len(values):  # every term in the Gram: no more sums
            return self.from_gram(n, gram[1])
        wXy = np.empty((n, m + 1))  # [w, W X, W y]
        if weights is None:
            wXy[:, 0] = 1.0
            wXy[:, 1:] = Xy
            left = values
        else:
            wXy[:, 0] = weights
            np.multiply(Xy, weights[:, None], out=wXy[:, 1:])
            need = self._need_left if fast else [True] * len(values)
            left = [wXy[:, :1] if one else (v * weights[:, None] if nd else None)
                    for v, one, nd in zip(values, self.ones, need)]
        w, WXy = wXy[:, 0], wXy[:, 1:]
        diag, zxy = [], []
        for k, (t, a, v, one, ind) in enumerate(zip(self.terms, left, values, self.ones, self.indicators)):
            if gram is not None and k in gram[0]:
                sl = gram[0][k]
                diag.append(gram[1][None, sl, sl])
                zxy.append(gram[1][None, sl, gram[2]])
                continue
            if ind is not None:  # one sparse product: the weights' and weighted columns' sums
                sums = np.asarray(ind @ wXy)
                diag.append(sums[:, 0].reshape(-1, 1, 1))
                zxy.append(sums[:, None, 1:])
            elif one:  # sums of the weights, and of the weighted columns, by level
                diag.append(np.bincount(t.codes, w, minlength=t.n_levels).reshape(-1, 1, 1))
                zxy.append(np.stack([np.bincount(t.codes, WXy[:, c], minlength=t.n_levels)
                                     for c in range(m)], axis=1)[:, None, :])
            else:
                diag.append(_by_level(t.codes, a, v, t.n_levels))
                zxy.append(_by_level(t.codes, a, Xy, t.n_levels))
        off = {}
        for (l, k), pair in self.pairs.items():
            if pair is None and gram is not None and l in gram[0] and k in gram[0]:
                off[(l, k)] = (np.zeros(1, np.intp), np.zeros(1, np.intp), gram[1][None, gram[0][l], gram[0][k]])
            elif pair is None:
                off[(l, k)] = (np.zeros(1, np.intp), np.zeros(1, np.intp), (left[l].T @ values[k])[None])
            else:
                rows, cols, inv = pair
                off[(l, k)] = (rows, cols, _by_level(inv, left[l], values[k], len(rows)))
        xyxy = gram[1][gram[2], gram[2]] if gram is not None else WXy.T @ Xy
        return CrossProducts(n=n, p=m - 1, diag=diag, off=off, zxy=zxy, xyxy=0.5 * (xyxy + xyxy.T))

    @property
    def all_dense(self):
        """Whether every term is in the one-BLAS-product Gram of :meth:`_dense_gram` (a GAM
        without grouping factors): its cross-products are then that Gram's blocks."""
        return self._dense_parts is not None and len(self.dense) == len(self.terms)

    def from_gram(self, n, G):
        """The cross-products of an all-dense plan from ``G = C'WC``, ``C = [Z X y]`` over n
        rows (:meth:`_dense_gram`, or a pass that forms it with more, as the outer iteration of
        :mod:`~sklmm._engine.laml_iteration` does)."""
        slices, xy = self._dense_slices(G.shape[0])
        diag = [G[None, sl, sl] for sl in slices.values()]
        zxy = [G[None, sl, xy] for sl in slices.values()]
        zero = np.zeros(1, np.intp)
        off = {(l, k): (zero, zero, G[None, slices[l], slices[k]]) for (l, k) in self.pairs}
        return CrossProducts(n=n, p=G.shape[0] - 1 - self._dense_q, diag=diag, off=off, zxy=zxy,
                             xyxy=G[xy, xy].copy())

    def _dense_slices(self, width):
        """Each one-level term's slice of the columns of a Gram of ``width`` columns
        (:meth:`_dense_gram`), and the slice of the fixed columns and y."""
        slices, start = {}, 0
        for k in self.dense:
            q = self.terms[k].values.shape[1]
            slices[k] = slice(start, start + q)
            start += q
        return slices, slice(start, width)

    def dense_rows(self, a, b, out, scale=None, parts=None):
        """Rows a..b of ``[Z X]`` for the one-level terms and the plan's fixed columns (or the
        columns ``parts``; times ``scale[:, None]``, the rows' factors, when given), written
        into ``out[: b - a, : m]`` (their width ``m``); returns that view."""
        out = out[: b - a]
        at = 0
        for part in self._dense_parts if parts is None else parts:
            w = part.shape[1]
            if scale is None:
                out[:, at : at + w] = part[a:b]
            else:
                np.multiply(part[a:b], scale[:, None], out=out[:, at : at + w])
            at += w
        return out[:, :at]

    def _dense_gram(self, Xy, weights):
        """``(slices, G, xy)``: ``G = C'WC`` for ``C = [the one-level terms' columns, X, y]``, by
        BLAS ``syrk`` of ``sqrt(W) [Z X y]`` in blocks of ``GRAM_BLOCK_ROWS`` rows (assembled
        from the terms' columns and X, :meth:`dense_rows`) accumulated into G, each such term's
        slice of G's rows, and X and y's. The blocks stay in cache and need no row-sized
        scratch: a stacked, weighted copy of ``[Z X]`` costs its page faults (1e6 rows, 37
        columns: 0.6 s the first time), and the weighting then the product read it twice."""
        from scipy.linalg import blas

        # the one-level terms' columns and the call's fixed columns (a strided view of [X y])
        parts = [self.terms[k].values for k in self.dense] + [Xy[:, :-1]]
        n, m = len(Xy), self._dense_q + Xy.shape[1] - 1
        y = Xy[:, -1]
        sw = np.sqrt(np.maximum(weights, 0.0)) if weights is not None else None
        G = np.zeros((m + 1, m + 1), order="F")
        buf = np.empty((min(n, GRAM_BLOCK_ROWS), m + 1))
        # one BLAS thread: a block's product is too small to gain from more (1e6 rows, 38
        # columns: the same 0.26 s with one or two), and idle threads would spin beside a busy core
        with single_threaded_blas():
            for a in range(0, n, GRAM_BLOCK_ROWS):
                b = min(n, a + GRAM_BLOCK_ROWS)
                B = buf[: b - a]
                if sw is None:
                    self.dense_rows(a, b, B, parts=parts)
                    B[:, m] = y[a:b]
                else:
                    self.dense_rows(a, b, B, sw[a:b], parts)
                    np.multiply(y[a:b], sw[a:b], out=B[:, m])
                # (B.T is Fortran-ordered: no copy) the upper triangle, accumulated
                G = blas.dsyrk(1.0, B.T, trans=0, lower=0, beta=1.0, c=G, overwrite_c=1)
        G = np.triu(G) + np.triu(G, 1).T
        slices, xy = self._dense_slices(m + 1)
        return slices, G, xy


#: rows per block of :meth:`CrossProductPlan._dense_gram` (a few MB: cache-resident blocks)
GRAM_BLOCK_ROWS = 8192


def cross_products(terms, X, y, sample_weight=None) -> CrossProducts:
    """Form every cross-product of ``[Z X y]`` once (cost O(n), done once per fit)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    cp = CrossProductPlan(terms).form(X, y, sample_weight)
    if sample_weight is not None:
        cp.sum_log_weights = float(np.sum(np.log(sample_weight)))
    return cp


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


def keep_fixed(cp, keep):
    """Cross-products restricted to the kept fixed-effect columns (y stays last)."""
    idx = list(keep) + [cp.p]
    cp.xyxy = cp.xyxy[np.ix_(idx, idx)]
    cp.zxy = [z[:, :, idx] for z in cp.zxy]
    cp.p = len(keep)
    return cp


def reorder_terms(cp, order):
    """Cross-products with the terms in a new order (``order[i]`` = old index of new term i)."""
    pos = np.empty(len(order), dtype=np.intp)
    pos[list(order)] = np.arange(len(order))
    n_levels = [d.shape[0] for d in cp.diag]
    off = {}
    for (l, k), (rows, cols, blocks) in cp.off.items():
        a, b = int(pos[l]), int(pos[k])
        if a > b:
            off[(a, b)] = (rows, cols, blocks)
        else:  # Z_l'Z_k becomes Z_k'Z_l: swap the roles of rows and columns, transpose the blocks
            off[(b, a)] = _aggregate_blocks(cols, rows, np.ascontiguousarray(blocks.transpose(0, 2, 1)),
                                            n_levels[l])
    return dataclasses.replace(cp, diag=[cp.diag[k] for k in order], zxy=[cp.zxy[k] for k in order],
                               off=off)


def rescale_weights(cp):
    """The cross-products with the prior weights divided by their geometric mean ``c``, and c.

    Uniform weights only rescale the model (``sigma^2 -> sigma^2 / c``, ``T -> T sqrt(c)``),
    so a fit works on weights of order one whatever their units: weights of 1e6 or 1e-15 (say
    inverse variances) would otherwise put theta at 1e-3 or 3e7, where the optimizer's steps and
    the convergence check lose their scale. Every sum over rows is linear in the weights;
    ``sum(log w)`` drops by ``n log c``.
    """
    if cp.sum_log_weights == 0.0 or cp.n == 0:
        return cp, 1.0
    c = float(np.exp(cp.sum_log_weights / cp.n))
    off = {key: (rows, cols, blocks / c) for key, (rows, cols, blocks) in cp.off.items()}
    return dataclasses.replace(cp, diag=[d / c for d in cp.diag], zxy=[z / c for z in cp.zxy], off=off,
                               xyxy=cp.xyxy / c, sum_log_weights=0.0), c


def random_part_only(cp):
    """The cross-products of Z alone (no fixed columns; a unit response orthogonal to Z): what
    the random effects' conditional covariances need, whatever the scale of X and y."""
    zxy = [np.zeros(z.shape[:2] + (1,)) for z in cp.zxy]
    return dataclasses.replace(cp, p=0, zxy=zxy, xyxy=np.ones((1, 1)), sum_log_weights=0.0)


def shift_term(cp, k, M):
    """The cross-products after term k's model-matrix rows ``z`` become ``z M`` (a change of its
    coordinates, such as :meth:`~sklmm._engine.terms.RandomTerm.centre_slopes`), from the old ones.

    Exact algebra on the sums; forming them from the shifted rows instead keeps more digits
    when the shift is large, so the in-memory fit shifts the rows and this serves the sums of
    chunks (Dask).
    """
    diag = list(cp.diag)
    zxy = list(cp.zxy)
    diag[k] = np.einsum("ba,jbc,cd->jad", M, cp.diag[k], M)
    zxy[k] = np.einsum("ba,jbm->jam", M, cp.zxy[k])
    off = {}
    for (l, j), (rows, cols, blocks) in cp.off.items():
        if l == k:
            blocks = np.einsum("ba,nbc->nac", M, blocks)
        if j == k:
            blocks = np.einsum("nab,bc->nac", blocks, M)
        off[(l, j)] = (rows, cols, blocks)
    return dataclasses.replace(cp, diag=diag, zxy=zxy, off=off)
