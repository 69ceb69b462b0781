"""MixedLinearRegressor.from_formula: lme4 formulas against lme4's own fits of them."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from reference import LOADERS, MODELS, REFERENCE
from sklmm import MixedLinearRegressor
from sklmm._input.formula import parse_formula
from sklmm.datasets import load_pastes, load_penicillin, load_sleepstudy

KEYS = sorted(k for k in REFERENCE if k in MODELS)


def _from_formula(key):
    ref = REFERENCE[key]
    df = LOADERS[ref["data"]]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of the reference fits is singular or non-converged
        m = MixedLinearRegressor.from_formula(ref["formula"], df, REML=ref["reml"])
    return m, df, ref


@pytest.fixture(scope="module", params=KEYS)
def fitted(request):
    return _from_formula(request.param) + (request.param,)


def test_reaches_lme4_criterion(fitted):
    m, _, ref, _ = fitted
    assert m.criterion_ <= ref["criterion"] + 1e-6 * abs(ref["criterion"])
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    assert m.reml == ref["reml"]


def test_theta_beta_sigma(fitted):
    m, _, ref, _ = fitted
    assert m.theta_names_ == ref["theta_names"]
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-3)
    assert m.fixed_effects_names_ == ref["beta_names"]
    beta = ([m.intercept_] if m.fit_intercept else []) + list(m.coef_)
    np.testing.assert_allclose(beta, ref["beta"], rtol=1e-4)
    assert m.sigma_ == pytest.approx(ref["sigma"], rel=1e-4)


def test_parameters_are_the_documented_mapping(fitted):
    """The formula sets the same parameters as the hand-written model of tests/reference.py."""
    m, _, _, key = fitted
    want = MixedLinearRegressor(**MODELS[key][3]).get_params()
    got = m.get_params()
    for name in ("random_slopes", "correlated_slopes", "nested", "random_intercept", "reml"):
        assert got[name] == want[name], name


def test_predict_from_data_frames(fitted):
    m, df, ref, _ = fitted
    fitted_values = np.asarray(ref["fitted"])
    pred = m.predict(df, groups=df)  # lme4: fitted(fit) / predict(fit, newdata)
    np.testing.assert_allclose(pred, fitted_values, rtol=1e-5, atol=1e-5 * np.abs(fitted_values).max())
    X, groups = m.formula_design_.design(df)
    np.testing.assert_array_equal(m.predict(X, groups=groups), pred)
    population = m.predict(df)  # lme4: predict(fit, re.form = NA)
    np.testing.assert_allclose(population, X.to_numpy() @ m.coef_ + m.intercept_)


def test_formula_attributes_and_refit_with_clone():
    m, df, _ = _from_formula("crossed_reml")
    assert m.formula_ == "y ~ x + (x|subj) + (1|item)"
    X, groups = m.formula_design_.design(df)
    assert list(X.columns) == ["x"] and list(groups.columns) == ["subj", "item"]
    c = clone(m).fit(X, df["y"], groups=groups)
    assert c.criterion_ == pytest.approx(m.criterion_, rel=1e-10)
    assert not hasattr(c, "formula_")
    c = m.fit(X, df["y"], groups=groups)  # a refit on a design forgets the formula
    assert not hasattr(c, "formula_design_") and not hasattr(c, "formula_")


def test_pickle_keeps_the_formula():
    m, df, _ = _from_formula("sleep_slope_reml")
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict(df, groups=df), m.predict(df, groups=df))


def test_score_and_unseen_levels():
    df = load_sleepstudy()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    assert m.score(df, df["Reaction"], groups=df) > m.score(df, df["Reaction"])
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["new", "308"]})
    pred = m.predict(new, groups=new)  # allow.new.levels = TRUE
    assert pred[0] == pytest.approx(m.intercept_)
    assert pred[1] != pytest.approx(m.intercept_ + 5 * m.coef_[0])
    strict = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df, unseen_groups="error")
    with pytest.raises(ValueError, match="not seen in fit"):
        strict.predict(new, groups=new)


def test_reml_keyword_and_default():
    df = load_sleepstudy()
    f = "Reaction ~ Days + (1 | Subject)"
    assert MixedLinearRegressor.from_formula(f, df).reml is True
    assert MixedLinearRegressor.from_formula(f, df, REML=False).reml is False
    assert MixedLinearRegressor.from_formula(f, df, reml=False).reml is False
    with pytest.raises(ValueError, match="disagree"):
        MixedLinearRegressor.from_formula(f, df, REML=False, reml=True)
    with pytest.raises(ValueError, match="set by the formula"):
        MixedLinearRegressor.from_formula(f, df, random_slopes=["Days"])


def test_single_coefficient_terms_on_one_factor_are_uncorrelated_slopes():
    """lme4's (1 | g) + (0 + x | g) is (x || g)."""
    df = load_sleepstudy()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", df)
    assert m.get_params()["random_slopes"] == ["Days"] and m.correlated_slopes is False
    ref = REFERENCE["sleep_uncorr_reml"]
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-3)


