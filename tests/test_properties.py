"""Properties of the fit over random designs (hypothesis): invariance to row order and to the
coding of group labels, equivariance under affine maps of y and of X's columns, agreement with
OLS when every variance is 0 and with the one-way ANOVA estimators on balanced data, and
determinism. References are closed forms or numpy least squares, never an earlier sklmm fit.

Tolerances: two fits of equivalent problems agree to the optimizer's accuracy (constants below);
determinism is checked bit for bit. SKLMM_HYPOTHESIS_EXAMPLES=n runs a deeper random search.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sklmm import MixedLinearRegressor, PenalizedSplineRegressor
from test_reliability import _gls_criterion

#: SKLMM_HYPOTHESIS_EXAMPLES=n runs n random (not derandomized) examples per property instead
DEEP = int(os.environ.get("SKLMM_HYPOTHESIS_EXAMPLES", "0"))
PROPS = settings(max_examples=DEEP or 80, deadline=None, derandomize=not DEEP, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@st.composite
def designs(draw, slopes=None):
    """A random grouped design: unbalanced groups (some of one row), 0-2 fixed features and
    maybe a random slope, random variance components (some 0)."""
    slope = draw(st.booleans()) if slopes is None else slopes
    a = draw(st.integers(6 if slope else 3, 10))  # a 2 x 2 covariance needs a few more groups
    sizes = draw(st.lists(st.integers(1, 7), min_size=a, max_size=a))
    sizes[0] += 4  # more rows than levels (and fixed effects): a residual to estimate
    if slope:  # enough rows and within-group spread for a slope per group
        sizes = [s + 2 for s in sizes]
    # a random slope's covariance is drawn non-singular: where the truth is singular the
    # criterion is nearly flat near the boundary and two equivalent fits agree only to the
    # optimizer's accuracy there (~1e-4 in the criterion; see docs/reliability.md)
    return dict(sizes=sizes, p=draw(st.integers(0, 2)), slope=slope, reml=draw(st.booleans()),
                sd_int=draw(st.sampled_from([0.5, 2.0] if slope else [0.0, 0.5, 2.0])),
                sd_slope=draw(st.sampled_from([0.7, 1.5] if slope else [0.0])),
                seed=draw(st.integers(0, 2**32 - 1)))


def _data(d):
    rng = np.random.default_rng(d["seed"])
    codes = np.repeat(np.arange(len(d["sizes"])), d["sizes"])
    rng.shuffle(codes)
    n, a = len(codes), len(d["sizes"])
    X = rng.normal(size=(n, d["p"] + d["slope"]))
    beta = rng.normal(size=X.shape[1])
    y = 1.0 + X @ beta + rng.normal(0, d["sd_int"], a)[codes] + rng.normal(size=n)
    if d["slope"]:
        y += rng.normal(0, d["sd_slope"], a)[codes] * X[:, -1]
    return X, y, codes


def _model(d, **kw):
    return MixedLinearRegressor(reml=d["reml"], random_slopes=[d["p"]] if d["slope"] else None, **kw)


def _fit(est, X, y, groups):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # singular fits, convergence notes
        return est.fit(X, y, groups=groups)


def _both_converged(a, b):
    """A property is claimed for converged fits; a fit flagged as not converged (with a
    ConvergenceWarning) is honest, not wrong, and is left out."""
    ok = a.converged_ and b.converged_
    event("both fits converged" if ok else "a fit flagged as not converged")
    return ok


#: Agreement between two fits of equivalent problems is to the optimizer's accuracy: BOBYQA
#: stops on ftol and lme4's gradient check admits criterion gaps of ~1e-4 where the criterion is
#: flat (small or near-singular covariances). A bug (a wrong sign, a lost term, a local optimum)
#: shows up orders of magnitude above these tolerances.
#: Nearly singular fits (a variance within 1e-2 of 0, relative to the residual's) are flatter
#: still, and can have local optima ~1e-3 apart: there every tolerance is ten times larger.
CRITERION_TOL = 1e-4
COVARIANCE_RTOL, COVARIANCE_ATOL = 1e-2, 1e-3  # T T', in units of the residual variance
PREDICTION_TOL = 1e-3  # relative, and absolute in units of sd(y)


def _loose(*fits):
    """10 when one of the fits is nearly singular, else 1."""
    for f in fits:
        t = f._fit.terms[0]
        unit = f._fit.theta_unit if f._fit.theta_unit is not None else np.ones(len(f.theta_))
        if np.any(np.abs(f.theta_ / unit)[t.tri_rows == t.tri_cols] < 1e-2):
            return 10.0
    return 1.0


def _close_criteria(a, b, shift=0.0):
    tol = CRITERION_TOL * _loose(a, b)
    assert b.criterion_ == pytest.approx(a.criterion_ + shift, rel=1e-8, abs=tol)


def _close_theta(a, b, coef_scale=None):
    """b's relative covariance ``T T'`` against a's with each random coefficient rescaled.

    ``T T'`` rather than theta: at or near a singular fit theta is not unique (or the criterion
    is flat in it), while the covariance is what the model uses."""
    t = a._fit.terms[0]
    u = np.ones(t.n_coef) if coef_scale is None else np.asarray(coef_scale, dtype=float)
    ta, tb = t.template(a.theta_), t.template(b.theta_)
    Sa, Sb = ta @ ta.T, np.diag(1 / u) @ tb @ tb.T @ np.diag(1 / u)  # both in a's units
    # absolute tolerance on the scale of the residual variance (1 in these relative units)
    k = _loose(a, b)
    np.testing.assert_allclose(Sb, Sa, rtol=k * COVARIANCE_RTOL, atol=k * COVARIANCE_ATOL * max(1.0, np.abs(Sa).max()))


@PROPS
@given(designs())
def test_row_order_does_not_matter(d):
    X, y, g = _data(d)
    perm = np.random.default_rng(d["seed"] + 1).permutation(len(y))
    a = _fit(_model(d), X, y, g)
    b = _fit(_model(d), X[perm], y[perm], g[perm])
    if not _both_converged(a, b):
        return
    _close_criteria(a, b)
    _close_theta(a, b)
    tol = PREDICTION_TOL * _loose(a, b)
    np.testing.assert_allclose(b.predict(X, groups=g), a.predict(X, groups=g), rtol=tol, atol=tol * np.std(y))
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=tol, atol=tol * np.std(y))


@PROPS
@given(designs(), st.sampled_from(["str", "shuffled_int", "category", "float", "object"]))
def test_renaming_or_re_encoding_group_labels_does_not_matter(d, coding):
    X, y, g = _data(d)
    rng = np.random.default_rng(d["seed"] + 2)
    relabel = rng.permutation(len(d["sizes"]))  # a new order of the levels too
    new = {
        "str": np.array([f"L{relabel[c]:02d}" for c in g], dtype=object),
        "shuffled_int": relabel[g] * 13 - 40,
        "category": pd.Categorical([f"c{relabel[c]}" for c in g],
                                   categories=[f"c{k}" for k in rng.permutation(len(d["sizes"]) + 2)]),
        "float": relabel[g] / 7.0,
        "object": np.array([[int(relabel[c]), f"{relabel[c]}"][c % 2] for c in g], dtype=object),
    }[coding]
    a = _fit(_model(d), X, y, g)
    b = _fit(_model(d), X, y, new)
    if not _both_converged(a, b):
        return
    _close_criteria(a, b)
    _close_theta(a, b)
    k = _loose(a, b)
    np.testing.assert_allclose(b.predict(X, groups=new), a.predict(X, groups=g),
                               rtol=k * PREDICTION_TOL, atol=k * PREDICTION_TOL * np.std(y))
    # the same level gets the same random effect under either name
    first = pd.Series(np.arange(len(g))).groupby(g).first().to_numpy()
    re_a = a.random_effects_["group"].to_numpy()
    re_b = b.random_effects_["group"].loc[list(np.asarray(new, dtype=object)[first])].to_numpy()
    np.testing.assert_allclose(re_b, re_a, rtol=10 * k * PREDICTION_TOL, atol=k * PREDICTION_TOL * np.std(y))


@PROPS
@given(designs(), st.floats(-5, 5), st.sampled_from([-10.0, 0.1, 3.0, 1e3]))
def test_affine_maps_of_y_are_equivariant(d, shift, c):
    X, y, g = _data(d)
    a = _fit(_model(d), X, y, g)
    b = _fit(_model(d), X, shift * np.std(y) + c * y, g)
    if not _both_converged(a, b):
        return
    _close_theta(a, b)
    n, p = len(y), X.shape[1] + 1
    _close_criteria(a, b, 2 * (n - p if d["reml"] else n) * np.log(abs(c)))
    rel = PREDICTION_TOL * _loose(a, b)
    assert b.sigma_ == pytest.approx(abs(c) * a.sigma_, rel=rel)
    tol = rel * abs(c) * np.std(y)
    np.testing.assert_allclose(b.coef_, c * a.coef_, rtol=rel, atol=tol)
    assert b.intercept_ == pytest.approx(shift * np.std(y) + c * a.intercept_, rel=rel, abs=tol)
    np.testing.assert_allclose(b.random_effects_["group"], c * a.random_effects_["group"], rtol=10 * rel, atol=tol)


@PROPS
@given(designs(), st.data())
def test_affine_maps_of_feature_columns_are_equivariant(d, data):
    """x_j -> s_j + c_j x_j for fixed-effect columns (a slope column only rescaled: its theta
    rows scale by 1/c); predictions are unchanged, coefficients divide by c_j."""
    X, y, g = _data(d)
    k = X.shape[1]
    c = np.array([data.draw(st.sampled_from([-2.0, 0.01, 5.0, 1e3])) for _ in range(k)])
    s = np.array([data.draw(st.floats(-3, 3)) for _ in range(k)])
    if d["slope"]:
        s[-1] = 0.0  # shifting a slope column changes what the random intercept means
    a = _fit(_model(d), X, y, g)
    b = _fit(_model(d), s + c * X, y, g)
    if not _both_converged(a, b):
        return
    rel = PREDICTION_TOL * _loose(a, b)
    # ML is invariant; REML's log|R_X|^2 gains 2 log|c_j| per rescaled column
    _close_criteria(a, b, 2 * np.log(np.abs(c)).sum() if d["reml"] else 0.0)
    _close_theta(a, b, [1.0, 1.0 / c[-1]] if d["slope"] else None)  # the slope's row divides by c
    if k:
        np.testing.assert_allclose(b.coef_ * c, a.coef_, rtol=rel, atol=rel * np.std(y) / np.abs(X).max())
    np.testing.assert_allclose(b.predict(s + c * X, groups=g), a.predict(X, groups=g), rtol=rel,
                               atol=rel * np.std(y))


def _orthogonal_to_groups(v, basis_rows, codes):
    """v minus its projection on span{per-group columns} (group indicator times each column)."""
    out = v.copy()
    for lv in np.unique(codes):
        idx = codes == lv
        B = basis_rows[idx]
        out[idx] -= B @ np.linalg.lstsq(B, v[idx], rcond=None)[0]
    return out


@PROPS
@given(designs())
def test_all_variances_zero_gives_ols(d):
    """Residuals orthogonal to every group's [1, slope] columns: the criterion increases away
    from theta = 0, so the fit is OLS, with sigma from ML (n) or REML (n - p) divisors."""
    X, _, g = _data(d)
    rng = np.random.default_rng(d["seed"] + 3)
    n = len(g)
    B = np.column_stack([np.ones(n)] + ([X[:, -1]] if d["slope"] else []))
    Xc = np.column_stack([_orthogonal_to_groups(X[:, j], B, g) for j in range(X.shape[1])]) if X.shape[1] else X
    e = _orthogonal_to_groups(rng.normal(size=n), np.column_stack([B, Xc]) if Xc.shape[1] else B, g)
    if d["slope"]:  # keep the slope column itself (its values define the random slopes)
        Xc[:, -1] = X[:, -1]
        e = _orthogonal_to_groups(e, np.column_stack([B, Xc]), g)
    if np.linalg.norm(e) < 1e-6 * np.sqrt(n):
        return  # no residual degrees of freedom left in this design
    F = np.column_stack([np.ones(n), Xc])
    y = F @ rng.normal(size=F.shape[1]) + e
    m = _fit(_model(d), Xc, y, g)
    ols, *_ = np.linalg.lstsq(F, y, rcond=None)
    rss = float(np.sum((y - F @ ols) ** 2))
    # theta is 0 to the optimizer's accuracy near the boundary, where the criterion is flat
    assert m.is_singular_ and np.all(np.abs(m.theta_) < 1e-3)
    p = F.shape[1]
    dof = n - p if d["reml"] else n
    ols_criterion = dof * (1 + np.log(2 * np.pi * rss / dof)) + (np.linalg.slogdet(F.T @ F)[1] if d["reml"] else 0)
    assert m.criterion_ == pytest.approx(ols_criterion, abs=1e-6)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ols, rtol=1e-5, atol=1e-5 * np.std(y))
    assert m.sigma_ == pytest.approx(np.sqrt(rss / dof), rel=1e-5)


@PROPS
@given(st.integers(3, 10), st.integers(2, 8), st.sampled_from([0.0, 0.3, 1.0, 3.0]),
       st.integers(0, 2**32 - 1), st.booleans())
def test_balanced_one_way_anova_closed_forms(a, m, sd_group, seed, reml):
    """Balanced random intercepts: REML's estimates are the ANOVA estimators (MSW, (MSB - MSW)/m)
    truncated at 0; ML divides the between sum of squares by a instead of a - 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(a), m)
    y = 10 + rng.normal(0, sd_group, a)[g] + rng.normal(size=a * m)
    means = y.reshape(a, m).mean(axis=1)
    ssw = float(((y.reshape(a, m) - means[:, None]) ** 2).sum())
    ssb = float(m * ((means - y.mean()) ** 2).sum())
    msw, msb = ssw / (a * (m - 1)), ssb / (a - 1)
    between = msb if reml else ssb / a
    fit = _fit(MixedLinearRegressor(reml=reml), np.empty((a * m, 0)), y, g)
    vc = fit.variance_components_.set_index("factor")["variance"]
    assert fit.intercept_ == pytest.approx(y.mean(), rel=1e-12)
    if between > msw * (1 + 1e-6):  # interior optimum
        # sklmm's optimum is at least as good as the closed form's, by a criterion computed
        # independently (GLS), and the estimates agree to the optimizer's accuracy
        theta_star = np.sqrt((between - msw) / m / msw)
        ones = np.ones((a * m, 1))
        best = _gls_criterion(y, ones, g, theta_star, reml)[0]
        assert fit.criterion_ <= best + 1e-5 and _gls_criterion(y, ones, g, fit.theta_[0], reml)[0] <= best + 1e-5
        assert vc["Residual"] == pytest.approx(msw, rel=1e-3)
        # (with few groups the criterion is flat in a large variance: looser than the criterion)
        assert vc["group"] == pytest.approx((between - msw) / m, rel=5e-3, abs=1e-3 * msw)
    elif between < msw * (1 - 1e-6):  # boundary: theta = 0, sigma^2 from the total sum of squares
        assert fit.is_singular_ and vc["group"] < 1e-7 * msw
        assert vc["Residual"] == pytest.approx((ssw + ssb) / (a * m - (1 if reml else 0)), rel=1e-6)


