"""Non-Gaussian GAMs and GAMMs against mgcv and gamm4 (tools/mgcv_glm_reference.R ->
tests/data/mgcv_glm_reference.json): PenalizedSplineClassifier (binomial) and
PenalizedSplineRegressor(family="poisson"), with reml=True (mgcv's Laplace REML) and
reml=False (gamm4's Laplace likelihood through glmer)."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklmm import PenalizedSplineClassifier, PenalizedSplineRegressor
from sklmm.datasets import load_contraception

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_glm_reference.json").read_text())
CONTRACEPTION = "use ~ s(age, bs='cr', k=10) + livch + urban + (1 | district)"


def _csv(name):
    return pd.read_csv(DATA / name)


def _gam(key):
    """The sklmm model of a reference gam entry, fitted: (model, X, y)."""
    if key == "binom_1smooth":
        d = _csv("sim_glm_binomial.csv")
        return PenalizedSplineClassifier().fit(d[["x"]], d["y"]), d[["x"]], d["y"]
    if key == "binom_multi":
        d = _csv("sim_glm_binomial_multi.csv")
        X = d[["z", "x1", "x2", "x3"]]
        m = PenalizedSplineClassifier(smooth_features=["x1", "x2", "x3"], n_basis={"x1": 10, "x2": 10, "x3": 8})
        return m.fit(X, d["y"]), X, d["y"]
    if key == "poisson_2smooth":
        d = _csv("sim_glm_poisson.csv")
        return PenalizedSplineRegressor(family="poisson").fit(d[["x1", "x2"]], d["y"]), d[["x1", "x2"]], d["y"]
    raise KeyError(key)


def _mean(m, X, groups=None):
    if isinstance(m, PenalizedSplineClassifier):
        return m.predict_proba(X, groups=groups)[:, 1]
    return m.predict(X, groups=groups)


@pytest.mark.parametrize("key", ["binom_1smooth", "binom_multi", "poisson_2smooth"])
def test_gam_matches_mgcv_laplace_reml(key):
    ref = REF[key]
    m, X, y = _gam(key)
    np.testing.assert_allclose(_mean(m, X), ref["fitted"], atol=1e-4)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    assert m.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    assert list(m.edf_.index) == ref["smooth_labels"]
    lam = np.array(ref["lambda"])  # mgcv's sp / S.scale: the raw penalty's lambda, as sklmm's
    np.testing.assert_allclose(m.smoothing_params_.to_numpy(), lam, rtol=2e-2)
    pt = ref["p_table"]
    np.testing.assert_allclose(m.fixed_effects_["estimate"], pt["estimate"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["std_error"], pt["std_error"], rtol=1e-3)
    np.testing.assert_allclose(m.fixed_effects_["z_value"], pt["stat"], rtol=1e-3, atol=1e-3)
    st = ref["s_table"]
    assert st["stat_name"] == "Chi.sq"
    np.testing.assert_allclose(m.smooth_tests_["ref_df"], st["ref_df"], rtol=1e-3)
    np.testing.assert_allclose(m.smooth_tests_["statistic"], st["stat"], rtol=1e-3)
    assert m.deviance_explained_ == pytest.approx(ref["dev_expl"], abs=1e-4)
    assert m.r2_adj_ == pytest.approx(ref["r_sq"], abs=1e-4)


@pytest.mark.parametrize("key", ["binom_1smooth", "binom_multi", "poisson_2smooth"])
def test_laplace_reml_is_mgcvs_score_and_its_optimum_at_or_below(key):
    """criterion_ is twice mgcv's Laplace REML score plus a constant: the differences between
    mgcv's scores at fixed smoothing parameters (0.5x and 2x its optimum) are reproduced, and
    sklmm's optimum is at or below its criterion at mgcv's smoothing parameters."""
    ref = REF[key]
    m, X, y = _gam(key)
    names = ref["smooth_labels"]
    features = [nm[2:-1] for nm in names]
    crit = {}
    for prof in [{"factors": [1.0], "score": ref["reml_score"]}] + ref["reml_profile"]:
        f = np.broadcast_to(np.asarray(prof["factors"], dtype=float), (len(names),))
        sp = {feat: lam * fac for feat, lam, fac in zip(features, ref["lambda"], f)}
        fixed = clone(m).set_params(smoothing_params=sp).fit(X, y)
        crit[tuple(f)] = (fixed.criterion_, prof["score"])
    base_ours, base_mgcv = crit[(1.0,) * len(names)]
    for ours, mgcv in crit.values():
        assert ours - base_ours == pytest.approx(2.0 * (mgcv - base_mgcv), abs=2e-5 * abs(base_ours) + 1e-6)
    assert m.criterion_ <= base_ours + 1e-8 * abs(base_ours)


def test_binomial_trials_as_two_weighted_rows_match_mgcvs_cbind():
    ref = REF["binom_trials"]
    t = _csv("sim_glm_binomial_trials.csv")
    X = np.r_[t["x"], t["x"]][:, None]
    y = np.r_[np.ones(len(t)), np.zeros(len(t))]
    w = np.r_[t["successes"], t["failures"]].astype(float)  # (zeros: rows that count for nothing)
    m = PenalizedSplineClassifier().fit(X, y, sample_weight=w)
    np.testing.assert_allclose(m.predict_proba(t[["x"]].to_numpy())[:, 1], ref["fitted"], atol=1e-4)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    # (deviance_explained_ is of the 0/1 rows: their saturated model is not the proportions',
    # so it differs from mgcv's dev.expl of the grouped data, as glm's does; documented)


@pytest.fixture(scope="module")
def contraception():
    return load_contraception()


def test_contraception_gam_with_a_district_random_effect_matches_mgcv(contraception):
    """mgcv's use ~ s(age, bs="cr", k=10) + livch + urban + s(district, bs="re") under Laplace
    REML is sklmm's formula with (1 | district): the same model."""
    ref = REF["contraception_gam"]
    m = PenalizedSplineClassifier.from_formula(CONTRACEPTION, contraception)
    assert list(m.classes_) == ["N", "Y"]
    np.testing.assert_allclose(m.predict_proba(contraception)[:, 1], ref["fitted"], atol=1e-4)
    assert m.edf_["s(age)"] == pytest.approx(ref["edf_smooth"][0], abs=1e-3)
    np.testing.assert_allclose(m.fixed_effects_["estimate"], ref["p_table"]["estimate"], rtol=1e-3, atol=1e-4)
    # district's variance is 1 / its smoothing parameter (mgcv's sp of a re term: lambda = sp / S.scale)
    sd = m.variance_components_.set_index("factor").loc["district", "std_dev"]
    assert sd == pytest.approx(1.0 / np.sqrt(ref["lambda"][1]), rel=1e-3)
    assert m.score(contraception) == pytest.approx(np.mean(m.predict(contraception) == contraception["use"]))


