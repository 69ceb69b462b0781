"""Solver choice: the numpy/scipy path without scikit-sparse, and CHOLMOD where it pays."""

import numpy as np
import pandas as pd
import pytest

from sklmm._engine import criteria, factor, factor_blocked, factor_cholmod
from reference import problem
from sklmm import MixedLinearRegressor


def test_works_without_scikit_sparse(monkeypatch):
    monkeypatch.setattr(factor_cholmod, "_cholmod", None)
    monkeypatch.setattr(factor_cholmod, "HAS_CHOLMOD", False)
    monkeypatch.setattr(factor, "DENSE_REST_LIMIT", 0)  # auto would pick CHOLMOD if it could
    monkeypatch.setattr(factor, "DENSE_SYSTEM_LIMIT", 0)
    X, y, g, kw, ref = problem("pastes_reml")
    m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    assert m.solver_ == "blocked"
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    with pytest.raises(ImportError, match="scikit-sparse.*libsuitesparse-dev.*solver='blocked'"):
        MixedLinearRegressor(solver="cholmod", **kw).fit(X, y, groups=g)


@pytest.mark.skipif(not factor_cholmod.HAS_CHOLMOD, reason="scikit-sparse not installed")
def test_auto_takes_cholmod_when_the_other_factors_are_wide(monkeypatch):
    X, y, g, kw, ref = problem("nested_reml")
    monkeypatch.setattr(factor, "DENSE_SYSTEM_LIMIT", 0)
    assert MixedLinearRegressor(**kw).fit(X, y, groups=g).solver_ == "blocked"  # 8 outer levels
    monkeypatch.setattr(factor, "DENSE_REST_LIMIT", 5)
    m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    assert m.solver_ == "cholmod"
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)


def test_solvers_agree_on_a_random_slopes_design_with_slopes_on_the_second_factor():
    """Random slopes on a factor after the first exercise the Lambda scaling of the Schur block."""
    rng = np.random.default_rng(5)
    n = 600
    a = rng.integers(0, 40, n)
    b = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(0, 1, 40)[a] + rng.normal(0, 1, 12)[b] + rng.normal(0, 0.7, 12)[b] * x
    y = y + rng.normal(size=n)
    groups = np.column_stack([a, b])
    kw = dict(random_slopes={"group1": [0]}, reml=False)
    fits = [MixedLinearRegressor(solver=s, **kw).fit(x[:, None], y, groups=groups)
            for s in (["blocked", "dense", "cholmod"] if factor_cholmod.HAS_CHOLMOD else ["blocked", "dense"])]
    assert fits[0].theta_names_ == ["group0.(Intercept)", "group1.(Intercept)",
                                    "group1.x0.(Intercept)", "group1.x0"]
    for f in fits[1:]:
        assert f.criterion_ == pytest.approx(fits[0].criterion_, rel=1e-9)
        np.testing.assert_allclose(f.theta_, fits[0].theta_, atol=1e-4)
        want = fits[0].predict(x[:, None], groups=groups)  # the optimizers stop 1e-9 apart
        np.testing.assert_allclose(f.predict(x[:, None], groups=groups), want, rtol=1e-5,
                                   atol=1e-5 * np.abs(want).max())
    # the objective agrees between the two factorizations away from the optimum too
    if len(fits) > 1:
        theta = np.array([0.7, 1.3, 0.2, 0.4])
        vals = [criteria.profiled_criterion(f._fit.factor.update(theta), f._fit.n, f._fit.cp.p, False) for f in fits]
        for v in vals[1:]:
            assert v == pytest.approx(vals[0], rel=1e-12)


def test_auto_takes_the_dense_factor_for_small_systems(monkeypatch):
    X, y, g, kw, ref = problem("sleep_slope_reml")  # 36 random-effect columns
    assert MixedLinearRegressor(**kw).fit(X, y, groups=g).solver_ == "dense"
    monkeypatch.setattr(factor, "DENSE_SYSTEM_LIMIT", 10)
    assert MixedLinearRegressor(**kw).fit(X, y, groups=g).solver_ == "blocked"



@pytest.mark.filterwarnings("ignore::sklmm.SingularFitWarning")  # some simulated slopes fit at 0
@pytest.mark.parametrize("slopes", [None, {"group0": [0]}, {"group0": [0], "group1": [0]}],
                         ids=["intercepts", "slopes_first", "slopes_both"])
