"""Whitened norms of model-matrix rows: ``|L^{-1} a_i|^2`` for ``a_i = [Lambda' z_i; x_i]``.

``L`` is the Cholesky factor of the penalized least-squares matrix at the factor's last theta
(:mod:`~sklmm._engine.factor`), so ``|L^{-1} a_i|^2 = a_i' M^{-1} a_i``: the conditional
variance of a linear predictor over sigma^2 (predictions' standard errors) and, at the rows of
the fit, their leverages (the outer iteration of :mod:`~sklmm._engine.laml_iteration`). One
triangular solve per row, in chunks, through the factor: a dense block of right-hand sides for
the dense factor, a sparse one for the others.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solve_triangular

from .factor_dense import DenseFactor

__all__ = ["whitened_row_norms", "dense_whitener"]


def whitened_row_norms(factor, terms, Ts, z_off, A, seen_rows, chunk_entries=4_000_000):
    """``|L^{-1} a_i|^2`` for the m rows of ``A`` (the kept fixed-effect columns at the rows).

    ``Ts`` are the terms' templates at the factor's theta, ``z_off`` their column offsets in
    Z; ``seen_rows`` lists per term ``(k, row index, level codes, model-matrix rows)`` for the
    rows whose level the term has (a row missing from a term's list has ``z_i = 0`` there).
    With the dense factor, ``L^{-1} a_i = N g_i`` for the raw row ``g_i = [z_i; x_i]``
    (:func:`dense_whitener`): a matrix product per chunk of rows.
    """
    m = A.shape[0]
    out = np.empty(m)
    q = int(z_off[-1])
    dense = isinstance(factor, DenseFactor)
    # as many rows at once as keep the factor's right-hand sides near chunk_entries
    width = (q if dense else getattr(factor, "qr", getattr(factor, "q", q))) + A.shape[1] + 1
    chunk = max(2048, int(chunk_entries // width))
    if dense:
        NT = dense_whitener(factor, terms, Ts, z_off, A.shape[1])
    for a in range(0, m, chunk):
        b = min(m, a + chunk)
        if dense:
            g = np.zeros((b - a, q + A.shape[1]))
            g[:, q:] = A[a:b]
        rows, cols, vals = [], [], []
        for k, idx, codes, v in seen_rows:
            t = terms[k]
            mask = (idx >= a) & (idx < b)
            if not mask.any():
                continue
            at = idx[mask] - a
            base = z_off[k] + codes[mask].astype(np.int64) * t.n_coef
            if dense:
                for j in range(t.n_coef):
                    g[at, base + j] = v[mask, j]
                continue
            av = v[mask] @ Ts[k]  # (Lambda' z)_level = T' v, as rows
            rows.append((base[:, None] + np.arange(t.n_coef)).ravel())
            cols.append(np.repeat(at, t.n_coef))
            vals.append(av.ravel())
        if dense:
            Y = g @ NT
            out[a:b] = np.einsum("ij,ij->i", Y, Y)
            continue
        Az = sp.csc_matrix(
            (np.concatenate(vals) if vals else np.zeros(0),
             (np.concatenate(rows) if rows else np.zeros(0, np.intp),
              np.concatenate(cols) if cols else np.zeros(0, np.intp))),
            shape=(q, b - a),
        )
        out[a:b] = factor.whitened_norms(Az, A[a:b].T)
    return out


def dense_whitener(factor, terms, Ts, z_off, p):
    """``N'`` with ``N = L^{-1} diag(Lambda', I_p)`` for the dense factor at its last theta, so
    that ``L^{-1} a_i = N g_i`` for the raw row ``g_i = [z_i; x_i]`` of Z and the p fixed columns
    (``a_i = [Lambda' z_i; x_i]``): rows times ``N'`` are whitened rows."""
    q = int(z_off[-1])
    P = np.eye(q + p)
    for k, (t, T) in enumerate(zip(terms, Ts)):
        for j in range(t.n_levels):
            at = int(z_off[k]) + j * t.n_coef
            P[at : at + t.n_coef, at : at + t.n_coef] = T.T
    return solve_triangular(factor._state[:-1, :-1], P, lower=True, check_finite=False).T
