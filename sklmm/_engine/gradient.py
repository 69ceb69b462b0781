"""The gradient of the profiled criterion with respect to theta, from one dense factorization.

With ``A(theta) = Gamma' C'C Gamma + E`` the PLS system without its response row (``C = [Z X]``,
``Gamma = diag(Lambda, I_p)``, ``E = diag(I_q, 0)``; :mod:`sklmm._engine.system`), the pieces of
the profiled criterion (:mod:`sklmm._engine.criteria`) are ``log|L|^2 = log det A_uu``,
``log|L|^2 + log|R_X|^2 = log det A`` and the penalized residual sum of squares ``r^2``. For a
parameter ``theta_k`` with ``dLambda = dLambda / dtheta_k`` (the template's entry ``(a, b)``
in every level's block of its term; the whole diagonal for a smooth's scalar term, weighted by
``dT_ii / dtheta_k`` for a term with several penalties):

* ``d log det A = tr(A^{-1} dA) = 2 tr(W dLambda)`` with ``W = P_u. [Lambda'Z'Z; X'Z]`` and
  ``P = A^{-1}``: only the level blocks of ``W`` on the diagonal are needed, each ``r x r``
  (ML: the same with ``A_uu`` alone, ``W = A_uu^{-1} Lambda'Z'Z``);
* ``d r^2 = -2 (Z'e)' dLambda u`` at the conditional solution ``(beta, u)`` with
  ``e = y - X beta - Z Lambda u`` (the envelope theorem: ``r^2`` is a minimum over them).

So ``d/dtheta_k`` of the ML deviance is ``2 tr(W dLambda) + n d r^2 / r^2`` and of the REML
criterion ``2 tr(W dLambda) + (n - p) d r^2 / r^2`` (lme4's JSS paper, section 3; the same
identities as MixedModels.jl's gradient, evaluated here with the inverse from LAPACK's
``potri`` on the Cholesky factor). One evaluation costs the dense factorization plus its
inverse, ``O(m^3)`` for a system of side ``m = q + p``: meant for models with many
covariance parameters and a system of moderate size (:data:`GRADIENT_MAX_SIZE`), where it
saves the derivative-free optimizer most of its evaluations. :meth:`DenseGradient.parts`
returns the two gradients apart, on any fit's dense or blocked factor: Satterthwaite's df
differentiate them with sigma held fixed (:mod:`sklmm._inference.covariance`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas, lapack

from .criteria import profiled_criterion, residual_df
from .factor_dense import DenseFactor
from .factor_schur import group_block_products, group_rows_product
from .system import _lambda_t_rows
from .threads import SINGLE_THREAD_BLOCK, blas_limit, factor_threads

__all__ = ["DenseGradient", "BlockedGradient", "make_gradient", "GRADIENT_MAX_SIZE", "GRADIENT_MIN_THETA"]

#: the gradient path is taken for at least this many free covariance parameters ...
GRADIENT_MIN_THETA = 6
#: ... and a PLS system of at most this side (one dense inverse per evaluation)
GRADIENT_MAX_SIZE = 1500
#: models with smooths keep BOBYQA: a smooth's criterion is even in its theta, so at a straight
#: line (theta = 0, common) the gradient vanishes and L-BFGS-B stalls there (six cr smooths:
#: 0.011 above BOBYQA's optimum); BOBYQA is what the mgcv comparisons validate
GRADIENT_FOR_SMOOTHS = False


class DenseGradient:
    """The profiled criterion (ML or REML) and its gradient in theta, ``(f, g) = self(theta)``."""

    def __init__(self, cp, terms, reml, factor=None):
        self.factor = DenseFactor(cp, terms) if factor is None else factor
        self.terms = terms
        self.reml = bool(reml)
        self.n, self.p, self.q = cp.n, cp.p, self.factor.q
        self.sum_log_weights = cp.sum_log_weights
        self.G = self.factor.A  # [Z X y]'[Z X y], unscaled (the factor keeps it)
        self.n_theta = sum(t.n_theta for t in terms)

    def threads(self):
        """The BLAS threading for these evaluations (a context): one thread when the dense part
        is small, where OpenBLAS's threads cost more than they bring and numpy's and scipy's
        spin against each other between calls (kb07: 1.7 instead of 18 ms an evaluation)."""
        return blas_limit(self.q + self.p)

    def _dlambda(self, per_term, theta):
        """Each theta's ``sum over levels`` of ``per_term[k][:, row, col]`` at its template entry."""
        g = np.empty(self.n_theta)
        for t, s, block in zip(self.terms, self.factor.theta_slices, per_term):
            if t.penalties is not None:  # diagonal T(theta), nonlinear: the chain rule
                g[s] = t.penalized_derivatives(theta[s]) @ np.diagonal(block[0])
            elif t.scalar:  # T = theta I: the whole diagonal of the term's one block
                g[s] = np.trace(block[0])
            else:
                g[s] = block[:, t.tri_rows, t.tri_cols].sum(axis=0)
        return g

    def __call__(self, theta):
        fz, dlogdet, dr2 = self.parts(theta)
        f = profiled_criterion(fz, self.n, self.p, self.reml, self.sum_log_weights)
        if not np.isfinite(f) or dlogdet is None:
            return f, np.full(self.n_theta, np.nan)
        return f, dlogdet + residual_df(self.n, self.p, self.reml) * dr2 / fz.r2

    def parts(self, theta):
        """``(fz, dlogdet, dr2)`` at theta: the factorization (None where it failed) and the
        gradients of ``log det`` (``log|L|^2``, REML ``+ log|R_X|^2``) and of ``r^2`` (None
        where the factorization failed). Satterthwaite's df differentiate them with sigma
        apart (:mod:`sklmm._inference.covariance`)."""
        theta = np.asarray(theta, dtype=float)
        fz = self.factor.update(theta)
        if fz is None or not fz.r2 > 0:
            return fz, None, None
        L = self.factor._state  # lower, Fortran-ordered, side q + p + 1
        q, p = self.q, self.p
        beta, u = self.factor.solve()
        m = q + p if self.reml else q
        # P = A^{-1} (REML) or A_uu^{-1} (ML) from the factor; potri fills the lower triangle
        P, info = lapack.dpotri(L[:m, :m], lower=1)
        if info != 0:
            return fz, None, None
        _mirror_lower(P)
        G = self.G
        H = G[:m, :q].copy()  # [Lambda'Z'Z; X'Z] (ML: Lambda'Z'Z): Lambda' on the u rows
        b = np.empty(q)  # Lambda u
        offs = self.factor.z_offsets
        Ts = []
        for k, (t, s) in enumerate(zip(self.terms, self.factor.theta_slices)):
            T = t.template(theta[s])
            Ts.append(T)
            _lambda_t_rows(H, T, int(offs[k]), t.n_levels)
            b[offs[k] : offs[k + 1]] = (u[offs[k] : offs[k + 1]].reshape(t.n_levels, t.n_coef) @ T.T).ravel()
        # Z'e = Z'y - Z'X beta - Z'Z Lambda u
        Zte = G[:q, -1] - G[:q, q : q + p] @ beta - G[:q, :q] @ b
        W_blocks, r2_blocks = [], []
        for k, t in enumerate(self.terms):
            o, nl, r = int(offs[k]), t.n_levels, t.n_coef
            rows = P[o : o + nl * r].reshape(nl, r, m)  # level blocks of rows of P
            cols = H[:, o : o + nl * r].reshape(m, nl, r).transpose(1, 0, 2)
            # W_l[i, j] = W[o + l r + i, o + l r + j]; tr(W dLambda) reads W_l[b, a] for entry (a, b)
            W_blocks.append(np.matmul(rows, cols).transpose(0, 2, 1))
            # (Z'e)_a u_b per level for entry (a, b)
            r2_blocks.append(Zte[o : o + nl * r].reshape(nl, r, 1) * u[o : o + nl * r].reshape(nl, 1, r))
        return fz, 2.0 * self._dlambda(W_blocks, theta), -2.0 * self._dlambda(r2_blocks, theta)


