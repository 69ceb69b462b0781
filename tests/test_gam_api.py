"""PenalizedSplineRegressor: the seed's own basis in closed form, scikit-learn behaviour, errors."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklmm import PenalizedSplineRegressor
from sklmm._engine.smooth import SmoothTerm, cr_basis, cr_knots, cr_penalty, rk
from sklmm.datasets import load_engine, load_mcycle, load_sleepstudy

EXPECTED_FAILURES = {
    # integer features with 3 distinct values cannot carry a 10-function spline basis; like
    # mgcv we refuse (with a message saying to lower n_basis) rather than silently change k
    "check_estimators_dtypes": "a feature with 3 distinct values cannot carry n_basis=10",
    # the sample-weight checks fit features with 3 to 9 distinct values (the same refusal);
    # tests/test_mgcv_reference.py checks the weights against mgcv on real data
    "check_sample_weights_pandas_series": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_not_an_array": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_shape": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_not_overwritten": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weight_equivalence_on_dense_data": "precision weights are not frequency weights; "
                                                     "and features with 9 distinct values",
    # y = X[:, 0], which the first smooth's linear (null-space) column fits exactly: no residual
    # variance, which the fit reports as an error; whether rounding leaves a residual of 1e-30
    # (a meaningless fit that passes) depends on the machine's BLAS
    "check_regressors_no_decision_function": "y = X[:, 0] is fitted exactly (no residual variance)",
}


@parametrize_with_checks([PenalizedSplineRegressor()], expected_failed_checks=lambda e: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _seed_fit(lam):
    """The seed's penalized regression spline on the engine data, by augmented least squares."""
    d = load_engine()
    x = (d["size"] - d["size"].min()) / (d["size"].max() - d["size"].min())
    xk = np.arange(1, 8) / 8
    X = np.column_stack([np.ones(len(x)), x, rk(x, xk)])
    S = np.zeros((9, 9))
    S[2:, 2:] = rk(xk, xk)
    beta = np.linalg.solve(X.T @ X + lam * S, X.T @ d["wear"].to_numpy())
    return X @ beta, X, S


def test_rk_basis_reproduces_the_seed_penalized_fit():
    d = load_engine()
    lo, hi = d["size"].min(), d["size"].max()
    knots = lo + np.arange(1, 8) / 8 * (hi - lo)  # the seed's knots 1:7/8 on the scaled axis
    gam = PenalizedSplineRegressor(basis="rk", n_basis=9, knots={"size": knots}).fit(d[["size"]], d["wear"])
    # at the REML optimum: the same fitted values as the seed's fit at gam's lambda
    lam = float(gam.smoothing_params_["s(size)"])
    want, X, S = _seed_fit(lam)
    np.testing.assert_allclose(gam.predict(d[["size"]]), want, rtol=1e-8, atol=1e-10)
    # and at the seed's lambda = 1e-4, held fixed
    seed = PenalizedSplineRegressor(basis="rk", n_basis=9, knots={"size": knots},
                                    smoothing_params={"size": 1e-4}).fit(d[["size"]], d["wear"])
    np.testing.assert_allclose(seed.predict(d[["size"]]), _seed_fit(1e-4)[0], rtol=1e-8)
    assert seed.smoothing_params_["s(size)"] == pytest.approx(1e-4, rel=1e-12)
    # EDF is the trace of the hat matrix of the penalized fit
    H = X @ np.linalg.solve(X.T @ X + lam * S, X.T)
    assert gam.edf_total_ == pytest.approx(np.trace(H), rel=1e-7)


def test_cr_penalty_is_the_integrated_squared_second_derivative():
    x = np.linspace(0, 3, 200) ** 1.5
    knots = cr_knots(x, 8)
    S = cr_penalty(knots)
    rng = np.random.default_rng(1)
    beta = rng.normal(size=8)
    # numeric integral of f''^2 from the basis (piecewise cubic: f'' is piecewise linear)
    grid = np.linspace(knots[0], knots[-1], 200001)
    f = cr_basis(grid, knots) @ beta
    f2 = np.gradient(np.gradient(f, grid), grid)
    integral = np.sum(f2[1:-1] ** 2) * (grid[1] - grid[0])
    assert beta @ S @ beta == pytest.approx(integral, rel=1e-3)
    # interpolating at the knots, linear beyond them
    np.testing.assert_allclose(cr_basis(knots, knots), np.eye(8), atol=1e-12)
    out = cr_basis(np.array([knots[-1] + 1, knots[-1] + 2]), knots) @ beta
    edge = cr_basis(np.array([knots[-1]]), knots) @ beta
    assert out[1] - out[0] == pytest.approx(out[0] - edge[0], rel=1e-8)


