"""Penalized regression spline bases and their mixed-model reparameterization.

A smooth ``f(x) = B(x) beta`` with penalty ``lambda beta' S beta`` becomes a mixed-model term
(Wood 2006, section 6.6; the seed's "additive model as a mixed model"):

1. absorb the identifiability constraint ``sum_i f(x_i) = 0`` (``1' B beta = 0``) by a QR
   decomposition of ``B' 1``: ``beta = Q_c beta_c`` with ``Q_c`` the last ``k - 1`` columns of Q;
2. eigen-decompose the constrained penalty ``S_c = U D U'``;
3. the null-space columns ``B Q_c U_0`` are unpenalized: they join the fixed effects;
4. the range-space columns ``Z = B Q_c U_+ D_+^{-1/2}`` form a random-effect term whose
   coefficients are iid ``N(0, sigma^2 / lambda)``: one variance, estimated by REML or ML like
   every other variance component.

Bases (``basis=``):

``"cr"``
    Cubic regression spline (natural cubic spline) parameterized by its values at ``k`` knots
    placed at quantiles of the unique x values, with penalty ``int f''(x)^2 dx`` (Wood 2006,
    section 4.1.2); linear beyond the boundary knots.
``"ps"``
    P-spline (Eilers and Marx 1996): ``k`` cubic B-splines on equally spaced knots with a
    second-order difference penalty (:func:`ps_basis`; the basis of scikit-learn's
    ``SplineTransformer`` with ``extrapolation="linear"``, built here from scipy's ``BSpline``).
``"rk"``
    The cubic smoothing-spline basis on [0, 1] of Wood (2006), section 3.2, used in the seed:
    ``[1, x, R(x, z_1), ..., R(x, z_{k-2})]`` with the reproducing kernel ``R`` and penalty
    ``S_ij = R(z_i, z_j)`` on the kernel columns; x is scaled to [0, 1] by its training range.
``"cc"``
    Cyclic cubic regression spline (:mod:`~sklmm._engine.smooth_bases`): ``k`` knots, the last
    one the first one again, so ``k - 1`` functions; its penalty's null space, the constant, is
    removed by the constraint, so the term has no fixed-effect columns.
``"tp"``
    Thin plate regression spline (:class:`~sklmm._engine.smooth_bases.ThinPlateBasis`) of one
    or more variables: x of shape (n,) or (n, d).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import BSpline
from scipy.linalg import qr

from .smooth_bases import (
    ThinPlateBasis,
    cc_basis,
    cc_knots,
    cc_matrices,
    quantile_knots,
)
from .terms import RandomTerm

__all__ = ["SmoothTerm", "BASES", "cr_knots", "cr_basis", "cr_penalty", "ps_basis", "rk"]

BASES = ("cr", "ps", "rk", "cc", "tp")


# ----------------------------------------------------------------------------- cubic regression


def cr_knots(x, k):
    """``k`` knots at evenly spaced quantiles of the unique values of x (ends included)."""
    xu = np.unique(x)
    if len(xu) < k:
        raise ValueError(
            f"a cubic regression spline with n_basis={k} needs at least {k} distinct values of "
            f"the feature; it has {len(xu)}. Lower n_basis."
        )
    return quantile_knots(xu, k)


def _cr_matrices(knots):
    """``F`` (second derivatives at the knots from the values) and the penalty ``D' B^{-1} D``."""
    k = len(knots)
    h = np.diff(knots)
    D = np.zeros((k - 2, k))
    Bm = np.zeros((k - 2, k - 2))
    for i in range(k - 2):
        D[i, i] = 1.0 / h[i]
        D[i, i + 1] = -1.0 / h[i] - 1.0 / h[i + 1]
        D[i, i + 2] = 1.0 / h[i + 1]
        Bm[i, i] = (h[i] + h[i + 1]) / 3.0
        if i + 1 < k - 2:
            Bm[i, i + 1] = Bm[i + 1, i] = h[i + 1] / 6.0
    BinvD = np.linalg.solve(Bm, D)
    F = np.vstack([np.zeros(k), BinvD, np.zeros(k)])
    return F, D.T @ BinvD


def cr_penalty(knots):
    """``int f''(x)^2 dx`` as a quadratic form in the values of f at the knots."""
    return _cr_matrices(knots)[1]


