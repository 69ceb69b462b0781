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
(``scalar=True``).

This module imports nothing from scikit-learn; it works on plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RandomTerm", "theta_layout"]


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

    def __post_init__(self):
        p = self.n_coef
        if self.scalar:
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
        if self.scalar:
            return float(theta_k[0]) * np.eye(p)
        T = np.zeros((p, p))
        T[self.tri_rows, self.tri_cols] = theta_k
        return T

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