@pytest.mark.parametrize("basis", ["cr", "ps", "rk"])
def test_constraint_and_reparameterization(basis):
    x = load_mcycle()["times"].to_numpy()
    sm = SmoothTerm("s(times)", 0, basis, 12)
    F, Z = sm.fit_design(x)
    assert sm.n_fixed == 1 and sm.n_random == 10  # k - 1 constrained, one null (linear) direction
    np.testing.assert_allclose(np.hstack([F, Z]).sum(axis=0), 0, atol=1e-8 * np.abs(Z).max() * len(x))
    # the linear null-space column is linear in x
    np.testing.assert_allclose(np.corrcoef(F[:, 0], x)[0, 1] ** 2, 1, rtol=1e-9)


def test_predict_std_clone_pickle():
    d = load_mcycle()
    X, y = d[["times"]], d["accel"]
    gam = PenalizedSplineRegressor(n_basis=20).fit(X, y)
    mean, se = gam.predict(X, return_std=True)
    np.testing.assert_allclose(mean, gam.predict(X))
    assert np.all(se > 0) and se.max() < gam.sigma_
    g2 = pickle.loads(pickle.dumps(gam))
    np.testing.assert_array_equal(g2.predict(X, return_std=True)[1], se)
    assert clone(gam).get_params() == gam.get_params()
    pd_ = gam.partial_dependence()
    assert list(pd_.columns) == ["smooth", "x", "estimate", "std_error", "lower", "upper"]
    assert (pd_["lower"] < pd_["estimate"]).all() and (pd_["estimate"] < pd_["upper"]).all()
    # the smooth's curve plus the intercept is the prediction (single smooth, no linear terms)
    grid = pd_["x"].to_numpy()
    np.testing.assert_allclose(pd_["estimate"] + gam.intercept_, gam.predict(pd.DataFrame({"times": grid})),
                               rtol=1e-10, atol=1e-9)


def test_plot_partial_dependence():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    d = load_mcycle()
    gam = PenalizedSplineRegressor(n_basis=15, basis="ps").fit(d[["times"]], d["accel"])
    axes = gam.plot_partial_dependence()
    assert len(axes) == 1 and axes[0].get_xlabel() == "times"
    assert len(axes[0].lines) == 2  # curve and rug


def test_linear_and_smooth_features_and_gamm_in_cv():
    s = load_sleepstudy()
    rng = np.random.default_rng(0)
    X = s[["Days"]].assign(noise=rng.normal(size=len(s)))
    gamm = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cross_validate(gamm, X, s["Reaction"], groups=s["Subject"], cv=GroupKFold(3),
                             params={"groups": s["Subject"]}, return_estimator=True)
    e = res["estimator"][0]
    assert e.linear_features_ == ["noise"] and e.coef_.shape == (1,)
    assert set(e.random_effects_) == {"Subject"}
    assert e.predict(X, groups=s["Subject"]).shape == (180,)


def test_errors():
    d = load_mcycle()
    X, y = d[["times"]], d["accel"]
    with pytest.raises(ValueError, match="The 'basis' parameter of PenalizedSplineRegressor must be a str among"):
        PenalizedSplineRegressor(basis="te").fit(X, y)
    with pytest.raises(ValueError, match=r"n_basis \(mgcv's k\) must be at least 4 for basis 'ps'"):
        PenalizedSplineRegressor(n_basis=3, basis="ps").fit(X, y)
    assert PenalizedSplineRegressor(n_basis=3).fit(X, y).edf_.iloc[0] > 1.5  # cr: k = 3 as mgcv
    with pytest.raises(ValueError, match="The 'n_basis' parameter of PenalizedSplineRegressor must be an int in the range"):
        PenalizedSplineRegressor(n_basis=2).fit(X, y)
    with pytest.raises(ValueError, match="smooth_features names 'time'"):
        PenalizedSplineRegressor(smooth_features=["time"]).fit(X, y)
    with pytest.raises(ValueError, match="needs at least 200 distinct values"):
        PenalizedSplineRegressor(n_basis=200).fit(X, y)
    with pytest.raises(ValueError, match="smoothing_params has keys \\['accel'\\]"):
        PenalizedSplineRegressor(smoothing_params={"accel": 1.0}).fit(X, y)
    with pytest.raises(ValueError, match="must be positive"):
        PenalizedSplineRegressor(smoothing_params={"times": 0.0}).fit(X, y)
    gam = PenalizedSplineRegressor().fit(X, y)
    with pytest.raises(ValueError, match="not a smooth of one or two features"):
        gam.partial_dependence("accel")