def cr_basis(x, knots):
    """Natural cubic spline basis: column j is the spline with value 1 at knot j, 0 at the others."""
    x = np.asarray(x, dtype=float)
    k = len(knots)
    F, _ = _cr_matrices(knots)
    h = np.diff(knots)
    X = np.zeros((len(x), k))
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, k - 2)
    inside = (x >= knots[0]) & (x <= knots[-1])
    xi, ji = x[inside], j[inside]
    hj = h[ji]
    dm, dp = knots[ji + 1] - xi, xi - knots[ji]
    cm = (dm**3 / hj - hj * dm) / 6.0
    cp = (dp**3 / hj - hj * dp) / 6.0
    rows = np.flatnonzero(inside)
    # the values' part (dm e_j + dp e_{j+1}) / h_j and the second derivatives' part
    # cm_i F[j_i] + cp_i F[j_i + 1] as one sparse product with [I; F], four entries per row
    # (a sparse-dense product: ~4x the speed of gathering rows of F)
    data = np.empty((len(rows), 4))
    data[:, 0], data[:, 1], data[:, 2], data[:, 3] = dm / hj, dp / hj, cm, cp
    cols = np.empty((len(rows), 4), dtype=np.intp)
    cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3] = ji, ji + 1, ji + k, ji + k + 1
    W = sp.csr_matrix((data.ravel(), cols.ravel(), np.arange(0, 4 * len(rows) + 1, 4)), shape=(len(rows), 2 * k))
    IF = np.vstack([np.eye(k), F])
    if len(rows) == len(x):
        X = np.asarray(W @ IF)
    else:
        X[rows] = W @ IF
    # linear continuation beyond the boundary knots (second derivative 0 there)
    for side in ("left", "right"):
        mask = x < knots[0] if side == "left" else x > knots[-1]
        if not mask.any():
            continue
        if side == "left":
            h0, a, b = h[0], 0, 1
            value = np.eye(k)[0]
            slope = (np.eye(k)[b] - np.eye(k)[a]) / h0 - h0 / 3.0 * F[a] - h0 / 6.0 * F[b]
            dx = x[mask] - knots[0]
        else:
            h0, a, b = h[-1], k - 2, k - 1
            value = np.eye(k)[-1]
            slope = (np.eye(k)[b] - np.eye(k)[a]) / h0 + h0 / 6.0 * F[a] + h0 / 3.0 * F[b]
            dx = x[mask] - knots[-1]
        X[mask] = value[None, :] + dx[:, None] * slope[None, :]
    return X


# ----------------------------------------------------------------------------- P-splines


def _ps_spline(base_knots, degree=3):
    """The B-spline basis on ``base_knots`` extended by ``degree`` knots at each end with the
    spacing of the first and last pair (Eilers and Marx's advice against repeated end knots)."""
    lo, hi = base_knots[1] - base_knots[0], base_knots[-1] - base_knots[-2]
    knots = np.r_[
        np.linspace(base_knots[0] - degree * lo, base_knots[0] - lo, num=degree),
        base_knots,
        np.linspace(base_knots[-1] + hi, base_knots[-1] + degree * hi, num=degree),
    ]
    k = len(base_knots) + degree - 1
    return BSpline.construct_fast(knots, np.eye(k), degree, extrapolate=False)


def ps_basis(x, base_knots, degree=3):
    """The ``len(base_knots) + degree - 1`` B-splines at x, continued linearly beyond the end knots.

    Inside ``[base_knots[0], base_knots[-1]]`` column j is the j-th B-spline; beyond the ends the
    ``degree`` splines that do not vanish there continue along their tangent at the end knot.
    """
    x = np.asarray(x, dtype=float)
    spl = _ps_spline(np.asarray(base_knots, dtype=float), degree)
    k = spl.c.shape[1]
    lo, hi = base_knots[0], base_knots[-1]
    out = np.zeros((len(x), k))
    inside = (lo <= x) & (x <= hi)
    out[inside] = spl(x[inside])
    below, above = x < lo, x > hi
    if below.any() or above.any():
        f_lo, f_hi = spl(lo), spl(hi)
        d_lo, d_hi = spl(lo, nu=1), spl(hi, nu=1)
        for j in range(degree):
            out[below, j] = f_lo[j] + (x[below] - lo) * d_lo[j]
            out[above, k - 1 - j] = f_hi[k - 1 - j] + (x[above] - hi) * d_hi[k - 1 - j]
    return out


