"""Reliability: bad input fails early with an error naming problem and fix; hard but legal fits
give the right answer with an honest flag; fitted estimators survive pickling, cloning and
parallel model selection. docs/reliability.md lists every case as a table.

Reference numbers come from independent sources only: closed forms, numpy least squares, a
direct generalized-least-squares implementation of the profiled criteria written here, and
lme4's fits in tests/data (via tests/reference.py).
"""

import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklmm._inference.gam_family
import sklmm.mixed
from reference import MODELS, problem
from sklmm import MixedLinearRegressor, PenalizedSplineRegressor, SingularFitWarning
from sklmm._engine.checks import RESTARTS, optimum_problem
from sklmm.datasets import load_mcycle, load_pastes, load_sleepstudy


@pytest.fixture(scope="module")
def sleep_df():
    return load_sleepstudy()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# =============================================================================================
# bad input: an error that names the problem and the fix, before the engine is reached
# =============================================================================================


@pytest.fixture
def no_engine(monkeypatch):
    """Fail the test if the mixed-model engine (cross-products, factorization) is reached."""

    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached the linear algebra")

    monkeypatch.setattr(sklmm.mixed, "fit_mixed", refuse)
    monkeypatch.setattr(sklmm._inference.gam_family, "fit_mixed", refuse)
    monkeypatch.setattr(sklmm._inference.gam_family, "fit_glmm", refuse)


ESTIMATORS = {
    "mixed": lambda **kw: MixedLinearRegressor(**kw),
    "gam": lambda **kw: PenalizedSplineRegressor(n_basis=5, **kw),
}


def _bad_inputs(df):
    """(case, X, y, groups, estimator kwargs, message regex) for both estimators."""
    X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    n = len(y)
    codes = g.cat.codes.to_numpy()
    g_nan = codes.astype(float)
    g_nan[[4, 9]] = np.nan
    g_inf = codes.astype(float)
    g_inf[7] = -np.inf
    X_nan = X.copy()
    X_nan.iloc[3, 0] = np.nan
    X_inf = X.to_numpy().copy()
    X_inf[5, 0] = np.inf
    y_nan = y.to_numpy().copy()
    y_nan[2] = np.nan
    y_inf = y.to_numpy().copy()
    y_inf[2] = np.inf
    half = (df["Days"] > 4).astype(int)
    return [
        ("y shorter than X", X, y.iloc[:-1], g, {}, r"inconsistent numbers of samples.*one row per observation"),
        ("groups shorter than X", X, y, g.iloc[:-2], {}, r"groups has 178 rows but X has 180.*one group label per row"),
        ("NaN in X", X_nan, y, g, {}, r"(?s)Input X contains NaN.*imput"),
        ("inf in X", X_inf, y, g, {}, r"Input X contains infinity.*Fix or drop"),
        ("NaN in y", X, y_nan, g, {}, r"Input y contains NaN.*Drop the rows"),
        ("inf in y", X, y_inf, g, {}, r"Input y contains infinity.*Fix or drop"),
        ("NaN in groups", X, y, g_nan, {}, r"2 missing labels \(NaN/None\), e.g. at rows \[4, 9\]; drop those rows"),
        ("inf in groups", X, y, g_inf, {}, r"1 infinite labels \(inf/-inf\), e.g. at rows \[7\].*fix or drop"),
        ("a single level", X, y, np.zeros(n), {}, r"'group' has a single level.*Drop it from groups"),
        ("a level per row", X, y, np.arange(n), {}, r"180 levels for 180 observations.*coarser grouping"),
        ("random effects >= rows", X, y, np.arange(n) // 2, {"random_slopes": ["Days"]},
         r"90 levels x 2 random coefficient\(s\) = 180 random effects for 180 observations"),
        ("empty input", X.iloc[:0], y.iloc[:0], g.iloc[:0], {}, r"0 sample\(s\).*at least 2 observations"),
        ("strings in X", X.assign(Days=np.where(X["Days"] > 4, "late", "early")), y, g, {},
         r"could not convert string to float.*OneHotEncoder"),
        ("categorical column in X", X.assign(Days=X["Days"].astype("category")), y, g, {},
         r"categorical column\(s\) \['Days'\].*OneHotEncoder.*groups="),
        ("datetime column in X", X.assign(Days=pd.Timestamp("2024-01-01") + pd.to_timedelta(X["Days"], unit="D")),
         y, g, {}, r"datetime or time-duration column\(s\) \['Days'\].*days since a reference date"),
        ("groups given as a column name", X, y, "Subject", {}, r"not a column name.*groups=df\['Subject'\]"),
        ("slope naming no column", X, y, g, {"random_slopes": ["Hours"]},
         r"names 'Hours', which is not a column of X.*set_output"),
        ("slope by an index out of range", X, y, g, {"random_slopes": [2]}, r"column index 2, but X has 1 columns"),
        ("constant slope column", X.assign(one=1.0), y, g, {"random_slopes": ["one"]},
         r"\['one'\] is zero, constant or a linear combination of \['\(Intercept\)'\].*Drop it"),
        ("slope listed twice", X, y, g, {"random_slopes": ["Days", 0]},
         r"random_slopes for 'Subject' lists \['Days'\] more than once"),
        ("slopes collinear with each other", X.assign(D2=2 * X["Days"] + 1), y, g, {"random_slopes": ["Days", "D2"]},
         r"random coefficients of 'Subject' are \(nearly\) collinear: \['D2'\]"),
        ("a factor given twice", X, y, pd.DataFrame({"a": g, "b": g.astype(str)}), {},
         r"'a' and 'b' group the rows identically.*Drop one"),
        ("nested columns inner to outer", X, y,
         pd.DataFrame({"half": g.astype(str) + half.astype(str), "Subject": g}), {"nested": True},
         r"must subdivide the one before it.*groups=df\[\['Subject', 'half'\]\]"),
        ("huge values in y", X, y * 1e120, g, {}, r"y has values of magnitude 4.66e\+122.*Rescale"),
        ("tiny values in X", X * 1e-120, y, g, {}, r"X column 'Days' has values of magnitude 9e-120.*Rescale"),
        ("a 2-D y", X, np.column_stack([y, y]), g, {}, r"1d array.*one response"),
    ]


@pytest.mark.parametrize("kind", ["mixed", "gam"])
def test_bad_input_is_refused_before_the_fit(sleep_df, kind, no_engine):
    for case, X, y, g, kw, pattern in _bad_inputs(sleep_df):
        if kind == "gam" and "one" in getattr(X, "columns", []):
            kw = {**kw, "smooth_features": ["Days"]}  # a constant column cannot be smoothed
        with pytest.raises(ValueError, match=pattern):
            ESTIMATORS[kind](**kw).fit(X, y, groups=g)