# ----------------------------------------------------------------------------- the formula door


def test_gam_formulas_fit_what_the_parameters_fit():
    """An mgcv-style formula is the parameterised model it maps to (whose fits
    tests/test_mgcv_reference.py compares with mgcv and gamm4), bit for bit."""
    d = load_mcycle()
    a = PenalizedSplineRegressor.from_formula("accel ~ s(times, k=20, bs='cr')", d)
    b = PenalizedSplineRegressor(n_basis=20, basis="cr").fit(d[["times"]], d["accel"])
    assert a.criterion_ == b.criterion_ and a.get_params()["smooth_features"] is None
    np.testing.assert_array_equal(a.predict(d), b.predict(d[["times"]]))
    assert a.score(d) == b.score(d[["times"]], d["accel"])
    s = load_sleepstudy().assign(x=lambda df: np.cos(df["Days"]))
    f = "Reaction ~ x + s(Days, k=5, bs='ps') + (1 | Subject)"
    a = PenalizedSplineRegressor(formula=f).fit(s)
    b = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5, basis="ps").fit(
        s[["x", "Days"]], s["Reaction"], groups=s["Subject"])
    assert a.criterion_ == b.criterion_
    np.testing.assert_array_equal(a.predict(s), b.predict(s[["x", "Days"]], groups=s["Subject"]))
    np.testing.assert_array_equal(a.predict(s.drop(columns="Subject")), b.predict(s[["x", "Days"]]))


def test_gam_formula_default_basis_is_mgcvs_thin_plate_spline():
    """s(x) without bs= is mgcv's default: bs='tp' with k=10."""
    d = load_mcycle()
    a = PenalizedSplineRegressor.from_formula("accel ~ s(times)", d)
    b = PenalizedSplineRegressor(n_basis=10, basis="tp").fit(d[["times"]], d["accel"])
    assert a.smooths_[0].basis == "tp" and a.smooths_[0].n_basis == 10
    assert a.criterion_ == b.criterion_
    np.testing.assert_array_equal(a.predict(d), b.predict(d[["times"]]))
    c = PenalizedSplineRegressor.from_formula("accel ~ s(times, bs='cc', k=8)", d)
    assert c.smooths_[0].basis == "cc" and c.smooths_[0].n_basis == 8


def test_gam_formula_estimators_cross_validate():
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_validate

    s = load_sleepstudy()
    f = "Reaction ~ s(Days, k=5, bs='cr') + (1 | Subject)"
    cv = KFold(3, shuffle=True, random_state=0)
    got = cross_validate(PenalizedSplineRegressor(formula=f), s, None, cv=cv)["test_score"]
    want = []
    for train, test in cv.split(s):
        m = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5).fit(
            s[["Days"]].iloc[train], s["Reaction"].iloc[train], groups=s["Subject"].iloc[train])
        want.append(m.score(s[["Days"]].iloc[test], s["Reaction"].iloc[test], groups=s["Subject"].iloc[test]))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert clone(PenalizedSplineRegressor(formula=f)).get_params()["formula"] == f


@pytest.mark.parametrize("formula, match", [
    ("accel ~ s(times, bs='te')", "bs must be one of"),
    ("accel ~ s(times, bs='cr', k=4.5)", "k must be an integer"),
    ("accel ~ s(times, bs='cr', m=2)", r"\['m'\] are not supported"),
    ("accel ~ s(times, accel, bs='cr')", "thin plate spline"),
    ("accel ~ te(times, accel, k=(5, 5, 5))", "once per feature"),
    ("accel ~ s(times, bs='cr', by=3)", "by= names a column"),
    ("accel ~ times + s(times, bs='cr')", "both as a smooth and as a parametric term"),
    ("accel ~ s(times, bs='cr') + s(times, bs='ps')", "given twice"),
    ("accel ~ times", "has no smooth"),
    ("accel ~ 0 + s(times, bs='cr')", "removes the intercept"),
])
def test_gam_formula_errors_say_what_is_not_available(formula, match):
    with pytest.raises(ValueError, match=match):
        PenalizedSplineRegressor.from_formula(formula, load_mcycle())
    with pytest.raises(ValueError, match=r"\['n_basis'\] are set by the formula"):
        PenalizedSplineRegressor(formula="accel ~ s(times, bs='cr')", n_basis=5).fit(load_mcycle())


