"""MixedLogisticRegression and MixedPoissonRegressor against lme4's glmer.

Reference numbers: ``tests/data/glmer_reference.json``, written by ``tools/glmer_reference.R``
(lme4 1.1-31). glmer often stops short of its optimum (it warns of non-convergence on VerbAgg,
Contraception and the uncentred grouseticks fit): there sklmm's criterion must be at or below
glmer's; where glmer converged, the estimates must agree within 1e-3.
"""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from scipy.special import expit, gammaln
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklmm import (
    MixedLogisticRegression,
    MixedPoissonRegressor,
    NoGroupsWarning,
    SeparationWarning,
    SingularFitWarning,
    likelihood_ratio_test,
)
from sklmm._engine import factor_cholmod
from sklmm.datasets import load_cbpp, load_contraception, load_grouseticks, load_verbagg

REF = json.loads((Path(__file__).parent / "data" / "glmer_reference.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def cbpp():
    return quiet(MixedLogisticRegression.from_formula, CBPP, load_cbpp())


@pytest.fixture(scope="module")
def grouse():
    X, y, g = load_grouseticks(return_X_y=True)
    X = X.assign(HEIGHT=X["HEIGHT"] - X["HEIGHT"].mean())[["YEAR96", "YEAR97", "HEIGHT"]]
    return quiet(MixedPoissonRegressor().fit, X, y, groups=g), (X, y, g)


@pytest.fixture(scope="module")
def contraception():
    X, y, g = load_contraception(return_X_y=True)
    return quiet(MixedLogisticRegression().fit, X, y, groups=g), (X, y, g)


@pytest.fixture(scope="module")
def verbagg():
    X, y, g = load_verbagg(return_X_y=True)
    return quiet(MixedLogisticRegression().fit, X, y, groups=g)


def _ranef(ref, factor):
    r = ref["ranef"][factor]
    return pd.Series(r["values"]["(Intercept)"], index=[str(v) for v in r["levels"]])


# ------------------------------------------------------------------ glmer's answers


def test_cbpp_binomial_with_trials_matches_glmer(cbpp):
    ref = REF["cbpp_laplace"]
    # two case-weighted rows per herd-period: the likelihood lacks lme4's binomial coefficients
    assert cbpp.criterion_ <= ref["minus2loglik"] + 2 * ref["lchoose_constant"] + 1e-6
    np.testing.assert_allclose(cbpp.theta_, ref["theta"], atol=1e-3)
    fe = cbpp.fixed_effects_
    np.testing.assert_allclose(fe["estimate"], ref["fixef"], atol=1e-3)
    # glmer's use.hessian = FALSE covariance, (R_X'R_X)^-1 at the mode's weights
    from sklmm._inference.covariance import fixed_cov

    np.testing.assert_allclose(np.sqrt(np.diag(fixed_cov(cbpp._fit))), ref["se_rx"], rtol=1e-3)
    # the Hessian-based errors: glmer's own come from a finite-difference Hessian of a
    # deviance its PIRLS resolves to ~5e-4 only (see test_laplace_is_exact_at_fixed_parameters)
    np.testing.assert_allclose(fe["std_error"], ref["se"], rtol=0.02)
    assert len(cbpp.fixed_effects_names_) == len(ref["fixef_names"])  # (formulaic's names: period[T.2])


def test_cbpp_adaptive_quadrature_matches_glmer():
    ref = REF["cbpp_agq25"]
    m = quiet(MixedLogisticRegression.from_formula, CBPP, load_cbpp(), n_quadrature_points=25)
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["estimate"], ref["fixef"], atol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["std_error"], ref["se"], rtol=1e-3)


def test_one_quadrature_point_is_the_laplace_approximation(cbpp):
    from sklmm._engine.quadrature import agq_deviance

    fit = cbpp._fit
    state = fit.problem.pirls(fit.theta, fit.beta[fit.keep])
    assert agq_deviance(fit.problem, state, 1) == pytest.approx(state.laplace, abs=1e-8)


def test_grouseticks_poisson_three_factors_matches_glmer(grouse):
    m, _ = grouse
    ref = REF["grouseticks_centred"]
    assert m.criterion_ <= ref["minus2loglik"] + 1e-6
    assert m.theta_names_ == ref["theta_names"]
    # (glmer lands on one of two optima 2e-5 apart between runs: see the reference's note)
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-3)
    fe = m.fixed_effects_
    np.testing.assert_allclose(fe["estimate"], ref["fixef"], atol=1e-3)
    np.testing.assert_allclose(fe["std_error"], ref["se"], rtol=1e-3)
    for factor in ("BROOD", "LOCATION"):
        ours = m.random_effects_[factor]["(Intercept)"]
        theirs = _ranef(ref, factor)
        np.testing.assert_allclose(ours.to_numpy(), theirs[[str(i) for i in ours.index]].to_numpy(), atol=1e-3)
        sd = ref["condvar_sd"][factor]
        np.testing.assert_allclose(m.random_effects_std_[factor]["(Intercept)"].to_numpy(),
                                   sd["values"]["(Intercept)"], atol=1e-3)
    assert m.aic_ == pytest.approx(m.criterion_ + 2 * ref["df"])
    assert m.bic_ == pytest.approx(m.criterion_ + np.log(ref["nobs"]) * ref["df"])


