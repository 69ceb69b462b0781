"""The outer iteration of the Laplace approximate REML (sklmm/_engine/laml_iteration.py): its
fixed point is a stationary point of the criterion, it reaches the optimum of a direct search of
the criterion (BOBYQA on theta, a converged PIRLS per evaluation, the path it replaced), and
its fused pass and leverages equal the general ones. (Agreement with mgcv's own optimum:
tests/test_mgcv_glm.py.)"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklmm import PenalizedSplineClassifier, PenalizedSplineRegressor, s, te
from sklmm._engine import laml_iteration as li
from sklmm._engine.factor import make_factor
from sklmm._engine.leverage import dense_whitener, whitened_row_norms
from sklmm._engine.terms import templates

DATA = Path(__file__).parent / "data"


def _csv(name):
    return pd.read_csv(DATA / name)


def _models():
    """(label, estimator, X, y, groups): smooths only (the fused pass), a te term, smooths
    beside a grouping factor (the general pass), and a Gamma GAM (a profiled dispersion)."""
    b = _csv("sim_glm_binomial_multi.csv")
    p = _csv("sim_glm_poisson.csv")
    yield ("binomial, 3 smooths", PenalizedSplineClassifier(smooth_features=["x1", "x2", "x3"]),
           b[["z", "x1", "x2", "x3"]], b["y"], None)
    yield ("poisson, te", PenalizedSplineRegressor(family="poisson", smooths=[te("x1", "x2", k=(5, 5))]),
           p[["x1", "x2"]], p["y"], None)
    yield ("poisson, 2 smooths + groups", PenalizedSplineRegressor(family="poisson", smooths=[s("x1"), s("x2")]),
           p[["x1", "x2"]], p["y_re"], p["g"])
    gm = _csv("sim_glm_gamma.csv")
    yield ("gamma, 1 smooth (profiled dispersion)", PenalizedSplineRegressor(family="gamma"), gm[["x"]], gm["y"], None)


MODELS = list(_models())


def _fit(est, X, y, groups):
    return est.fit(X, y) if groups is None else est.fit(X, y, groups=groups)


@pytest.mark.parametrize("label, est, X, y, groups", MODELS, ids=[m[0] for m in MODELS])
def test_reaches_the_optimum_of_a_direct_search(monkeypatch, label, est, X, y, groups):
    """At or below the criterion that BOBYQA on the exact criterion reaches (from PQL's start),
    with the same fitted means, in a fraction of the passes over the rows."""
    new = _fit(est, X, y, groups)
    assert new._fit.optimizer.return_code.startswith("LAML_ITERATION")
    monkeypatch.setattr(li, "applies", lambda problem, reml: False)
    old = _fit(est.__class__(**est.get_params()), X, y, groups)
    assert old._fit.optimizer.return_code != new._fit.optimizer.return_code
    assert new.criterion_ <= old.criterion_ + 1e-9 * abs(old.criterion_)
    assert new.criterion_ == pytest.approx(old.criterion_, rel=1e-8)
    mean = (lambda m: m.predict_proba(X, groups=groups)[:, 1]) if label.startswith("binomial") else (
        lambda m: m.predict(X, groups=groups))
    np.testing.assert_allclose(mean(new), mean(old), atol=1e-4 * float(np.std(y)))
    np.testing.assert_allclose(new.edf_.to_numpy(), old.edf_.to_numpy(), atol=1e-3)
    assert new._fit.n_passes < old._fit.n_passes / 3


@pytest.mark.parametrize("label, est, X, y, groups", MODELS, ids=[m[0] for m in MODELS])
def test_the_fixed_point_is_a_stationary_point_of_the_criterion(label, est, X, y, groups):
    """Central differences of the Laplace REML criterion (a converged PIRLS at each theta) at
    the fitted theta: zero slope in every direction off the bound, against the curvature."""
    fit = _fit(est, X, y, groups)._fit
    problem, theta = fit.problem, fit.theta.copy()
    for i in range(len(theta)):
        if theta[i] < 1e-3:  # (a smooth shrunk to its null space: on the bound)
            continue
        h = 1e-3 * theta[i]
        f = [problem.laml(theta + d * h * np.eye(len(theta))[i]) for d in (-1, 0, 1)]
        slope, curvature = (f[2] - f[0]) / (2 * h), (f[2] - 2 * f[1] + f[0]) / h**2
        assert curvature > 0
        assert abs(slope) <= 1e-3 * curvature * theta[i], (label, i, slope, curvature)


def _state(label):
    """A fitted model's problem with a factor at its theta and weights at its mode."""
    _, est, X, y, groups = next(m for m in MODELS if m[0] == label)
    fit = _fit(est, X, y, groups)._fit
    problem, theta = fit.problem, fit.theta
    st = problem.pirls(theta)
    W, r = problem.working(st.eta)
    factor = problem.factor(problem.form(True, st.eta + r, W), True)
    factor.update(theta)
    return problem, theta, st, factor


@pytest.mark.parametrize("label", ["binomial, 3 smooths", "poisson, 2 smooths + groups"])
def test_leverages_through_the_dense_whitener_equal_explicit_ones(label):
    """|L^{-1} a_i|^2 = a_i' M^{-1} a_i with M the PLS matrix: the dense factor's products with
    N', the sparse factorization's solves, and an explicit inverse agree."""
    problem, theta, st, factor = _state(label)
    terms, X = problem.terms, problem.X
    every = np.arange(problem.n)
    rows = [(k, every, t.codes, t.values) for k, t in enumerate(terms)]
    Ts = templates(terms, theta)
    got = whitened_row_norms(factor, terms, Ts, problem.z_off, X, rows)
    # explicit: A = [Z Lambda, X], M = A'WA + diag(I, 0)
    cols = []
    for t, T in zip(terms, Ts):
        Zt = np.zeros((problem.n, t.q))
        for j in range(t.n_coef):
            Zt[every, t.codes * t.n_coef + j] = t.values[:, j]
        cols.append(Zt @ np.kron(np.eye(t.n_levels), T))
    A = np.hstack(cols + [X])
    W, _ = problem.working(st.eta)
    M = A.T @ (A * W[:, None])
    q = problem.q
    M[np.arange(q), np.arange(q)] += 1.0
    want = np.einsum("ij,ij->i", A @ np.linalg.inv(M), A)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    try:
        import sksparse  # noqa: F401
        solvers = ("blocked", "cholmod")
    except ImportError:
        solvers = ("blocked",)
    for solver in solvers:
        other = make_factor(problem.form(True, st.eta + problem.working(st.eta)[1], W), terms, solver)
        other.update(theta)
        np.testing.assert_allclose(whitened_row_norms(other, terms, Ts, problem.z_off, X, rows), want, rtol=1e-8)


def test_the_fused_pass_equals_the_general_pass():
    """One fused pass over the blocks of [Z X] gives the cross-products, the linear predictor
    and the first-order term that the general pass (the plan's form and the leverages through
    the factor) gives at the same coefficients."""
    problem, theta, st, factor = _state("binomial, 3 smooths")
    terms, X, z_off = problem.terms, problem.X, problem.z_off
    b, u = factor.solve()
    Ts = templates(terms, theta)
    coef = np.concatenate([(u[z_off[k] : z_off[k + 1]].reshape(1, -1) @ T.T)[0] for k, T in enumerate(Ts)] + [b])
    NT = dense_whitener(factor, terms, Ts, z_off, X.shape[1])
    G, eta, const, c_eta_fused, cx, cz = li._fused_pass(problem, coef, NT)
    eta2 = X @ b + problem.random_eta(theta, u)
    np.testing.assert_allclose(eta, eta2, rtol=1e-12, atol=1e-12)
    every = np.arange(problem.n)
    cx2, cz2, c_eta = li._correction(problem, factor, theta, eta2, [(k, every, t.codes, t.values)
                                                                   for k, t in enumerate(terms)])
    np.testing.assert_allclose(cx, cx2, rtol=1e-9, atol=1e-12)
    for a, c in zip(cz, cz2):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    W, r = problem.working(eta2)
    assert const == pytest.approx(problem.minus2ll(eta2) - float(np.sum(W * r * r)), rel=1e-10)
    assert c_eta_fused == pytest.approx(c_eta, rel=1e-9)
    got = problem.plan.from_gram(problem.n, G)
    Xz = np.column_stack([X, eta2 + r])
    want = problem.plan.form(None, None, W, Xy=Xz)
    np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=1e-10)
    for a, c in zip(got.diag + got.zxy, want.diag + want.zxy):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)


def test_an_iteration_that_does_not_settle_falls_back_to_the_direct_search(monkeypatch):
    """Stopped after two steps (as a loop that does not settle in MAX_STEPS is), the fit
    continues by BOBYQA on the exact criterion from the state the steps left, and reaches the
    same optimum."""
    label, est, X, y, groups = MODELS[0]
    full = _fit(est, X, y, groups)
    run = li.laml_iteration
    monkeypatch.setattr(li, "laml_iteration", lambda *a, **k: run(*a, **dict(k, max_steps=2)))
    cut = _fit(est.__class__(**est.get_params()), X, y, groups)
    assert not cut._fit.optimizer.return_code.startswith("LAML_ITERATION")
    assert cut.criterion_ == pytest.approx(full.criterion_, rel=1e-8)
    np.testing.assert_allclose(cut.predict_proba(X)[:, 1], full.predict_proba(X)[:, 1], atol=1e-4)