def test_contraception_gamm4_twin_reaches_gamm4s_likelihood(contraception):
    ref = REF["contraception_gamm4"]
    m = PenalizedSplineClassifier.from_formula(CONTRACEPTION, contraception, reml=False)
    assert m.criterion_ <= ref["minus2loglik"] + 1e-6 * ref["minus2loglik"]
    np.testing.assert_allclose(m.predict_proba(contraception)[:, 1], ref["fitted_conditional"], atol=1e-4)
    pop = m.predict_proba(contraception.drop(columns="district"))[:, 1]
    np.testing.assert_allclose(pop, ref["fitted_population"], atol=1e-4)
    assert m.edf_["s(age)"] == pytest.approx(ref["edf_smooth"][0], abs=1e-3)
    assert m.theta_[0] == pytest.approx(ref["theta"][0], rel=1e-3)  # district (glmer's theta)


@pytest.mark.parametrize("key", ["gamm4_binom", "gamm4_poisson"])
def test_gamm4_random_intercept_fits(key):
    """gamm4 varies by up to 1e-4 in the fitted values between R processes (its optimizer's
    tolerance); the criterion is compared at 1e-6 relative, the curves at 3e-4 (and, for counts
    near 10, 1e-4 relative)."""
    ref = REF[key]
    if key == "gamm4_binom":
        d = _csv("sim_glm_binomial.csv")
        m, X = PenalizedSplineClassifier(reml=False), d[["x"]]
    else:
        d = _csv("sim_glm_poisson.csv")
        m, X = PenalizedSplineRegressor(family="poisson", reml=False), d[["x1", "x2"]]
    m.fit(X, d["y_re"], groups=d["g"])
    assert m.criterion_ <= ref["minus2loglik"] + 1e-6 * ref["minus2loglik"]
    np.testing.assert_allclose(_mean(m, X, d["g"]), ref["fitted_conditional"], rtol=1e-4, atol=3e-4)
    np.testing.assert_allclose(_mean(m, X), ref["fitted_population"], rtol=1e-4, atol=3e-4)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)