def _mirror_lower(P, block=128):
    """In place: the upper triangle of a square array from its lower one (LAPACK's ``potri``
    fills the lower), a block of columns at a time (InstEval's 1,144 columns: 2.3 ms, where a
    fancy-indexed copy of the triangle took 10.4)."""
    n = P.shape[0]
    for i in range(0, n, block):
        P[:i, i : i + block] = P[i : i + block, :i].T
        d = P[i : i + block, i : i + block]
        d[...] = np.tril(d) + np.tril(d, -1).T


def _level_products(A, B, n_levels, r):
    """``A_l' B_l`` for the level column blocks of two (rows, n_levels r) arrays: (n_levels, r, r)."""
    a = A.reshape(A.shape[0], n_levels, r).transpose(1, 2, 0)
    b = B.reshape(B.shape[0], n_levels, r).transpose(1, 0, 2)
    return np.matmul(a, b)


class BlockedGradient(DenseGradient):
    """The same criterion and gradient through the blocked factorization
    (:class:`~sklmm._engine.factor_blocked.BlockedFactor`, the first term level by level): with
    ``L = [[L_1, 0], [B~, L_r]]`` and ``P_r = L_r^{-T} L_r^{-1}`` the inverse of the rest's
    Schur complement, ``A^{-1}`` has the blocks ``P_r``, ``P_r1 = -P_r K Q`` and the first term's
    level blocks ``(T_1'D_l T_1 + I)^{-1} - (K Q)_l' P_r1,l``, where ``K = [Lambda_R' C_z; C_x]``
    are the first term's products with the rest and ``Q_l = T_1 (T_1'D_l T_1 + I)^{-1}``. Each
    evaluation costs the blocked factorization, ``potri`` on the rest (side ``q_r + p``) and
    the products of ``P_r`` with K: a maximal crossed model's subjects never enter a dense
    factor of the whole system.

    Where the factor keeps K dense (every level meets most of the rest: kb07) they are dense
    products; where it updates through the Schur kernel (each level meets few of the rest:
    InstEval), only the entries of ``P_r K`` on K's own pattern are needed, level by level
    (:meth:`~sklmm._engine.factor_schur.SchurKernel.gather`): ``X_l = K_l' P_r K_l`` for the
    first term's blocks and, for the rest's, ``-(P_r K_l Q_l)_x (C_z,l T_1)_y'`` summed over the
    levels l that both rows x and y of a level block meet.
    """

    def __init__(self, cp, terms, reml, factor=None):
        from .factor_blocked import BlockedFactor

        # dense Schur products by default (the optimizer's models: many theta, a moderate rest)
        self.factor = BlockedFactor(cp, terms, dense_products=True) if factor is None else factor
        f = self.factor
        self.terms = terms
        self.reml = bool(reml)
        self.n, self.p, self.q = cp.n, cp.p, f.q
        self.sum_log_weights = cp.sum_log_weights
        self.n_theta = sum(t.n_theta for t in terms)
        self._layout = self._by_level = self._levels = None

    def threads(self):
        """As :meth:`DenseGradient.threads` on the dense block (the rest and X); with dense
        products, whose work grows with the first term's width too, scipy's BLAS at the free
        CPUs where that work is a large factorization's (:func:`factor_threads`; with numpy's at
        two threads as well, the two libraries' idle threads slowed both: 2,000 subjects x 100
        items, 0.22 s a gradient against 0.26 on one thread, 0.30)."""
        side = self.factor.qr + self.p
        if self.factor._Cz_dense is not None and float(side + 1) ** 2 * self.factor.q1 >= SINGLE_THREAD_BLOCK**3 / 3.0:
            return factor_threads()
        return blas_limit(side)

    def _kernel_layout(self):
        """The Schur kernel's entries by first-term level and, for each later term, in groups
        of its ``r`` rows of one level block (the kernel's pattern holds every row of a block
        it meets, sorted): ``[(groups (g, r), block level, first level)]``, one per later term."""
        if self._layout is None:
            fac = self.factor
            K = fac.schur
            level = self._entry_levels()
            per_term = []
            for i, t in enumerate(self.terms[1:], start=1):
                o, r = int(fac.rest_offsets[i - 1]), t.n_coef
                idx = np.flatnonzero((K.rows >= o) & (K.rows < o + t.q)).reshape(-1, r)
                within = K.rows[idx] - o
                if not (np.all(within % r == np.arange(r)) and np.all(level[idx] == level[idx[:, :1]])):
                    raise RuntimeError("Schur kernel: a level block's rows are not together")  # pragma: no cover
                per_term.append((idx, within[:, 0] // r, level[idx[:, 0]]))
            self._layout = per_term
        return self._layout

    def _entry_levels(self):
        """The first-term level of each of the Schur kernel's entries (in its order), kept."""
        if self._levels is None:
            indptr = self.factor.schur.indptr
            self._levels = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        return self._levels

    def _entries_by_level(self, values):
        """The kernel's entries as a sparse (entries, n_levels p1) matrix, entry a's p1 values in
        its level's columns (its column indices and row pointers kept from call to call)."""
        n_entries, p1 = values.shape
        if self._by_level is None:
            cols = (self._entry_levels()[:, None] * p1 + np.arange(p1)).ravel()
            self._by_level = (cols, np.arange(0, n_entries * p1 + 1, p1), (n_entries, (len(self.factor.schur.indptr) - 1) * p1))
        cols, indptr, shape = self._by_level
        return sp.csr_matrix((np.ascontiguousarray(values).reshape(-1), cols, indptr), shape=shape, copy=False)

    def parts(self, theta):
        theta = np.asarray(theta, dtype=float)
        fac = self.factor
        fz = fac.update(theta)
        if fz is None or not fz.r2 > 0:
            return fz, None, None
        Ts, L11, Gs, Lm = fac._state
        terms, qr, p, q1 = self.terms, fac.qr, self.p, fac.q1
        n1, r1 = terms[0].n_levels, terms[0].n_coef
        mr = qr + p if self.reml else qr
        beta, u = fac.solve()
        T1 = Ts[0]
        dense = fac._Cz_dense is not None or not qr
        # HR = [Lambda_R' RR] (mr x qr); dense: K = [Lambda_R' C_z; C_x] (mr x q1)
        HR = fac.RR[:mr, :qr].copy()
        for i, t in enumerate(terms[1:], start=1):
            _lambda_t_rows(HR, Ts[i], int(fac.rest_offsets[i - 1]), t.n_levels)
        if dense:
            K = np.vstack([fac._Cz_dense, fac.Cxy[:p]])[:mr] if qr else fac.Cxy[:p][:mr]
            if qr:
                K = K.copy()
            for i, t in enumerate(terms[1:], start=1):
                _lambda_t_rows(K, Ts[i], int(fac.rest_offsets[i - 1]), t.n_levels)
        # the first term's level blocks: Dt^{-1} = (T1'D_l T1 + I)^{-1} = L_l^{-T} L_l^{-1}
        if r1 == 1:
            Linv = 1.0 / L11
        else:  # formed by the update for r1 > 2 (closed forms for r1 = 2)
            Linv = fac.level_inverses if fac.level_inverses is not None else np.linalg.inv(L11)
        Dt_inv = np.matmul(Linv.transpose(0, 2, 1), Linv)
        Q = np.matmul(T1[None], Dt_inv)  # (n1, r1, r1)
        Pr = None
        if mr:
            Pr, info = lapack.dpotri(Lm[:mr, :mr], lower=1)
            if info != 0:
                return fz, None, None
            _mirror_lower(Pr)
        TD = np.matmul(T1.T[None], fac.D1)  # T1' D_l
        if dense:
            W = self._dense_blocks(K, T1, Q, Pr, Dt_inv, TD, mr)
        else:
            W = self._kernel_blocks(Ts, Q, Pr, Dt_inv, TD, mr)
        if qr:
            for i, t in enumerate(terms[1:], start=1):
                o, nl, r = int(fac.rest_offsets[i - 1]), t.n_levels, t.n_coef
                W[i] = W[i] + _level_products(Pr[:, o : o + nl * r].T.copy().T, HR[:, o : o + nl * r], nl, r)
        W = [w.transpose(0, 2, 1) for w in W]
        # Z'e = Z'y - Z'X beta - Z'Z Lambda u, by the blocks
        b1 = np.matmul(u[:q1].reshape(n1, 1, r1), T1.T[None]).reshape(q1)  # Lambda_1 u_1
        bR = u[q1:].copy()
        for i, t in enumerate(terms[1:], start=1):
            o = int(fac.rest_offsets[i - 1])
            bR[o : o + t.q] = (bR[o : o + t.q].reshape(t.n_levels, t.n_coef) @ Ts[i].T).ravel()
        Zte1 = fac.Cxy[-1] - fac.Cxy[:p].T @ beta - np.matmul(fac.D1, b1.reshape(n1, r1, 1)).reshape(q1)
        ZteR = fac.RR[:qr, -1] - fac.RR[:qr, qr : qr + p] @ beta - fac.RR[:qr, :qr] @ bR
        if qr:
            Cz = fac._Cz_dense if fac._Cz_dense is not None else fac.Cz
            Zte1 = Zte1 - Cz.T @ bR
            ZteR = ZteR - Cz @ b1
        Zte = np.concatenate([Zte1, ZteR])
        offs = fac.z_offsets
        r2_blocks = []
        for k, t in enumerate(terms):
            o, nl, r = int(offs[k]), t.n_levels, t.n_coef
            r2_blocks.append(Zte[o : o + nl * r].reshape(nl, r, 1) * u[o : o + nl * r].reshape(nl, 1, r))
        return fz, 2.0 * self._dlambda(W, theta), -2.0 * self._dlambda(r2_blocks, theta)

    def _dense_blocks(self, K, T1, Q, Pr, Dt_inv, TD, mr):
        """The terms' blocks of ``A^{-1}`` times their rows of ``[Lambda'Z'Z; X'Z]``, without the
        rest's ``P_r HR`` part, from the dense K (see the class)."""
        fac, terms = self.factor, self.terms
        n1, r1 = terms[0].n_levels, terms[0].n_coef
        E = fac._scale_first(K, Q) if mr else K  # K Q
        if mr:
            P21 = blas.dgemm(-1.0, E.T, Pr).T  # -(P_r E), by scipy's BLAS (the threads set for it)
            corr = _level_products(E, P21, n1, r1)  # E_l' P21_l
        else:
            P21 = np.zeros((0, fac.q1))
            corr = 0.0
        W = [np.matmul(Dt_inv - corr, TD) + _level_products(P21, K, n1, r1)]
        if fac.qr:
            # C_z Lambda_1: the same T1 in every level block, so one product of the level-major
            # rows (a batched product over the levels takes several times as long)
            K1 = (fac._Cz_dense.reshape(-1, r1) @ T1).reshape(fac._Cz_dense.shape)
            for i, t in enumerate(terms[1:], start=1):
                o, nl, r = int(fac.rest_offsets[i - 1]), t.n_levels, t.n_coef
                a = P21[o : o + nl * r].reshape(nl, r, fac.q1)
                b = K1[o : o + nl * r].reshape(nl, r, fac.q1).transpose(0, 2, 1)
                W.append(np.matmul(a, b))
        return W

    def _kernel_blocks(self, Ts, Q, Pr, Dt_inv, TD, mr):
        """:meth:`_dense_blocks` from the Schur kernel's entries of K (see the class)."""
        terms = self.terms
        kern = self.factor.schur
        per_term = self._kernel_layout()
        C = kern.values
        Kv = C  # the entries of K = Lambda~' C (Lambda~ = diag(Lambda_R, I_p): K's pattern)
        for (idx, _, _), T in zip(per_term, Ts[1:]):
            Kv = group_rows_product(Kv, idx, T)
        # (P_r K_l) at K_l's entries (none on the y row, ML's X rows); P_r is symmetric and
        # Fortran-ordered: its transpose is the C-ordered array the kernel reads, without a copy
        V = kern.gather(Pr.T, Kv)
        # K_l' P_r K_l = sum over the level's entries of k_a v_a': one sparse product of the
        # entries laid out by level (rows: entries; columns: level x coefficient) with V
        by_level = self._entries_by_level(Kv)
        X = (by_level.T @ V).reshape(-1, V.shape[1], V.shape[1])
        QX = np.matmul(Q.transpose(0, 2, 1), X)
        W = [np.matmul(Dt_inv + np.matmul(QX, Q), TD) - QX]
        T1 = Ts[0]
        n1, r1 = Q.shape[0], Q.shape[1]
        # -(P_r K_l Q_l)_x (C_z,l T_1)_y' = -(V_x Q_l T_1') c_y' over each block's rows x, y,
        # summed by block: Q_l T_1' for all levels in one product of their stacked rows
        M = (Q.reshape(n1 * r1, r1) @ T1.T).reshape(n1, r1, r1)
        for (idx, block, first), t in zip(per_term, terms[1:]):
            W.append(group_block_products(V, C, idx, first, block, M, t.n_levels))
        return W


def make_gradient(cp, terms, solver, reml, n_free):
    """The criterion-and-gradient evaluator for a fit, or None where BOBYQA is kept: fewer
    than :data:`GRADIENT_MIN_THETA` free parameters (InstEval's three), or a system whose dense
    part would pass :data:`GRADIENT_MAX_SIZE`. The blocked solver's models get
    :class:`BlockedGradient`, with dense products of the first term's columns with the rest
    where they fit in memory and through the Schur kernel's pattern where they would not (a
    first factor of many thousand levels); the others :class:`DenseGradient`."""
    from .factor_blocked import DENSE_CZ_ENTRIES, BlockedFactor

    if n_free < GRADIENT_MIN_THETA or not terms or (not GRADIENT_FOR_SMOOTHS and any(t.scalar for t in terms)):
        return None
    q, p = sum(t.q for t in terms), cp.p
    if solver == "blocked":
        qr = q - terms[0].q
        if qr + p <= GRADIENT_MAX_SIZE:
            if qr * terms[0].q <= DENSE_CZ_ENTRIES:
                return BlockedGradient(cp, terms, reml)
            return BlockedGradient(cp, terms, reml, factor=BlockedFactor(cp, terms, dense_products=False))
    if q + p <= GRADIENT_MAX_SIZE:
        return DenseGradient(cp, terms, reml)
    return None