def test_nested_written_as_crossed_interaction():
    """(1 | batch/cask) is (1 | batch) + (1 | batch:cask): the same fit, lme4's names."""
    df = load_pastes()
    nested = MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch/cask)", df)
    crossed = MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch) + (1 | batch:cask)", df)
    assert crossed.nested is False
    assert crossed.theta_names_ == ["batch:cask.(Intercept)", "batch.(Intercept)"]
    assert crossed.criterion_ == pytest.approx(nested.criterion_, rel=1e-9)
    np.testing.assert_allclose(crossed.theta_, nested.theta_, rtol=1e-5)
    assert "A:a" in crossed.random_effects_["batch:cask"].index


def test_nested_with_a_crossed_factor_uses_derived_columns():
    df = load_pastes().assign(lab=lambda d: np.where(np.arange(len(d)) % 2 == 0, "L1", "L2"))
    spec = parse_formula("strength ~ 1 + (1 | batch/cask) + (1 | lab)")
    spec.fit_design(df)
    assert spec.nested is False
    assert spec.group_columns == ["batch", "cask:batch", "lab"]
    groups = spec.groups(df)
    assert groups["cask:batch"].iloc[0] == f"{df['cask'].iloc[0]}:{df['batch'].iloc[0]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lab variance is (near) zero: a singular fit
        m = MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch/cask) + (1 | lab)", df)
    assert sorted(m.n_groups_) == ["batch", "cask:batch", "lab"]
    nested = MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch/cask)", df)
    assert m.criterion_ <= nested.criterion_ + 1e-6


def test_slopes_per_factor_and_uncorrelated_slopes():
    df = load_sleepstudy().assign(
        item=lambda d: (d["Days"] % 3).astype(int).astype(str), x2=lambda d: d["Days"] ** 2)
    spec = parse_formula("Reaction ~ Days + x2 + (Days + x2 || Subject) + (1 | item)")
    params = spec.fit_design(df)[3]
    assert params["random_slopes"] == {"Subject": ["Days", "x2"]}
    assert params["correlated_slopes"] is False and params["random_intercept"] is True


def test_fixed_part_through_formulaic():
    df = load_penicillin()
    df["plate_half"] = np.where(df["plate"].cat.codes < 12, "early", "late")
    m = MixedLinearRegressor.from_formula("diameter ~ C(plate_half) + (1 | sample)", df)
    assert m.fixed_effects_names_ == ["(Intercept)", "C(plate_half)[T.late]"]
    assert m.predict(df).shape == (len(df),)
    new = df.head(2).assign(plate_half=["early", "middle"])
    with pytest.raises(ValueError, match="not seen in fit"):
        m.predict(new)
    df2 = load_sleepstudy()
    m0 = MixedLinearRegressor.from_formula("Reaction ~ 0 + Days + (1 | Subject)", df2)
    assert m0.fit_intercept is False and m0.fixed_effects_names_ == ["Days"]
    m1 = MixedLinearRegressor.from_formula("Reaction ~ Days + (1 | Subject) - 1", df2)
    assert m1.fit_intercept is False
    assert m1.criterion_ == pytest.approx(m0.criterion_, rel=1e-12)
    m2 = MixedLinearRegressor.from_formula("np.log(Reaction) ~ Days + (1 | Subject)", df2)
    assert m2.intercept_ == pytest.approx(np.log(df2["Reaction"]).mean(), rel=0.05)