@pytest.mark.parametrize("knots, match", [
    ([0.0, 10.0, 10.0, 20.0, 30.0, 40.0, 50.0, 57.6], r"the knots repeat \[10.0\]"),
    (np.r_[np.quantile(np.round(load_mcycle()["times"] / 20), np.linspace(0, 1, 8))], "the knots repeat"),
    ([0.0, np.nan, 10.0, 20.0, 30.0, 40.0, 50.0, 57.6], "knots must be finite"),
    ([0.0, np.inf, 10.0, 20.0, 30.0, 40.0, 50.0, 57.6], "knots must be finite"),
    (["a", "b"], "knots must be numbers"),
])
def test_bad_knots_are_refused_before_the_fit(knots, match):
    d = load_mcycle()
    with pytest.raises(ValueError, match=match):
        PenalizedSplineRegressor(n_basis=8, knots={"times": knots}).fit(d[["times"]], d["accel"])


@pytest.mark.parametrize("features", [["times", "times"], [0, "times"], [0, 0]])
def test_a_feature_smoothed_twice_is_refused(features):
    d = load_mcycle()
    with pytest.raises(ValueError, match=r"smooth_features lists \['times'\] more than once"):
        PenalizedSplineRegressor(smooth_features=features).fit(d[["times"]], d["accel"])


def test_sample_weight_is_handled_as_scikit_learns_checks_ask():
    """What check_sample_weights_* ask, on data a spline can carry (their own data cannot):
    a Series, a list and an array give the same fit; wrong shapes are refused; the caller's
    array is not overwritten; uniform weights of 1 are no weights."""
    import pandas as pd

    d = load_mcycle()
    X, y = d[["times"]], d["accel"]
    w = np.linspace(1.0, 2.0, len(y))
    fits = [PenalizedSplineRegressor().fit(X, y, sample_weight=s) for s in (w, pd.Series(w), list(w))]
    assert fits[0].criterion_ == fits[1].criterion_ == fits[2].criterion_
    for bad in (w[:10], np.c_[w, w]):
        with pytest.raises(ValueError, match="sample_weight has shape"):
            PenalizedSplineRegressor().fit(X, y, sample_weight=bad)
    w2 = w.copy()
    PenalizedSplineRegressor().fit(X, y, sample_weight=w2)
    np.testing.assert_array_equal(w2, w)
    ones = PenalizedSplineRegressor().fit(X, y, sample_weight=np.ones(len(y)))
    assert ones.criterion_ == PenalizedSplineRegressor().fit(X, y).criterion_


def test_formula_terms_sklmm_cannot_fit_are_refused_with_the_way_out():
    """offset() (mgcv and lme4 take it) and a cbind() response of a GAM are clear errors, not
    a NameError from inside the formula library."""
    from sklmm import MixedLinearRegressor, PenalizedSplineClassifier

    d = pd.DataFrame(dict(x=np.linspace(0, 1, 50), t=np.ones(50), y=np.arange(50) % 3, s=np.ones(50),
                          f=np.ones(50), g=np.arange(50) % 5))
    with pytest.raises(ValueError, match="offset\\(\\) terms are not supported"):
        PenalizedSplineRegressor.from_formula("y ~ s(x) + offset(np.log(t))", d)
    with pytest.raises(ValueError, match="offset\\(\\) terms are not supported"):
        MixedLinearRegressor.from_formula("y ~ x + offset(t) + (1 | g)", d)
    with pytest.raises(ValueError, match="two rows per trial set"):
        PenalizedSplineClassifier.from_formula("cbind(s, f) ~ s(x)", d)


def test_formula_settings_and_degenerate_responses_are_refused_with_the_cause():
    """A formula fit's knots= and smoothing_params= keys must name its smooths (a typo left the
    smooth at its default), an s() argument given twice is refused (the last one won), a
    smoothing parameter must be a positive number (a string raised numpy's TypeError), and a
    non-Gaussian response without variation among its weighted rows is refused (the fits
    reported NaN deviance explained, or divided by zero)."""
    rng = np.random.default_rng(0)
    n = 200
    d = pd.DataFrame({"x": rng.uniform(size=n), "z": rng.uniform(size=n)})
    d["y"] = np.sin(2 * np.pi * d["x"]) + 0.5 * d["z"] + rng.normal(0, 0.3, n)
    with pytest.raises(ValueError, match=r"smoothing_params has keys \['xx'\] that name no one-variable s\(\)"):
        PenalizedSplineRegressor.from_formula("y ~ s(x, bs='cr')", d, smoothing_params={"xx": 1e6})
    with pytest.raises(ValueError, match=r"knots has keys \['xx'\].*features: \['x'\]"):
        PenalizedSplineRegressor.from_formula("y ~ s(x, bs='cr', k=5)", d, knots={"xx": [0, 0.1, 0.2, 0.3, 0.4]})
    fixed = PenalizedSplineRegressor.from_formula("y ~ s(x, bs='cr')", d, smoothing_params={"x": 1e6})
    assert fixed.smoothing_params_.iloc[0] == pytest.approx(1e6, rel=1e-12)
    with pytest.raises(ValueError, match=r"the argument\(s\) \['k'\] are given more than once"):
        PenalizedSplineRegressor.from_formula("y ~ s(x, k=5, k=20, bs='cr')", d)
    with pytest.raises(ValueError, match=r"smoothing_params for s\(x0\) must be positive \(a number above 0\); got '1'"):
        PenalizedSplineRegressor(smoothing_params={0: "1"}).fit(d[["x", "z"]].to_numpy(), d["y"])
    X = d[["x", "z"]].to_numpy()
    for family, y in (("poisson", np.zeros(n)), ("gamma", np.full(n, 2.0))):
        with pytest.raises(ValueError, match=rf"y has no variation among the rows of positive weight.*no {family} model"):
            PenalizedSplineRegressor(family=family).fit(X, y)


