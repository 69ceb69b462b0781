"""Random-effect terms: from group labels and slope columns to the blocks of Z and Lambda.

A term is one grouping factor with ``p`` random coefficients per level (an intercept and/or
slopes).  Its columns of ``Z`` are ordered level-major (level 0's ``p`` coefficients, then
level 1's, ...), as in lme4, so that ``Z_k' Z_k`` is block diagonal with ``p x p`` blocks and
``Lambda_k = I_{n_levels} (x) T_k`` with ``T_k`` a lower-triangular ``p x p`` template.

The covariance parameters ``theta`` of a term are the free entries of ``T_k`` in column-major
lower-triangular order (lme4's order): all of them for an unstructured covariance
(lme4 ``(x | g)``), only the diagonal for independent coefficients (lme4 ``(x || g)``).
Diagonal entries are bounded below by 0, off-diagonal entries are free.  A penalized smooth is
a term with a single "level" whose ``p`` columns share one variance: ``T_k = theta_k I``
(``scalar=True``).  A smooth with several penalties (a tensor product, one per margin) made
diagonal together (:mod:`sklmm._engine.tensor`) is a scalar term with ``penalties`` ``a`` of
shape (n_penalties, p): one theta per penalty, bounded below by 0, and the diagonal template
``T_ii = (sum_j a_ji / theta_j^2)^(-1/2)`` (the relative precision of coefficient i is
``sum_j a_ji / theta_j^2``; 0 where a theta_j with ``a_ji > 0`` is 0).

A correlated term with an intercept and slope columns far from centred (a calendar year, a
timestamp) is fitted in centred coordinates: its slope columns are shifted by their means
(``shift``), which is the same model (the intercept is then at the mean instead of at 0) and
a well-conditioned one. ``theta``, the templates and the conditional modes of the engine are in
those coordinates; :func:`user_theta`, :meth:`RandomTerm.user_template`,
:meth:`RandomTerm.user_coefficients` and :meth:`RandomTerm.user_covariances` give them in the
user's (lme4's: the intercept at x = 0), and :func:`internal_theta` goes back.

This module imports nothing from scikit-learn; it works on plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RandomTerm", "theta_layout", "templates", "user_theta", "internal_theta", "UNCENTRED_SLOPE_RATIO"]

#: above this |mean| / sd a random slope's column makes intercept and slope nearly collinear:
#: a correlated term is then fitted in centred coordinates (see :meth:`RandomTerm.centre_slopes`)
UNCENTRED_SLOPE_RATIO = 30.0


def _lower_factor(A):
    """The lower-triangular L with non-negative diagonal and ``L L' = A A'`` (any square A,
    singular ones included: from the QR decomposition of ``A'``)."""
    R = np.linalg.qr(A.T, mode="r")
    L = R.T
    return L * np.where(np.diagonal(L) < 0, -1.0, 1.0)[None, :]


@dataclass
class RandomTerm:
    """One random-effect term ``(cols | factor)``.

    Parameters
    ----------
    name : str
        Name of the grouping factor (``"Subject"``, ``"cask:batch"``, ...).
    levels : ndarray
        The level labels, in the order of the columns of ``Z``.
    codes : ndarray of int, shape (n_samples,)
        Level index of each row.
    values : ndarray, shape (n_samples, p)
        The rows of the term's model matrix (1 for an intercept, the slope feature values).
    column_names : list of str
        Names of the ``p`` coefficients (``"(Intercept)"``, feature names).
    correlated : bool
        Unstructured covariance (True) or independent coefficients (False).
    slope_columns : list of int
        Indices into X of the slope columns (the intercept is not listed).
    intercept : bool
        Whether the term has a random intercept (as its first coefficient).
    scalar : bool
        One parameter for all coefficients, ``T_k = theta_k I`` (penalized smooths).
    shift : ndarray of shape (p,) or None
        What was subtracted from each column of ``values`` (0 for the intercept); None when
        the term is in the user's coordinates. Set by :meth:`centre_slopes`.
    penalties : ndarray of shape (n_penalties, p) or None
        A scalar term with several penalties (see the module docstring): non-negative, each
        column with a positive entry.
    penalty_names : list of str or None
        Names of the penalties in :meth:`theta_names` (default 1, 2, ...).
    """

    name: str
    levels: np.ndarray
    codes: np.ndarray
    values: np.ndarray
    column_names: list
    correlated: bool = True
    slope_columns: list = field(default_factory=list)
    intercept: bool = True
    scalar: bool = False
    shift: np.ndarray = None
    penalties: np.ndarray = None
    penalty_names: list = None

    def __post_init__(self):
        p = self.n_coef
        if self.penalties is not None:
            a = self.penalties = np.atleast_2d(np.asarray(self.penalties, dtype=float))
            if not self.scalar or a.shape[1] != p or np.any(a < 0) or np.any(a.sum(axis=0) <= 0):
                raise ValueError(f"{self.name}: penalties must be a non-negative (n_penalties, {p}) array "
                                 "with a positive entry per coefficient, for a scalar term.")
            rows = cols = list(range(a.shape[0]))
        elif self.scalar:
            rows = cols = [0]
        elif self.correlated:
            rows, cols = [], []
            for j in range(p):  # column-major lower triangle, as lme4
                for i in range(j, p):
                    rows.append(i)
                    cols.append(j)
        else:
            rows = cols = list(range(p))
        self.tri_rows = np.asarray(rows, dtype=np.intp)
        self.tri_cols = np.asarray(cols, dtype=np.intp)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_coef(self) -> int:
        return self.values.shape[1] if self.values is not None else len(self.column_names)

    @property
    def q(self) -> int:
        """Number of columns of this term's block of Z."""
        return self.n_levels * self.n_coef

    @property
    def n_theta(self) -> int:
        return len(self.tri_rows)

    def theta_lower(self) -> np.ndarray:
        return np.where(self.tri_rows == self.tri_cols, 0.0, -np.inf)

    def theta_start(self) -> np.ndarray:
        return np.where(self.tri_rows == self.tri_cols, 1.0, 0.0)

    def theta_names(self) -> list:
        if self.penalties is not None:
            names = self.penalty_names or [str(j + 1) for j in range(self.n_theta)]
            return [f"{self.name}.(scale){nm}" for nm in names]
        if self.scalar:
            return [f"{self.name}.(scale)"]
        out = []
        for i, j in zip(self.tri_rows, self.tri_cols):
            if i == j:
                out.append(f"{self.name}.{self.column_names[i]}")
            else:
                out.append(f"{self.name}.{self.column_names[i]}.{self.column_names[j]}")
        return out

    def template(self, theta_k: np.ndarray) -> np.ndarray:
        """The lower-triangular relative covariance factor ``T_k`` for this term's theta."""
        p = self.n_coef
        if self.penalties is not None:
            return np.diag(self.penalized_diagonal(theta_k))
        if self.scalar:
            return float(theta_k[0]) * np.eye(p)
        T = np.zeros((p, p))
        T[self.tri_rows, self.tri_cols] = theta_k
        return T

    def penalized_diagonal(self, theta_k):
        """``T_ii = (sum_j a_ji / theta_j^2)^(-1/2)`` of a term with ``penalties`` (the limit 0
        where a theta_j with ``a_ji > 0`` is 0; even in each theta_j)."""
        a = self.penalties
        t2 = np.asarray(theta_k, dtype=float)[:, None] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(a > 0, a / t2, 0.0).sum(axis=0)  # inf where a theta_j is 0
            return 1.0 / np.sqrt(prec)

    def penalized_derivatives(self, theta_k):
        """``dT_ii / dtheta_j`` (n_penalties, p) of a term with ``penalties``:
        ``a_ji T_ii^3 / theta_j^3 = a_ji (T_ii / theta_j)^3``; at ``theta_j = 0`` its one-sided
        limit ``a_ji^(-1/2)`` (0 when another theta with a positive penalty is 0 too)."""
        a = self.penalties
        t = np.asarray(theta_k, dtype=float)
        diag = self.penalized_diagonal(t)
        zero = t == 0
        out = np.zeros_like(a)
        pos = ~zero
        if pos.any():
            out[pos] = a[pos] * (diag[None, :] / t[pos, None]) ** 3
        if zero.any():
            blocked = np.sum(a[zero] > 0, axis=0)  # penalties whose theta is 0, per coefficient
            with np.errstate(divide="ignore"):
                lim = np.where((a[zero] > 0) & (blocked == 1), 1.0 / np.sqrt(a[zero]), 0.0)
            out[zero] = lim
        return out

    # -- centred coordinates ---------------------------------------------------------------
    def slope_moments(self, G):
        """Mean and sd over the rows of each slope column, from the term's Gram matrix ``G``
        (``values' values``, the intercept first); None without an intercept or a slope."""
        if self.scalar or not self.intercept or self.n_coef < 2 or not G[0, 0] > 0:
            return None
        mean = G[0, 1:] / G[0, 0]
        return mean, np.sqrt(np.clip(np.diag(G)[1:] / G[0, 0] - mean**2, 0, None))

    def centre_slopes(self, gram=None, ratio=UNCENTRED_SLOPE_RATIO):
        """Shift the slope columns whose |mean| / sd exceeds ``ratio`` by their means, in place.

        Only for a correlated term with an intercept, where the shift is the same model
        (``z b = (z M) (M^{-1} b)``); ``gram`` is ``values' values`` (computed when not given).
        Call it before the cross-products are formed. Returns the shift, or None.
        """
        if self.scalar or not self.correlated or not self.intercept or self.n_coef < 2:
            return None
        moments = self.slope_moments(self.values.T @ self.values if gram is None else gram)
        if moments is None:
            return None
        mean, sd = moments
        far = (sd > 0) & (np.abs(mean) > ratio * sd)
        if not far.any():
            return None
        self.shift = np.r_[0.0, np.where(far, mean, 0.0)]
        if self.values is not None:
            self.values = self.values - self.shift
        return self.shift

    def _shift_matrix(self, sign=1.0):
        """``M`` with ``z_centred = z M`` (``sign=1``), or its inverse (``sign=-1``)."""
        M = np.eye(self.n_coef)
        M[0, :] -= sign * self.shift
        M[0, 0] = 1.0
        return M

    def user_template(self, theta_k):
        """``T_k`` in the user's coordinates: the lower factor of ``M T T' M'``."""
        T = self.template(theta_k)
        return T if self.shift is None else _lower_factor(self._shift_matrix() @ T)

    def internal_theta(self, T_user):
        """This term's theta (in its own coordinates) for a template in the user's."""
        T = T_user if self.shift is None else _lower_factor(self._shift_matrix(-1.0) @ T_user)
        return T[self.tri_rows, self.tri_cols]

    def user_coefficients(self, b):
        """Conditional modes (n_levels, p) in the user's coordinates, ``b = M b_centred``."""
        return b if self.shift is None else b @ self._shift_matrix().T

    def user_covariances(self, V):
        """Covariances (n_levels, p, p) of the coefficients in the user's coordinates, ``M V M'``."""
        if self.shift is None:
            return V
        M = self._shift_matrix()
        return np.einsum("ab,jbc,dc->jad", M, V, M)

    def rows(self, X):
        """The term's model-matrix rows at X (1 for the intercept, then the slope columns), in
        the term's coordinates."""
        out = np.hstack([np.ones((X.shape[0], 1 if self.intercept else 0)), X[:, self.slope_columns]])
        return out if self.shift is None else out - self.shift

    def strip_data(self):
        """Drop the per-row arrays once the cross-products are formed (keeps pickles small)."""
        self.codes = None
        self.values = None


def theta_layout(terms):
    """Offsets of each term's block of theta, and of its columns in Z.

    Returns
    -------
    theta_slices : list of slice
    z_offsets : ndarray of int, shape (n_terms + 1,)
    """
    theta_slices, z_offsets = [], [0]
    t0 = 0
    for term in terms:
        theta_slices.append(slice(t0, t0 + term.n_theta))
        t0 += term.n_theta
        z_offsets.append(z_offsets[-1] + term.q)
    return theta_slices, np.asarray(z_offsets, dtype=np.intp)


def templates(terms, theta):
    """The ``T_k`` of every term for a full theta vector."""
    slices, _ = theta_layout(terms)
    return [term.template(theta[s]) for term, s in zip(terms, slices)]


def user_theta(terms, theta):
    """theta in the user's coordinates (lme4's), from the engine's (see :meth:`RandomTerm.centre_slopes`)."""
    if all(t.shift is None for t in terms):
        return theta
    slices, _ = theta_layout(terms)
    out = [theta[s] if t.shift is None else t.user_template(theta[s])[t.tri_rows, t.tri_cols]
           for t, s in zip(terms, slices)]
    return np.concatenate(out) if out else np.zeros(0)


def internal_theta(terms, theta_user):
    """The engine's theta for a theta in the user's coordinates (inverse of :func:`user_theta`)."""
    if all(t.shift is None for t in terms):
        return theta_user
    slices, _ = theta_layout(terms)
    out = [theta_user[s] if t.shift is None else t.internal_theta(t.template(theta_user[s]))
           for t, s in zip(terms, slices)]
    return np.concatenate(out) if out else np.zeros(0)