def test_unseen_levels_with_unseen_groups_error(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"].astype(str)
    new = pd.Series(["999", "308", "998", "999"])
    for est in (MixedLinearRegressor(unseen_groups="error"),
                PenalizedSplineRegressor(n_basis=5, unseen_groups="error")):
        est.fit(X, y, groups=g)
        with pytest.raises(ValueError, match=r"2 level\(s\) of 'Subject' not seen in fit: \['999', '998'\]."
                                             r" Set unseen_groups='population'"):
            est.predict(X.iloc[:4], groups=new)
        assert np.all(np.isfinite(est.predict(X.iloc[:4])))  # population level needs no labels


def test_unseen_nested_combinations_are_named():
    df = load_pastes()
    X = np.empty((len(df), 0))
    m = MixedLinearRegressor(nested=True, unseen_groups="error").fit(X, df["strength"], groups=df[["batch", "cask"]])
    new = pd.DataFrame({"batch": ["A", "Z"], "cask": ["a", "a"]})
    with pytest.raises(ValueError, match=r"of 'cask:batch' not seen in fit: \['Z:a'\]"):
        m.predict(np.empty((2, 0)), groups=new)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")  # the array X below
def test_predict_input_errors(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    with pytest.raises(NotFittedError):
        MixedLinearRegressor().predict(X, groups=g)
    m = MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.raises(ValueError, match=r"X has 2 features, but MixedLinearRegressor is expecting 1"):
        m.predict(np.c_[X, X], groups=g)
    with pytest.raises(ValueError, match=r"groups has 2 column\(s\) but the model was fitted with 1"):
        m.predict(X, groups=pd.DataFrame({"a": g, "b": g}))
    with pytest.raises(ValueError, match=r"missing labels"):
        m.predict(X, groups=g.astype(object).where(np.arange(len(g)) > 0))
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        m.predict(X.assign(Days=np.nan), groups=g)
    with pytest.raises(ValueError, match=r"(?s)feature names should match.*same order"):
        m.predict(X.rename(columns={"Days": "days"}), groups=g)


# =============================================================================================
# a direct (GLS) implementation of lme4's profiled criteria for random intercepts
# =============================================================================================


def _gls_criterion(y, X, codes, theta, reml):
    """lme4's profiled deviance / REML criterion of ``y = X b + Z u + e`` by generalized least
    squares: ``V = I + theta^2 ZZ'`` is block diagonal, ``V_g^{-1} = I - w_g 11'`` with
    ``w_g = theta^2 / (1 + n_g theta^2)`` and ``log|V| = sum_g log(1 + n_g theta^2)``."""
    n, p = X.shape
    n_g = np.bincount(codes)
    w = theta**2 / (1 + n_g * theta**2)

    def vinv(M):  # V^{-1} M, column by column
        M = M.reshape(n, -1)
        sums = np.stack([np.bincount(codes, M[:, j], minlength=len(n_g)) for j in range(M.shape[1])], 1)
        return M - (w[:, None] * sums)[codes]

    A = X.T @ vinv(X)
    beta = np.linalg.solve(A, X.T @ vinv(y)[:, 0])
    r = y - X @ beta
    q = float(r @ vinv(r)[:, 0])
    ld = float(np.sum(np.log1p(n_g * theta**2)))
    if reml:
        crit = ld + np.linalg.slogdet(A)[1] + (n - p) * (1 + np.log(2 * np.pi * q / (n - p)))
        sigma2 = q / (n - p)
    else:
        crit = ld + n * (1 + np.log(2 * np.pi * q / n))
        sigma2 = q / n
    blup = theta**2 * np.bincount(codes, vinv(r)[:, 0], minlength=len(n_g))  # b = theta^2 Z'V^{-1} r
    return crit, beta, np.sqrt(sigma2), blup


def _gls_fit(y, X, codes, reml):
    """theta minimizing the criterion (grid, then bounded Brent around the best point)."""
    grid = np.r_[0.0, np.geomspace(1e-3, 30, 80)]
    vals = [_gls_criterion(y, X, codes, t, reml)[0] for t in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(lambda t: _gls_criterion(y, X, codes, t, reml)[0], bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-10})
    theta = res.x if res.fun < vals[k] else grid[k]
    return (theta,) + _gls_criterion(y, X, codes, theta, reml)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("sizes", [
    [1, 1, 1, 1, 5, 6, 7, 8],            # groups with one observation
    [150, 1, 1, 2, 1, 3, 1, 2, 1],       # very unbalanced
    [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],   # pairs
])
def test_one_observation_and_unbalanced_groups_match_the_gls_criterion(sizes, reml):
    rng = np.random.default_rng(len(sizes) + 7)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = len(codes)
    x = rng.normal(size=n)
    y = 2 + 0.5 * x + rng.normal(0, 1.0, len(sizes))[codes] + rng.normal(0, 0.7, n)
    X = np.column_stack([np.ones(n), x])
    theta, crit, beta, sigma, blup = _gls_fit(y, X, codes, reml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        m = MixedLinearRegressor(reml=reml).fit(x[:, None], y, groups=codes)
    assert m.converged_
    assert m.criterion_ <= crit + 1e-9 * abs(crit)  # at least as good as the reference optimum
    assert m.criterion_ == pytest.approx(crit, rel=1e-9, abs=1e-8)
    assert m.theta_[0] == pytest.approx(theta, rel=1e-3, abs=1e-4)
    # beta, sigma and the conditional modes at sklmm's theta, from the GLS formulas
    _, beta, sigma, blup = _gls_criterion(y, X, codes, m.theta_[0], reml)
    np.testing.assert_allclose([m.intercept_, m.coef_[0]], beta, rtol=1e-8, atol=1e-10)
    assert m.sigma_ == pytest.approx(sigma, rel=1e-8)
    np.testing.assert_allclose(m.random_effects_["group"]["(Intercept)"].to_numpy(), blup, rtol=1e-6, atol=1e-9)


# =============================================================================================
# singular fits, rank deficiency, scales
# =============================================================================================


def test_zero_variance_component_is_a_singular_fit_at_the_ols_answer():
    rng = np.random.default_rng(11)
    codes = np.repeat(np.arange(12), 6)
    n = len(codes)

    def centre(v):  # no between-group variation at all
        return v - (np.bincount(codes, v) / np.bincount(codes))[codes]

    x = centre(rng.normal(size=n))
    y = 3 - x + centre(rng.normal(size=n))
    for est in (MixedLinearRegressor(reml=False), PenalizedSplineRegressor(smooth_features=[], reml=False)):
        with pytest.warns(SingularFitWarning, match="boundary \\(singular\\) fit"):
            est.fit(x[:, None], y, groups=codes)
        assert est.is_singular_ and est.converged_  # singular is a result, not a failure
        assert est.theta_[0] == pytest.approx(0, abs=1e-4)
        ols, rss = np.linalg.lstsq(np.column_stack([np.ones(n), x]), y, rcond=None)[:2]
        np.testing.assert_allclose([est.intercept_, est.coef_[0]], ols, rtol=1e-7)
        assert est.sigma_ == pytest.approx(np.sqrt(rss[0] / n), rel=1e-7)
        assert "singular" in est.summary()


def test_perfectly_correlated_random_effects_are_flagged_singular():
    """Intercepts and slopes along one direction: lme4 reports a singular fit (correlation 1)."""
    rng = np.random.default_rng(5)
    a, m = 40, 8
    codes = np.repeat(np.arange(a), m)
    x = np.tile(np.linspace(-1, 1, m), a)
    b = rng.normal(0, 2.0, a)
    y = 1 + 2 * x + b[codes] * (1 + 0.5 * x) + rng.normal(0, 0.3, a * m)
    with pytest.warns(SingularFitWarning):
        full = MixedLinearRegressor(random_slopes=[0], reml=False).fit(x[:, None], y, groups=codes)
    assert full.is_singular_ and full.converged_
    vc = full.variance_components_
    assert abs(vc["correlation"].dropna().iloc[0]) == pytest.approx(1, abs=1e-3)
    # the rank-one structure b_i (1 + 0.5 x) is inside the full model: its optimum cannot be worse
    z = (1 + 0.5 * x)[:, None]
    X2 = np.column_stack([x, z[:, 0]])
    sub = _quiet(MixedLinearRegressor(random_slopes=[1], random_intercept=False, reml=False).fit, X2, y, groups=codes)
    assert full.criterion_ <= sub.criterion_ + 1e-7


def test_rank_deficient_fixed_effects_match_lme4_with_names_straight():
    X, y, g, kw, ref = problem("sleep_ri_reml")
    # the first of two aliased columns is kept, as lme4's pivoting QR keeps it
    X2 = pd.DataFrame({"Hours": 24 * X["Days"], "noise_free": 0.5 * X["Days"] - 3, "Days": X["Days"]})
    with pytest.warns(UserWarning, match=r"dropping 2 column\(s\): \['noise_free', 'Days'\]"):
        m = MixedLinearRegressor(**kw).fit(X2, y, groups=g)
    assert m.fixed_effects_names_ == ["(Intercept)", "Hours", "noise_free", "Days"]
    np.testing.assert_allclose(m.coef_, [ref["beta"][1] / 24, 0, 0], rtol=1e-5)
    assert m.intercept_ == pytest.approx(ref["beta"][0], rel=1e-6)
    # REML's log|R_X|^2 sees the kept column at 24 times the scale of lme4's Days
    assert m.criterion_ == pytest.approx(ref["criterion"] + 2 * np.log(24), rel=1e-9)
    # a constant column is aliased with the intercept
    with pytest.warns(UserWarning, match=r"\['c'\]"):
        mc = MixedLinearRegressor(**kw).fit(X.assign(c=7.0), y, groups=g)
    np.testing.assert_allclose(mc.coef_, [ref["beta"][1], 0], rtol=1e-5)


def test_fixed_column_far_from_centred_is_kept_as_lme4_keeps_it():
    """lme4's rank test drops a column when its residual on the earlier ones has a norm below
    1e-7 of its own (LINPACK's QR): Days + 1e4 (|mean|/sd 3,500) is kept, and the fit is the
    centred one's (equivariance: only the intercept moves). It used to be dropped, with the
    warning "as lme4 does". Past what the cross-products resolve (Days + 1e6) the column is
    dropped with a warning that says so and to centre it, not a fit that has lost its digits."""
    X, y, g, kw, _ = problem("sleep_ri_reml")
    base = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no rank-deficiency warning)
        far = MixedLinearRegressor(**kw).fit(X + 1e4, y, groups=g)
    assert far.criterion_ == pytest.approx(base.criterion_, rel=1e-8)
    np.testing.assert_allclose(far.coef_, base.coef_, rtol=1e-6)
    assert far.intercept_ == pytest.approx(base.intercept_ - 1e4 * base.coef_[0], rel=1e-8)
    with pytest.warns(UserWarning, match=r"\['Days'\] are nearly collinear.*lme4 keeps them.*Centre or rescale"):
        dropped = MixedLinearRegressor(**kw).fit(X + 1e6, y, groups=g)
    assert dropped.coef_[0] == 0.0


def test_rank_deficient_linear_term_in_a_gam_is_dropped():
    d = load_mcycle()
    X = d[["times"]].assign(t2=2 * d["times"] + 1)
    # the linear feature comes first in the fixed effects, so the smooth's linear part is dropped
    with pytest.warns(UserWarning, match=r"dropping 1 column\(s\): \['s\(times\)\.fx0'\]"):
        gam = PenalizedSplineRegressor(smooth_features=["times"], n_basis=20).fit(X, d["accel"])
    ref = PenalizedSplineRegressor(n_basis=20).fit(d[["times"]], d["accel"])
    assert gam.linear_features_ == ["t2"] and gam.fixed_effects_names_[-1] == "s(times).fx0"
    np.testing.assert_allclose(gam.predict(X), ref.predict(d[["times"]]), rtol=1e-5, atol=1e-5)
    assert gam.edf_total_ == pytest.approx(ref.edf_total_, rel=1e-6)


@pytest.mark.parametrize("c", [1e-8, 1e8, -3.0])
def test_response_scale_is_exactly_equivariant(sleep_df, c):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    a = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    b = MixedLinearRegressor(random_slopes=["Days"]).fit(X, c * y, groups=g)
    # the same start and steps; rounding may end the optimizer a few 1e-8 apart in theta
    np.testing.assert_allclose(b.theta_, a.theta_, rtol=1e-6, atol=1e-7)
    assert b.intercept_ == pytest.approx(c * a.intercept_, rel=1e-7)
    np.testing.assert_allclose(b.coef_, c * a.coef_, rtol=1e-6)
    assert b.sigma_ == pytest.approx(abs(c) * a.sigma_, rel=1e-7)
    # (random effects are about 25 here: atol is 4e-7 of their scale)
    np.testing.assert_allclose(b.random_effects_["Subject"], c * a.random_effects_["Subject"],
                               rtol=1e-5, atol=1e-5 * abs(c))
    n, p = len(y), 2
    assert b.criterion_ == pytest.approx(a.criterion_ + 2 * (n - p) * np.log(abs(c)), rel=1e-10)
    gam_a = PenalizedSplineRegressor(n_basis=8).fit(X, y, groups=g)
    gam_b = PenalizedSplineRegressor(n_basis=8).fit(X, c * y, groups=g)
    np.testing.assert_allclose(gam_b.predict(X, groups=g), c * gam_a.predict(X, groups=g), rtol=1e-6)
    np.testing.assert_allclose(gam_b.edf_, gam_a.edf_, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("c", [1e-8, 1e8])
def test_feature_scale_is_exactly_equivariant(sleep_df, c):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    a = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    b = MixedLinearRegressor(random_slopes=["Days"]).fit(c * X, y, groups=g)
    # T' = diag(1, 1/c) T: the slope rows of theta scale by 1/c
    assert b.converged_ and b.is_singular_ == a.is_singular_  # lme4's isSingular is not scale-free
    np.testing.assert_allclose(b.theta_, a.theta_ * np.array([1, 1 / c, 1 / c]), rtol=1e-4)
    np.testing.assert_allclose(b.coef_ * c, a.coef_, rtol=1e-6)
    np.testing.assert_allclose(b.predict(c * X, groups=g), a.predict(X, groups=g), rtol=1e-6)
    # REML's log|R_X|^2 gains 2 log|c| from the rescaled column
    assert b.criterion_ == pytest.approx(a.criterion_ + 2 * np.log(c), abs=1e-7)


@pytest.mark.parametrize("c", [1e-3, 1e3])
def test_glmm_correlated_slope_follows_the_feature_scale(c):
    """A GLMM's random slope starts in its column's natural unit, as the linear model's: a
    slope column in grams instead of kilograms (x 1,000) gives the same fit. It used to start at
    an sd of 1 per gram, sending PIRLS's linear predictor into the thousands, and reported a
    garbage optimum (a coefficient of -3.7e10) as converged, with a false separation warning."""
    from sklmm import MixedLogisticRegression, MixedPoissonRegressor

    rng = np.random.default_rng(0)
    n, G = 300, 15
    g, x = rng.integers(0, G, n), rng.normal(size=n)
    eta = 0.5 * x + rng.normal(size=G)[g] + 0.3 * rng.normal(size=G)[g] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    counts = rng.poisson(np.exp(eta))
    for est, resp in ((MixedLogisticRegression, y), (MixedPoissonRegressor, counts)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no separation, overflow or convergence warning ...
            warnings.simplefilter("ignore", SingularFitWarning)  # (... the Poisson slope's sd is near 0)
            a = est(random_slopes=[0]).fit(x[:, None], resp, groups=g)
            b = est(random_slopes=[0]).fit(c * x[:, None], resp, groups=g)
        assert b.converged_ and b.is_singular_ == a.is_singular_
        assert b.criterion_ == pytest.approx(a.criterion_, abs=1e-6 * abs(a.criterion_))
        np.testing.assert_allclose(np.ravel(b.coef_) * c, np.ravel(a.coef_), rtol=1e-3)


# =============================================================================================
# non-convergence, degenerate responses, lost precision: flagged, never silent
# =============================================================================================


def test_iteration_limit_is_reported(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    for est in (MixedLinearRegressor(random_slopes=["Days"], max_iter=5),
                PenalizedSplineRegressor(n_basis=6, max_iter=2)):
        with pytest.warns(ConvergenceWarning, match=r"MAXEVAL_REACHED after \d+ evaluations.*raise max_iter"):
            est.fit(X, y, groups=g)
        assert est.converged_ is False and est.n_iter_ <= est.max_iter
        assert "NOT converged" in est.summary()


@pytest.mark.parametrize("solver", ["dense", "blocked"])
@pytest.mark.parametrize("offset", [300, 1000, 3000])
def test_random_slopes_on_an_uncentred_column_are_right_or_flagged(sleep_df, solver, offset):
    """A slope covariate far from 0 (a calendar year, say) makes intercept and slope nearly
    collinear: lme4 stops at a wrong, singular optimum with a warning. sklmm warns before the
    fit, and the fit is then either the centred model's optimum or reported as not converged."""
    X, y, g = sleep_df[["Days"]] + offset, sleep_df["Reaction"], sleep_df["Subject"]
    centred = MixedLinearRegressor(random_slopes=["Days"]).fit(X - X.mean(), y, groups=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = MixedLinearRegressor(random_slopes=["Days"], solver=solver).fit(X, y, groups=g)
    messages = [str(w.message) for w in caught]
    assert any("'Days' of 'Subject' is far from centred" in msg and "Center the column" in msg for msg in messages)
    if m.converged_:
        assert m.criterion_ == pytest.approx(centred.criterion_, abs=1e-3)
    else:
        assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # a moderate offset converges to the same optimum without any warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        near = MixedLinearRegressor(random_slopes=["Days"], solver=solver).fit(X - offset + 10, y, groups=g)
    assert near.criterion_ == pytest.approx(centred.criterion_, abs=1e-6)


@pytest.mark.parametrize("solver", ["dense", "blocked", "cholmod"])
def test_after_a_fit_in_centred_coordinates_everything_is_in_the_users(sleep_df, solver):
    """A correlated slope column far from centred is fitted centred (the same model). What the
    user reads is in the user's coordinates, so each quantity of the shifted fit is that of the
    fit on the centred column, transformed as the intercept at x = 0 is: b_0 = b_0' - s b_1'
    (variances likewise); quantities of the slope, sigma and predictions are unchanged."""
    pytest.importorskip("sksparse") if solver == "cholmod" else None
    s = 300.0  # |mean| / sd of Days + 300 is 106
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    a = MixedLinearRegressor(random_slopes=["Days"], solver=solver).fit(X, y, groups=g)
    with pytest.warns(UserWarning, match="sklmm fits this term in centred coordinates"):
        b = MixedLinearRegressor(random_slopes=["Days"], solver=solver).fit(X + s, y, groups=g)
    assert a._fit.terms[0].shift is None and b._fit.terms[0].shift is not None
    M = np.array([[1.0, -s], [0.0, 1.0]])
    assert b.converged_ and b.criterion_ == pytest.approx(a.criterion_, rel=1e-10)
    # theta_ is lme4's: the lower factor of M T T' M'
    Ta, Tb = (np.array([[f.theta_[0], 0.0], [f.theta_[1], f.theta_[2]]]) for f in (a, b))
    np.testing.assert_allclose(Tb @ Tb.T, M @ Ta @ Ta.T @ M.T, rtol=1e-5)
    np.testing.assert_allclose(b.random_effects_["Subject"], a.random_effects_["Subject"] @ M.T, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(b.random_effects_cov("Subject"),
                               np.einsum("ab,jbc,dc->jad", M, a.random_effects_cov("Subject"), M), rtol=1e-4)
    np.testing.assert_allclose(b.random_effects_std_["Subject"]["Days"], a.random_effects_std_["Subject"]["Days"], rtol=1e-5)
    va = a.variance_components_.set_index(["factor", "term", "term2"])["variance"]
    vb = b.variance_components_.set_index(["factor", "term", "term2"])["variance"]
    Sa = np.array([[va.iloc[0], va.iloc[2]], [va.iloc[2], va.iloc[1]]])
    np.testing.assert_allclose([vb.iloc[0], vb.iloc[1], vb.iloc[2]],
                               [(M @ Sa @ M.T)[0, 0], Sa[1, 1], (M @ Sa @ M.T)[0, 1]], rtol=1e-5)
    fa, fb = a.fixed_effects_, b.fixed_effects_
    # (two fits of one optimum agree in theta to the optimizer's tolerance, ~1e-5 relative:
    # BOBYQA stops when a step gains less than 1e-12 of the criterion, which is flat there)
    assert fb.loc["Days", "std_error"] == pytest.approx(fa.loc["Days", "std_error"], rel=1e-5)
    assert fb.loc["Days", "df"] == pytest.approx(fa.loc["Days", "df"], rel=1e-3)
    ma, sa = a.predict(X, groups=g, return_std=True)
    mb, sb = b.predict(X + s, groups=g, return_std=True)
    np.testing.assert_allclose(mb, ma, rtol=1e-6)
    np.testing.assert_allclose(sb, sa, rtol=1e-4)
    pa = a.confidence_intervals("profile")
    pb = b.confidence_intervals("profile")
    for row in ["sd_Days|Subject", "sigma", "Days"]:
        np.testing.assert_allclose(pb.loc[row].to_numpy(), pa.loc[row].to_numpy(), rtol=1e-3)


@pytest.fixture
def premature_optimizer(monkeypatch):
    """Make the optimizer's first n_bad runs stop after 3 evaluations but claim convergence."""
    import sklmm._engine.optimize as engine  # the fit and the checks' restarts call it here

    real = engine.minimize_bobyqa
    state = {"bad": 0}

    def stops_early(*args, **kwargs):
        if state["bad"] > 0:
            state["bad"] -= 1
            summ = real(*args, **{**kwargs, "max_evals": 3})
            summ.converged, summ.return_code = True, "FTOL_REACHED"
            return summ
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "minimize_bobyqa", stops_early)
    return state


def test_a_premature_stop_is_restarted_or_reported(premature_optimizer):
    # ML: on this balanced design the moment start is REML's optimum already (3 evaluations
    # from it are not premature), but not ML's
    X, y, g, kw, ref = problem("sleep_slope_ml")
    # a false "converged" is caught by the gradient check and the restart reaches lme4's optimum
    premature_optimizer["bad"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    assert m.converged_ and m.criterion_ == pytest.approx(ref["criterion"], rel=1e-9)
    # when every restart stops early too, the fit is reported as not converged
    premature_optimizer["bad"] = 1 + RESTARTS
    with pytest.warns(ConvergenceWarning, match=r"fails lme4's convergence check: .*converged_ is False"):
        m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    assert m.converged_ is False and "NOT converged" in m.summary()


def test_the_convergence_check_on_known_functions():
    lower = np.array([0.0, -np.inf])
    quad = lambda x: (x[0] - 1) ** 2 + 10 * (x[1] + 2) ** 2 + 5 * (x[0] - 1) * (x[1] + 2)  # noqa: E731
    assert optimum_problem(quad, np.array([1.0, -2.0]), lower, quad([1.0, -2.0])) is None
    assert "scaled gradient" in optimum_problem(quad, np.array([1.1, -2.0]), lower, quad([1.1, -2.0]))
    # at the bound with the criterion rising into the interior: a legitimate (singular) optimum
    up = lambda x: (x[0] + 1) ** 2 + x[1] ** 2  # noqa: E731
    assert optimum_problem(up, np.array([0.0, 0.0]), lower, up([0.0, 0.0])) is None
    down = lambda x: (x[0] - 1) ** 2 + x[1] ** 2  # noqa: E731
    assert "off its bound" in optimum_problem(down, np.array([0.0, 0.0]), lower, down([0.0, 0.0]))
    # a saddle: the Hessian is not positive definite
    saddle = lambda x: (x[0] - 1) ** 2 - x[1] ** 2 + 0.01 * x[1]  # noqa: E731
    x = np.array([1.0, 0.0])
    assert "not positive definite" in optimum_problem(saddle, x, lower, saddle(x))
    # natural units: the same check on a parameter measured in units of 1e-8
    tiny = lambda x: quad(x * [1, 1e8])  # noqa: E731
    assert optimum_problem(tiny, np.array([1.0, -2e-8]), lower, quad([1, -2]), scale=np.array([1, 1e-8])) is None


def test_no_false_alarms_on_the_lme4_and_mgcv_reference_fits():
    for key in MODELS:
        X, y, g, kw, ref = problem(key)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m = MixedLinearRegressor(**kw).fit(X, y, groups=g)
        assert m.converged_ and m.is_singular_ == ref["is_singular"], key
    d = load_mcycle()
    for basis in ("cr", "ps", "rk"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gam = PenalizedSplineRegressor(n_basis=20, basis=basis).fit(d[["times"]], d["accel"])
        assert gam.converged_  # (the fits themselves are compared with mgcv in test_mgcv_reference.py)


def test_response_fitted_exactly_is_an_error_not_a_zero_variance(sleep_df):
    X, g = sleep_df[["Days"]], sleep_df["Subject"]
    for y in (np.full(len(g), 3.0), 2 * X["Days"] - 1):
        with pytest.raises(ValueError, match=r"y is fitted exactly by the fixed effects.*not a feature"):
            MixedLinearRegressor().fit(X, y, groups=g)
    y = 2 * X["Days"] + g.cat.codes  # a copy of the group means: no residual at all
    with pytest.raises(ValueError, match=r"y is fitted exactly by the (fixed and random effects|model)"):
        MixedLinearRegressor().fit(X, y, groups=g)
    # a GAM without grouping factors: the fitted values are exact whatever lambda, so a warning;
    # with no residual at all (integer data) the criterion is log(0) everywhere: an error
    line = 2 * X["Days"] - 1
    with pytest.warns(UserWarning, match=r"fitted exactly by the unpenalized part"):
        with pytest.raises(ValueError, match=r"y is fitted exactly by the model"):
            PenalizedSplineRegressor(n_basis=5).fit(X, line)
    wiggle = line + 1e-9 * np.sin(np.arange(len(line)))  # below rounding of the cross-products
    with pytest.warns(UserWarning, match=r"fitted exactly by the unpenalized part"):
        gam = PenalizedSplineRegressor(n_basis=5).fit(X, wiggle)  # (and a ConvergenceWarning)
    np.testing.assert_allclose(gam.predict(X), line, atol=1e-8)


def test_response_offset_that_swamps_its_variation_is_flagged(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    with pytest.warns(UserWarning, match=r"residual variation of y is tiny.*subtract it"):
        MixedLinearRegressor().fit(X, y + 1e6, groups=g)
    # refused before the fit, by both estimators: the GAM used to take y + 1e9 for an exact fit
    # and collapse its smooth to a straight line, with a false warning
    for est in (MixedLinearRegressor(), PenalizedSplineRegressor(n_basis=6)):
        with pytest.raises(ValueError, match=r"y has a constant offset \(1e\+09\) about 2e\+07 times its spread.*y - y.mean"):
            est.fit(X, y + 1e9, groups=g)
    # moderate offsets are harmless
    a = MixedLinearRegressor().fit(X, y, groups=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = MixedLinearRegressor().fit(X, y + 1e3, groups=g)
    np.testing.assert_allclose(b.theta_, a.theta_, rtol=1e-5)


@pytest.mark.xfail(strict=True, reason=(
    "known limitation: the engine forms [X y]'[X y] without centring, so an offset of ~1e3 sd "
    "in y costs ~7 digits of the criterion (lme4 is exact here); fixed by shifting y by its "
    "least-squares fit before the cross-products (see docs/reliability.md)"))
@pytest.mark.filterwarnings("ignore:the residual variation of y is tiny")  # the point of the test
def test_large_response_offset_is_exactly_equivariant(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    a = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    b = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y + 1e5, groups=g)
    np.testing.assert_allclose(b.theta_, a.theta_, rtol=1e-6)


# =============================================================================================
# pickle, clone, joblib processes
# =============================================================================================


def test_pickle_roundtrip_gives_identical_predictions(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    new_g = pd.Series(list(g.iloc[:6]) + ["unseen"] * 4, dtype=object)
    fits = [
        MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g),
        PenalizedSplineRegressor(n_basis=6).fit(X, y, groups=g),
    ]
    for est in fits:
        back = pickle.loads(pickle.dumps(est))
        for Xs, groups in ((X, None), (X, g), (X.iloc[:10], new_g.to_numpy())):
            np.testing.assert_array_equal(back.predict(Xs, groups=groups), est.predict(Xs, groups=groups))
        assert back.get_params() == est.get_params()
        c = clone(est)
        assert c.get_params() == est.get_params() and not hasattr(c, "theta_")
        np.testing.assert_array_equal(c.fit(X, y, groups=g).predict(X, groups=g), est.predict(X, groups=g))


@pytest.mark.parametrize("kind", ["mixed", "gam"])
def test_cross_validate_and_grid_search_in_joblib_processes(sleep_df, kind):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    est = ESTIMATORS[kind]()
    cv = GroupKFold(3)
    with joblib.parallel_config(backend="loky"):
        serial = cross_validate(est, X, y, groups=g, cv=cv, params={"groups": g}, n_jobs=1)
        parallel = cross_validate(est, X, y, groups=g, cv=cv, params={"groups": g}, n_jobs=2,
                                  return_estimator=True)
        np.testing.assert_array_equal(parallel["test_score"], serial["test_score"])
        assert all(e.n_groups_ == {"Subject": 12} for e in parallel["estimator"])
        pipe = make_pipeline(StandardScaler().set_output(transform="pandas"), est)
        step = pipe.steps[-1][0]
        grid = {f"{step}__reml": [True, False]}
        gs1 = GridSearchCV(pipe, grid, cv=cv, n_jobs=1).fit(X, y, groups=g, **{f"{step}__groups": g})
        gs2 = GridSearchCV(pipe, grid, cv=cv, n_jobs=2).fit(X, y, groups=g, **{f"{step}__groups": g})
    np.testing.assert_array_equal(gs2.cv_results_["mean_test_score"], gs1.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(gs2.best_estimator_.predict(X, groups=g), gs1.best_estimator_.predict(X, groups=g))


def test_the_convergence_check_does_not_flag_rounding_noise_of_huge_criteria():
    """A deviance of 3e9 (10^9 rows) is resolved to ~1e-6; lme4's absolute 2e-3 on the gradient
    is below what central differences with step 1e-4 can see there, so the tolerance is raised
    to the resolution, while a real slope is still caught."""
    lower = np.array([0.0, -np.inf])
    C = 3e9

    def noisy(x):  # a quadratic at (1, -2) plus rounding-size noise of relative size 1e-15
        return C + (x[0] - 1) ** 2 + (x[1] + 2) ** 2 + 1e-15 * C * np.sign(np.sin(1e6 * x[0] + 3e6 * x[1]))

    x = np.array([1.0, -2.0])
    assert optimum_problem(noisy, x, lower, noisy(x)) is None
    far = np.array([1.5, -2.0])  # gradient 1.0, well above the resolution 0.3
    assert optimum_problem(noisy, far, lower, noisy(far)) is not None


def test_the_scaled_gradient_test_allows_the_optimizers_relative_accuracy():
    """With n large the Hessian is large: a point whose predicted further decrease is below
    1e-11 of the criterion passes (lme4's fixed 2e-3 flags such fits), a real gap does not."""
    lower = np.array([-np.inf])
    C, h = 3e6, 1e6

    def f(x):
        return C + 0.5 * h * (x[0] - 1.0) ** 2

    close = np.array([1.0 + 3e-6])  # scaled gradient 3e-3, predicted decrease 4.5e-6
    assert optimum_problem(f, close, lower, f(close)) is None
    far = np.array([1.0 + 3e-5])  # scaled gradient 3e-2, predicted decrease 4.5e-4
    assert "scaled gradient" in optimum_problem(f, far, lower, f(far))


def test_covariance_probe_finds_the_descent_that_theta_hides():
    """At a singular T_k the criterion is flat to first order in theta along the null space of
    S = T T', so the gradient check passes; the probe's first-order condition in S catches a
    descent there. At a regular point theta is a good chart: the probe leaves it to the gradient
    check, which sees the same descent."""
    from sklmm._engine.checks import covariance_probe, optimum_problem
    from sklmm._engine.terms import RandomTerm

    term = RandomTerm(name="g", levels=np.arange(3), codes=None, values=np.zeros((0, 2)),
                      column_names=["(Intercept)", "x"], correlated=True)
    v = np.array([0.0, 1.0])

    S0 = np.diag([1.0, 0.0])

    def objective(theta):  # |S - S0|^2, falling along v v' (the null direction of S0)
        T = term.template(theta)
        S = T @ T.T
        return float(np.sum((S - S0) ** 2) - 0.5 * v @ S @ v)

    candidates = [(term, np.arange(3), np.ones(2))]
    singular = np.array([1.0, 0.0, 0.0])  # T = diag(1, 0)
    f0 = objective(singular)
    assert optimum_problem(objective, singular, np.array([0.0, -np.inf, 0.0]), f0) is None
    better = covariance_probe(objective, singular, f0, candidates)
    assert better is not None and objective(better) < f0 - 1e-3
    regular = np.array([1.0, 0.0, 0.1])  # T = diag(1, 0.1): the same descent, visible in theta
    f1 = objective(regular)
    assert covariance_probe(objective, regular, f1, candidates) is None
    assert "gradient" in optimum_problem(objective, regular, np.array([0.0, -np.inf, 0.0]), f1)


# =============================================================================================
# a fitted model is read-only: any number of threads gives what one thread gives
# =============================================================================================


def _in_threads(calls, n_threads=4):
    """Run every call in each of n threads started together; the results, per call."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(n_threads)

    def worker(_):
        barrier.wait()
        return [call() for call in calls]

    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(worker, range(n_threads)))


def _same(a, b):
    if isinstance(a, (pd.DataFrame, pd.Series)):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
    elif isinstance(a, tuple):
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, str):
        assert a == b
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fresh", ["fitted", "unpickled"])
def test_threads_reading_one_fitted_model_get_what_one_thread_gets(sleep_df, fresh):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]

    def model():
        m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
        return pickle.loads(pickle.dumps(m)) if fresh == "unpickled" else m  # factor rebuilt lazily

    def calls(m):
        return [
            lambda: m.fixed_effects_, lambda: m.summary(), lambda: m.random_effects_std_,
            lambda: m.predict(X, groups=g, return_std=True), lambda: m.predict_interval(X, groups=g),
            lambda: m.confidence_intervals("wald"), lambda: m.confidence_intervals("profile"),
            lambda: m.variance_components_, lambda: m.random_effects_cov("Subject"),
        ]

    want = [call() for call in calls(model())]  # one thread, its own model
    for _ in range(3):  # races show up now and then: three rounds, each on a fresh model
        for results in _in_threads(calls(model())):  # four threads, one shared model
            for got, expected in zip(results, want):
                _same(got, expected)


def test_threads_reading_one_fitted_gam_get_what_one_thread_gets(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]

    def calls(m):
        return [lambda: m.predict(X, groups=g, return_std=True), lambda: m.partial_dependence(),
                lambda: m.summary(), lambda: m.variance_components_]

    def model():
        return PenalizedSplineRegressor(n_basis=6).fit(X, y, groups=g)

    want = [call() for call in calls(model())]
    for results in _in_threads(calls(model())):
        for got, expected in zip(results, want):
            _same(got, expected)


# =============================================================================================
# parameters are checked the scikit-learn way, before the fit
# =============================================================================================


@pytest.mark.parametrize("estimator, param, value", [
    (MixedLinearRegressor, "fit_intercept", "False"),  # a truthy string was taken as True
    (MixedLinearRegressor, "reml", "no"),
    (MixedLinearRegressor, "correlated_slopes", 1.5),
    (MixedLinearRegressor, "nested", "yes"),
    (MixedLinearRegressor, "max_iter", 0),
    (MixedLinearRegressor, "max_iter", 2.5),
    (MixedLinearRegressor, "unseen_groups", "zero"),
    (MixedLinearRegressor, "solver", "sparse"),
    (MixedLinearRegressor, "warm_start", "no"),
    (MixedLinearRegressor, "verbose", "loud"),
    (MixedLinearRegressor, "group_columns", 3.5),
    (MixedLinearRegressor, "formula", 3),
    (PenalizedSplineRegressor, "reml", "False"),
    (PenalizedSplineRegressor, "n_basis", "10"),
    (PenalizedSplineRegressor, "n_basis", 2),
    (PenalizedSplineRegressor, "basis", "te"),
    (PenalizedSplineRegressor, "knots", [1.0, 2.0]),
    (PenalizedSplineRegressor, "smoothing_params", 1.0),
    (PenalizedSplineRegressor, "smooth_features", "times"),
])
def test_wrong_parameter_types_and_values_fail_at_fit_with_scikit_learns_message(sleep_df, estimator, param, value):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    with pytest.raises(InvalidParameterError, match=rf"The '{param}' parameter of {estimator.__name__} must be"):
        estimator(**{param: value}).fit(X, y, groups=g)


@pytest.mark.parametrize("param, value", [
    ("n_basis", {"time": 5}), ("basis", {"tmes": "ps"}), ("knots", {0.5: [1.0, 2.0]}),
    ("smoothing_params", {"accel": 1.0}),
])
def test_per_feature_dicts_refuse_unknown_keys(param, value):
    d = load_mcycle()
    with pytest.raises(ValueError, match=rf"{param} has keys \[.*\] that are not smooth features"):
        PenalizedSplineRegressor(**{param: value}).fit(d[["times"]], d["accel"])


@pytest.mark.parametrize("level", [95, 0, 1, -0.5, 1.5, "0.95"])
def test_levels_outside_zero_one_are_refused_everywhere(sleep_df, level):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    m = MixedLinearRegressor().fit(X, y, groups=g)
    gam = PenalizedSplineRegressor(n_basis=5).fit(X, y)
    for call in (lambda: m.predict_interval(X, groups=g, level=level),
                 lambda: m.confidence_intervals("wald", level=level),
                 lambda: m.plot_random_effects(level=level),
                 lambda: gam.partial_dependence(level=level),
                 lambda: gam.plot_partial_dependence(level=level)):
        with pytest.raises(ValueError, match="level must be a number strictly between 0 and 1"):
            call()


# =============================================================================================
# every entry point checks what fit checks
# =============================================================================================


@pytest.mark.parametrize("weights, match", [
    (-np.ones(180), "sample_weight must be positive and finite"),
    (np.zeros(180), "sample_weight must be positive and finite"),  # r2's sums divided by 0 before
    (np.r_[np.ones(179), np.nan], "sample_weight must be positive and finite"),
    (np.ones(20), r"sample_weight has shape \(20,\) but X has 180 rows"),
    (np.array(["a"] * 180), "sample_weight must be numeric"),
])
def test_score_checks_its_weights_as_fit_does(sleep_df, weights, match):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    for est in (MixedLinearRegressor(), PenalizedSplineRegressor(n_basis=5)):
        m = est.fit(X, y, groups=g)
        with pytest.raises(ValueError, match=match):
            m.score(X, y, groups=g, sample_weight=weights)
    with pytest.raises(ValueError, match=match):
        MixedLinearRegressor().fit(X, y, groups=g, sample_weight=weights)


@pytest.mark.parametrize("kind", ["datetime", "timedelta", "tz-aware datetime"])
def test_dates_and_durations_as_the_response_are_refused_with_the_fix(sleep_df, kind):
    X, g = sleep_df[["Days"]], sleep_df["Subject"]
    base = pd.Timestamp("2020-01-01") + pd.to_timedelta(sleep_df["Reaction"], unit="s")
    y = {"datetime": base, "timedelta": base - pd.Timestamp("2020-01-01"),
         "tz-aware datetime": base.dt.tz_localize("UTC")}[kind]
    msg = "holds (datetimes|time durations).*convert it first"
    for est in (MixedLinearRegressor(), PenalizedSplineRegressor(n_basis=5)):
        with pytest.raises(ValueError, match=msg):
            est.fit(X, y, groups=g)
        with pytest.raises(ValueError, match=msg):
            est.fit(X, sleep_df["Reaction"], groups=g).score(X, y, groups=g)


# =============================================================================================
# names are never silently confused
# =============================================================================================


def test_a_feature_named_like_a_term_sklmm_makes_is_refused(sleep_df):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    bad = X.assign(**{"(Intercept)": 1.0 + np.arange(180) % 3})
    with pytest.raises(ValueError, match=r"name\(s\) \['\(Intercept\)'\] twice"):
        MixedLinearRegressor().fit(bad, y, groups=g)
    MixedLinearRegressor(fit_intercept=False).fit(bad, y, groups=g)  # no intercept of sklmm's: fine
    with pytest.raises(ValueError, match=r"name\(s\) \['\(Intercept\)'\] twice"):
        PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5).fit(bad, y)
    gam_bad = X.assign(**{"s(Days).fx0": np.cos(np.arange(180))})
    with pytest.raises(ValueError, match=r"name\(s\) \['s\(Days\)\.fx0'\] twice"):
        PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5).fit(gam_bad, y)
    with pytest.raises(ValueError, match=r"grouping factor\(s\) \['s\(Days\)'\] are named like smooth terms"):
        PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5).fit(X, y, groups=g.rename("s(Days)"))


@pytest.mark.parametrize("columns", [[1, "1"], ["g", "g"]])
def test_group_columns_whose_names_repeat_as_text_are_refused(sleep_df, columns):
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    groups = pd.DataFrame({"a": g, "b": (np.arange(180) % 7).astype(str)})
    groups.columns = columns
    with pytest.raises(ValueError, match="groups has columns whose names repeat as text"):
        MixedLinearRegressor().fit(X, y, groups=groups)


def test_integer_column_labels_are_names_not_positions(sleep_df):
    """X with integer labels [7, 3]: random_slopes=[3] is the column labelled 3 (the second),
    names in the tables are the labels, and a reordered X at predict is refused."""
    y, g = sleep_df["Reaction"], sleep_df["Subject"]
    noise = np.cos(np.arange(180))
    X = pd.DataFrame({7: noise, 3: sleep_df["Days"].to_numpy()})
    m = MixedLinearRegressor(random_slopes=[3]).fit(X, y, groups=g)
    ref = MixedLinearRegressor(random_slopes=["Days"]).fit(pd.DataFrame({"noise": noise, "Days": X[3]}), y, groups=g)
    assert m.criterion_ == pytest.approx(ref.criterion_, rel=1e-12)
    assert m.theta_names_ == ["Subject.(Intercept)", "Subject.3.(Intercept)", "Subject.3"]
    assert m.fixed_effects_names_ == ["(Intercept)", "7", "3"]
    with pytest.raises(ValueError, match="integer labels are names, not positions"):
        MixedLinearRegressor(random_slopes=[1]).fit(X, y, groups=g)  # no column labelled 1
    with pytest.raises(ValueError, match=r"X has the column labels \[3, 7\] but was fitted with \[7, 3\]"):
        m.predict(X[[3, 7]], groups=g)
    np.testing.assert_array_equal(m.predict(X, groups=g), m.predict(X.to_numpy(), groups=g))
    gam = PenalizedSplineRegressor(smooth_features=[3], n_basis={3: 6}).fit(X, y)
    assert list(gam.edf_.index) == ["s(3)"] and gam.smooths_[0].n_basis == 6


# =============================================================================================
# the accepted range is the range where everything works
# =============================================================================================


def _everything(m, X, g):
    """What a user reads after the fit, in one dict."""
    fe = m.fixed_effects_
    mean, se = m.predict(X, groups=g, return_std=True)
    return dict(theta=m.theta_, sigma=m.sigma_, criterion=m.criterion_, se=fe["std_error"].to_numpy(),
                df=fe["df"].to_numpy(), p=fe["p_value"].to_numpy(), mean=mean, pse=se,
                re_sd=m.random_effects_std_["Subject"].to_numpy(), ci=m.confidence_intervals("profile").to_numpy())


@pytest.mark.parametrize("c", [1e6, 1e-6, 1e-15, 1e15])
def test_the_units_of_prior_weights_do_not_matter(sleep_df, c):
    """Weights w and c w are the same model (sigma^2 -> c sigma^2, theta -> theta / sqrt(c)):
    inverse variances in any unit. At 1e6 a false ConvergenceWarning came, at 1e-15 and 1e15 a
    wrong optimum; now every quantity agrees, without a warning."""
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    a = _everything(MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g, sample_weight=w), X, g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g, sample_weight=c * w)
        b = _everything(m, X, g)
    assert m.converged_ and b["criterion"] == pytest.approx(a["criterion"], rel=1e-10)
    np.testing.assert_allclose(b["theta"] * np.sqrt(c), a["theta"], rtol=1e-6)
    assert b["sigma"] / np.sqrt(c) == pytest.approx(a["sigma"], rel=1e-8)
    for key in ("se", "df", "p", "mean", "pse", "re_sd"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=key)
    ci_b = b["ci"].copy()
    ci_b[3] /= np.sqrt(c)  # the sigma row
    np.testing.assert_allclose(ci_b, a["ci"], rtol=1e-5)
    sim = m.simulate(200, random_state=0)  # residual sd sigma / sqrt(c w): the data's scale
    assert np.std(sim - sim.mean(axis=1, keepdims=True)) == pytest.approx(np.std(y), rel=0.5)


@pytest.mark.parametrize("y_scale, x_scale", [(1e90, 1.0), (1e-90, 1.0), (1.0, 1e90), (1.0, 1e-90), (1e-45, 1e45)])
def test_every_derived_quantity_is_right_at_the_ends_of_the_accepted_scales(sleep_df, y_scale, x_scale):
    """y and X anywhere in the accepted magnitudes (1e-100 to 1e100): standard errors,
    Satterthwaite df, p-values, profile intervals, prediction standard errors and conditional
    variances equal the unit-scale fit's, rescaled (df were NaN at 1e90, the profile failed and
    a conditional variance crashed at X * 1e90)."""
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    a = _everything(MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g), X, g)
    Xs = X * x_scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no convergence warning
        b = _everything(MixedLinearRegressor(random_slopes=["Days"]).fit(Xs, y * y_scale, groups=g), Xs, g)
    for key in ("df", "p"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-3, err_msg=key)
    np.testing.assert_allclose(b["se"], a["se"] * y_scale / np.array([1.0, x_scale]), rtol=1e-4)
    np.testing.assert_allclose(b["pse"], a["pse"] * y_scale, rtol=1e-4)
    np.testing.assert_allclose(b["re_sd"], a["re_sd"] * y_scale / np.array([1.0, x_scale]), rtol=1e-4)
    # rows: sd_(Intercept), cor, sd_Days, sigma, (Intercept), Days
    unit = np.array([y_scale, 1.0, y_scale / x_scale, y_scale, y_scale, y_scale / x_scale])[:, None]
    np.testing.assert_allclose(b["ci"], a["ci"] * unit, rtol=1e-3)


# =============================================================================================
# no false optimum
# =============================================================================================


def _small_design(seed, correlated):
    """A small random design with a slope column off centre (the generator that found them)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(3, 9)
    codes = np.repeat(np.arange(a), rng.integers(2, 7, a))
    n = len(codes)
    x = rng.uniform(0, 10, n) + rng.choice([0, 10, 50, 200])
    y = (1 + 0.5 * x + rng.normal(0, rng.choice([0.0, 0.5, 2.0]), a)[codes]
         + rng.normal(0, rng.choice([0.0, 0.3, 1.0]), a)[codes] * (x - x.mean()) + rng.normal(size=n))
    return x[:, None], y, codes


# seeds whose fits ended above the nested random-intercept model's optimum (by 24, 3.7, 0.75,
# 0.025, 0.5, ... for (x || g); 0.30 and 0.19 for (x | g)), reported as converged and not singular
@pytest.mark.parametrize("seed, correlated", [(2, False), (16, False), (55, False), (363, False), (1010, False),
                                              (1153, False), (1145, True), (2625, True)])
def test_a_fit_never_ends_worse_than_a_model_nested_in_it(seed, correlated):
    X, y, g = _small_design(seed, correlated)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits, far-from-centred slopes
        full = MixedLinearRegressor(random_slopes=[0], correlated_slopes=correlated).fit(X, y, groups=g)
        nested = [MixedLinearRegressor().fit(X, y, groups=g),
                  MixedLinearRegressor(random_slopes=[0], random_intercept=False).fit(X, y, groups=g)]
    for m in nested:
        assert full.criterion_ <= m.criterion_ + 1e-7 * abs(m.criterion_)


@pytest.mark.parametrize("n, p", [(3, 2), (4, 3), (5, 4)])
def test_an_exactly_flat_criterion_is_not_reported_as_converged(n, p):
    """REML with one residual degree of freedom: the criterion does not depend on theta, so any
    point is 'an optimum' and none is an estimate."""
    rng = np.random.default_rng(n)
    X, y = rng.normal(size=(n, p - 1)), rng.normal(size=n)
    g = np.r_[0, 0, np.ones(n - 2, dtype=int)]
    with pytest.warns(ConvergenceWarning, match=r"does not change with the variance parameters.*n - p = 1"):
        m = MixedLinearRegressor().fit(X, y, groups=g)
    assert not m.converged_


# =============================================================================================
# fail fast on what cannot fit
# =============================================================================================


def _crossed(n, levels, seed=0):
    rng = np.random.default_rng(seed)
    g = np.column_stack([rng.integers(0, levels, n), rng.integers(0, levels, n)])
    y = rng.normal(size=n) + rng.normal(size=levels)[g[:, 0]] + rng.normal(size=levels)[g[:, 1]]
    return np.empty((n, 0)), y, g


def test_a_dense_block_that_cannot_fit_in_memory_is_refused_before_it_is_asked_for(monkeypatch):
    import sklmm._engine.factor as factor
    import sklmm._engine.factor_cholmod as factor_cholmod

    monkeypatch.setattr(factor_cholmod, "HAS_CHOLMOD", False)  # the auto choice is then blocked
    X, y, g = _crossed(300_000, 100_000)  # 10^5 x 10^5 levels: numpy asked for 74.5 GiB and died
    with pytest.raises(MemoryError, match=r"dense \d+ x \d+ block: about \d+\.\d GiB.*install scikit-sparse"):
        MixedLinearRegressor().fit(X, y, groups=g)
    monkeypatch.setattr(factor, "_available_memory", lambda: 50 * 2**20)  # a small machine
    X, y, g = _crossed(20_000, 3_000)
    with pytest.raises(MemoryError, match=r"about 0\.\d GiB, and 0\.0 GiB are available"):
        MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.raises(MemoryError, match="the dense factorization needs"):
        MixedLinearRegressor(solver="dense").fit(X, y, groups=g)


def test_slow_evaluations_are_announced(monkeypatch):
    import sklmm._engine.factor as factor

    monkeypatch.setattr(factor, "_FLOP_RATE", [1e7])  # a slow machine: ~ 0.3 s per 2000^3 / 3 flops
    X, y, g = _crossed(6_000, 2_000)
    with pytest.warns(UserWarning, match=r"each evaluation of the criterion factors a dense \d+ x \d+ block, about \d+ s"):
        factor.check_cost(*_cross_products_of(X, y, g), "blocked")


def _cross_products_of(X, y, g):
    """(cp, terms) of a crossed random-intercept model, as the estimator builds them."""
    from sklmm._engine.crossprod import cross_products

    m = MixedLinearRegressor()
    m._structure = {"random_slopes": None, "correlated_slopes": True, "nested": False, "random_intercept": True}
    m.n_features_in_ = 0
    terms = m._group_terms(X, g)
    return cross_products(terms, np.ones((len(y), 1)), y), terms


def test_a_boundary_estimate_left_a_rounding_error_above_its_bound_is_put_on_it():
    """snap_to_bounds: an entry within 1e-6 (of its scale) of its lower bound goes onto it when
    the criterion there is within rounding of the optimizer's minimum, and stays where the
    criterion rises; entries far from their bound never move."""
    from sklmm._engine.optimize import OptSummary, snap_to_bounds

    flat = lambda x: 5.0 + (x[1] - 2.0) ** 2 + 1e-14 * x[0]  # noqa: E731  (the bound is as good)
    summ = OptSummary(initial=None, lower=None, final=np.array([3e-8, 2.0]), fmin=flat(np.array([3e-8, 2.0])))
    snap_to_bounds(flat, summ, np.array([0.0, 0.0]))
    np.testing.assert_array_equal(summ.final, [0.0, 2.0])
    assert summ.fmin == flat(np.array([0.0, 2.0]))
    steep = lambda x: 5.0 + (x[0] - 3e-8) ** 2 * 1e12 + (x[1] - 2.0) ** 2  # noqa: E731
    summ = OptSummary(initial=None, lower=None, final=np.array([3e-8, 2.0]), fmin=steep(np.array([3e-8, 2.0])))
    snap_to_bounds(steep, summ, np.array([0.0, 0.0]))
    np.testing.assert_array_equal(summ.final, [3e-8, 2.0])
    summ = OptSummary(initial=None, lower=None, final=np.array([1e-3, 2.0]), fmin=flat(np.array([1e-3, 2.0])))
    snap_to_bounds(flat, summ, np.array([0.0, 0.0]))
    np.testing.assert_array_equal(summ.final, [1e-3, 2.0])


def test_messages_name_the_response_problem():
    """A text response in a linear model's formula is named as text (the message spoke of
    formulaic's dummy columns), and the GAM classifier's advice for proportions does not point
    to a cbind() that its formulas refuse."""
    from sklmm import PenalizedSplineClassifier

    rng = np.random.default_rng(0)
    n = 100
    d = pd.DataFrame({"x0": rng.normal(size=n), "g": rng.integers(0, 10, n),
                      "ys": np.where(rng.random(n) > 0.5, "a", "b")})
    with pytest.raises(ValueError, match=r"response 'ys' must be one numeric column; it holds text or categories"):
        MixedLinearRegressor.from_formula("ys ~ x0 + (1|g)", d)
    with pytest.raises(ValueError, match=r"two rows per observation .*as sample_weight\)\.$") as info:
        PenalizedSplineClassifier().fit(d[["x0"]], rng.uniform(size=n))
    assert "cbind" not in str(info.value)


def test_predict_refuses_features_beyond_the_accepted_magnitude(sleep_df):
    """predict checks X's magnitudes as fit does: at X * 1e160 the standard errors came out inf
    and NaN with only numpy's overflow warning."""
    X, y, g = sleep_df[["Days"]], sleep_df["Reaction"], sleep_df["Subject"]
    m = MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.raises(ValueError, match=r"X column 'Days' has values of magnitude 1e\+160.*Rescale"):
        m.predict(X.head(2) * 1e160, groups=g[:2], return_std=True)
    assert np.all(np.isfinite(m.predict(X.head(2) * 1e50, groups=g[:2], return_std=True)))
