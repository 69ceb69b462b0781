"""The compiled Schur kernel (sklmm/_engine/_schur_kernel.c) against the dense sum it forms."""

import pickle

import numpy as np
import pytest

from sklmm._engine import _schur_kernel
from sklmm._engine.factor_schur import SchurKernel, scaled_upper_fill, upper_entries


def _random_pattern(rng, n_levels, m, p1):
    """Entries of a sparse C (m rows x n_levels blocks of p1 columns), some levels empty."""
    rows, levels = [], []
    for j in range(n_levels):
        k = int(rng.integers(0, min(m, 9) + 1)) if j % 5 else 0
        rows.append(rng.choice(m, size=k, replace=False))
        levels.append(np.full(k, j))
    rows, levels = np.concatenate(rows), np.concatenate(levels)
    perm = rng.permutation(len(rows))  # any order: the kernel sorts them
    return rows[perm], levels[perm], rng.normal(size=(len(rows), p1))


def _dense_update(rows, levels, values, G, n_levels, m):
    p1 = values.shape[1]
    C = np.zeros((m, n_levels * p1))
    for r, j, v in zip(rows, levels, values):
        C[r, j * p1 : (j + 1) * p1] = v
    W = np.zeros((n_levels * p1,) * 2)
    for j in range(n_levels):
        W[j * p1 : (j + 1) * p1, j * p1 : (j + 1) * p1] = G[j] @ G[j].T
    return C @ W @ C.T


