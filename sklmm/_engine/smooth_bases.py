"""Cyclic cubic regression splines and thin plate regression splines (mgcv's ``cc`` and ``tp``).

Both are written from the published formulas, not from mgcv's code:

``cc`` (Wood 2017, *Generalized Additive Models*, 2nd ed., section 5.3.2)
    A cubic spline through its values ``beta_j`` at knots ``t_1 < ... < t_k`` whose value, first
    and second derivatives match at ``t_1`` and ``t_k``: the period is ``t_k - t_1``, the value
    at ``t_k`` is the value at ``t_1``, so the spline has ``k - 1`` free values. Its second
    derivatives at the knots are ``delta = B^{-1} D beta`` with the cyclic (wrapped) tridiagonal
    matrices ``B`` and ``D``, and ``int f''(x)^2 dx = beta' D' B^{-1} D beta``. The penalty's
    null space is the constant function alone.

``tp`` (Wood 2003, JRSS-B 65:95-114; Wood 2017, section 5.5.1)
    The thin plate spline of ``d`` variables with penalty order ``m`` (``2m > d``) is
    ``f(x) = sum_i delta_i eta(||x - x_i||) + sum_j alpha_j phi_j(x)`` with ``T' delta = 0``,
    where ``phi_j`` are the ``M = C(m + d - 1, d)`` monomials of degree below ``m`` (the
    penalty's null space), ``T_ij = phi_j(x_i)`` and ``E_ij = eta(||x_i - x_j||)``; its penalty
    is ``delta' E delta``. The rank-``k`` thin plate regression spline keeps the ``k`` eigenvectors
    ``U_k`` of E with the largest absolute eigenvalues ``D_k``: ``delta = U_k Z delta_z`` with
    Z an orthonormal basis of the null space of ``T' U_k`` (the constraint), so the basis is
    ``[E(x, knots) U_k Z, T(x)]`` with penalty ``Z' D_k Z`` on the first ``k - M`` coefficients.
    As mgcv, the knots are the unique data points, the variables are centred on their means
    (the spline does not depend on it; it keeps the polynomial columns well scaled), no
    variable is rescaled, the default order is the smallest ``m`` with ``2m > d + 1``, and each
    basis column is scaled to root mean square 1 over the data (a reparameterization that does
    not change the fit). With more than ``max_knots`` unique points, ``max_knots`` of them are
    drawn at random as knots (mgcv draws with R's generator; here numpy's, seeded, so the
    knots, and therefore the basis, differ from mgcv's in that case).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
from scipy.linalg import eigh, qr
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from scipy.spatial.distance import cdist

__all__ = [
    "quantile_knots", "cc_knots", "cc_matrices", "cc_basis",
    "tps_order", "tps_null_space_dim", "tps_powers", "tps_eta", "ThinPlateBasis",
]


def quantile_knots(xu, k):
    """``k`` knots at evenly spaced positions in the sorted unique values ``xu`` (ends included,
    linear interpolation between order statistics)."""
    pos = np.linspace(0, len(xu) - 1, k)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(xu) - 1)
    return xu[lo] + (pos - lo) * (xu[hi] - xu[lo])


# ----------------------------------------------------------------------------- cyclic cubic


def cc_knots(x, k, ends=None, name="s(x)"):
    """Knots of a cyclic cubic spline: at quantiles of the unique x values, or, with the period's
    two ``ends``, at quantiles of the unique values of x and the ends together (so the first and
    last knots are the ends)."""
    x = np.asarray(x, dtype=float)
    if ends is not None:
        lo, hi = float(ends[0]), float(ends[-1])
        if not lo < hi:
            raise ValueError(f"{name}: the period's ends must differ; got {list(ends)}.")
        outside = (x < lo) | (x > hi)
        if outside.any():
            raise ValueError(
                f"{name}: knots {[lo, hi]} are the ends of the cyclic smooth's period, but "
                f"{int(outside.sum())} value(s) of the feature lie outside them (range "
                f"[{x.min():g}, {x.max():g}]). Give ends that enclose the data."
            )
        x = np.r_[lo, hi, x]
    xu = np.unique(x)
    if len(xu) < k:
        raise ValueError(
            f"{name}: a cyclic cubic spline with n_basis={k} needs at least {k} distinct values of "
            f"the feature{' (with the two ends)' if ends is not None else ''}; it has {len(xu)}. "
            "Lower n_basis."
        )
    return quantile_knots(xu, k)


def cc_matrices(knots):
    """``F = B^{-1} D`` (the second derivatives at the first ``k - 1`` knots from the values
    there) and the penalty ``D' B^{-1} D`` of the cyclic cubic spline on these knots."""
    knots = np.asarray(knots, dtype=float)
    h = np.diff(knots)
    n = len(h)  # k - 1 free values; index n wraps to 0
    D = np.zeros((n, n))
    B = np.zeros((n, n))
    for i in range(n):
        prev, nxt = (i - 1) % n, (i + 1) % n
        hp, hi = h[i - 1], h[i]  # h[-1]: the last interval, next to the first knot
        D[i, prev] += 1.0 / hp
        D[i, i] += -1.0 / hp - 1.0 / hi
        D[i, nxt] += 1.0 / hi
        B[i, prev] += hp / 6.0
        B[i, i] += (hp + hi) / 3.0
        B[i, nxt] += hi / 6.0
    F = np.linalg.solve(B, D)
    S = D.T @ F
    return F, 0.5 * (S + S.T)


