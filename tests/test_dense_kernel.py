"""The compiled dense update (sklmm/_engine/_dense_kernel.c) against numpy's products and Cholesky."""

import numpy as np
import pytest
from scipy.linalg import block_diag

from sklmm._engine import _dense_kernel
from sklmm._engine.factor_dense import DenseFactor  # noqa: F401  (hands scipy's dpotrf over)


def _system(rng, blocks, tail):
    """A symmetric positive semi-definite A, Lambda block diagonal (lower-triangular blocks,
    identity on the last ``tail`` columns) and each column's rows ``lo <= r < hi``."""
    lam = block_diag(*[np.tril(rng.normal(size=(b, b))) for b in blocks], np.eye(tail))
    m = lam.shape[0]
    Z = rng.normal(size=(3 * m, m))
    A = Z.T @ Z
    lo, hi, start = [], [], 0
    for b in blocks + [1] * tail:
        for c in range(b):
            lo.append(start + c)
            hi.append(start + b)
        start += b
    return A, lam, np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)


@pytest.mark.parametrize("blocks", [[1] * 7, [2] * 9, [3, 3, 1, 1, 4], [5] * 4])
def test_update_is_the_cholesky_of_the_sandwich(blocks):
    rng = np.random.default_rng(len(blocks))
    tail = 3
    A, lam, lo, hi = _system(rng, blocks, tail)
    m = A.shape[0]
    q = m - tail
    M = lam.T @ A @ lam + np.diag(np.r_[np.ones(q), np.zeros(tail)])
    L = np.linalg.cholesky(M)
    out, work = np.full((m, m), np.nan, order="F"), np.empty((m, m))
    parts = _dense_kernel.dense_update(A, lam, lo, hi, m, q, work, out.T)
    np.testing.assert_allclose(out, L, rtol=1e-10, atol=1e-10)  # (upper triangle zeroed)
    d = np.log(np.diag(L))
    np.testing.assert_allclose(parts, [2 * d[:q].sum(), 2 * d[q:-1].sum(), L[-1, -1] ** 2], rtol=1e-10)


def test_update_says_none_when_not_positive_definite_and_refuses_bad_sizes():
    rng = np.random.default_rng(0)
    A, lam, lo, hi = _system(rng, [2, 2], 2)
    m = A.shape[0]
    out, work = np.zeros((m, m)), np.empty((m, m))
    A_bad = A.copy()
    A_bad[-1, -1] = -1.0  # (y's square below what the rest explains: no positive definite M)
    assert _dense_kernel.dense_update(A_bad, lam, lo, hi, m, m - 2, work, out) is None
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _dense_kernel.dense_update(A, lam, lo, hi, m + 1, m - 2, work, out)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _dense_kernel.dense_update(A, lam, lo, hi, m, m, work, out)
    hi_bad = hi.copy()
    hi_bad[0] = m + 1
    with pytest.raises(ValueError, match="rows out of range"):
        _dense_kernel.dense_update(A, lam, lo, hi_bad, m, m - 2, work, out)
    with pytest.raises(TypeError):
        _dense_kernel.set_dpotrf(object())
    # a dpotrf with 64-bit integers (an ILP64 LAPACK) is refused, not called with int pointers
    import ctypes

    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    dummy = ctypes.c_int(0)
    ilp64 = new(ctypes.addressof(dummy), b"void (char *, int64_t *, double *, int64_t *, int64_t *)", None)
    with pytest.raises(TypeError, match="not LAPACK's with int arguments"):
        _dense_kernel.set_dpotrf(ilp64)
    assert _dense_kernel.dense_update(A, lam, lo, hi, m, m - 2, work, out) is not None  # (scipy's kept)


def test_refill_rewrites_the_system_in_place_as_a_new_factor_would():
    """Penalized IRLS refills the dense factor with each step's weights: the system written in
    place at the kept positions equals a factor built afresh (crossed terms, a slope), the
    criterion at any theta too; another pattern of level pairs rebuilds it."""
    from sklmm._engine.crossprod import cross_products
    from sklmm._engine.terms import RandomTerm

    rng = np.random.default_rng(2)
    n = 300
    x = rng.normal(size=n)
    a, b = rng.integers(0, 12, n), rng.integers(0, 5, n)
    terms = [RandomTerm(name="a", levels=np.arange(12), codes=a, values=np.column_stack([np.ones(n), x]),
                        column_names=["(Intercept)", "x"], correlated=True, slope_columns=[0]),
             RandomTerm(name="b", levels=np.arange(5), codes=b, values=np.ones((n, 1)),
                        column_names=["(Intercept)"])]
    X, y = np.column_stack([np.ones(n), x]), rng.normal(size=n)
    factor = DenseFactor(cross_products(terms, X, y), terms)
    A = factor.A
    theta = np.array([0.8, 0.1, 0.5, 0.6])
    for w in (rng.uniform(0.2, 2.0, n), rng.uniform(0.2, 2.0, n)):
        cp = cross_products(terms, X, y, sample_weight=w)
        factor.refill(cp)
        fresh = DenseFactor(cp, terms)
        assert factor.A is A  # (in place)
        np.testing.assert_array_equal(factor.A, fresh.A)
        assert factor.update(theta) == fresh.update(theta)
    keep = b != 4  # level 4 of b gone: another pattern of (a, b) pairs
    sub = [RandomTerm(name=t.name, levels=t.levels, codes=t.codes[keep], values=t.values[keep],
                      column_names=t.column_names, correlated=t.correlated, slope_columns=t.slope_columns)
           for t in terms]
    cp = cross_products(sub, X[keep], y[keep])
    factor = DenseFactor(cross_products(terms, X, y), sub)
    factor.refill(cp)
    np.testing.assert_array_equal(factor.A, DenseFactor(cp, sub).A)