def test_predictions_link_and_response_scales_and_standard_errors():
    m, X, y = _gam("binom_1smooth")
    eta, se = m.linear_predictor(X, return_std=True)
    p = m.predict_proba(X)[:, 1]
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-eta)), rtol=1e-12)
    np.testing.assert_allclose(m.decision_function(X), eta)
    grid = REF["binom_1smooth"]["grid"]
    e, s = m.linear_predictor(pd.DataFrame({"x": grid["x"]}), return_std=True)
    np.testing.assert_allclose(e, grid["fit_link"], atol=1e-4)
    np.testing.assert_allclose(s, grid["se_link"], rtol=1e-3)
    assert set(m.predict(X)) <= set(m.classes_)
    pois, Xp, _ = _gam("poisson_2smooth")
    mu, se_mu = pois.predict(Xp, return_std=True)  # delta method: se_eta * mu
    eta_p, se_eta = pois.linear_predictor(Xp, return_std=True)
    np.testing.assert_allclose(se_mu, se_eta * np.exp(eta_p), rtol=1e-12)


def test_labels_clone_pickle_and_cross_validation():
    d = _csv("sim_glm_binomial.csv")
    labels = np.where(d["y"] == 1, "yes", "no")
    m = PenalizedSplineClassifier(n_basis=8).fit(d[["x"]], labels)
    assert list(m.classes_) == ["no", "yes"]
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict_proba(d[["x"]]), m.predict_proba(d[["x"]]))
    scores = cross_val_score(PenalizedSplineClassifier(n_basis=8), d[["x"]], labels, cv=3)
    assert np.all((scores > 0.5) & (scores <= 1.0))
    assert "Chi.sq" in m.summary() and "z value" in m.summary()


def test_bad_responses_get_clear_errors():
    d = _csv("sim_glm_poisson.csv")
    with pytest.raises(ValueError, match="count"):
        PenalizedSplineRegressor(family="poisson").fit(d[["x1"]], -d["y"])
    with pytest.raises(ValueError, match="Only binary classification"):
        PenalizedSplineClassifier().fit(d[["x1"]], d["y"] % 3)
    with pytest.raises(ValueError, match="single class"):
        PenalizedSplineClassifier().fit(d[["x1"]], np.ones(len(d)))
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="family"):
        PenalizedSplineRegressor(family="binomial").fit(d[["x1"]], d["y"])


EXPECTED_FAILURES = {
    "check_estimators_dtypes": "a feature with 3 distinct values cannot carry n_basis=10",
    "check_sample_weights_pandas_series": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_not_an_array": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_shape": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weights_not_overwritten": "features with 4 distinct values cannot carry n_basis=10",
    "check_sample_weight_equivalence_on_dense_data": "features with 9 distinct values cannot carry n_basis=10",
    "check_classifiers_one_label_sample_weights": "refuses one class with a clear error",
    "check_classifier_data_not_an_array": "features with 5 distinct values cannot carry n_basis=10",
}