@PROPS
@given(designs(slopes=True), st.sampled_from([100.0, 300.0, 1e3]), st.sampled_from([-1.0, 1.0]),
       st.sampled_from(["auto", "blocked"]))
def test_shifting_a_correlated_random_slope_far_from_zero_is_the_same_model(d, ratio, sign, solver):
    """x -> x + s for the random slope's column, with |s| from 100 to 1,000 times its sd: the
    same model (the fixed intercept absorbs s beta, each level's intercept s b_slope), which sklmm
    fits in centred coordinates. The criterion is unchanged (ML and REML: [1, x + s] is [1, x]
    times a unit triangular matrix) and so are the predictions; the covariance and the random
    effects in the user's coordinates transform as the intercept at x = 0 does:
    b_0 = b_0' - s b_1', Sigma = M Sigma' M' with M = [[1, -s], [0, 1]]. (From a few thousand
    sd on, the fixed-effect column itself is nearly collinear with the intercept and the rank
    check of the fixed effects drops it, as lme4's does.)"""
    X, y, g = _data(d)
    s = sign * ratio * np.std(X[:, -1])
    Xs = X.copy()
    Xs[:, -1] += s
    a = _fit(_model(d, solver=solver), X, y, g)
    b = _fit(_model(d, solver=solver), Xs, y, g)
    assert b._fit.terms[0].shift is not None  # fitted in centred coordinates
    if not _both_converged(a, b):
        return
    _close_criteria(a, b)
    rel = PREDICTION_TOL * _loose(a, b)
    np.testing.assert_allclose(b.predict(Xs, groups=g), a.predict(X, groups=g), rtol=rel, atol=rel * np.std(y))
    M = np.array([[1.0, -s], [0.0, 1.0]])
    ta, tb = (f._fit.terms[0].template(f.theta_) for f in (a, b))
    Sa, Sb = ta @ ta.T, tb @ tb.T
    k = _loose(a, b)
    np.testing.assert_allclose(Sb, M @ Sa @ M.T, rtol=k * COVARIANCE_RTOL,
                               atol=k * COVARIANCE_ATOL * max(1.0, np.abs(M @ Sa @ M.T).max()))
    ra, rb = a.random_effects_["group"].to_numpy(), b.random_effects_["group"].to_numpy()
    np.testing.assert_allclose(rb, ra @ M.T, rtol=10 * rel, atol=10 * rel * np.std(y) * max(1.0, abs(s)))
    vb = b.variance_components_.set_index(["factor", "term", "term2"])
    assert vb["variance"].iloc[0] == pytest.approx(b.sigma_**2 * Sb[0, 0], rel=1e-10)