# ----------------------------------------------------------------------------- seed's rk basis


def rk(x, z):
    """The reproducing kernel of the cubic smoothing spline on [0, 1] (Wood 2006, section 3.2)."""
    x = np.asarray(x, dtype=float)[:, None]
    z = np.asarray(z, dtype=float)[None, :]
    d = np.abs(x - z)
    return ((z - 0.5) ** 2 - 1 / 12) * ((x - 0.5) ** 2 - 1 / 12) / 4 - (
        (d - 0.5) ** 4 - (d - 0.5) ** 2 / 2 + 7 / 240
    ) / 24


# ----------------------------------------------------------------------------- the term


def _checked_knots(knots, name):
    """User knots, sorted: finite, distinct (a basis on repeated knots is singular)."""
    try:
        k = np.sort(np.asarray(knots, dtype=float).ravel())
    except (TypeError, ValueError):
        raise ValueError(f"{name}: knots must be numbers; got {knots!r}.") from None
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name}: knots must be finite numbers; got {list(knots)}.")
    if np.any(np.diff(k) == 0):
        dup = sorted(set(k[1:][np.diff(k) == 0].tolist()))
        raise ValueError(
            f"{name}: the knots repeat {dup} (quantiles of a feature with few distinct values "
            "do); give distinct knots, e.g. np.unique(knots), with n_basis to match."
        )
    return k


#: rows per block of :meth:`SmoothTerm.raw_basis`
BASIS_BLOCK_ROWS = 65536