def test_a_smooth_with_more_coefficients_than_rows_is_refused_before_its_basis():
    """k above the number of rows (a P-spline, a random-kernel basis, a tensor product) is
    refused at once, as mgcv refuses it; a P-spline of k = 2,000 on 200 rows used to run for
    minutes and k = 10^9 to fail allocating exabytes."""
    from sklmm import s, te

    rng = np.random.default_rng(0)
    n = 200
    d = pd.DataFrame({"x": rng.uniform(size=n), "z": rng.uniform(size=n)})
    y = np.sin(2 * np.pi * d["x"]) + 0.5 * d["z"] + rng.normal(0, 0.3, n)
    for est, what in ((PenalizedSplineRegressor(smooths=[s("x", k=10**9, bs="ps")]), r"s\(x\) has 1000000000"),
                      (PenalizedSplineRegressor(n_basis=500, basis="rk"), r"s\(x\) has 500"),
                      (PenalizedSplineRegressor(smooths=[te("x", "z", k=(15, 15))]), r"te\(x,z\) has 225")):
        with pytest.raises(ValueError, match=what + r" basis coefficients for 200 rows.*Lower its k"):
            est.fit(d[["x", "z"]], y)


def test_counts_of_the_post_fit_tables_are_checked():
    """partial_dependence's grid_resolution and check_basis_dimension's n_permutations are whole
    numbers of at least 2 and 1 (0 permutations divided by zero; a negative grid raised numpy's
    error and 0 points returned an empty frame)."""
    d = load_mcycle()
    m = PenalizedSplineRegressor(n_basis=8).fit(d[["times"]], d["accel"])
    for bad in (-5, 0, 1, 2.5, True):
        with pytest.raises(ValueError, match=rf"grid_resolution must be an integer of at least 2; got {bad!r}"):
            m.partial_dependence(grid_resolution=bad)
    for bad in (0, -1, 1.0):
        with pytest.raises(ValueError, match=rf"n_permutations must be an integer of at least 1; got {bad!r}"):
            m.check_basis_dimension(n_permutations=bad)
    assert len(m.partial_dependence(grid_resolution=7)) == 7


def test_a_by_factor_with_missing_or_mixed_labels_is_refused_with_the_cause():
    """A by= factor with missing labels is refused as such (it was reported as levels [nan]
    'not seen in fit', while fitting), and one mixing text and numbers with the fix (sorting
    them raised Python's TypeError)."""
    from sklmm import s

    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame({"x": rng.uniform(size=n)})
    y = np.sin(2 * np.pi * X["x"]) + rng.normal(0, 0.3, n)
    m = PenalizedSplineRegressor(smooths=[s("x", by="f", k=5)])
    with pytest.raises(ValueError, match=r"factor 'f' .* mixes text and other labels \(e.g. 'a' and 1\)"):
        m.fit(X.assign(f=pd.Series([1] * 100 + ["a"] * 100, dtype=object)), y)
    with pytest.raises(ValueError, match=r"factor 'f' .* has 5 missing label\(s\) \(rows \[0, 1, 2, 3, 4\]\)"):
        m.fit(X.assign(f=pd.Categorical([None] * 5 + ["b"] * 95 + ["c"] * 100)), y)
    m.fit(X.assign(f=["b"] * 100 + ["c"] * 100), y)
    with pytest.raises(ValueError, match=r"factor 'f' .* has 1 missing label\(s\) \(rows \[0\]\)"):
        m.predict(X.iloc[:2].assign(f=[None, "b"]))