def _dense_laplace(X, y, codes_list, theta, beta):
    """The Laplace approximation by a dense Newton solve for the modes: an independent check."""
    Z = np.hstack([np.eye(c.max() + 1)[c] * t for c, t in zip(codes_list, theta)])
    off = X @ beta

    def pdev(u):
        eta = off + Z @ u
        return 2 * np.sum(np.exp(eta) - y * eta + gammaln(y + 1)) + u @ u

    u = np.zeros(Z.shape[1])
    for _ in range(50):
        mu = np.exp(off + Z @ u)
        H = 2 * (Z.T * mu) @ Z + 2 * np.eye(len(u))
        u = u - np.linalg.solve(H, 2 * Z.T @ (mu - y) + 2 * u)
    L = (Z.T * np.exp(off + Z @ u)) @ Z + np.eye(len(u))
    return pdev(u) + np.linalg.slogdet(L)[1]


def test_laplace_is_exact_at_fixed_parameters():
    """glmer's deviance function at a fixed (theta, beta) does not depend on any optimizer;
    sklmm's criterion there equals an independent dense computation to rounding, and glmer's
    within its PIRLS tolerance."""
    ref = REF["grouseticks"]["devfun"]
    X, y, g = load_grouseticks(return_X_y=True)
    X = X[["YEAR96", "YEAR97", "HEIGHT"]]
    m = quiet(MixedPoissonRegressor().fit, X, y, groups=g)
    assert m.theta_names_ == [f"{n}.(Intercept)" for n in ("INDEX", "BROOD", "LOCATION")]
    Xf = np.column_stack([np.ones(len(y)), X.to_numpy()])
    codes = [g[c].cat.codes.to_numpy() for c in ("INDEX", "BROOD", "LOCATION")]
    for key in ("fixed", "optimum"):
        par = np.asarray(ref[key]["par"])
        ours = m._fit.criterion_at(par[:3], par[3:])
        assert ours == pytest.approx(_dense_laplace(Xf, y.to_numpy(), codes, par[:3], par[3:]), abs=1e-7)
        assert ours == pytest.approx(ref[key]["value"], abs=1e-3)
        assert ours <= ref[key]["value"] + 1e-9  # glmer's modes are less exact, never better
    assert m.criterion_ <= REF["grouseticks"]["minus2loglik"] + 1e-6


def test_verbagg_crossed_reaches_a_better_optimum_than_glmer(verbagg):
    ref = REF["verbagg"]
    assert not ref["converged"]  # glmer stops short here
    best = min(ref["minus2loglik"], ref["refit_bobyqa"]["minus2loglik"])
    assert verbagg.criterion_ <= best + 1e-6
    assert verbagg.criterion_ == pytest.approx(8135.8330, abs=1e-3)  # MixedModels.jl's optimum
    np.testing.assert_allclose(verbagg.theta_, ref["refit_bobyqa"]["theta"], atol=2e-3)
    np.testing.assert_allclose(verbagg.coef_[0], ref["refit_bobyqa"]["fixef"][1:], atol=5e-3)
    assert verbagg.converged_
    assert verbagg.coef_.shape == (1, 6) and verbagg.intercept_.shape == (1,)
    # stage 1 is glmer's nAGQ = 0 fit
    assert verbagg._fit.stage1.fmin <= REF["verbagg_nagq0"]["minus2loglik"] + 1e-6