@PROPS
@given(designs(), st.booleans())
def test_repeated_fits_are_bit_identical(d, gam):
    X, y, g = _data(d)
    if gam:
        if X.shape[1] == 0 or len(np.unique(X[:, 0])) < 8:
            return
        make = lambda: PenalizedSplineRegressor(smooth_features=[0], n_basis=5, reml=d["reml"])  # noqa: E731
    else:
        make = lambda: _model(d)  # noqa: E731
    a, b = _fit(make(), X, y, g), _fit(make(), X, y, g)
    c = _fit(make(), X, y, g)
    for other in (b, c):
        np.testing.assert_array_equal(other.theta_, a.theta_)
        np.testing.assert_array_equal(other.coef_, a.coef_)
        assert other.criterion_ == a.criterion_ and other.n_iter_ == a.n_iter_
        np.testing.assert_array_equal(other.predict(X, groups=g), a.predict(X, groups=g))


@PROPS
@given(st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from([0.0, 10.0, 50.0, 200.0]),
       st.sampled_from([1e-12, 1e-3, 1.0, 1e4, 1e15]))
def test_no_fit_ends_worse_than_the_random_intercept_model_nested_in_it(seed, correlated, offset, w_unit):
    """Small designs, a slope column off centre by `offset`, prior weights in any unit: the model
    with random slopes never ends above the random-intercept model (its boundary face)."""
    rng = np.random.default_rng(seed)
    a = int(rng.integers(3, 9))
    codes = np.repeat(np.arange(a), rng.integers(2, 7, a))
    n = len(codes)
    x = rng.uniform(0, 10, n) + offset
    y = (1 + 0.5 * x + rng.normal(0, rng.choice([0.0, 0.5, 2.0]), a)[codes]
         + rng.normal(0, rng.choice([0.0, 0.3, 1.0]), a)[codes] * (x - x.mean()) + rng.normal(size=n))
    w = w_unit * rng.uniform(0.5, 2.0, n)
    try:
        full = _fit(MixedLinearRegressor(random_slopes=[0], correlated_slopes=correlated), x[:, None], y, codes)
        nested = _fit(MixedLinearRegressor(), x[:, None], y, codes)
        full_w = MixedLinearRegressor(random_slopes=[0], correlated_slopes=correlated)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            full_w.fit(x[:, None], y, groups=codes, sample_weight=w)
            nested_w = MixedLinearRegressor().fit(x[:, None], y, groups=codes, sample_weight=w)
    except ValueError:
        return  # a design the checks refuse (too few rows for the slopes): said, not fitted
    assert full.criterion_ <= nested.criterion_ + 1e-7 * abs(nested.criterion_)
    assert full_w.criterion_ <= nested_w.criterion_ + 1e-7 * abs(nested_w.criterion_)


