"""Factor-smooth interactions, mgcv's ``s(x, fac, bs = "fs")``: a random smooth per group.

Each level of a factor gets its own copy of a smooth of x (``cr``, ``tp``, ``ps``, ``cc`` or
``rk``), not centred, and all levels share the smoothing parameters: one for the wiggly
(range-space) part and one for each direction of the penalty's null space, which is penalized
too (for a cubic spline: a random intercept and a random slope per level, independent). It is
the usual GAMM for individual curves (subjects' growth curves, sensors' daily cycles), and a
random-effect term like any other for the engine: one grouping factor, ``k`` coefficients per
level, a diagonal template with one theta per penalty (:class:`~.terms.RandomTerm` with
``penalties``).

The construction is mgcv's (``smooth.construct.fs.smooth.spec``, which calls ``nat.param(...,
type = 1)``), in these steps:

1. the unconstrained basis ``B`` (n x k) and penalty ``S`` of the base smooth;
2. the natural parameterization: with ``B'B = R'R`` and ``R^-T S R^-1 = V diag(d) V'``, the
   range-space columns ``B R^-1 V_+ d_+^(-1/2)`` (penalty: the identity) and the null-space
   columns ``B R^-1 V_0`` are orthogonal to each other over the training rows;
3. each block scaled to a mean square of 1 (mgcv's ``unit.fnorm``; the range penalty is then
   ``scale^2 I``).

One choice is sklmm's own. mgcv takes the null-space columns as ``eigen()`` returns them for a
repeated eigenvalue 0: an arbitrary orthonormal basis of that space, which LAPACK's rounding
decides. Since each null-space column has its own variance, that choice changes the model
(two runs of mgcv on other machines can differ). sklmm makes it canonical: the null space is
spanned in the order ``1, x_1, ..., x_d`` (Gram-Schmidt over the training rows of the
projections of those functions), so for a one-variable smooth the null-space coefficients are
a random intercept and a random slope on centred x, independent: ``(1 + x || fac)`` of lme4.
Where the null space is one-dimensional (``cc``: the constant) the choice does not arise and
the model is mgcv's exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cholesky, qr, solve_triangular

from .smooth import SmoothTerm
from .terms import RandomTerm

__all__ = ["FactorSmooth", "FS_BASES"]

#: the bases a factor-smooth interaction can use (one penalty each)
FS_BASES = ("tp", "cr", "ps", "cc", "rk")


class FactorSmooth:
    """A smooth of x per level of a factor sharing its smoothing parameters (mgcv's ``fs``).

    Parameters
    ----------
    name : str
        The term's name (``"s(x,fac)"``).
    base : str
        The base smooth's basis (mgcv's ``xt``).
    n_basis : int
        The base smooth's basis dimension (mgcv's ``k``): each level has ``n_basis``
        coefficients.
    knots : array-like or None
        The base smooth's knots (as :class:`~.smooth.SmoothTerm` takes them).
    """

    def __init__(self, name, base, n_basis, knots=None):
        if base not in FS_BASES:
            raise ValueError(f"{name}: the basis of an 'fs' smooth must be one of {list(FS_BASES)}; got {base!r}.")
        self.name, self.basis_name = name, base
        self.base = SmoothTerm(name, 0, base, n_basis, knots)

    # -- what FittedSmooth reads -----------------------------------------------------------
    @property
    def basis(self):
        return f"fs.{self.basis_name}"

    @property
    def n_basis(self):
        return self.base.n_basis

    @property
    def n_fixed(self):
        return 0

    @property
    def n_random(self):
        return self.n_levels_ * self.P_.shape[1]

    @property
    def n_lambda(self):
        return 1 + self.n_null_

    @property
    def knots_(self):
        return self.base.knots_

    # -- construction ----------------------------------------------------------------------
    def fit_values(self, x):
        """Fit the base basis and its natural parameterization at x (training rows): the
        per-row values ``B P`` of shape (n, k)."""
        B = self.base.unconstrained_basis(x)
        k = B.shape[1]
        n_null = self.base.null_space_dim()
        try:
            R = cholesky(B.T @ B, lower=False)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{self.name}: the basis of dimension {k} is rank deficient on the training "
                "rows (too few distinct values of x); lower k.") from None
        Ri = solve_triangular(R, np.eye(k), lower=False)
        St = Ri.T @ self.base.S_raw_ @ Ri
        d, V = np.linalg.eigh(0.5 * (St + St.T))  # ascending: the null space first
        V0, Vr, dr = V[:, :n_null], V[:, n_null:], d[n_null:]
        if np.any(dr <= 0):
            raise ValueError(f"{self.name}: the penalty's range space is not positive definite; lower k.")
        # range columns B Ri Vr / sqrt(dr): orthonormal over the rows before dividing by sqrt(dr)
        Pr = Ri @ (Vr / np.sqrt(dr))
        scale = 1.0 / np.sqrt(np.mean(1.0 / dr) / B.shape[0])  # mean square of B Pr is mean(1/dr)/n
        Pr *= scale
        # the null space, in the canonical order 1, x_1, ..., x_d (see the module docstring)
        P0 = Ri @ V0
        xs = np.asarray(x, dtype=float).reshape(B.shape[0], -1)
        if n_null > 1 + xs.shape[1]:
            raise ValueError(f"{self.name}: the penalty's null space has dimension {n_null}, more than "
                             f"1, x_1, ..., x_{xs.shape[1]} span; an 'fs' smooth of this many variables "
                             "is not supported.")
        C = np.column_stack([np.ones(B.shape[0]), xs])[:, :n_null]
        A = (B @ P0).T @ C  # the null columns' (orthonormal) inner products with 1, x, ...
        Q, Rq = qr(A)
        if np.any(np.abs(np.diag(Rq)) < 1e-8 * np.sqrt(B.shape[0])):
            raise ValueError(f"{self.name}: the null space of the {self.basis_name!r} basis is not spanned "
                             f"by 1, x on the training rows.")
        P0 = P0 @ (Q * np.sign(np.diag(Rq)))
        P0 *= np.sqrt(B.shape[0])  # orthonormal columns to a mean square of 1
        self.P_ = np.hstack([Pr, P0])
        self.n_null_, self.rank_ = n_null, k - n_null
        self.range_penalty_ = scale**2  # mgcv's S[[1]] = scale^2 I on the range coefficients
        return B @ self.P_

    def values(self, x):
        """The per-row values ``B(x) P`` at any x."""
        return self.base.raw_basis(x) @ self.P_

    def fit_design(self, x, codes, n_levels):
        """Fit at the training rows (``codes``: each row's level, 0 .. n_levels - 1):
        ``(F, Z)`` with F empty and Z the sparse (n, n_levels * k) design, level-major."""
        self.n_levels_ = int(n_levels)
        self._train = (codes, self.fit_values(x))
        return np.zeros((len(codes), 0)), self._expand(*self._train)

    def design(self, x, codes):
        return np.zeros((len(codes), 0)), self._expand(codes, self.values(x))

    def _expand(self, codes, values):
        n, k = values.shape
        cols = codes[:, None] * k + np.arange(k)[None, :]
        return sp.csr_array((values.ravel(), cols.ravel(), np.arange(0, n * k + 1, k)),
                            shape=(n, self.n_levels_ * k))

    def random_term(self, levels):
        """The engine's term: one level per factor level, ``k`` columns, one theta per penalty
        (the range space, then each null-space direction)."""
        codes, values = self.__dict__.pop("_train")  # (not kept with the fitted model)
        k = values.shape[1]
        a = np.zeros((self.n_lambda, k))
        a[0, : self.rank_] = 1.0
        for j in range(self.n_null_):
            a[1 + j, self.rank_ + j] = 1.0
        return RandomTerm(name=self.name, levels=np.asarray(levels), codes=codes, values=values,
                          column_names=[f"{self.name}.{i}" for i in range(k)], correlated=False,
                          scalar=True, penalties=a, penalty_names=self.penalty_names())

    def penalty_names(self):
        return ["wiggly"] + [f"null{j + 1}" for j in range(self.n_null_)]

    def lambda_from_theta(self, theta):
        """mgcv's smoothing parameters: range penalty ``scale^2 I``, null-space penalties 1."""
        theta = np.asarray(theta, dtype=float)
        s = np.r_[self.range_penalty_, np.ones(self.n_null_)]
        with np.errstate(divide="ignore"):
            return np.where(theta == 0, np.inf, 1.0 / (theta**2 * s))

    def theta_from_lambda(self, lam):
        s = np.r_[self.range_penalty_, np.ones(self.n_null_)]
        return 1.0 / np.sqrt(np.broadcast_to(np.asarray(lam, dtype=float), s.shape) * s)

