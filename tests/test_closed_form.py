"""Closed forms: balanced one-way random-intercept data (students in schools, the REML seed)."""

import warnings

import numpy as np
import pytest

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_schools


def _anova(y, g):
    levels = np.unique(g)
    a, m = len(levels), len(y) // len(levels)
    means = np.array([y[g == lv].mean() for lv in levels])
    msw = sum(((y[g == lv] - mu) ** 2).sum() for lv, mu in zip(levels, means)) / (a * (m - 1))
    msb = m * ((means - y.mean()) ** 2).sum() / (a - 1)
    return a, m, msb, msw


def test_reml_equals_anova_estimator_on_the_schools_seed():
    df = load_schools()
    y, g = df["score"].to_numpy(), df["school"].astype(str).to_numpy()
    a, m, msb, msw = _anova(y, g)
    assert msb > msw  # interior optimum: the ANOVA estimate is positive
    fit = MixedLinearRegressor(reml=True).fit(np.empty((len(y), 0)), y, groups=g)
    vc = fit.variance_components_.set_index("factor")["variance"]
    assert vc["Residual"] == pytest.approx(msw, rel=1e-6)
    assert vc["group"] == pytest.approx((msb - msw) / m, rel=1e-5)
    assert fit.intercept_ == pytest.approx(y.mean(), rel=1e-12)


def test_ml_closed_form_on_balanced_data():
    """ML divides the between-group sum of squares by a instead of a - 1."""
    rng = np.random.default_rng(3)
    a, m = 12, 6
    g = np.repeat(np.arange(a), m)
    y = 5 + rng.normal(0, 2, a)[g] + rng.normal(0, 1, a * m)
    _, _, msb, msw = _anova(y, g)
    fit = MixedLinearRegressor(reml=False).fit(np.empty((a * m, 0)), y, groups=g)
    vc = fit.variance_components_.set_index("factor")["variance"]
    assert vc["Residual"] == pytest.approx(msw, rel=1e-6)
    assert vc["group"] == pytest.approx(((1 - 1 / a) * msb - msw) / m, rel=1e-5)


def test_variance_zero_when_groups_do_not_differ_gives_ols_and_is_flagged():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 5)

    def centre(v):  # remove all between-group variation
        return v - np.array([v[g == k].mean() for k in g])

    x = centre(rng.normal(size=50))
    y = 1 + 2 * x + centre(rng.normal(size=50))
    with pytest.warns(UserWarning, match="singular"):
        fit = MixedLinearRegressor(reml=False).fit(x[:, None], y, groups=g)
    assert fit.is_singular_ and fit.theta_[0] < 1e-4
    ols = np.linalg.lstsq(np.column_stack([np.ones(50), x]), y, rcond=None)[0]
    np.testing.assert_allclose([fit.intercept_, fit.coef_[0]], ols, rtol=1e-6)


def test_the_optimizer_starts_at_the_anova_estimate():
    """The moment start of a random intercept is the classical ANOVA estimate on balanced data:
    theta = sqrt((MSB - MSW) / (m MSW)), the REML optimum itself (the schools seed)."""
    df = load_schools()
    y, g = df["score"].to_numpy(), df["school"].astype(str).to_numpy()
    a, m, msb, msw = _anova(y, g)
    fit = MixedLinearRegressor(reml=True).fit(np.empty((len(y), 0)), y, groups=g)
    want = np.sqrt((msb - msw) / (m * msw))
    np.testing.assert_allclose(fit.optimizer_.initial, [want], rtol=1e-10)
    assert fit.theta_[0] == pytest.approx(want, rel=1e-5)  # REML's optimum is the ANOVA estimate


def test_the_start_falls_back_to_lme4s_when_no_level_has_a_slope():
    """Each group sees one value of the slope covariate: no level's block is invertible, so the
    term starts where lme4 starts (T = I)."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 4)
    x = np.repeat(rng.normal(size=30), 4)
    y = 1 + x + rng.normal(0, 1, 30)[g] + rng.normal(size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slope variance is not identified: singular, or flagged
        fit = MixedLinearRegressor(random_slopes=[0], max_iter=1).fit(x[:, None], y, groups=g)
    np.testing.assert_array_equal(fit.optimizer_.initial, [1.0, 0.0, 1.0])


def test_a_balanced_crossed_design_starts_at_the_two_way_anova_estimate():
    """Every subject rated every item once: the start uses the two-way ANOVA's residual mean
    square (both factors fixed), so each factor starts at the classical estimate
    (MS_factor - MSE) / (levels of the other factor x MSE), which is REML's optimum here."""
    rng = np.random.default_rng(4)
    a, b = 12, 8
    subj, item = np.repeat(np.arange(a), b), np.tile(np.arange(b), a)
    y = 3 + rng.normal(0, 1.0, a)[subj] + rng.normal(0, 0.7, b)[item] + rng.normal(0, 0.5, a * b)
    grand = y.mean()
    ms_a = b * np.sum((np.bincount(subj, y) / b - grand) ** 2) / (a - 1)
    ms_b = a * np.sum((np.bincount(item, y) / a - grand) ** 2) / (b - 1)
    resid = y - (np.bincount(subj, y) / b)[subj] - (np.bincount(item, y) / a)[item] + grand
    mse = resid @ resid / ((a - 1) * (b - 1))
    want = np.sqrt([(ms_a - mse) / (b * mse), (ms_b - mse) / (a * mse)])
    fit = MixedLinearRegressor(reml=True).fit(np.empty((a * b, 0)), y, groups=np.column_stack([subj, item]))
    np.testing.assert_allclose(fit.optimizer_.initial, want, rtol=1e-5)  # T = 1000 I: r^2 ~ RSS
    np.testing.assert_allclose(fit.theta_, want, rtol=1e-4)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_level_block_inverses_match_lapack(p):
    # the moment start's closed-form 1x1 / 2x2 inverses and singularity test against LAPACK
    from sklmm._engine.start import _regular_inverses

    rng = np.random.default_rng(p)
    A = rng.normal(size=(40, p, 5))
    D = A @ A.transpose(0, 2, 1)
    D[3] = 0.0  # a level with no rows
    if p > 1:
        D[5] = np.ones((p, p))  # a slope constant within its level: rank 1
        D[6] = np.diag([1e12] + [1e-6] * (p - 1))  # full rank, condition 1e18 > 1e8: left out
    ok, inv = _regular_inverses(D)
    ev = np.linalg.eigvalsh(D)
    expected = ev[:, 0] > 1e-8 * np.maximum(ev[:, -1], np.finfo(float).tiny)
    np.testing.assert_array_equal(ok, expected)
    assert not ok[3] and (p == 1 or not (ok[5] or ok[6]))
    np.testing.assert_allclose(inv, np.linalg.inv(D[expected]), rtol=1e-10, atol=0)