NAME_PIECES = st.sampled_from(["Days", "x", "(Intercept)", "s(Days).fx0", "1", "Subject", "a b", "é"])


@PROPS
@given(st.lists(st.one_of(NAME_PIECES, st.integers(0, 3)), min_size=1, max_size=3), st.booleans())
def test_names_are_kept_or_refused_never_confused(names, gam):
    """Any column names: the fit keeps them, one fixed effect per name, or refuses them with one
    of the documented messages (a name sklmm makes, names that repeat as text, mixed types)."""
    rng = np.random.default_rng(len(names))
    n = 60
    g = np.repeat(np.arange(6), 10)
    X = pd.DataFrame(rng.normal(size=(n, len(names))))
    X.columns = names
    y = rng.normal(size=n) + rng.normal(size=6)[g]
    est = PenalizedSplineRegressor(smooth_features=[names[0]], n_basis=5) if gam else MixedLinearRegressor()
    try:
        m = _fit(est, X, y, g)
    except (ValueError, TypeError) as e:
        assert any(s in str(e) for s in ("twice: a column of X is named like a term sklmm makes",
                                         "names repeat as text", "Feature names are only supported",
                                         "more than once")), str(e)
        return
    fe = list(m.fixed_effects_names_)
    assert len(set(fe)) == len(fe)
    text = [str(c) for c in names]
    if not gam:
        assert fe == ["(Intercept)"] + text


@PROPS
@given(st.integers(-90, 90), st.integers(-90, 90))
def test_inference_follows_any_accepted_scale_of_y_and_x(y_exp, x_exp):
    """y * 10^a, x * 10^b for magnitudes within the accepted range: df and p-values as at unit
    scale, standard errors rescaled."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=48)
    y = 1 + 0.3 * x + rng.normal(size=8)[g] + rng.normal(size=48)
    a = _fit(MixedLinearRegressor(), x[:, None], y, g)
    try:
        b = _fit(MixedLinearRegressor(), x[:, None] * 10.0**x_exp, y * 10.0**y_exp, g)
    except ValueError as e:  # a coefficient beyond 1e+-100 is refused, with the reason
        assert "its coefficient would be of that order" in str(e) and abs(y_exp - x_exp) > 98
        return
    assert abs(y_exp - x_exp) < 102
    fa, fb = a.fixed_effects_, b.fixed_effects_
    np.testing.assert_allclose(fb["df"], fa["df"], rtol=1e-3)
    np.testing.assert_allclose(fb["p_value"], fa["p_value"], rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(fb["std_error"], fa["std_error"] * 10.0**y_exp / np.array([1.0, 10.0**x_exp]), rtol=1e-4)