@parametrize_with_checks([PenalizedSplineClassifier(), PenalizedSplineRegressor(family="poisson")],
                         expected_failed_checks=lambda e: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


# ----------------------------------------------------------------------------- Gamma (log link)


def _gamma_fit(**params):
    d = _csv("sim_glm_gamma.csv")
    return PenalizedSplineRegressor(family="gamma", **params).fit(d[["x"]], d["y"]), d[["x"]], d["y"]


def test_gamma_log_gam_matches_mgcv():
    """gam(y ~ s(x, bs="cr", k=10), family=Gamma(link="log"), method="REML"): the Laplace REML
    with Newton's weights in the log-determinant and the dispersion estimated with the
    smoothing parameter; the tables at the Pearson scale (t and F tests), as summary.gam."""
    ref = REF["gamma_log"]
    m, X, y = _gamma_fit()
    np.testing.assert_allclose(m.predict(X), ref["fitted"], rtol=1e-4)
    np.testing.assert_allclose(m.linear_predictor(X), ref["linear_predictor"], atol=1e-4)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    assert m.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    np.testing.assert_allclose(m.smoothing_params_.to_numpy(), ref["lambda"], rtol=1e-3)
    assert m.sigma_**2 == pytest.approx(ref["scale"], rel=1e-5)  # mgcv's scale: Pearson
    assert m._fit.scale == pytest.approx(ref["reml_scale"], rel=1e-5)  # the criterion's phi
    pt = ref["p_table"]
    assert pt["stat_name"] == "t value"
    np.testing.assert_allclose(m.fixed_effects_["estimate"], pt["estimate"], rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["std_error"], pt["std_error"], rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["t_value"], pt["stat"], rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["p_value"], pt["p_value"], rtol=1e-2)
    st = ref["s_table"]
    assert st["stat_name"] == "F"
    np.testing.assert_allclose(m.smooth_tests_["ref_df"], st["ref_df"], rtol=1e-3)
    np.testing.assert_allclose(m.smooth_tests_["statistic"], st["stat"], rtol=1e-3)
    assert m.smooth_tests_["p_value"].iloc[0] < 1e-16  # (mgcv: 0)
    assert m.residual_df_ == pytest.approx(ref["nobs"] - ref["edf_total"], abs=1e-3)
    assert m.deviance_explained_ == pytest.approx(ref["dev_expl"], abs=1e-6)
    assert m.r2_adj_ == pytest.approx(ref["r_sq"], abs=1e-6)
    assert m.score(X, y) == pytest.approx(ref["dev_expl"], abs=1e-6)  # D^2 of the Gamma deviance
    grid = pd.DataFrame({"x": ref["grid"]["x"]})
    eta, se = m.linear_predictor(grid, return_std=True)
    np.testing.assert_allclose(eta, ref["grid"]["fit_link"], atol=1e-4)
    np.testing.assert_allclose(se, ref["grid"]["se_link"], rtol=1e-3)
    mu, se_mu = m.predict(grid, return_std=True)  # delta method: d mu / d eta = mu
    np.testing.assert_allclose(se_mu, se * mu, rtol=1e-12)
    text = m.summary()
    assert "t value" in text and " F " in text and "scale: 0.2441" in text


def test_gamma_log_laplace_reml_is_mgcvs_score_and_its_optimum_at_or_below():
    """criterion_ is twice mgcv's score plus a constant at mgcv's smoothing parameters (1x, 0.5x,
    2x its optimum; mgcv and sklmm both minimize over the scale there), and sklmm's optimum is at
    or below the criterion at mgcv's. With Fisher's weights in the log-determinant instead, the
    differences are off by 0.014 and the fitted values by 2e-4."""
    ref = REF["gamma_log"]
    m, X, y = _gamma_fit()
    crit = {}
    for prof in [{"factors": [1.0], "score": ref["reml_score"], "reml_scale": ref["reml_scale"]}] + ref["reml_profile"]:
        fac = prof["factors"][0]
        fixed = clone(m).set_params(smoothing_params={"x": ref["lambda"][0] * fac}).fit(X, y)
        crit[fac] = (fixed.criterion_, prof["score"])
        # mgcv's phi is within its optimizer's tolerance (gradient 7e-5 in log phi) of the minimum
        assert fixed._fit.scale == pytest.approx(prof["reml_scale"], rel=1e-6)
    base_ours, base_mgcv = crit[1.0]
    for ours, mgcv in crit.values():
        assert ours - base_ours == pytest.approx(2.0 * (mgcv - base_mgcv), abs=1e-8)
    assert m.criterion_ <= base_ours + 1e-10 * abs(base_ours)


def test_gamma_family_log_likelihood_is_dgamma():
    """The family's -2 log-likelihood (deviance / phi + the saturated terms) at mgcv's fitted
    means and REML scale is -2x the reference's dgamma sum; phi / w is a row's dispersion."""
    from sklmm._engine.families import Gamma

    ref = REF["gamma_log"]
    y = _csv("sim_glm_gamma.csv")["y"].to_numpy()
    eta, w, phi = np.log(ref["fitted"]), np.ones(len(y)), ref["laplace"]["phi"]
    m2ll = Gamma.deviance(y, eta, w) / phi + Gamma.scale_terms(y, w, phi)
    assert m2ll == pytest.approx(-2.0 * ref["laplace"]["loglik"], rel=1e-12)
    w2 = np.full(len(y), 2.0)  # weights 2 at 2 phi: the same distributions
    assert Gamma.deviance(y, eta, w2) / (2 * phi) + Gamma.scale_terms(y, w2, 2 * phi) == pytest.approx(m2ll, rel=1e-12)


def test_gamma_bad_input_and_weights():
    d = _csv("sim_glm_gamma.csv")
    X, y = d[["x"]], d["y"].to_numpy()
    for bad in (np.where(np.arange(len(y)) == 3, 0.0, y), -y):
        with pytest.raises(ValueError, match="Gamma response must be positive"):
            PenalizedSplineRegressor(family="gamma").fit(X, bad)
    with pytest.raises(ValueError, match="reml=False"):
        PenalizedSplineRegressor(family="gamma", reml=False).fit(X, y)
    # prior weights scale the dispersion (phi / w, as mgcv's): equal weights change only phi
    m, _, _ = _gamma_fit()
    m3 = PenalizedSplineRegressor(family="gamma").fit(X, y, sample_weight=np.full(len(y), 3.0))
    np.testing.assert_allclose(m3.predict(X), m.predict(X), rtol=1e-6)
    assert m3.sigma_**2 == pytest.approx(3.0 * m.sigma_**2, rel=1e-6)
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(X), m.predict(X))