@pytest.mark.parametrize("p1", [1, 2, 3, 5])
@pytest.mark.parametrize("threads", [1, 3])
def test_kernel_equals_the_dense_sum(p1, threads):
    rng = np.random.default_rng(p1 + 10 * threads)
    n_levels, m = 40, 23
    rows, levels, values = _random_pattern(rng, n_levels, m, p1)
    G = rng.normal(size=(n_levels, p1, p1))
    want = _dense_update(rows, levels, values, G, n_levels, m)
    kernel = SchurKernel(rows, levels, values, n_levels, m, n_threads=threads)
    assert len(kernel.spans) == threads
    M0 = rng.normal(size=(m, m))
    M0 = M0 + M0.T
    M = M0.copy()
    kernel.apply(M, G, mirror=True)
    np.testing.assert_allclose(M, M0 - want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    M = M0.copy()
    kernel.apply(M, G, mirror=False)  # the upper triangle only; the lower one untouched
    iu = np.triu_indices(m)
    np.testing.assert_allclose(M[iu], (M0 - want)[iu], rtol=1e-12, atol=1e-12 * np.abs(want).max())
    np.testing.assert_array_equal(M[np.tril_indices(m, -1)], M0[np.tril_indices(m, -1)])
    # new values of the same entries, and a pickled copy
    values2 = rng.normal(size=values.shape)
    kernel.refill(values2)
    kernel = pickle.loads(pickle.dumps(kernel))
    M = M0.copy()
    kernel.apply(M, G, mirror=True)
    want2 = _dense_update(rows, levels, values2, G, n_levels, m)
    np.testing.assert_allclose(M, M0 - want2, rtol=1e-12, atol=1e-12 * np.abs(want2).max())


def test_kernel_refuses_inconsistent_sizes():
    rows = np.array([0, 1], dtype=np.int32)
    indptr = np.array([0, 2], dtype=np.int64)
    values = np.ones(4)
    W = np.ones(4)
    out = np.zeros(4)
    scale = np.array([1.0, 2.0])
    _schur_kernel.schur_accumulate(rows, indptr, values, W, scale, 2, 0, 1, 2, out)
    np.testing.assert_array_equal(out, [-4.0, -8.0, 0.0, -16.0])  # s_a s_b 4
    with pytest.raises(ValueError, match="inconsistent sizes"):  # out too small for m = 3
        _schur_kernel.schur_accumulate(rows, indptr, values, W, np.ones(3), 2, 0, 1, 3, out)
    with pytest.raises(ValueError, match="inconsistent sizes"):  # values too short for p = 3
        _schur_kernel.schur_accumulate(rows, indptr, values, W, scale, 3, 0, 1, 2, out)
    with pytest.raises(ValueError, match="inconsistent sizes"):  # a scale too short
        _schur_kernel.schur_accumulate(rows, indptr, values, W, scale[:1], 2, 0, 1, 2, out)
    one = np.array([1], dtype=np.int32)
    with pytest.raises(ValueError, match="inconsistent sizes"):  # out too small for m = 3
        _schur_kernel.scaled_upper_fill(one, one, np.ones(1), np.ones(3), 3, np.zeros(4))
    with pytest.raises(ValueError, match="inconsistent sizes"):  # an entry below the diagonal
        _schur_kernel.scaled_upper_fill(one, one - 1, np.ones(1), np.ones(2), 2, np.zeros(4))
    with pytest.raises(ValueError, match="inconsistent sizes"):  # a column outside the block
        _schur_kernel.scaled_upper_fill(one, one + 1, np.ones(1), np.ones(2), 2, np.zeros(4))


def test_row_scales_and_the_scaled_fill():
    """With a row scale S the kernel subtracts S C W C' S, and scaled_upper_fill writes S A S on
    the upper triangle only, from A's nonzero entries (zeros elsewhere, whatever was there):
    together Lambda_R'(A - C W C')Lambda_R for scalar later terms."""
    rng = np.random.default_rng(5)
    n_levels, m, p1 = 25, 17, 2
    rows, levels, values = _random_pattern(rng, n_levels, m, p1)
    G = rng.normal(size=(n_levels, p1, p1))
    s = rng.uniform(0.2, 3.0, m)
    A = rng.normal(size=(m, m)) * (rng.uniform(size=(m, m)) < 0.3)  # sparse, as the dense block's start
    A = A + A.T
    want = np.diag(s) @ (A - _dense_update(rows, levels, values, G, n_levels, m)) @ np.diag(s)
    M = np.full((m, m), 7.0)
    entries = upper_entries(A)
    assert len(entries[0]) == np.count_nonzero(np.triu(A))
    scaled_upper_fill(entries, s, M)
    iu, il = np.triu_indices(m), np.tril_indices(m, -1)
    np.testing.assert_allclose(M[iu], (np.diag(s) @ A @ np.diag(s))[iu], rtol=1e-14, atol=0)
    assert np.all(M[il] == 7.0)
    SchurKernel(rows, levels, values, n_levels, m).apply(M, G, mirror=False, scale=s)
    np.testing.assert_allclose(M[iu], want[iu], rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_blocked_refill_keeps_the_entries_a_balanced_contrast_zeroed():
    """The blocked factor's dense block starts from RR's upper-triangle entries (scalar later
    terms, the kernel's path). A +-1 contrast balanced within every level makes Z_k'x exactly 0
    in the unweighted fit; with PIRLS's weights it is not. After each refill the factor equals
    the dense factorization of the same cross-products at any theta."""
    from sklmm._engine.crossprod import cross_products
    from sklmm._engine.factor_blocked import BlockedFactor
    from sklmm._engine.factor_dense import DenseFactor
    from sklmm._engine.terms import RandomTerm

    rng = np.random.default_rng(11)
    a, b = np.meshgrid(np.arange(30), np.arange(8), indexing="ij")
    a, b = np.repeat(a.ravel(), 2), np.repeat(b.ravel(), 2)  # each (a, b) cell twice ...
    x = np.tile([1.0, -1.0], len(a) // 2)  # ... once at x = +1, once at -1
    n = len(a)
    c = rng.integers(0, 5, n)
    terms = [RandomTerm(name=nm, levels=np.arange(k), codes=codes, values=np.ones((n, 1)),
                        column_names=["(Intercept)"]) for nm, k, codes in (("a", 30, a), ("b", 8, b), ("c", 5, c))]
    X, y = np.column_stack([np.ones(n), x]), rng.normal(size=n)
    cp0 = cross_products(terms, X, y)
    factor = BlockedFactor(cp0, terms, dense_products=False)
    assert factor.schur is not None
    rows, cols, values = factor._rr_entries
    assert np.any((values == 0.0) & (cols == factor.qr + 1))  # Z_b'x = 0 where it is kept
    theta = np.array([0.7, 1.3, 0.4])
    for w in (None, rng.uniform(0.2, 2.0, n), rng.uniform(0.2, 2.0, n)):
        cp = cross_products(terms, X, y, sample_weight=w)
        factor.refill(cp)
        got, want = factor.update(theta), DenseFactor(cp, terms).update(theta)
        np.testing.assert_allclose([got.logdet_L2, got.logdet_RX2, got.r2],
                                   [want.logdet_L2, want.logdet_RX2, want.r2], rtol=1e-11)


@pytest.mark.parametrize("p1", [1, 2, 3])
@pytest.mark.parametrize("threads", [1, 3])
def test_gather_is_the_adjoint_read_on_the_pattern(p1, threads):
    """gather(B)[a] = (B C)[r_a, level a's columns] for a symmetric B (only its upper triangle
    read), other values in the same pattern, and rows past B's side counted as zeros."""
    rng = np.random.default_rng(3 * p1 + threads)
    n_levels, m = 40, 23
    rows, levels, values = _random_pattern(rng, n_levels, m, p1)
    kernel = SchurKernel(rows, levels, values, n_levels, m, n_threads=threads)
    for n in (m, m - 4):
        B = rng.normal(size=(n, n))
        B = B + B.T
        Bfull = np.zeros((m, m))
        Bfull[:n, :n] = B
        vals = rng.normal(size=kernel.values.shape)
        C = np.zeros((m, n_levels * p1))
        lev = levels[kernel._order]
        for r, j, v in zip(kernel.rows, lev, vals):
            C[r, j * p1 : (j + 1) * p1] = v
        BC = Bfull @ C
        want = np.array([BC[r, j * p1 : (j + 1) * p1] for r, j in zip(kernel.rows, lev)]).reshape(vals.shape)
        lower_garbage = np.triu(B) + np.tril(np.full((n, n), np.nan), -1)
        got = kernel.gather(lower_garbage, vals)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    with pytest.raises(ValueError, match="at most"):
        kernel.gather(np.zeros((m + 1, m + 1)))
    with pytest.raises(ValueError, match="values must have shape"):
        kernel.gather(np.zeros((m, m)), np.zeros((1, p1)))
    with pytest.raises(ValueError, match="inconsistent sizes"):  # B shorter than its side says
        _schur_kernel.schur_gather(kernel.rows, kernel.indptr, kernel.values, np.zeros(4), p1, 0, n_levels, m,
                                   np.empty_like(kernel.values))


@pytest.mark.parametrize("p, r", [(1, 1), (2, 2), (3, 3), (4, 4), (2, 3), (4, 1)])
def test_group_products_equal_their_batched_forms(p, r):
    """The gradient's two loops over groups of entries (group_rows_product,
    group_block_products) against numpy's batched products, including the constant-size paths
    (p = r = 1..4) and the general one; entries in no group keep their values."""
    from sklmm._engine.factor_schur import group_block_products, group_rows_product

    rng = np.random.default_rng(10 * p + r)
    n_entries, g, n1, n_out = 90, 17, 6, 5
    idx = rng.permutation(n_entries)[: g * r].reshape(g, r)
    values = rng.normal(size=(n_entries, p))
    T = rng.normal(size=(r, r))
    want = values.copy()
    want[idx] = np.matmul(T.T[None], values[idx])
    np.testing.assert_allclose(group_rows_product(values, idx, T), want, rtol=1e-13, atol=1e-13)
    V, C = rng.normal(size=(n_entries, p)), rng.normal(size=(n_entries, p))
    first, block = rng.integers(0, n1, g), rng.integers(0, n_out, g)
    M = rng.normal(size=(n1, p, p))
    contrib = np.matmul(np.matmul(V[idx], M[first]), C[idx].transpose(0, 2, 1))
    want = np.zeros((n_out, r, r))
    np.add.at(want, block, -contrib)
    np.testing.assert_allclose(group_block_products(V, C, idx, first, block, M, n_out), want,
                               rtol=1e-12, atol=1e-12)


def test_group_products_refuse_inconsistent_input():
    from sklmm._engine.factor_schur import group_block_products, group_rows_product

    values, idx, M = np.ones((6, 2)), np.array([[0, 1], [2, 3]]), np.ones((3, 2, 2))
    with pytest.raises(ValueError, match="T must be 2 x 2"):
        group_rows_product(values, idx, np.eye(3))
    with pytest.raises(ValueError, match="inconsistent sizes"):  # an entry past the end
        group_rows_product(values, np.array([[0, 6], [2, 3]]), np.eye(2))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        group_block_products(values, np.ones((5, 2)), idx, [0, 1], [0, 0], M, 1)
    with pytest.raises(ValueError, match="inconsistent sizes"):  # a level past M's
        group_block_products(values, values, idx, [0, 3], [0, 0], M, 1)
    with pytest.raises(ValueError, match="inconsistent sizes"):  # a block past the output's
        group_block_products(values, values, idx, [0, 1], [0, 1], M, 1)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _schur_kernel.group_rows_product(values, idx, np.eye(2), 2, 2, 2, np.empty(3))


@pytest.mark.parametrize("p", [2, 3, 4, 5])
def test_level_runs_product_is_the_block_diagonal_product(p):
    """C @ blockdiag(G) by the compiled loop (the blocked factor's C_z G and the gradient's K Q)
    against the dense product, for the constant-size paths (p = 2..4) and the general one."""
    from scipy.linalg import block_diag

    from sklmm._engine.factor_schur import level_runs_product

    rng = np.random.default_rng(p)
    n1, rows = 7, 5
    C, G = rng.normal(size=(rows, n1 * p)), rng.normal(size=(n1, p, p))
    np.testing.assert_allclose(level_runs_product(C, G), C @ block_diag(*G), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(level_runs_product(np.asfortranarray(C), G), C @ block_diag(*G), rtol=1e-13,
                               atol=1e-13)  # (a Fortran-ordered C is copied to C order first)
    with pytest.raises(ValueError, match="columns"):
        level_runs_product(C[:, 1:], G)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _schur_kernel.level_runs_product(C, G, rows + 1, n1, p, np.empty_like(C))