class SmoothTerm:
    """One smooth of one feature: basis, penalty, constraint and mixed-model split.

    Parameters
    ----------
    name : str
        Display name, ``"s(feature)"``.
    column : int
        Column of X the smooth is a function of.
    basis : {"cr", "ps", "rk", "cc", "tp"}
    n_basis : int
        Basis dimension ``k`` (mgcv's ``k``): the number of basis functions before the
        identifiability constraint, except for ``cc``, whose ``k`` knots give ``k - 1`` functions.
    knots : array-like or None
        Knots in the units of the feature (``cr``: the k knots; ``rk``: the k - 2 kernel knots;
        ``ps``: the k - 2 equally spaced base knots; ``cc``: the k knots, or the two ends of the
        period; ``tp``: at least k points, shape (n_knots,) or (n_knots, d), whose spline is
        truncated). None places them from the data.
    """

    def __init__(self, name, column, basis, n_basis, knots=None):
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}; got {basis!r}.")
        min_k = {"rk": 3, "cr": 3, "tp": 1}.get(basis, 4)  # (as mgcv; tp's depends on d: checked in fit)
        if int(n_basis) < min_k:
            raise ValueError(f"n_basis (mgcv's k) must be at least {min_k} for basis {basis!r}; got {n_basis}.")
        self.name = name
        self.column = column
        self.basis = basis
        self.n_basis = int(n_basis)
        if knots is not None and basis == "tp" and np.ndim(knots) == 2:
            self.user_knots = np.asarray(knots, dtype=float)  # points: ThinPlateBasis checks them
        else:
            self.user_knots = None if knots is None else _checked_knots(knots, name)

    # -- raw basis and penalty ------------------------------------------------------------
    def _setup(self, x):
        k = self.n_basis
        if self.basis == "cr":
            self.knots_ = cr_knots(x, k) if self.user_knots is None else self.user_knots
            if len(self.knots_) != k:
                raise ValueError(f"{self.name}: basis 'cr' needs n_basis={k} knots; got {len(self.knots_)}.")
            self.S_raw_ = cr_penalty(self.knots_)
        elif self.basis == "ps":
            if self.user_knots is None:
                lo, hi = float(np.min(x)), float(np.max(x))
                pad = 0.001 * (hi - lo)
                self.knots_ = np.linspace(lo - pad, hi + pad, k - 2)
            else:
                self.knots_ = self.user_knots
            if len(self.knots_) != k - 2:
                raise ValueError(f"{self.name}: basis 'ps' needs n_basis - 2 = {k - 2} knots.")
            # the whole knot sequence, end knots included (mgcv's ``smooth$knots``)
            self.knot_sequence_ = _ps_spline(self.knots_).t
            D = np.diff(np.eye(k), n=2, axis=0)
            self.S_raw_ = D.T @ D
        elif self.basis == "cc":
            knots = self.user_knots
            if knots is None or len(knots) == 2:
                knots = cc_knots(x, k, ends=knots, name=self.name)
            if len(knots) != k:
                raise ValueError(
                    f"{self.name}: basis 'cc' needs n_basis={k} knots, or the period's 2 ends; got "
                    f"{len(knots)}.")
            self.knots_ = knots
            self._cc_F, self.S_raw_ = cc_matrices(knots)
        elif self.basis == "tp":
            self._tp = ThinPlateBasis(k, knots=self.user_knots, name=self.name)
            B = self._tp.fit(x)
            self.knots_ = self._tp.knots_[:, 0] if self._tp.d_ == 1 else self._tp.knots_
            self.S_raw_ = self._tp.penalty_
            return B
        else:  # rk
            self.x_min_, self.x_max_ = float(np.min(x)), float(np.max(x))
            xs = self._scale(x)
            if self.user_knots is None:
                xu = np.unique(xs)
                self.knots_ = np.quantile(xu, np.linspace(0, 1, k)[1:-1])
            else:
                self.knots_ = self._scale(self.user_knots)
            if len(self.knots_) != k - 2:
                raise ValueError(f"{self.name}: basis 'rk' needs n_basis - 2 = {k - 2} knots.")
            S = np.zeros((k, k))
            S[2:, 2:] = rk(self.knots_, self.knots_)
            self.S_raw_ = S

    def _scale(self, x):
        span = self.x_max_ - self.x_min_
        return (np.asarray(x, dtype=float) - self.x_min_) / (span if span > 0 else 1.0)

    def raw_basis(self, x):
        """The unconstrained basis ``B(x)``, shape (n, n_basis): computed in blocks of
        ``BASIS_BLOCK_ROWS`` rows into one array, so that its temporaries (a few per column)
        are small, reused allocations rather than fresh row-sized ones (each of which costs
        its page faults when first written: on the benchmark machine, a large share of a basis
        built in one piece at 10^6 rows)."""
        x = np.asarray(x, dtype=float)
        n = x.shape[0]
        if n <= BASIS_BLOCK_ROWS:
            return self._raw_basis(x)
        first = self._raw_basis(x[:BASIS_BLOCK_ROWS])
        out = np.empty((n, first.shape[1]))
        out[:BASIS_BLOCK_ROWS] = first
        for a in range(BASIS_BLOCK_ROWS, n, BASIS_BLOCK_ROWS):
            out[a : a + BASIS_BLOCK_ROWS] = self._raw_basis(x[a : a + BASIS_BLOCK_ROWS])
        return out

    def _raw_basis(self, x):
        if self.basis == "tp":
            return self._tp.basis(x)
        if self.basis == "cc":
            return cc_basis(x, self.knots_, self._cc_F)
        if self.basis == "cr":
            return cr_basis(x, self.knots_)
        if self.basis == "ps":
            return ps_basis(x, self.knots_)
        xs = self._scale(x)
        return np.column_stack([np.ones_like(xs), xs, rk(xs, self.knots_)])

    def unconstrained_basis(self, x):
        """Place the knots from the training values x and return the unconstrained basis
        ``B(x)`` (its penalty is ``S_raw_``)."""
        x = np.asarray(x, dtype=float)
        if x.ndim > 1 and self.basis != "tp":
            raise ValueError(f"{self.name}: basis {self.basis!r} smooths one variable; x has shape {x.shape}.")
        n_unique = len(np.unique(x)) if x.ndim == 1 else len(np.unique(x, axis=0))
        if n_unique < 3:
            raise ValueError(
                f"{self.name}: the feature has {n_unique} distinct values; a smooth needs "
                "at least 3 (enter it linearly instead)."
            )
        B = self._setup(x)
        return self.raw_basis(x) if B is None else B

    def null_space_dim(self):
        """Dimension of the unconstrained penalty's null space (after :meth:`unconstrained_basis`):
        known for each basis, so that a wide range of eigenvalues (large k) is never mistaken
        for it."""
        return {"cc": 1, "tp": getattr(getattr(self, "_tp", None), "n_null_", 2)}.get(self.basis, 2)

    # -- constraint and mixed-model split -------------------------------------------------
    def fit(self, x):
        """Place knots, absorb the sum-to-zero constraint, split into fixed and random parts."""
        self.fit_design(x)
        return self

    def fit_design(self, x, by=None, constrain=True):
        """:meth:`fit`, returning :meth:`design` at the training values (one basis evaluation).

        ``by``: a numeric variable multiplying the smooth (mgcv's ``s(x, by = z)``, a varying
        coefficient; for a factor's level, its 0/1 indicator). ``constrain=False`` keeps the
        basis without the sum-to-zero constraint (a numeric ``by``: the constant times z is then
        the smooth's to fit). A constrained ``by`` smooth (a factor's level) is constrained as
        mgcv's ``smoothCon`` does it, before the product with the indicator: the curve sums to
        zero over all the rows' values of x, not only over its level's (the same model when the
        factor's main effect is in the model, as it usually is; another one without it).
        """
        B = self.unconstrained_basis(x)
        self.by_ = by is not None
        C = B.sum(axis=0)  # (the constraint, from the basis before any by)
        if by is not None:
            B = B * np.asarray(by, dtype=float)[:, None]
        if constrain:
            Q, _ = qr(C[:, None])  # full QR of B'1
            self.Qc_ = Q[:, 1:]
        else:
            self.Qc_ = np.eye(B.shape[1])
        Sc = self.Qc_.T @ self.S_raw_ @ self.Qc_
        Sc = 0.5 * (Sc + Sc.T)
        d, U = np.linalg.eigh(Sc)
        # the penalty's null space minus the constant (which the constraint removes)
        n_null = self.null_space_dim() - (1 if constrain else 0)
        pos = np.arange(len(d)) >= n_null  # eigh: ascending
        self.U0_ = U[:, ~pos]
        M = self.Qc_ @ (U[:, pos] / np.sqrt(d[pos]))  # B M: the random columns before scaling
        # rescale the penalty so that at theta = 1 the prior and the data weigh the penalized
        # coefficients equally on average (mean diagonal of Z'Z = 1), as mgcv's initial
        # smoothing parameters do: theta = 1 is then a start from which the optimizer finds
        # the REML optimum rather than a boundary at either end (from B'B: no n-row temporaries)
        self.penalty_scale_ = 1.0 / np.mean(np.einsum("ij,ik,kj->j", M, B.T @ B, M))
        self.Uplus_ = U[:, pos] / np.sqrt(d[pos]) * np.sqrt(self.penalty_scale_)
        return B @ (self.Qc_ @ self.U0_), B @ (M * np.sqrt(self.penalty_scale_))

    @property
    def n_fixed(self):
        return self.U0_.shape[1]

    @property
    def n_random(self):
        return self.Uplus_.shape[1]

    def design(self, x, by=None):
        """Fixed (null-space) and random (range-space) columns of the smooth at x (times the
        ``by`` variable's values, for a smooth fitted with one)."""
        B = self.raw_basis(x)
        if by is not None:
            B = B * np.asarray(by, dtype=float)[:, None]
        Bc = B @ self.Qc_
        return Bc @ self.U0_, Bc @ self.Uplus_

    def random_term(self, Z):
        """The engine's term for the random columns Z: one "level", ``T = theta I``."""
        return RandomTerm(name=self.name, levels=np.array([self.name]), codes=np.zeros(Z.shape[0], dtype=np.intp),
                          values=Z, column_names=[f"{self.name}.{i}" for i in range(Z.shape[1])],
                          correlated=False, scalar=True)

    def theta_from_lambda(self, lam):
        """theta for a given smoothing parameter (inf gives 0)."""
        return 1.0 / np.sqrt(float(np.atleast_1d(lam)[0]) * self.penalty_scale_)

    def lambda_from_theta(self, theta):
        """Smoothing parameter ``lambda`` of ``||y - f||^2 + lambda beta' S beta`` (unscaled S)."""
        return np.inf if theta == 0 else 1.0 / (theta**2 * self.penalty_scale_)