def cc_basis(x, knots, F=None):
    """The ``k - 1`` cyclic cubic spline functions at x; x outside ``[knots[0], knots[-1]]`` is
    wrapped into the period."""
    knots = np.asarray(knots, dtype=float)
    if F is None:
        F = cc_matrices(knots)[0]
    n = len(knots) - 1
    lo, period = knots[0], knots[-1] - knots[0]
    x = np.asarray(x, dtype=float)
    x = np.where((x < lo) | (x > knots[-1]), lo + np.mod(x - lo, period), x)
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, n - 1)
    j1 = (j + 1) % n
    h = np.diff(knots)[j]
    left, right = knots[j + 1] - x, x - knots[j]
    cm = (left**3 / h - h * left) / 6.0
    cp = (right**3 / h - h * right) / 6.0
    X = cm[:, None] * F[j] + cp[:, None] * F[j1]
    rows = np.arange(len(x))
    X[rows, j] += left / h
    X[rows, j1] += right / h
    return X


# ----------------------------------------------------------------------------- thin plate


def tps_order(d, m=None):
    """The penalty order: ``m`` when ``2m > d``, else (and by default) the smallest m with
    ``2m > d + 1`` (which makes the fitted surface visually smooth), as mgcv."""
    if m is not None and 2 * int(m) > d:
        return int(m)
    return (d + 3) // 2


def tps_null_space_dim(d, m):
    """``M = C(m + d - 1, d)``: the number of monomials in d variables of degree below m."""
    return math.comb(m + d - 1, d)


def tps_powers(d, m):
    """Exponents of the null-space monomials, shape (M, d): all exponent vectors of total degree
    below m, ordered by the last variable's exponent, then the one before, ... (for d = 2,
    m = 3: 1, x, x^2, z, xz, z^2; the first column is the constant)."""
    powers = [p for p in product(range(m), repeat=d) if sum(p) < m]
    powers.sort(key=lambda p: p[::-1])
    return np.array(powers, dtype=int).reshape(-1, d)