def test_contraception_fits_reach_glmer(contraception):
    m, (X, y, g) = contraception
    assert m.criterion_ <= REF["contraception"]["minus2loglik"] + 1e-6
    np.testing.assert_allclose(m.fixed_effects_["estimate"], REF["contraception"]["fixef"], atol=1e-3)
    slopes = quiet(MixedLogisticRegression(random_slopes=["urbanY"]).fit, X, y, groups=g)
    assert slopes.criterion_ <= REF["contraception_urban"]["minus2loglik"] + 1e-6
    np.testing.assert_allclose(slopes.theta_, REF["contraception_urban"]["theta"], atol=1e-3)
    agq = quiet(MixedLogisticRegression(n_quadrature_points=9).fit, X, y, groups=g)
    assert agq.criterion_ <= REF["contraception_agq9"]["minus2loglik"] + 1e-6
    np.testing.assert_allclose(agq.theta_, REF["contraception_agq9"]["theta"], atol=1e-3)
    # the likelihood-ratio test of the random slope, as lme4's anova of the two fits
    res = likelihood_ratio_test(m, slopes)
    assert res.df == 2
    assert res.statistic == pytest.approx(m.criterion_ - slopes.criterion_)
    assert res.statistic == pytest.approx(
        REF["contraception"]["minus2loglik"] - REF["contraception_urban"]["minus2loglik"], abs=1e-3)


# ------------------------------------------------------------------ predictions


def test_conditional_population_and_marginal_predictions(contraception):
    m, (X, y, g) = contraception
    beta = np.r_[m.intercept_, m.coef_[0]]
    eta0 = np.column_stack([np.ones(len(X)), X.to_numpy()]) @ beta
    np.testing.assert_allclose(m.predict_proba(X)[:, 1], expit(eta0))
    b = m.random_effects_["district"]["(Intercept)"]
    eta = eta0 + b.loc[g].to_numpy()
    np.testing.assert_allclose(m.decision_function(X, groups=g), eta)
    np.testing.assert_allclose(m.predict_proba(X, groups=g)[:, 1], expit(eta))
    marginal = quiet(clone(m).set_params(unseen_groups="marginal").fit, X, y, groups=g)
    sd = float(m.variance_components_["std_dev"].iloc[0])
    got = marginal.predict_proba(X.iloc[:5])[:, 1]
    want = [integrate.quad(lambda z: expit(e + sd * z) * stats.norm.pdf(z), -12, 12)[0] for e in eta0[:5]]
    np.testing.assert_allclose(got, want, rtol=1e-7)
    # seen levels stay conditional with "marginal"; unseen ones are averaged
    np.testing.assert_allclose(marginal.predict_proba(X, groups=g)[:, 1], expit(eta))
    assert m.score(X, y, groups=g) == pytest.approx(np.mean(m.predict(X, groups=g) == y))


def test_poisson_marginal_mean_and_d2(grouse):
    m, (X, y, g) = grouse
    marg = clone(m).set_params(unseen_groups="marginal")
    marg = quiet(marg.fit, X, y, groups=g)
    v = float((marg.variance_components_["variance"]).sum())
    eta = marg.linear_predictor(X)
    np.testing.assert_allclose(marg.predict(X), np.exp(eta + v / 2))
    mu = m.predict(X, groups=g)
    dev = 2 * np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
    dev0 = 2 * np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / y.mean()), 0) - (y - y.mean()))
    assert m.score(X, y, groups=g) == pytest.approx(1 - dev / dev0)
    assert np.ndim(m.coef_) == 1 and isinstance(m.intercept_, float)