def test_the_two_forms_of_the_schur_update_agree(monkeypatch, slopes):
    """The blocked factor's update of the dense block by the first term is the compiled level-by-
    level kernel (on one thread or shared between three), or dense products (where they are
    estimated cheaper, as here: every level of the first factor meets most of the second's):
    they give the same criterion at any theta and the same fit."""
    rng = np.random.default_rng(11)
    n = 800
    a = rng.integers(0, 60, n)
    b = rng.integers(0, 15, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(0, 1, 60)[a] * (1 + 0.3 * x) + rng.normal(0, 1, 15)[b] + rng.normal(size=n)
    groups = np.column_stack([a, b])
    monkeypatch.setattr(factor, "DENSE_SYSTEM_LIMIT", 0)
    fits, kinds = [], []
    dense_entries = factor_blocked.DENSE_CZ_ENTRIES
    monkeypatch.setattr(factor_blocked, "DENSE_CZ_ENTRIES", 0)  # the kernel first
    for threads in (1, 3):
        monkeypatch.setattr(factor_blocked, "kernel_threads", lambda pairs, m, k=threads: k)
        m = MixedLinearRegressor(random_slopes=slopes, reml=False, solver="blocked").fit(x[:, None], y, groups=groups)
        fits.append(m)
        kinds.append(f"kernel x {len(m._fit.factor.schur.spans)}")
    monkeypatch.setattr(factor_blocked, "DENSE_CZ_ENTRIES", dense_entries)
    m = MixedLinearRegressor(random_slopes=slopes, reml=False, solver="blocked").fit(x[:, None], y, groups=groups)
    fits.append(m)
    kinds.append("dense" if m._fit.factor._Cz_dense is not None else "kernel")
    assert kinds == ["kernel x 1", "kernel x 3", "dense"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = fits[0].theta_ * rng.uniform(0.5, 1.5, fits[0].theta_.size)
        vals = [criteria.profiled_criterion(f._fit.factor.update(theta), f._fit.n, f._fit.cp.p, False) for f in fits]
        for v in vals[1:]:
            assert v == pytest.approx(vals[0], rel=1e-12)
    for f in fits[1:]:  # the same criterion, different rounding: the optimizers stop 1e-10 apart
        assert f.criterion_ == pytest.approx(fits[0].criterion_, rel=1e-9)
        want = fits[0].predict(x[:, None], groups=groups)
        np.testing.assert_allclose(f.predict(x[:, None], groups=groups), want, rtol=1e-5,
                                   atol=1e-5 * np.abs(want).max())


def test_penalized_irls_cross_products_of_smooths_by_one_product_equal_the_general_ones():
    """CrossProductPlan's one-product path for one-level terms (smooths; with the fixed columns
    kept, as penalized IRLS calls it) gives the cross-products of the general path, beside a
    grouping factor with slopes."""
    from sklmm._engine.crossprod import CrossProductPlan
    from sklmm._engine.terms import RandomTerm

    rng = np.random.default_rng(0)
    n = 1000
    terms = [RandomTerm(name="g", levels=np.arange(10), codes=rng.integers(0, 10, n),
                        values=np.column_stack([np.ones(n), rng.normal(size=n)]), column_names=["a", "b"])]
    for j in range(3):
        terms.append(RandomTerm(name=f"s{j}", levels=np.array(["s"]), codes=np.zeros(n, dtype=np.intp),
                                values=rng.normal(size=(n, 5)), column_names=[f"c{i}" for i in range(5)],
                                correlated=False, scalar=True))
    X, y, W = rng.normal(size=(n, 3)), rng.normal(size=n), rng.uniform(0.1, 1, n)
    plain = CrossProductPlan(terms).form(X, y, W)
    fast = CrossProductPlan(terms, repeated=True, fixed=X)
    assert fast._dense_parts is not None
    got = fast.form(X, y, W)
    for a, b in zip(plain.diag + plain.zxy, got.diag + got.zxy):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.xyxy, plain.xyxy, rtol=1e-12, atol=1e-12)
    for key in plain.off:
        np.testing.assert_allclose(got.off[key][2], plain.off[key][2], rtol=1e-12, atol=1e-12)
    # a call without the fixed columns (PIRLS at a given beta) takes the general path
    alone = fast.form(np.zeros((n, 0)), y, W)
    np.testing.assert_allclose(alone.xyxy, CrossProductPlan(terms).form(np.zeros((n, 0)), y, W).xyxy, rtol=1e-12)


def test_the_schur_kernel_threads_follow_work_cpus_and_memory(monkeypatch):
    """One thread below KERNEL_THREADS_PAIRS pairs of rows; above, the free CPUs, at most one
    per half of that work and as many extra m x m outputs as KERNEL_THREADS_BYTES holds."""
    monkeypatch.setattr(factor_blocked, "free_cpus", lambda: 8)
    k = factor_blocked.KERNEL_THREADS_PAIRS
    assert factor_blocked.kernel_threads(k - 1, 503) == 1
    assert factor_blocked.kernel_threads(k, 503) == 2  # two halves of the threshold's work
    assert factor_blocked.kernel_threads(26 * k, 503) == 8  # the free CPUs
    assert factor_blocked.kernel_threads(26 * k, 3000) == 4  # 1 + 256 MB / 72 MB
    monkeypatch.setattr(factor_blocked, "free_cpus", lambda: 1)  # a busy machine
    assert factor_blocked.kernel_threads(26 * k, 503) == 1


@pytest.mark.filterwarnings("ignore::sklmm.SingularFitWarning")
@pytest.mark.parametrize("dense_products", [False, True])
def test_later_terms_at_zero_are_factored_apart_with_the_same_results(dense_products):
    """Where later terms whose T_k is 0 make up half of the dense block or more, the blocked
    factor factors only the rest (their rows are the identity's): the criterion, the solution
    and the fixed-effect block equal the dense factor's at such theta, and at theta off them."""
    from sklmm._engine.factor_blocked import BlockedFactor
    from sklmm._engine.factor_dense import DenseFactor

    rng = np.random.default_rng(5)
    n = 900
    a, b, c = rng.integers(0, 80, n), rng.integers(0, 30, n), rng.integers(0, 4, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(0, 1, 80)[a] + rng.normal(0, 0.5, 30)[b] * (1 + x) + rng.normal(size=n)
    m = MixedLinearRegressor(random_slopes={"g1": [0]}, reml=True).fit(
        x[:, None], y, groups=pd.DataFrame({"g0": a, "g1": b, "g2": c}))
    terms, cp = m._fit.terms, m._fit.cp
    assert [t.n_levels for t in terms] == [80, 30, 4] and terms[1].n_coef == 2
    blocked, dense = BlockedFactor(cp, terms, dense_products=dense_products), DenseFactor(cp, terms)
    th = m._fit.theta
    for zero in ([1, 2, 3], [1, 2, 3, 4], [0, 1, 2, 3], []):  # (g1's three, then g2's too; g0 too)
        theta = th.copy()
        theta[zero] = 0.0
        fb, fd = blocked.update(theta), dense.update(theta)
        assert (blocked._nonzero_rows(blocked._state[0]) is not None) == bool(zero)
        for v, w in zip((fb.logdet_L2, fb.logdet_RX2, fb.r2), (fd.logdet_L2, fd.logdet_RX2, fd.r2)):
            assert v == pytest.approx(w, rel=1e-10, abs=1e-10)
        for v, w in zip(blocked.solve(), dense.solve()):
            np.testing.assert_allclose(v, w, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(blocked.fixed_part()[0], dense.fixed_part()[0], rtol=1e-10, atol=1e-12)


def test_blocked_back_substitution_through_the_whole_factor():
    """The blocked factor's modes and beta, ``L_top^{-T} l``, by one trsv through the whole
    factor equal the triangular solve of its top block (also for a 1 x 1 top, and where the
    last pivot is 0 and the solve falls back)."""
    from scipy.linalg import solve_triangular

    from sklmm._engine.factor_blocked import _back_substitution

    rng = np.random.default_rng(0)
    for m in (2, 3, 40):
        A = rng.normal(size=(m, m))
        L = np.asfortranarray(np.linalg.cholesky(A @ A.T + m * np.eye(m)))
        L[np.triu_indices(m, 1)] = np.nan  # (the factor's strict upper triangle is not read)
        want = solve_triangular(np.tril(L)[:-1, :-1], L[-1, :-1], lower=True, trans="T")
        np.testing.assert_allclose(_back_substitution(L), want, rtol=1e-13)
        L[-1, -1] = 0.0
        np.testing.assert_allclose(_back_substitution(np.tril(np.nan_to_num(L))), want, rtol=1e-13)
    assert _back_substitution(np.ones((1, 1))).shape == (0,)