def test_intercept_only_and_random_only_formulas():
    df = load_penicillin()
    m = MixedLinearRegressor.from_formula("diameter ~ (1 | plate) + (1 | sample)", df)
    ref = REFERENCE["penicillin_reml"]
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    assert m.predict(df).shape == (len(df),)
    np.testing.assert_allclose(m.predict(df, groups=df), ref["fitted"], rtol=1e-5)


def test_missing_values_are_dropped_like_na_omit():
    df = load_sleepstudy()
    holes = df.copy()
    holes.loc[[3, 50], "Reaction"] = np.nan
    holes["Days"] = holes["Days"].astype(float)
    holes.loc[70, "Days"] = np.nan
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", holes)
    want = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", holes.dropna())
    assert m.n_obs_ == len(df) - 3
    assert m.criterion_ == pytest.approx(want.criterion_, rel=1e-12)
    # complete rows (want) reuse the matrices that found them; new data with a hole is refused
    for fitted in (m, want):
        assert fitted.formula_design_.fixed_spec.na_action.value == "raise"
        with pytest.raises(ValueError, match="null"):
            fitted.predict(holes)


@pytest.mark.parametrize(
    "formula, match",
    [
        ("Reaction ~ Days", "no random-effect term"),
        ("Reaction ~ Days + (1 | Subject) + (0 + Days | g2)", "random intercept and others none"),
        ("Reaction ~ Days + (Days | Subject) + (Days || g2)", r"mixes correlated"),
        ("Reaction ~ Days + (Days | Subject) + (0 + Days | Subject)", "more than one random-effect term"),
        ("Reaction ~ Days - (1 | Subject)", "cannot be subtracted"),
        ("Reaction ~ Days + (1 | Subject):Days", "must stand on its own"),
        ("Reaction ~ Days + (1 | log(Subject))", "column names"),
        ("Reaction ~ Days + (1 | nowhere)", "not columns of data"),
        ("Reaction ~ Days + (1 | Subject", "unbalanced"),
        ("Days + (1 | Subject)", "needs a response"),
        ("Reaction ~ Days + ( | Subject)", "both sides"),
        ("Reaction ~ Days + (0 | Subject)", "no coefficient"),
    ],
)
def test_clear_errors_for_what_cannot_be_mapped(formula, match):
    df = load_sleepstudy().assign(g2=lambda d: (d["Days"] % 2).astype(int))
    with pytest.raises(ValueError, match=match):
        MixedLinearRegressor.from_formula(formula, df)


def test_parser_leaves_calls_with_bars_in_the_fixed_part():
    spec = parse_formula("y ~ I(a | b) + (1 | g)")
    assert spec.fixed_part == "I(a | b)" and len(spec.terms) == 1
    with pytest.raises(TypeError):
        parse_formula(None)


# ----------------------------------------------------------------------------- beyond the parameters
# lme4 fits from tools/lme4_formula_reference.R (tests/data/lme4_formula_reference.json)

FORMULA_REF = json.loads((Path(__file__).parent / "data" / "lme4_formula_reference.json").read_text())


def _matches_lme4(m, ref):
    assert m.criterion_ <= ref["criterion"] + 1e-8 * abs(ref["criterion"])
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-8)
    assert m.theta_names_ == ref["theta_names"]
    np.testing.assert_allclose(m.theta_, ref["theta"], rtol=1e-4, atol=1e-5)
    assert m.fixed_effects_names_ == ref["beta_names"]
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref["beta"], rtol=1e-5)  # optimizer end points
    assert m.sigma_ == pytest.approx(ref["sigma"], rel=1e-4)  # where the criterion is flat in theta