def test_conditional_aic_is_mgcvs_gam_aic(contraception):
    """conditional_aic_: -2 log-likelihood at the fitted means + 2 edf (+ the scale's 1), as
    mgcv's gam$aic; Gaussian cases from tools/mgcv_summary_reference.R."""
    for key in ("binom_1smooth", "binom_multi", "poisson_2smooth"):
        m, _, _ = _gam(key)
        assert m.conditional_aic_ == pytest.approx(REF[key]["aic"], rel=1e-6)
    m = PenalizedSplineClassifier.from_formula(CONTRACEPTION, contraception)
    assert m.conditional_aic_ == pytest.approx(REF["contraception_gam"]["aic"], rel=1e-6)
    summary = json.loads((DATA / "mgcv_summary_reference.json").read_text())
    two = _csv("sim_two_smooth.csv")
    w = 1 + (np.arange(len(two)) % 4) / 2
    g = PenalizedSplineRegressor(smooth_features=["x2"]).fit(two[["x1", "x2"]], two["y"], sample_weight=w)
    assert g.conditional_aic_ == pytest.approx(summary["two_linear_weighted"]["aic"], rel=1e-6)


def test_response_scale_intervals_stay_in_range():
    m, X, _ = _gam("binom_1smooth")
    lo, hi = m.predict_interval(X, level=0.9)
    p = m.predict_proba(X)[:, 1]
    assert np.all((0 < lo) & (lo <= p) & (p <= hi) & (hi < 1))
    eta, se = m.linear_predictor(X, return_std=True)
    np.testing.assert_allclose(lo, 1 / (1 + np.exp(-(eta - 1.6448536269514722 * se))), rtol=1e-12)


def test_marginal_probabilities_average_over_the_group_effects(contraception):
    """unseen_groups='marginal': without groups, each probability is E[expit(eta + b)] over
    b ~ N(0, sigma_district^2) (checked by a fine numerical integral); rows of seen levels
    keep their conditional probabilities."""
    m = PenalizedSplineClassifier.from_formula(CONTRACEPTION, contraception, reml=False, unseen_groups="marginal")
    rows = contraception.head(5)
    p_marg = m.predict_proba(rows.drop(columns="district"))[:, 1]
    eta = m.linear_predictor(rows.drop(columns="district"))
    sd = m.variance_components_.set_index("factor").loc["district", "std_dev"]
    b = np.linspace(-10, 10, 20001) * sd
    dens = np.exp(-0.5 * (b / sd) ** 2)
    want = [(dens / (1 + np.exp(-(e + b)))).sum() / dens.sum() for e in eta]
    np.testing.assert_allclose(p_marg, want, rtol=1e-8)
    assert np.all(np.abs(p_marg - 0.5) < np.abs(1 / (1 + np.exp(-eta)) - 0.5))  # shrunk toward 1/2
    np.testing.assert_allclose(m.predict_proba(rows)[:, 1],
                               clone(m).set_params(unseen_groups="population").fit(contraception).predict_proba(rows)[:, 1],
                               rtol=1e-10)