# ------------------------------------------------------------------ the scikit-learn contract


@parametrize_with_checks([MixedLogisticRegression(), MixedPoissonRegressor()])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no groups (NoGroupsWarning); separated toy data
        check(estimator)


def test_labels_formulas_and_case_weights(cbpp):
    va = load_verbagg().iloc[:2000]
    m = quiet(MixedLogisticRegression.from_formula, "r2 ~ Anger + Gender + (1 | id)", va)
    assert list(m.classes_) == ["N", "Y"]
    assert set(m.predict(va.iloc[:20], groups=va[["id"]].iloc[:20])) <= {"N", "Y"}
    # cbind(s, f) is two case-weighted rows per observation
    d = load_cbpp()
    X1 = pd.get_dummies(d["period"], prefix="period", drop_first=True, dtype=float)
    X = pd.concat([X1, X1], ignore_index=True)
    y = np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = np.r_[d["incidence"], d["size"] - d["incidence"]]
    herd = pd.concat([d["herd"], d["herd"]], ignore_index=True)
    manual = quiet(MixedLogisticRegression().fit, X, y, groups=herd, sample_weight=w)
    assert manual.criterion_ == pytest.approx(cbpp.criterion_, abs=1e-6)
    np.testing.assert_allclose(manual.coef_, cbpp.coef_, atol=1e-5)


def test_cbind_counts_are_checked_and_a_missing_one_leaves_its_observation_out():
    """cbind's counts: a missing one drops its whole observation (lme4's na.omit), as dropping
    the row would; a negative or infinite count, a name not in the data and text are refused
    with the column named. A missing count used to become 0 (the other count's row kept) and a
    negative one was silently dropped."""
    d = load_cbpp()
    d["fail"] = d["size"] - d["incidence"]
    form = "cbind(incidence, fail) ~ period + (1 | herd)"
    gone = quiet(MixedLogisticRegression.from_formula, form, d.iloc[1:])
    nan = quiet(MixedLogisticRegression.from_formula, form, d.assign(incidence=np.r_[np.nan, d["incidence"][1:]]))
    assert d.loc[0, "fail"] > 0 and nan.criterion_ == pytest.approx(gone.criterion_, abs=1e-8)
    np.testing.assert_allclose(nan.coef_, gone.coef_, atol=1e-8)
    with pytest.raises(ValueError, match=r"cbind\(incidence, fail\): the failures 'fail' has 1 negative"):
        MixedLogisticRegression.from_formula(form, d.assign(fail=np.r_[-5, d["fail"][1:]]))
    with pytest.raises(ValueError, match="successes 'incidence' has 1 negative or infinite"):
        MixedLogisticRegression.from_formula(form, d.assign(incidence=np.r_[np.inf, d["incidence"][1:]]))
    with pytest.raises(ValueError, match="the failures 'zz' could not be computed from the data"):
        MixedLogisticRegression.from_formula("cbind(incidence, zz) ~ period + (1 | herd)", d)
    with pytest.raises(ValueError, match="the failures 'note' must hold numbers"):
        MixedLogisticRegression.from_formula("cbind(incidence, note) ~ period + (1 | herd)", d.assign(note="none"))