@pytest.mark.parametrize("key", ["random_only_slope_reml", "random_only_slope_ml"])
def test_a_random_slope_that_is_not_a_fixed_effect(key):
    """(1 + Days | Subject) without Days in the fixed part (MixedModels.jl's test suite fits
    it): Days is a column of the design that the fixed effects leave out."""
    ref = FORMULA_REF[key]
    df = load_sleepstudy()
    m = MixedLinearRegressor.from_formula(ref["formula"], df, reml=ref["reml"])
    assert m.formula == ref["formula"]  # no parameter expresses it: a formula estimator
    _matches_lme4(m, ref)
    assert m.coef_.shape == (0,) and m.get_params()["random_slopes"] is None
    cond = m.predict(df)
    assert np.corrcoef(cond, df["Reaction"])[0, 1] > 0.9  # the slopes are in the prediction
    np.testing.assert_allclose(m.predict(df.drop(columns="Subject")), m.intercept_)  # population
    mean, se = m.predict(df, return_std=True)
    np.testing.assert_allclose(mean, cond) and np.all(se > 0)
    clone(m).fit(df)


def test_r_powers_inside_I_are_powers():
    ref = FORMULA_REF["r_power_reml"]
    df = load_sleepstudy()
    _matches_lme4(MixedLinearRegressor.from_formula(ref["formula"], df), ref)
    on_ints = df.assign(Days=df["Days"].astype(int))  # in Python ^ is XOR on integers
    m = MixedLinearRegressor.from_formula(ref["formula"], on_ints)
    np.testing.assert_allclose(m.formula_design_.fixed(on_ints)["I(Days^2)"], df["Days"] ** 2)
    _matches_lme4(m, ref)


def test_weights_in_the_formula_door():
    ref = FORMULA_REF["weighted_reml"]
    df = load_sleepstudy().assign(w=lambda d: 1 + (d["Days"] % 3) / 2)
    _matches_lme4(MixedLinearRegressor.from_formula(ref["formula"], df, weights="w"), ref)
    _matches_lme4(MixedLinearRegressor.from_formula(ref["formula"], df, weights=df["w"].to_numpy()), ref)
    _matches_lme4(MixedLinearRegressor(formula=ref["formula"]).fit(df, sample_weight=df["w"]), ref)
    with pytest.raises(ValueError, match="weights='v' is not a column of data"):
        MixedLinearRegressor.from_formula(ref["formula"], df, weights="v")


def test_polars_data_frames_in_the_formula_door():
    pl = pytest.importorskip("polars")
    df = load_sleepstudy()
    pdf = pl.from_pandas(df.assign(Subject=df["Subject"].astype(str)))
    f = "Reaction ~ Days + (Days | Subject)"
    a = MixedLinearRegressor.from_formula(f, pdf)
    b = MixedLinearRegressor(formula=f).fit(pdf)
    want = MixedLinearRegressor.from_formula(f, df)
    assert a.criterion_ == pytest.approx(want.criterion_, rel=1e-12)
    assert b.criterion_ == pytest.approx(want.criterion_, rel=1e-12)
    np.testing.assert_allclose(b.predict(pdf), want.predict(df, groups=df), rtol=1e-10)


def test_r_factor_calls_are_categorical_terms():
    """lme4 scripts write factor(k) / as.factor(k) for an integer-coded factor: the same model as
    formulaic's C(k) (a NameError from inside formulaic before)."""
    rng = np.random.default_rng(0)
    n = 300
    d = pd.DataFrame(dict(k=rng.integers(1, 4, n), g=rng.integers(0, 20, n), x=rng.normal(size=n)))
    d["y"] = d.k * 0.5 + d.x + rng.normal(size=20)[d.g] + rng.normal(size=n)
    want = MixedLinearRegressor.from_formula("y ~ x + C(k) + (1 | g)", d)
    for f in ("y ~ x + factor(k) + (1 | g)", "y ~ x + as.factor(k) + (1 | g)"):
        m = MixedLinearRegressor.from_formula(f, d)
        assert len(m.coef_) == 3
        assert m.criterion_ == pytest.approx(want.criterion_, rel=1e-12)
