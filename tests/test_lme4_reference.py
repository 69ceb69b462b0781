"""sklmm against lme4 1.1 on the same data (numbers from tools/lme4_reference.R)."""

import warnings

import numpy as np
import pytest

from reference import MODELS, REFERENCE, problem
from sklmm import MixedLinearRegressor
from sklmm._engine.criteria import profiled_criterion
from sklmm._engine.factor_cholmod import HAS_CHOLMOD

SOLVERS = ["blocked", "dense"] + (["cholmod"] if HAS_CHOLMOD else [])


def _fit(key, solver):
    X, y, g, kw, ref = problem(key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these fits is singular or non-converged
        m = MixedLinearRegressor(solver=solver, **kw).fit(X, y, groups=g)
    return m, X, g, ref


@pytest.fixture(scope="module", params=[(k, s) for k in MODELS for s in SOLVERS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def fitted(request):
    return _fit(*request.param)


def test_criterion_reaches_lme4_optimum(fitted):
    m, _, _, ref = fitted
    # within 1e-6 relative of lme4's, or lower
    assert m.criterion_ <= ref["criterion"] + 1e-6 * abs(ref["criterion"])
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    assert m.converged_
    assert m.solver_ in SOLVERS


def test_theta(fitted):
    m, _, _, ref = fitted
    assert m.theta_names_ == ref["theta_names"]
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-3)


def test_fixed_effects_and_sigma(fitted):
    m, _, _, ref = fitted
    beta = ([m.intercept_] if "(Intercept)" in ref["beta_names"] else []) + list(m.coef_)
    assert m.fixed_effects_names_ == ref["beta_names"]
    np.testing.assert_allclose(beta, ref["beta"], rtol=1e-4)
    assert m.sigma_ == pytest.approx(ref["sigma"], rel=1e-4)


def test_information_criteria(fitted):
    m, _, _, ref = fitted
    assert m.loglik_ == pytest.approx(ref["loglik"], rel=1e-6)
    assert m.aic_ == pytest.approx(ref["aic"], rel=1e-6)
    assert m.bic_ == pytest.approx(ref["bic"], rel=1e-6)
    assert m.is_singular_ == ref["is_singular"]


def test_variance_components(fitted):
    m, _, _, ref = fitted
    vc = m.variance_components_
    got = vc[vc["term2"].isna()]
    want = [r for r in ref["varcorr"] if r["var2"] is None]
    assert len(got) == len(want)
    # lme4 names the second term of (x || g) "Subject.1"; compare values in order
    np.testing.assert_allclose(got["variance"], [r["vcov"] for r in want], rtol=2e-3)
    np.testing.assert_allclose(got["std_dev"], [r["sdcor"] for r in want], rtol=1e-3)
    corr_want = [r["sdcor"] for r in ref["varcorr"] if r["var2"] is not None]
    np.testing.assert_allclose(vc["correlation"].dropna(), corr_want, atol=2e-3)


def _lme4_labels(index):
    if index.nlevels == 1:
        return [str(v) for v in index]
    return [":".join(str(x) for x in reversed(t)) for t in index]  # lme4: inner:outer


def test_conditional_modes(fitted):
    m, _, _, ref = fitted
    assert sorted(m.random_effects_) == sorted(ref["ranef"])
    for name, want in ref["ranef"].items():
        got = m.random_effects_[name]
        assert list(got.columns) == want["columns"]
        got = got.set_axis(_lme4_labels(got.index), axis=0).loc[want["levels"]]
        want_v = np.asarray(want["values"], dtype=float)
        scale = np.abs(want_v).max()
        np.testing.assert_allclose(got.to_numpy(), want_v, atol=2e-3 * scale)


def test_conditional_fitted_values(fitted):
    m, X, g, ref = fitted
    want = np.asarray(ref["fitted"])
    # two optimizers stopping within 1e-8 of the same optimum (test_criterion_reaches_lme4_optimum)
    # can differ by ~1e-5 of the scale in fitted values near 0 (crossed_reml: 8e-6)
    np.testing.assert_allclose(m.predict(X, groups=g), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("key", sorted(MODELS))
def test_objective_at_probe_theta_equals_lme4_devfun(key, solver):
    """The profiled criterion as a function of theta, not only at the optimum."""
    est = MixedLinearRegressor(solver=solver, **problem(key)[3])
    X, y, g, _, ref = problem(key)
    est.fit(X, y, groups=g)
    factor = est._fit.factor
    cp = factor.cp
    val = profiled_criterion(factor.update(np.asarray(ref["theta_probe"])), cp.n, cp.p, est.reml)
    assert val == pytest.approx(ref["criterion_at_probe"], rel=1e-10)


def test_seed_numbers_sleepstudy_random_intercept_ml():
    """The seed walkthrough: Subject sd 36.01, residual sd 30.90, logLik -897.04, 251.41 and 10.47."""
    m, _, _, ref = _fit("sleep_ri_ml", "blocked")
    vc = m.variance_components_.set_index("factor")
    assert round(vc.loc["Subject", "std_dev"], 2) == 36.01
    assert round(m.sigma_, 2) == 30.90
    assert round(m.loglik_, 2) == -897.04
    assert (round(m.intercept_, 2), round(float(m.coef_[0]), 2)) == (251.41, 10.47)
    modes = m.random_effects_["Subject"]["(Intercept)"]
    want = dict(zip(ref["ranef"]["Subject"]["levels"], np.ravel(ref["ranef"]["Subject"]["values"])))
    assert len(modes) == 18
    for level, value in modes.items():
        assert value == pytest.approx(want[str(level)], abs=1e-3)


def test_fixed_effects_only_fallback_is_ols():
    X, y, _, _, _ = problem("sleep_ri_ml")
    ref = REFERENCE["sleep_lm"]
    with pytest.warns(UserWarning, match="without groups"):
        ml = MixedLinearRegressor(reml=False).fit(X, y)
    with pytest.warns(UserWarning, match="without groups"):
        reml = MixedLinearRegressor(reml=True).fit(X, y)
    np.testing.assert_allclose([ml.intercept_, ml.coef_[0]], ref["beta"], rtol=1e-10)
    assert ml.loglik_ == pytest.approx(ref["loglik_ml"], rel=1e-10)
    assert reml.sigma_ == pytest.approx(ref["sigma"], rel=1e-10)  # lm's sigma is the REML one
    assert ml.theta_.size == 0 and ml.random_effects_ == {}


def test_cross_products_are_the_only_pass_over_rows():
    """Doubling every row leaves the factor inputs exactly twice as large (sums over rows)."""
    X, y, g, kw, _ = problem("crossed_ml")
    m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    terms = m._fit.terms
    cp = m._fit.cp
    assert all(t.codes is None for t in terms)  # row-level arrays are dropped after the pass
    assert cp.xyxy.shape == (3, 3) and cp.n == len(y)