def tps_eta(r, m, d):
    """The thin plate spline's radial function ``eta_md(r)`` (0 at r = 0)::

        d even: (-1)^(m + 1 + d/2) / (2^(2m-1) pi^(d/2) (m-1)! (m-d/2)!) r^(2m-d) log(r)
        d odd:  Gamma(d/2 - m) / (2^(2m) pi^(d/2) (m-1)!) r^(2m-d)
    """
    r = np.asarray(r, dtype=float)
    p = 2 * m - d  # >= 1
    out = r.copy()
    for _ in range(p - 1):  # r^p by products (numpy's power is slow for exponents other than 2)
        out *= r
    if d % 2 == 0:
        c = (-1.0) ** (m + 1 + d // 2) / (
            2.0 ** (2 * m - 1) * math.pi ** (d / 2) * math.factorial(m - 1) * math.factorial(m - d // 2))
        out *= np.log(np.where(r > 0, r, 1.0))  # r^p log r -> 0 as r -> 0
    else:
        c = math.gamma(d / 2 - m) / (2.0 ** (2 * m) * math.pi ** (d / 2) * math.factorial(m - 1))
    out *= c
    return out


def _unique_rows(x):
    return np.unique(x, axis=0)


def _largest_eigen(E, k):
    """The k eigenpairs of the symmetric E with the largest absolute eigenvalues: by Lanczos
    iterations (ARPACK, from a fixed start) when k is small beside E, as mgcv; else all of them."""
    n = E.shape[0]
    if n > 300 and k < n // 3:
        v0 = np.random.default_rng(0).standard_normal(n)
        try:
            w, U = eigsh(E, k, which="LM", v0=v0, tol=0)
        except ArpackNoConvergence:  # pragma: no cover - the full decomposition always works
            w, U = eigh(E)
    else:
        w, U = eigh(E)
    order = np.argsort(-np.abs(w), kind="stable")[:k]
    return w[order], U[:, order]


class ThinPlateBasis:
    """A thin plate regression spline basis of ``d`` variables (see the module docstring).

    Parameters
    ----------
    k : int
        Basis dimension (mgcv's ``k``), at least ``M + 1``.
    m : int, default=None
        Penalty order; None (or ``2m <= d``) takes the smallest m with ``2m > d + 1``.
    knots : array-like of shape (n_knots,) or (n_knots, d), default=None
        Points whose thin plate spline is truncated (at least ``k`` unique ones); None: the unique
        data points.
    max_knots : int, default=2000
        Above this many unique data points, a random subset of this size is the knots.
    seed : int, default=1
        Seed of the subset's draw (numpy's generator).
    name : str
        For error messages.

    Attributes
    ----------
    d_, m_, n_null_ : int
        Set by :meth:`fit`: the number of variables, the penalty order, the null space's dimension.
    shift_ : ndarray (d,)
        The data means subtracted from each variable.
    knots_ : ndarray (n_knots, d)
        The knots, in the data's units.
    penalty_ : ndarray (k, k)
        The penalty (the thin plate spline's ``J(f) = delta' E delta``) in the scaled basis; its
        last M rows and columns (the polynomials) are 0.
    """

    def __init__(self, k, m=None, knots=None, max_knots=2000, seed=1, name="s(x)"):
        self.k, self.m, self.knots, self.max_knots, self.seed, self.name = k, m, knots, max_knots, seed, name

    @staticmethod
    def _as_2d(x):
        x = np.asarray(x, dtype=float)
        return x[:, None] if x.ndim == 1 else x

    def fit(self, x):
        """Set up the basis on the data ``x`` (n,) or (n, d); returns the basis at x."""
        x = self._as_2d(x)
        n, d = x.shape
        self.d_ = d
        self.m_ = tps_order(d, self.m)
        self.n_null_ = tps_null_space_dim(d, self.m_)
        self.powers_ = tps_powers(d, self.m_)
        k = int(self.k)
        if k < self.n_null_ + 1:
            raise ValueError(
                f"{self.name}: a thin plate spline of {d} variable(s) with penalty order m={self.m_} "
                f"has a {self.n_null_}-dimensional null space; n_basis must be at least "
                f"{self.n_null_ + 1}; got {k}."
            )
        self.shift_ = x.mean(axis=0)
        if self.knots is not None:
            kn = self._as_2d(self.knots)
            if kn.shape[1] != d:
                raise ValueError(f"{self.name}: knots must have {d} column(s); got shape {kn.shape}.")
            if not np.all(np.isfinite(kn)):
                raise ValueError(f"{self.name}: knots must be finite numbers.")
            xk = _unique_rows(kn - self.shift_)
            if len(xk) < k:
                raise ValueError(
                    f"{self.name}: a thin plate spline with n_basis={k} needs at least {k} distinct "
                    f"knots; got {len(xk)}."
                )
        else:
            xk = _unique_rows(x - self.shift_)
            if len(xk) < k:
                raise ValueError(
                    f"{self.name}: a thin plate spline with n_basis={k} needs at least {k} distinct "
                    f"values (points) of its variable(s); it has {len(xk)}. Lower n_basis."
                )
            if len(xk) > self.max_knots:
                rng = np.random.default_rng(self.seed)
                xk = xk[np.sort(rng.choice(len(xk), self.max_knots, replace=False))]
        self._xk = xk
        self.knots_ = xk + self.shift_
        E = tps_eta(cdist(xk, xk), self.m_, d)
        w, U = _largest_eigen(E, k)
        T = self._poly(xk)
        M = self.n_null_
        Q, _ = qr(U.T @ T)  # full QR of the k x M matrix U'T: its last k - M columns span null(T'U)
        Z = Q[:, M:]
        self._UZ = U @ Z
        S = np.zeros((k, k))
        Sz = Z.T @ (w[:, None] * Z)
        S[: k - M, : k - M] = 0.5 * (Sz + Sz.T)
        self._scale = np.ones(k)
        B = self.basis(x)
        self._scale = np.sqrt(np.mean(B**2, axis=0))
        self._scale[self._scale == 0] = 1.0
        B /= self._scale
        self.penalty_ = S / np.outer(self._scale, self._scale)
        return B

    def _poly(self, xs):
        return np.prod(xs[:, None, :] ** self.powers_[None, :, :], axis=2)

    def basis(self, x, chunk=4_000_000):
        """The k basis functions at x (n,) or (n, d): ``[E(x, knots) U_k Z, T(x)] / scale``,
        evaluated in blocks of rows (``chunk`` kernel entries at a time)."""
        xs = self._as_2d(x) - self.shift_
        if xs.shape[1] != self.d_:
            raise ValueError(f"{self.name}: the smooth has {self.d_} variable(s); got {xs.shape[1]}.")
        n, kr = len(xs), self._UZ.shape[1]
        out = np.empty((n, kr + self.n_null_))
        step = max(1, chunk // max(1, len(self._xk)))
        for s in range(0, n, step):
            rows = xs[s : s + step]
            out[s : s + step, :kr] = tps_eta(cdist(rows, self._xk), self.m_, self.d_) @ self._UZ
        out[:, kr:] = self._poly(xs)
        return out / self._scale
