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
saves the derivative-free optimizer most of its evaluations.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .criteria import profiled_criterion
from .factor_dense import DenseFactor
from .system import _lambda_t_rows
from .threads import blas_limit

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

    def __init__(self, cp, terms, reml):
        self.factor = DenseFactor(cp, terms)
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
        side = self.factor.qr + self.p if isinstance(self, BlockedGradient) else self.q + self.p
        return blas_limit(side)

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
        theta = np.asarray(theta, dtype=float)
        fz = self.factor.update(theta)
        f = profiled_criterion(fz, self.n, self.p, self.reml, self.sum_log_weights)
        if not np.isfinite(f):
            return f, np.full(self.n_theta, np.nan)
        L = self.factor._state  # lower, Fortran-ordered, side q + p + 1
        q, p = self.q, self.p
        beta, u = self.factor.solve()
        m = q + p if self.reml else q
        # P = A^{-1} (REML) or A_uu^{-1} (ML) from the factor; potri fills the lower triangle
        P, info = lapack.dpotri(L[:m, :m], lower=1)
        if info != 0:
            return f, np.full(self.n_theta, np.nan)
        P = np.tril(P) + np.tril(P, -1).T
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
        dlogdet = 2.0 * self._dlambda(W_blocks, theta)
        dr2 = -2.0 * self._dlambda(r2_blocks, theta)
        r2 = fz.r2
        df = self.n - self.p if self.reml else self.n
        return f, dlogdet + df * dr2 / r2


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
    products of the rest's side squared by the first term's width: a maximal crossed model's
    subjects never enter a dense factor of the whole system."""

    def __init__(self, cp, terms, reml):
        from .factor_blocked import BlockedFactor

        # dense Schur products (the gradient reads them too)
        self.factor = BlockedFactor(cp, terms, dense_products=True)
        f = self.factor
        self.terms = terms
        self.reml = bool(reml)
        self.n, self.p, self.q = cp.n, cp.p, f.q
        self.sum_log_weights = cp.sum_log_weights
        self.n_theta = sum(t.n_theta for t in terms)

    def _upper_indices(self, m):
        """Indices of the strict upper triangle of an m x m matrix (kept from call to call)."""
        cached = getattr(self, "_iu", None)
        if cached is None or cached[0] != m:
            self._iu = cached = (m, np.triu_indices(m, 1))
        return cached[1]

    def __call__(self, theta):
        theta = np.asarray(theta, dtype=float)
        fac = self.factor
        fz = fac.update(theta)
        f = profiled_criterion(fz, self.n, self.p, self.reml, self.sum_log_weights)
        if not np.isfinite(f):
            return f, np.full(self.n_theta, np.nan)
        Ts, L11, Gs, Lm = fac._state
        terms, qr, p, q1 = self.terms, fac.qr, self.p, fac.q1
        n1, r1 = terms[0].n_levels, terms[0].n_coef
        mr = qr + p if self.reml else qr
        beta, u = fac.solve()
        T1 = Ts[0]
        # the rest's Lambda' on rows: K = [Lambda_R' C_z; C_x] (mr x q1), HR = [Lambda_R' RR] (mr x qr)
        K = np.vstack([fac._Cz_dense, fac.Cxy[:p]])[:mr] if qr else fac.Cxy[:p][:mr]
        HR = fac.RR[:mr, :qr].copy()
        if qr:
            K = K.copy()
        for i, t in enumerate(terms[1:], start=1):
            o = int(fac.rest_offsets[i - 1])
            _lambda_t_rows(K, Ts[i], o, t.n_levels)
            _lambda_t_rows(HR, Ts[i], o, t.n_levels)
        # the first term's level blocks: Dt^{-1} = (T1'D_l T1 + I)^{-1} = L_l^{-T} L_l^{-1}
        if r1 == 1:
            Linv = 1.0 / L11
        else:  # formed by the update for r1 > 2 (closed forms for r1 = 2)
            Linv = fac.level_inverses if fac.level_inverses is not None else np.linalg.inv(L11)
        Dt_inv = np.matmul(Linv.transpose(0, 2, 1), Linv)
        Q = np.matmul(T1[None], Dt_inv)  # (n1, r1, r1)
        E = fac._scale_first(K, Q) if mr else K  # K Q
        if mr:
            Pr, info = lapack.dpotri(Lm[:mr, :mr], lower=1)
            if info != 0:
                return f, np.full(self.n_theta, np.nan)
            iu = self._upper_indices(mr)
            Pr[iu] = Pr.T[iu]  # potri leaves the lower triangle: mirror it
            P21 = -(Pr @ E)
            corr = _level_products(E, P21, n1, r1)  # E_l' P21_l
        else:
            P21 = np.zeros((0, q1))
            corr = 0.0
        TD = np.matmul(T1.T[None], fac.D1)  # T1' D_l
        W = [np.matmul(Dt_inv - corr, TD) + _level_products(P21, K, n1, r1)]
        if qr:
            # C_z Lambda_1: the same T1 in every level block, so one product of the level-major
            # rows (a batched product over the levels takes several times as long)
            K1 = (fac._Cz_dense.reshape(-1, r1) @ T1).reshape(fac._Cz_dense.shape)
            for i, t in enumerate(terms[1:], start=1):
                o, nl, r = int(fac.rest_offsets[i - 1]), t.n_levels, t.n_coef
                a = P21[o : o + nl * r].reshape(nl, r, q1)
                b = K1[o : o + nl * r].reshape(nl, r, q1).transpose(0, 2, 1)
                W.append(np.matmul(a, b) + _level_products(Pr[:, o : o + nl * r].T.copy().T, HR[:, o : o + nl * r], nl, r))
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
            Zte1 = Zte1 - fac._Cz_dense.T @ bR
            ZteR = ZteR - fac._Cz_dense @ b1
        Zte = np.concatenate([Zte1, ZteR])
        offs = fac.z_offsets
        r2_blocks = []
        for k, t in enumerate(terms):
            o, nl, r = int(offs[k]), t.n_levels, t.n_coef
            r2_blocks.append(Zte[o : o + nl * r].reshape(nl, r, 1) * u[o : o + nl * r].reshape(nl, 1, r))
        dlogdet = 2.0 * self._dlambda(W, theta)
        dr2 = -2.0 * self._dlambda(r2_blocks, theta)
        df = self.n - self.p if self.reml else self.n
        return f, dlogdet + df * dr2 / fz.r2


def make_gradient(cp, terms, solver, reml, n_free):
    """The criterion-and-gradient evaluator for a fit, or None where BOBYQA is kept: fewer
    than :data:`GRADIENT_MIN_THETA` free parameters (InstEval's three), or a system whose dense
    part would pass :data:`GRADIENT_MAX_SIZE`. The blocked solver's models get
    :class:`BlockedGradient` (when its first term's products with the rest fit in memory as a
    dense array), the others :class:`DenseGradient`."""
    from .factor_blocked import DENSE_CZ_ENTRIES

    if n_free < GRADIENT_MIN_THETA or not terms or (not GRADIENT_FOR_SMOOTHS and any(t.scalar for t in terms)):
        return None
    q, p = sum(t.q for t in terms), cp.p
    if solver == "blocked":
        qr = q - terms[0].q
        if qr + p <= GRADIENT_MAX_SIZE and qr * terms[0].q <= DENSE_CZ_ENTRIES:
            return BlockedGradient(cp, terms, reml)
    if q + p <= GRADIENT_MAX_SIZE:
        return DenseGradient(cp, terms, reml)
    return None
