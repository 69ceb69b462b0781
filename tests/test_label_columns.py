"""Group labels inside X (``group_columns``) and the formula as a parameter, through every
scikit-learn tool, with metadata routing off (scikit-learn's default).

Each tool's result is compared with a hand-written loop that passes ``groups`` explicitly to an
estimator fitted without label columns: the labels must reach predict and score everywhere.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.inspection import (
    PartialDependenceDisplay,
    partial_dependence,
    permutation_importance,
)
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    cross_val_predict,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklmm import MixedLinearRegressor, NoGroupsWarning, PenalizedSplineRegressor
from sklmm.datasets import load_penicillin, load_sleepstudy

CV = KFold(5, shuffle=True, random_state=0)  # shuffled: test subjects were seen in training


@pytest.fixture(scope="module")
def sleep():
    df = load_sleepstudy()
    return df, df[["Days", "Subject"]], df["Reaction"]


def _plain(**kw):
    return MixedLinearRegressor(random_slopes=["Days"], **kw)


def _labelled(**kw):
    return MixedLinearRegressor(random_slopes=["Days"], group_columns="Subject", **kw)


def _by_hand(df, y, train, test, predict=True, **kw):
    """A fit on the training rows with groups= and the conditional prediction of the test rows."""
    f = _plain(**kw).fit(df[["Days"]].iloc[train], y.iloc[train], groups=df["Subject"].iloc[train])
    return f.predict(df[["Days"]].iloc[test], groups=df["Subject"].iloc[test]) if predict else f


def test_cross_val_predict_is_conditional(sleep):
    df, X, y = sleep
    got = cross_val_predict(_labelled(), X, y, cv=CV)
    want = np.empty(len(y))
    for train, test in CV.split(X):
        want[test] = _by_hand(df, y, train, test)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.warns(NoGroupsWarning):  # groups dropped: population level, and said so
        pop = cross_val_predict(_plain(), df[["Days"]], y, cv=CV)
    assert r2_score(y, got) > r2_score(y, pop) + 0.3


@pytest.mark.parametrize("scoring", ["neg_mean_absolute_error", "r2", "callable"])
def test_string_and_callable_scorers_see_the_groups(sleep, scoring):
    df, X, y = sleep

    def mae_with_groups(est, X_test, y_test):  # a callable scorer: X carries the labels
        return -mean_absolute_error(y_test, est.predict(X_test))

    got = cross_validate(_labelled(), X, y, cv=CV, scoring=mae_with_groups if scoring == "callable" else scoring)
    metric = r2_score if scoring == "r2" else (lambda a, b: -mean_absolute_error(a, b))
    want = [metric(y.iloc[test], _by_hand(df, y, train, test)) for train, test in CV.split(X)]
    np.testing.assert_allclose(got["test_score"], want, rtol=1e-12)


def test_permutation_importance_scores_conditional_predictions(sleep):
    df, X, y = sleep
    m = _labelled().fit(X, y)
    ref = _plain().fit(df[["Days"]], y, groups=df["Subject"])
    seen = []

    def scorer(est, Xp, yp):
        seen.append((Xp.copy(), est.score(Xp, yp)))
        return seen[-1][1]

    res = permutation_importance(m, X, y, scoring=scorer, n_repeats=3, random_state=0)
    assert len(seen) == 1 + 3 * X.shape[1]
    for Xp, score in seen:  # every permuted X scored as a loop passing groups scores it
        assert score == pytest.approx(r2_score(y, ref.predict(Xp[["Days"]], groups=Xp["Subject"])), rel=1e-12)
    assert res.importances_mean[1] > 0.05  # shuffling the labels costs what the random effects add


def test_partial_dependence_averages_conditional_predictions(sleep):
    df, X, y = sleep
    m = _labelled().fit(X, y)
    ref = _plain().fit(df[["Days"]], y, groups=df["Subject"])
    pd_ = partial_dependence(m, X, ["Days"], kind="average", grid_resolution=5)
    grid = pd_["grid_values"][0]
    want = [ref.predict(pd.DataFrame({"Days": np.full(len(X), v)}), groups=df["Subject"]).mean() for v in grid]
    np.testing.assert_allclose(pd_["average"][0], want, rtol=1e-12)
    ice = partial_dependence(m, X, ["Days"], kind="individual", grid_resolution=5)["individual"][0]
    assert np.ptp(ice[:, 0]) > 50  # subjects differ: the individual curves carry their effects
    PartialDependenceDisplay.from_estimator(m, X, ["Days"], kind="both", grid_resolution=5)


def _label_pipeline(**kw):
    """The recipe: scale the features, pass the label column through untouched, pandas output."""
    ct = ColumnTransformer([("num", StandardScaler(), ["Days"])], remainder="passthrough",
                           verbose_feature_names_out=False).set_output(transform="pandas")
    return make_pipeline(ct, _labelled(**kw))


def test_pipeline_score_with_routing_off(sleep):
    df, X, y = sleep
    pipe = _label_pipeline().fit(X, y)
    Xs = (df[["Days"]] - df["Days"].mean()) / df["Days"].std(ddof=0)
    ref = _plain().fit(Xs, y, groups=df["Subject"])
    assert pipe.score(X, y) == pytest.approx(r2_score(y, ref.predict(Xs, groups=df["Subject"])), rel=1e-9)


def test_grid_search_with_routing_off(sleep):
    df, X, y = sleep
    gs = GridSearchCV(_labelled(), {"reml": [True, False]}, cv=CV).fit(X, y)
    for reml in (True, False):
        want = np.mean([r2_score(y.iloc[test], _by_hand(df, y, train, test, reml=reml)) for train, test in CV.split(X)])
        row = gs.cv_results_["params"].index({"reml": reml})
        assert gs.cv_results_["mean_test_score"][row] == pytest.approx(want, rel=1e-10)


def test_groups_given_twice_must_agree_and_labels_are_not_features(sleep):
    df, X, y = sleep
    m = _labelled().fit(X, y, groups=df["Subject"])  # the same labels: accepted
    assert m.n_features_in_ == 1 and list(m.feature_names_in_) == ["Days"]
    assert m.fixed_effects_names_ == ["(Intercept)", "Days"]
    with pytest.raises(ValueError, match="groups disagrees with the label columns"):
        _labelled().fit(X, y, groups=df["Subject"].sample(frac=1.0, random_state=1).to_numpy())
    with pytest.raises(ValueError, match=r"X lacks the group column\(s\) \['Subject'\]"):
        m.predict(df[["Days"]])
    with pytest.raises(ValueError, match="group_columns must be None, a column name"):
        MixedLinearRegressor(group_columns=[]).fit(X, y)


def test_label_columns_of_an_array_are_positions(sleep):
    df, X, y = sleep
    arr = np.column_stack([df["Subject"].to_numpy(dtype=float), df["Days"].to_numpy()])
    m = MixedLinearRegressor(random_slopes=[0], group_columns=[0]).fit(arr, y.to_numpy())
    ref = _plain().fit(df[["Days"]], y, groups=df["Subject"])
    assert m.criterion_ == pytest.approx(ref.criterion_, rel=1e-10)
    np.testing.assert_allclose(m.predict(arr), ref.predict(df[["Days"]], groups=df["Subject"]), rtol=1e-9)
    with pytest.raises(ValueError, match="are not column positions"):
        MixedLinearRegressor(group_columns=["Subject"]).fit(arr, y)
    # the label column is named as groups= would name it, not "x0" as the first feature is
    assert list(m.n_groups_) == ["group"] and m.theta_names_ == ["group.(Intercept)", "group.x0.(Intercept)", "group.x0"]
    with pytest.raises(ValueError, match=r"names column index 1, but X without its group_columns .* has 1 columns"):
        MixedLinearRegressor(random_slopes=[1], group_columns=[0]).fit(arr, y.to_numpy())


def test_penalized_spline_regressor_takes_label_columns_too(sleep):
    df, X, y = sleep
    g = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5, group_columns="Subject").fit(X, y)
    ref = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5).fit(df[["Days"]], y, groups=df["Subject"])
    assert g.criterion_ == pytest.approx(ref.criterion_, rel=1e-12)
    np.testing.assert_allclose(g.predict(X), ref.predict(df[["Days"]], groups=df["Subject"]), rtol=1e-12)
    assert g.score(X, y) == pytest.approx(ref.score(df[["Days"]], y, groups=df["Subject"]), rel=1e-12)


# ----------------------------------------------------------------------------- names, not positions


def test_group_columns_are_matched_by_name_at_predict():
    d = load_penicillin()
    X, y = np.empty((len(d), 0)), d["diameter"]
    m = MixedLinearRegressor().fit(X, y, groups=d[["plate", "sample"]])
    want = m.predict(X, groups=d[["plate", "sample"]])
    np.testing.assert_array_equal(m.predict(X, groups=d[["sample", "plate"]]), want)
    np.testing.assert_array_equal(m.predict(X, groups=d[["sample", "plate"]].to_numpy()[:, ::-1]), want)  # unnamed: by position
    with pytest.raises(ValueError, match=r"lacks the grouping column\(s\) \['sample'\]"):
        m.predict(X, groups=d[["plate", "sample"]].rename(columns={"sample": "s"}))


def test_labels_of_another_type_than_the_fitted_ones_are_flagged(sleep):
    df, X, y = sleep
    m = _plain().fit(df[["Days"]], y, groups=df["Subject"])  # labels "308", "309", ... (text)
    with pytest.warns(UserWarning, match=r"180 of 180 labels of 'Subject' were not seen in fit, and they are numbers"):
        m.predict(df[["Days"]], groups=df["Subject"].astype(int))
    m = _plain().fit(df[["Days"]], y, groups=df["Subject"].astype(int))  # and the other way round
    with pytest.warns(UserWarning, match=r"they are text while the fitted levels are numbers \(e.g. 308\)"):
        m.predict(df[["Days"]], groups=df["Subject"].astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a few new levels of the right type: no warning
        m.predict(df[["Days"]].head(12), groups=df["Subject"].astype(int).head(12) + 1000 * (np.arange(12) < 3))


# ----------------------------------------------------------------------------- the formula as a parameter


FORMULA = "Reaction ~ Days + (Days | Subject)"


def test_formula_estimator_matches_from_formula_and_predicts_like_lme4(sleep):
    df = sleep[0]
    m = MixedLinearRegressor(formula=FORMULA).fit(df)
    ref = MixedLinearRegressor.from_formula(FORMULA, df)
    assert m.criterion_ == pytest.approx(ref.criterion_, rel=1e-12)
    assert m.get_params()["random_slopes"] is None and m.formula_ == FORMULA
    np.testing.assert_allclose(m.predict(df), ref.predict(df, groups=df), rtol=1e-12)  # conditional
    np.testing.assert_allclose(m.predict(df[["Days"]]), ref.predict(df[["Days"]]), rtol=1e-12)  # population
    assert m.score(df) == pytest.approx(ref.score(df, df["Reaction"], groups=df), rel=1e-12)
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(df), m.predict(df))


def test_formula_estimator_clones_and_cross_validates(sleep):
    df = sleep[0]
    m = MixedLinearRegressor(formula=FORMULA, reml=False)
    c = clone(m)
    assert c.get_params()["formula"] == FORMULA and not hasattr(c, "formula_design_")
    got = cross_validate(m, df, None, cv=CV)["test_score"]
    want = []
    for train, test in CV.split(df):
        f = MixedLinearRegressor.from_formula(FORMULA, df.iloc[train], REML=False)
        want.append(f.score(df.iloc[test], df["Reaction"].iloc[test], groups=df.iloc[test]))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    gs = GridSearchCV(m, {"reml": [True, False]}, cv=CV).fit(df)
    assert gs.best_estimator_.formula_ == FORMULA


def test_formula_estimator_refuses_what_the_formula_sets(sleep):
    df = sleep[0]
    with pytest.raises(ValueError, match=r"\['random_slopes'\] are set by the formula"):
        MixedLinearRegressor(formula=FORMULA, random_slopes=["Days"]).fit(df)
    with pytest.raises(ValueError, match="do not pass groups="):
        MixedLinearRegressor(formula=FORMULA).fit(df, groups=df["Subject"])
    with pytest.raises(ValueError, match="requires y to be passed"):
        MixedLinearRegressor().fit(df[["Days"]])


def test_formula_estimator_drops_incomplete_rows_and_their_weights(sleep):
    df = sleep[0].copy()
    df.loc[[3, 50], "Days"] = np.nan
    w = np.linspace(1, 2, len(df))
    m = MixedLinearRegressor(formula=FORMULA).fit(df, sample_weight=w)
    keep = df["Days"].notna().to_numpy()
    ref = _plain().fit(df.loc[keep, ["Days"]], df.loc[keep, "Reaction"], groups=df.loc[keep, "Subject"],
                       sample_weight=w[keep])
    assert m.n_obs_ == keep.sum() and m.criterion_ == pytest.approx(ref.criterion_, rel=1e-12)
