"""Inference against lme4 / lmerTest / pbkrtest (tests/data/lme4_inference.json, made by
tools/lme4_inference.R): vcov, Satterthwaite df, Wald and profile intervals, conditional
variances, likelihood-ratio tests, prior weights, the parametric bootstrap (in distribution),
and prediction standard errors and intervals."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from reference import DATA, problem
from scipy import stats

import sklmm
from sklmm import MixedLinearRegressor, likelihood_ratio_test
from sklmm.datasets import load_dyestuff, load_penicillin, load_sleepstudy

INF = json.loads((DATA / "lme4_inference.json").read_text())
KEYS = list(INF["models"])

_FITS = {}


def fitted(key):
    """One fit per reference model for the whole module (inference reads it, never changes it)."""
    if key not in _FITS:
        X, y, g, kw, _ = problem(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = MixedLinearRegressor(**kw).fit(X, y, groups=g)
    return _FITS[key]


def _level_names(index):
    """Our level labels as lme4 prints them (nested: "inner:outer")."""
    return [":".join(map(str, reversed(i))) if isinstance(i, tuple) else str(i) for i in index]


@pytest.mark.parametrize("key", KEYS)
def test_fixed_effects_table_matches_lmertest(key):
    ref = INF["models"][key]
    fe = fitted(key).fixed_effects_
    assert list(fe.index) == ref["fixed"]["names"]
    assert list(fe.columns) == ["estimate", "std_error", "df", "t_value", "p_value"]
    np.testing.assert_allclose(fe["estimate"], ref["fixed"]["estimate"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fe["std_error"], ref["fixed"]["std_error"], rtol=1e-4)
    np.testing.assert_allclose(fe["t_value"], ref["fixed"]["t_value"], rtol=1e-4)
    # lmerTest's numerical derivatives (numDeriv) and ours agree to a few parts in 1e4
    np.testing.assert_allclose(fe["df"], ref["fixed"]["df"], rtol=1e-3)
    np.testing.assert_allclose(np.log(fe["p_value"]), np.log(ref["fixed"]["p_value"]), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("key", KEYS)
def test_vcov_matches_lme4(key):
    cov = fitted(key).fixed_effects_cov_
    np.testing.assert_allclose(cov.to_numpy(), np.asarray(INF["models"][key]["vcov"]), rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("key", ["sleep_slope_reml", "penicillin_reml", "crossed_reml"])
def test_wald_intervals_match_lme4(key):
    ref = INF["models"][key]["confint_wald"]
    ci = fitted(key).confidence_intervals("wald")
    assert list(ci.index) == ref["names"]
    # the standard errors agree to ~1e-5 (theta differs from lme4's in the 5th digit)
    np.testing.assert_allclose(ci["lower"], ref["lower"], rtol=1e-5)
    np.testing.assert_allclose(ci["upper"], ref["upper"], rtol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_profile_intervals_match_lme4(key):
    ref = INF["models"][key]["confint_profile"]
    ci = fitted(key).confidence_intervals("profile")
    assert list(ci.index) == ref["names"]
    for col in ("lower", "upper"):
        expected = np.array([np.nan if v is None else v for v in ref[col]], dtype=float)
        np.testing.assert_allclose(ci[col], expected, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("key", ["sleep_slope_reml", "penicillin_reml"])
def test_profile_intervals_at_90_percent(key):
    ref = INF["models"][key]["confint_profile_90"]
    ci = fitted(key).confidence_intervals("profile", level=0.9)
    np.testing.assert_allclose(ci["lower"], ref["lower"], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(ci["upper"], ref["upper"], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_conditional_sds_match_ranef_condvar(key):
    ref = pd.DataFrame({k: v for k, v in INF["models"][key]["condvar"].items() if k != "postvar"})
    m = fitted(key)
    sds, modes = m.random_effects_std_, m.random_effects_
    assert set(sds) == set(modes)
    n_checked = 0
    for factor, table in sds.items():
        assert table.shape == modes[factor].shape
        ours = table.set_axis(_level_names(table.index))
        for col in table.columns:
            sub = ref[(ref.grpvar == factor) & (ref.term == col)]
            np.testing.assert_allclose(ours.loc[sub.grp.astype(str), col], sub.condsd, rtol=1e-4)
            n_checked += len(sub)
    assert n_checked == len(ref)


def test_conditional_covariances_match_postvar():
    ref = INF["models"]["sleep_slope_reml"]["condvar"]["postvar"]["Subject"]
    cov = fitted("sleep_slope_reml").random_effects_cov("Subject")
    np.testing.assert_allclose(cov, np.asarray(ref["values"]), rtol=1e-4)
    with pytest.raises(ValueError, match="no grouping factor"):
        fitted("sleep_slope_reml").random_effects_cov("Nope")


@pytest.mark.parametrize("solver", ["blocked", "cholmod"])
@pytest.mark.parametrize("key", KEYS)
def test_prediction_std_matches_the_joint_posterior_from_lme4(key, solver):
    """return_std for seen groups is sqrt(a' C a), C = sigma^2 M^{-1} the joint covariance of
    (u, beta) computed in R from lme4's own Z, Lambda and X; without groups, sqrt(x' vcov x)."""
    if solver == "cholmod":
        pytest.importorskip("sksparse")
    ref = INF["models"][key]["predict_se"]
    X, y, g, kw, _ = problem(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MixedLinearRegressor(solver=solver, **kw).fit(X, y, groups=g)
    rows = ref["rows"]
    mean, se = m.predict(X.iloc[rows], groups=g.iloc[rows], return_std=True)
    np.testing.assert_allclose(mean, ref["fitted_conditional"], rtol=1e-5)
    np.testing.assert_allclose(se, ref["se_conditional"], rtol=1e-4)
    pop_mean, pop_se = m.predict(X.iloc[rows], return_std=True)
    np.testing.assert_allclose(pop_mean, ref["fitted_population"], rtol=1e-5)
    np.testing.assert_allclose(pop_se, ref["se_population"], rtol=1e-4)


def test_prediction_std_for_unseen_groups_uses_the_prior():
    m = fitted("sleep_ri_reml")
    X = pd.DataFrame({"Days": [0.0, 5.0]})
    _, se_new = m.predict(X, groups=["new", "new"], return_std=True)
    _, se_pop = m.predict(X, return_std=True)
    tau2 = m.variance_components_["variance"].iloc[0]
    np.testing.assert_allclose(se_new**2, se_pop**2 + tau2, rtol=1e-12)


def test_predict_interval_adds_the_residual():
    m = fitted("sleep_slope_reml")
    df = load_sleepstudy().iloc[:20]
    X, g = df[["Days"]], df["Subject"]
    mean, se = m.predict(X, groups=g, return_std=True)
    pi = m.predict_interval(X, groups=g, level=0.9)
    assert list(pi.columns) == ["prediction", "lower", "upper"]
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(pi["prediction"], mean)
    np.testing.assert_allclose(pi["upper"] - pi["lower"], 2 * z * np.sqrt(se**2 + m.sigma_**2))
    # without groups: a new observation of a new subject, so the random effects' prior variance too
    pop = m.predict_interval(X, level=0.9)
    vc = m.variance_components_
    v0, v1 = vc["variance"].iloc[0], vc["variance"].iloc[1]
    c01 = vc["variance"].iloc[2]
    d = X["Days"].to_numpy()
    _, se0 = m.predict(X, return_std=True)
    var = se0**2 + v0 + 2 * d * c01 + d**2 * v1 + m.sigma_**2
    np.testing.assert_allclose(pop["upper"] - pop["lower"], 2 * z * np.sqrt(var), rtol=1e-10)
    with pytest.raises(ValueError, match="level"):
        m.predict_interval(X, level=95)


def test_prediction_intervals_cover_new_observations():
    """Simulated from the fitted model, 95% intervals cover about 95% of new responses."""
    m = fitted("sleep_slope_reml")
    df = load_sleepstudy()
    sims = m.simulate(200, random_state=0)
    pi = m.predict_interval(df[["Days"]], level=0.95)
    cover = np.mean((sims >= pi["lower"].to_numpy()[:, None]) & (sims <= pi["upper"].to_numpy()[:, None]))
    assert 0.93 < cover < 0.97


@pytest.mark.parametrize("i", range(3))
def test_likelihood_ratio_test_matches_lme4_anova(i):
    ref = INF["anova"][i]
    names = {"penicillin_plate_only_reml": None}
    small = fitted(ref["small"]) if ref["small"] not in names else None
    if small is None:
        df = load_penicillin()
        small = MixedLinearRegressor().fit(pd.DataFrame(index=df.index), df["diameter"], groups=df["plate"])
    large = fitted(ref["large"])
    res = likelihood_ratio_test(small, large)
    stat, dof, p = res
    assert res.refitted == ref["refit"]
    np.testing.assert_allclose(stat, ref["chisq"], rtol=1e-5, atol=1e-6)
    assert dof == ref["df"]
    np.testing.assert_allclose(p, ref["p_value"], rtol=1e-3)
    np.testing.assert_allclose(res.table["logLik"], [ref["loglik_small"], ref["loglik_large"]], rtol=1e-7)
    np.testing.assert_allclose(res.table["AIC"], [ref["aic_small"], ref["aic_large"]], rtol=1e-7)


def test_likelihood_ratio_test_refuses_bad_comparisons():
    df = load_sleepstudy()
    X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    ri = fitted("sleep_ri_reml")
    slope = fitted("sleep_slope_reml")
    with pytest.raises(ValueError, match="not nested"):
        likelihood_ratio_test(slope, ri)  # arguments swapped
    other = MixedLinearRegressor().fit(X, y * 2, groups=g)
    with pytest.raises(ValueError, match="same data"):
        likelihood_ratio_test(other, slope)
    half = MixedLinearRegressor().fit(X.iloc[:90], y.iloc[:90], groups=g.iloc[:90])
    with pytest.raises(ValueError, match="same data"):
        likelihood_ratio_test(half, slope)
    with pytest.raises(TypeError, match="MixedLinearRegressor"):
        likelihood_ratio_test(ri, "slope")
    ml = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="REML"):
        likelihood_ratio_test(ml, slope, refit=False)
    # same fixed effects, both REML, refit=False: the REML criteria are compared
    res = likelihood_ratio_test(ri, slope, refit=False)
    np.testing.assert_allclose(res.statistic, ri.criterion_ - slope.criterion_)
    assert not res.refitted


@pytest.mark.parametrize("key", list(INF["weights"]))
def test_prior_weights_match_lme4(key):
    ref = INF["weights"][key]
    w = np.asarray(ref["weights"])
    if ref["data"] == "sleepstudy.csv":
        df = load_sleepstudy()
        X, y, g, kw = df[["Days"]], df["Reaction"], df["Subject"], dict(random_slopes=["Days"])
    else:
        df = load_dyestuff()
        X, y, g, kw = pd.DataFrame(index=df.index), df["Yield"], df["Batch"], {}
    m = MixedLinearRegressor(reml=ref["reml"], **kw).fit(X, y, groups=g, sample_weight=w)
    assert m.criterion_ <= ref["criterion"] + 1e-6 * abs(ref["criterion"])
    np.testing.assert_allclose(m.criterion_, ref["criterion"], rtol=1e-8)
    np.testing.assert_allclose(m.loglik_, ref["loglik"], rtol=1e-8)
    np.testing.assert_allclose(m.aic_, ref["aic"], rtol=1e-8)
    np.testing.assert_allclose(m.sigma_, ref["sigma"], rtol=1e-4)
    np.testing.assert_allclose(m.theta_, ref["theta"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["estimate"], ref["beta"], rtol=1e-5)
    np.testing.assert_allclose(m.fixed_effects_["std_error"], ref["fixed"]["std_error"], rtol=1e-3)
    np.testing.assert_allclose(m.fixed_effects_["df"], ref["fixed"]["df"], rtol=1e-2)
    np.testing.assert_allclose(m.predict(X, groups=g), ref["fitted"], rtol=1e-5)


def test_sample_weight_errors():
    df = load_sleepstudy()
    X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    m = MixedLinearRegressor()
    with pytest.raises(ValueError, match="one weight per row"):
        m.fit(X, y, groups=g, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="positive and finite"):
        m.fit(X, y, groups=g, sample_weight=np.r_[0.0, np.ones(179)])
    with pytest.raises(ValueError, match="positive and finite"):
        m.fit(X, y, groups=g, sample_weight=np.r_[np.nan, np.ones(179)])


def test_unit_weights_change_nothing():
    m0 = fitted("sleep_slope_reml")
    df = load_sleepstudy()
    m1 = MixedLinearRegressor(random_slopes=["Days"]).fit(
        df[["Days"]], df["Reaction"], groups=df["Subject"], sample_weight=np.ones(len(df)))
    np.testing.assert_allclose(m1.criterion_, m0.criterion_, rtol=1e-12)
    np.testing.assert_allclose(m1.theta_, m0.theta_, rtol=1e-10)


@pytest.mark.parametrize("key", ["sleep_slope_reml", "dyestuff_reml"])
def test_bootstrap_agrees_with_bootmer_in_distribution(key):
    ref = INF["models"][key]["bootstrap"]["bootmer"]
    reps = fitted(key).bootstrap(400, random_state=7)
    assert len(reps) == 400 and reps.notna().all().all()
    for name, mean, sd in zip(ref["names"], ref["mean"], ref["sd"]):
        ours = reps[name]
        # means within 4 Monte Carlo standard errors of lme4's, sds within 15%
        assert abs(ours.mean() - mean) < 4 * sd * np.sqrt(1 / 400 + 1 / ref["n_ok"]), name
        assert abs(ours.std() / sd - 1) < 0.15, name


def test_bootstrap_intervals_and_reproducibility():
    m = fitted("sleep_slope_reml")
    ref = INF["models"]["sleep_slope_reml"]["bootstrap"]["confint"]
    ci = m.confidence_intervals("bootstrap", n_boot=300, random_state=3)
    assert list(ci.index) == ref["names"]
    width_ref = np.asarray(ref["upper"]) - np.asarray(ref["lower"])
    np.testing.assert_allclose(ci["upper"] - ci["lower"], width_ref, rtol=0.3)
    assert np.all(ci["lower"] < ci["estimate"]) and np.all(ci["estimate"] < ci["upper"])
    a = m.bootstrap(20, random_state=11)
    b = m.bootstrap(20, random_state=11, n_jobs=2)
    pd.testing.assert_frame_equal(a, b)


def test_simulate_matches_the_model_moments():
    m = fitted("dyestuff_reml")
    sims = m.simulate(4000, random_state=0)
    assert sims.shape == (30, 4000)
    # Var(y_i) = tau^2 + sigma^2, Cov(y_i, y_j) = tau^2 in the same batch, 0 across batches
    vc = m.variance_components_["variance"].to_numpy()
    C = np.cov(sims)
    np.testing.assert_allclose(np.diag(C).mean(), vc.sum(), rtol=0.05)
    np.testing.assert_allclose(C[0, 1], vc[0], rtol=0.1)
    assert abs(C[0, 29]) < 0.1 * vc[0]
    np.testing.assert_allclose(sims.mean(), m.intercept_, atol=3 * np.sqrt(vc[0] / 6 + vc[1] / 30) / 60 * 3)
    np.testing.assert_array_equal(m.simulate(2, random_state=5), m.simulate(2, random_state=5))
    with pytest.raises(ValueError, match="n_draws"):
        m.simulate(0)


def test_confidence_intervals_bad_arguments():
    m = fitted("sleep_ri_reml")
    with pytest.raises(ValueError, match="method"):
        m.confidence_intervals("exact")
    with pytest.raises(ValueError, match="level"):
        m.confidence_intervals(level=1.5)


def test_summary_shows_the_coefficient_table():
    text = fitted("sleep_slope_reml").summary()
    assert "Std. Error" in text and "Pr(>|t|)" in text and "1.5458" in text


def test_public_names():
    assert sklmm.likelihood_ratio_test is likelihood_ratio_test
    assert "LikelihoodRatioTestResult" in sklmm.__all__


def test_caterpillar_plot():
    import matplotlib

    matplotlib.use("Agg")
    m = fitted("sleep_slope_reml")
    axes = m.plot_random_effects(level=0.9)
    assert len(axes) == 2
    bars = axes[1].containers[0]
    x = bars.lines[0].get_xdata()
    np.testing.assert_allclose(np.sort(m.random_effects_["Subject"]["Days"].to_numpy()), x)
    segs = bars.lines[2][0].get_segments()
    widths = np.array([s[1][0] - s[0][0] for s in segs])
    order = np.argsort(m.random_effects_["Subject"]["Days"].to_numpy(), kind="stable")
    expected = 2 * stats.norm.ppf(0.95) * m.random_effects_std_["Subject"]["Days"].to_numpy()[order]
    np.testing.assert_allclose(widths, expected)
    with pytest.raises(ValueError, match="no grouping factor"):
        m.plot_random_effects("Nope")


@pytest.mark.parametrize("solver", ["blocked", "cholmod"])
def test_pickled_fits_keep_their_inference(solver):
    """The factorization is not pickled (CHOLMOD's does not pickle) but rebuilt on demand."""
    import pickle

    if solver == "cholmod":
        pytest.importorskip("sksparse")
    df = load_penicillin()
    X, g = pd.DataFrame(index=df.index), df[["plate", "sample"]]
    m = MixedLinearRegressor(solver=solver).fit(X, df["diameter"], groups=g)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.solver_ == solver
    np.testing.assert_array_equal(m2.predict(X, groups=g), m.predict(X, groups=g))
    np.testing.assert_allclose(m2.predict(X, groups=g, return_std=True)[1],
                               m.predict(X, groups=g, return_std=True)[1], rtol=1e-12)
    pd.testing.assert_frame_equal(m2.fixed_effects_, m.fixed_effects_)
    m3 = pickle.loads(pickle.dumps(m2))  # and again, after the factor was rebuilt
    np.testing.assert_allclose(m3.random_effects_std_["plate"], m.random_effects_std_["plate"])


@pytest.mark.filterwarnings("ignore::sklmm.SingularFitWarning")
@pytest.mark.parametrize("slopes", [None, ["Days"], ["Days", "D2"]])
def test_one_factor_prediction_variances_by_closed_form_equal_the_solves(monkeypatch, slopes):
    """predict(return_std=True) with one grouping factor uses per-level closed forms
    (conditional._one_term_mean_variance); they are the factor solves' numbers, for seen and
    unseen levels, with prior weights, for 1 to 3 coefficients per level and 3 fixed ones."""
    from sklmm._inference import conditional

    d = load_sleepstudy()
    d["D2"] = (d["Days"] - 4.5) ** 2 / 10
    X, y, g = d[["Days", "D2"]], d["Reaction"], d["Subject"].astype(str)
    w = 1 + (np.arange(len(d)) % 4) / 2
    m = MixedLinearRegressor(random_slopes=slopes).fit(X, y, groups=g, sample_weight=w)
    g_new = g.copy()
    g_new.iloc[:10] = "new"
    fast = [m.predict(X, groups=g_new, return_std=True)[1], m.predict(X, return_std=True)[1]]
    monkeypatch.setattr(conditional, "ONE_TERM_CLOSED_FORM", False)
    slow = [m.predict(X, groups=g_new, return_std=True)[1], m.predict(X, return_std=True)[1]]
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def _counting_updates(monkeypatch, fit):
    calls = []
    real = type(fit.factor).update

    def counting(self, theta):
        calls.append(np.array(theta))
        return real(self, theta)

    monkeypatch.setattr(type(fit.factor), "update", counting)
    return calls


def test_satterthwaite_df_from_the_analytic_gradient(monkeypatch):
    """With the gradient (dense and blocked factors), the df take k + 1 of its evaluations:
    one step in each theta and the estimate last, where the factor is left (with fixed_cov's
    update, k + 2 factorizations: 5 for three theta, where the deviance's differences take 39)."""
    from sklmm._inference import covariance

    m = fitted("sleep_slope_reml")
    fit = m._fit
    calls = _counting_updates(monkeypatch, fit)
    table, _ = covariance.fixed_effects_table(fit, m.fixed_effects_names_)
    k = len(fit.theta)
    assert len(calls) == k + 2
    np.testing.assert_array_equal(calls[-1], fit.theta)  # the factor is left at the estimate
    assert len({tuple(c) for c in calls}) == k + 1
    np.testing.assert_allclose(table["df"], INF["models"]["sleep_slope_reml"]["fixed"]["df"], rtol=1e-3)


@pytest.mark.parametrize("key", ["sleep_slope_reml", "crossed_reml", "penicillin_ml"])
def test_satterthwaite_df_without_the_gradient_factor_each_theta_once(monkeypatch, key):
    """Where the factor has no gradient (CHOLMOD's), the deviance's own differences factor each
    theta once: sigma enters in closed form and the Jacobian's points are the Hessian's (three
    theta: 37 factorizations, with fixed_cov's and the restoring one 39, where one per point of
    numDeriv's scheme took 83); the df agree with lmerTest as the gradient's do."""
    from sklmm._inference import covariance

    monkeypatch.setattr(covariance, "_gradient_of", lambda fit: None)
    m = fitted(key)
    fit = m._fit
    calls = _counting_updates(monkeypatch, fit)
    table, _ = covariance.fixed_effects_table(fit, m.fixed_effects_names_)
    k = len(fit.theta)
    per_level = 2 * k + 4 * k * (k - 1) // 2
    assert len(calls) == 1 + 1 + covariance.SATTERTHWAITE_LEVELS * per_level + 1
    # fit.theta for fixed_cov and the restore (and the estimate's point, theta / unit * unit,
    # where that rounds back to it); every other point once
    assert len(calls) - 2 <= len({tuple(c) for c in calls}) <= len(calls) - 1
    np.testing.assert_allclose(table["df"], INF["models"][key]["fixed"]["df"], rtol=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_satterthwaite_df_of_a_balanced_one_way_design(seed):
    """Closed forms: in a balanced one-way design with an interior REML estimate the intercept's
    variance is the between-group mean square over g n, with g - 1 degrees of freedom exactly
    (here also for a between-group variance small beside the residual one); at the boundary
    (theta = 0) it is sigma^2 / (g n), and the derivatives in theta vanish (the criterion is
    even in it), so the df are sigma's alone: g n - 1."""
    rng = np.random.default_rng(seed)
    g, n = 12, 8
    grp = np.repeat(np.arange(g), n)
    for sa in (0.05, 0.3, 1.0):
        y = 2.0 + sa * rng.normal(size=g)[grp] + rng.normal(size=g * n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (boundary fits warn)
            m = MixedLinearRegressor().fit(pd.DataFrame(index=range(g * n)), y, groups=grp)
        expected = g - 1 if m._fit.theta[0] > 0 else g * n - 1
        assert m.fixed_effects_["df"].iloc[0] == pytest.approx(expected, rel=2e-5)