def test_glmm_responses_refused_or_read_as_their_values():
    """A classifier's y with missing labels or labels of mixed types is refused with the rows or
    the labels named (it raised numpy's TypeError from sorting, or scikit-learn's 'Unknown
    label type'); a Poisson model's boolean y is read as 0/1 counts (numpy refused its ptp)."""
    rng = np.random.default_rng(0)
    n = 200
    g, x = rng.integers(0, 10, n), rng.normal(size=(n, 1))
    labels = np.array(["a", "b", "b", "a"] * (n // 4), dtype=object)
    missing = labels.copy()
    missing[[2, 6]] = None
    with pytest.raises(ValueError, match=r"y has 2 missing label\(s\) \(None, NaN or NA; rows \[2, 6\]\)"):
        MixedLogisticRegression().fit(x, missing, groups=g)
    boolean = pd.array([True, False, pd.NA, True] * (n // 4), dtype="boolean")
    with pytest.raises(ValueError, match=r"y has 50 missing label\(s\)"):
        MixedLogisticRegression().fit(x, boolean, groups=g)
    with pytest.raises(ValueError, match=r"y mixes text and other labels \(e.g. 'no' and 1\)"):
        MixedLogisticRegression().fit(x, np.array(["no", 1] * (n // 2), dtype=object), groups=g)
    counts = rng.poisson(1.0, n) > 0
    as_bool = quiet(MixedPoissonRegressor().fit, x, counts, groups=g)
    as_float = quiet(MixedPoissonRegressor().fit, x, counts.astype(float), groups=g)
    assert as_bool.criterion_ == as_float.criterion_


def test_formula_parameter_fits_clones_and_cross_validates_on_data_frames(cbpp):
    by_param = MixedLogisticRegression(formula=CBPP).fit(load_cbpp())
    assert by_param.criterion_ == pytest.approx(cbpp.criterion_, abs=1e-9)
    va = load_verbagg().iloc[:2000]
    f = "r2 ~ Anger + Gender + (1 | id)"
    m = quiet(MixedLogisticRegression(formula=f).fit, va)
    assert list(m.classes_) == ["N", "Y"]
    assert m.criterion_ == pytest.approx(quiet(MixedLogisticRegression.from_formula, f, va).criterion_, abs=1e-9)
    assert m.score(va) == pytest.approx(np.mean(m.predict(va) == va["r2"].to_numpy()))
    ct = load_contraception()
    search = quiet(GridSearchCV(MixedLogisticRegression(formula="use ~ age + urban + (1 | district)"),
                                {"unseen_groups": ["population", "marginal"]}, cv=GroupKFold(3),
                                scoring="neg_log_loss").fit, ct, ct["use"], groups=ct["district"])
    assert search.best_params_ == {"unseen_groups": "marginal"}  # new districts: calibrated
    with pytest.raises(ValueError, match="set by the formula"):
        MixedLogisticRegression(formula=f, nested=True).fit(va)


def test_clone_pickle_and_grouped_cross_validation(contraception):
    m, (X, y, g) = contraception
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(back.predict_proba(X, groups=g), m.predict_proba(X, groups=g))
    np.testing.assert_allclose(back.random_effects_std_["district"], m.random_effects_std_["district"])
    scores = quiet(cross_validate, clone(m), X, y, cv=GroupKFold(3), groups=g, scoring="roc_auc")
    assert np.all(scores["test_score"] > 0.6)


def test_profile_intervals_match_glmer(cbpp):
    ref = REF["cbpp_laplace"]["confint_profile"]
    ci = cbpp.confidence_intervals("profile")
    assert list(ci.index)[0] == "sd_(Intercept)|herd" and len(ci) == len(ref["names"])
    # lme4 interpolates its profile by splines; the two agree to about 3e-5
    np.testing.assert_allclose(ci["lower"], ref["lower"], atol=1e-3)
    np.testing.assert_allclose(ci["upper"], ref["upper"], atol=1e-3)


@pytest.mark.skipif(not factor_cholmod.HAS_CHOLMOD, reason="scikit-sparse not installed")
def test_a_cholmod_fit_pickles_and_refits_its_modes():
    m = quiet(MixedLogisticRegression.from_formula, CBPP, load_cbpp(), solver="cholmod")
    assert m.solver_ == "cholmod"
    back = pickle.loads(pickle.dumps(m))  # (a CHOLMOD factor does not pickle: rebuilt)
    pd.testing.assert_frame_equal(back.fixed_effects_, m.fixed_effects_)
    assert back._fit.criterion_at(back._fit.theta, back._fit.beta) == pytest.approx(m.criterion_, abs=1e-8)


def test_simulate_and_bootstrap(cbpp):
    sims = cbpp.simulate(n_draws=200, random_state=0)
    assert sims.shape == (cbpp.n_obs_, 200)
    assert np.all((sims >= 0) & (sims <= 1))
    boot = cbpp.confidence_intervals("bootstrap", n_boot=4, random_state=1)
    assert list(boot.index) == ["sd_(Intercept)|herd"] + cbpp.fixed_effects_names_
    wald = cbpp.confidence_intervals()
    np.testing.assert_allclose(wald["upper"] - wald["estimate"], 1.959963984540054 * cbpp.fixed_effects_["std_error"])


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_a_clear_error(cbpp):
    X, y, g = load_contraception(return_X_y=True)
    with pytest.raises(ValueError, match="Only binary classification"):
        MixedLogisticRegression().fit(X, np.arange(len(y)) % 3, groups=g)
    with pytest.raises(ValueError, match="single grouping factor with a random intercept"):
        MixedLogisticRegression(n_quadrature_points=5, random_slopes=["urbanY"]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="count"):
        MixedPoissonRegressor().fit(X, y - 0.5, groups=g)
    with pytest.raises(ValueError, match="no variation"):
        MixedPoissonRegressor().fit(X, np.full(len(y), 3.0), groups=g)
    with pytest.raises(ValueError, match="unseen_groups"):
        MixedLogisticRegression(unseen_groups="mean").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="method must be"):
        cbpp.confidence_intervals("profiles")
    with pytest.warns(NoGroupsWarning):
        MixedLogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="cbind"):  # proportions are not labels
        MixedLogisticRegression().fit(X, np.full(len(y), 0.3) + 0.4 * y, groups=g)
    with pytest.raises(ValueError, match="y must be numeric"):
        MixedPoissonRegressor().fit(X, np.array(["a"] * len(y)), groups=g)
    labels = pd.DataFrame({"y": ["a", "b"] * 20, "x": np.arange(40.0), "g": np.repeat(np.arange(10), 4)})
    with pytest.raises(ValueError, match="numeric"):  # labels are counts for no one
        MixedPoissonRegressor.from_formula("y ~ x + (1 | g)", labels)


def test_separation_is_warned_about():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    y = (x > 0).astype(float)  # x separates the classes completely
    warnings.simplefilter("ignore", SingularFitWarning)  # (the random effects are not needed)
    with pytest.warns(SeparationWarning, match="separated"):
        MixedLogisticRegression().fit(x[:, None], y, groups=g)


def test_groups_that_each_have_one_outcome_are_warned_about():
    g = np.repeat(np.arange(10), 10)
    y = (g % 2).astype(float)  # every group all 0 or all 1
    x = np.random.default_rng(0).normal(size=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(SeparationWarning, match="every level of grouping factor"):
            MixedLogisticRegression().fit(x[:, None], y, groups=g)


def test_dask_collections_are_refused_with_the_reason():
    da = pytest.importorskip("dask.array")
    X = da.from_array(np.random.default_rng(0).normal(size=(100, 2)), chunks=50)
    y = da.from_array((np.arange(100) % 2).astype(float), chunks=50)
    with pytest.raises(ValueError, match="penalized IRLS"):
        MixedLogisticRegression().fit(X, y, groups=da.from_array(np.arange(100) % 5, chunks=50))


def test_the_factorizations_agree_on_crossed_random_slopes():
    """PIRLS refills the blocked factor (dense Schur products, both triangles of the rest's
    slope blocks) and the dense one: the same Laplace optimum."""
    rng = np.random.default_rng(3)
    n = 3000
    s, i, x = rng.integers(0, 60, n), rng.integers(0, 20, n), rng.normal(size=n)
    eta = (-0.3 + 0.7 * x + rng.normal(0, 1, 60)[s] + rng.normal(0, 0.5, 60)[s] * x
           + rng.normal(0, 0.7, 20)[i] + rng.normal(0, 0.4, 20)[i] * x)
    y = (rng.random(n) < expit(eta)).astype(float)
    fits = [quiet(MixedLogisticRegression(random_slopes=[0], solver=solver).fit, x[:, None], y,
                  groups=np.column_stack([s, i])) for solver in ("blocked", "dense")]
    assert fits[0].criterion_ == pytest.approx(fits[1].criterion_, abs=1e-6)
    np.testing.assert_allclose(fits[0].theta_, fits[1].theta_, atol=1e-4)
