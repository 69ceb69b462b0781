"""MixedLinearRegressor as a scikit-learn citizen: checks, clone, pickle, Pipelines, CV,
grid search, and the metadata-routing recipes documented in the README."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklmm import MixedLinearRegressor, NoGroupsWarning, PenalizedSplineRegressor
from sklmm.datasets import load_penicillin


EXPECTED_FAILURES = {
    # the checks' y is an exact linear function of X: with zero residual variance the
    # likelihood is unbounded, and sklmm refuses the fit with a ValueError saying so
    "check_sample_weights_shape": "y is fitted exactly by X (zero residual variance)",
    "check_sample_weights_not_overwritten": "y is fitted exactly by X (zero residual variance)",
    # sample_weight are prior (precision) weights, as lme4's: a weight of 2 is not a duplicated
    # row (n, and so sigma and the variance components, differ)
    "check_sample_weight_equivalence_on_dense_data": "precision weights are not frequency weights",
}


@parametrize_with_checks([MixedLinearRegressor()], expected_failed_checks=lambda e: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)  # the checks call fit without groups
        # check_sample_weight_equivalence fits 30 columns to 8 distinct rows: lme4's rank warning
        warnings.filterwarnings("ignore", message="fixed-effect model matrix is rank deficient")
        check(estimator)


def test_clone_and_pickle_roundtrip(sleep):
    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes=["Days"], reml=False).fit(X, y, groups=g)
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "coef_")
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict(X, groups=g), m.predict(X, groups=g))
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    pd.testing.assert_frame_equal(m2.variance_components_, m.variance_components_)


def test_predict_conditional_vs_population(sleep):
    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    pop = m.predict(X)
    np.testing.assert_allclose(pop, m.intercept_ + m.coef_[0] * X["Days"].to_numpy())
    cond = m.predict(X, groups=g)
    re = m.random_effects_["Subject"].loc[g.astype(object)].to_numpy()
    np.testing.assert_allclose(cond, pop + re[:, 0] + re[:, 1] * X["Days"].to_numpy())
    assert m.score(X, y, groups=g) > m.score(X, y)


def test_unseen_groups(sleep):
    X, y, g = sleep
    m = MixedLinearRegressor().fit(X, y, groups=g)
    new = pd.Series(["new1"] * 5 + list(g.iloc[5:10].astype(str)), name="Subject")
    # labels are compared as values: 308 (int) is not "308" (str)
    m_str = MixedLinearRegressor().fit(X, y, groups=g.astype(str))
    pred = m_str.predict(X.iloc[:10], groups=new)
    np.testing.assert_allclose(pred[:5], m_str.predict(X.iloc[:5]))
    np.testing.assert_allclose(pred[5:], m_str.predict(X.iloc[5:10], groups=g.iloc[5:10].astype(str)))
    strict = MixedLinearRegressor(unseen_groups="error").fit(X, y, groups=g.astype(str))
    with pytest.raises(ValueError, match=r"not seen in fit: \['new1'\]"):
        strict.predict(X.iloc[:10], groups=new)
    assert m.random_effects_["Subject"].shape == (18, 1)


def test_group_label_types_give_the_same_fit(sleep):
    X, y, g = sleep
    codes = g.cat.codes.to_numpy()
    fits = [
        MixedLinearRegressor().fit(X, y, groups=lab)
        for lab in (g, codes, np.array([f"s{c}" for c in codes]), list(codes), codes.reshape(-1, 1))
    ]
    for f in fits[1:]:
        assert f.criterion_ == pytest.approx(fits[0].criterion_, rel=1e-12)
        np.testing.assert_allclose(f.theta_, fits[0].theta_, rtol=1e-5)


def test_categorical_groups_with_other_categories_predict_alike(sleep):
    # rows whose categories are the fitted object take a shortcut; others are looked up by label
    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    cats = list(g.cat.categories)
    other = pd.Series(pd.Categorical(g.astype(str), categories=["new"] + cats[::-1]), name="Subject")
    np.testing.assert_array_equal(m.predict(X, groups=other), m.predict(X, groups=g))
    np.testing.assert_array_equal(m.predict(X, groups=g.astype(str)), m.predict(X, groups=g))
    unseen = other.copy()
    unseen.iloc[:3] = "new"
    np.testing.assert_array_equal(m.predict(X.iloc[:3], groups=unseen.iloc[:3]), m.predict(X.iloc[:3]))


@pytest.mark.parametrize("labels, names", [
    (["Days"], ["Days"]),  # str labels are kept, as scikit-learn keeps them
    ([0], None),  # non-str labels are not feature names
])
def test_feature_names_follow_scikit_learn(sleep, labels, names):
    X, y, g = sleep
    Xl = pd.DataFrame(X.to_numpy(), columns=labels)
    m = MixedLinearRegressor().fit(Xl, y, groups=g)
    if names is None:
        assert not hasattr(m, "feature_names_in_")
    else:
        assert list(m.feature_names_in_) == names
    assert m.n_features_in_ == 1
    np.testing.assert_allclose(m.predict(Xl, groups=g), MixedLinearRegressor().fit(X, y, groups=g).predict(X, groups=g))


@pytest.mark.parametrize("kind", ["float array", "int array", "frame", "frame int labels", "int y"])
def test_plain_inputs_are_validated_as_scikit_learn_does(sleep, kind):
    # plain numeric inputs skip scikit-learn's validate_data: the same arrays and attributes
    from sklearn.utils.validation import validate_data

    X, y, g = sleep
    Xk = {
        "float array": X.to_numpy(), "int array": X.to_numpy().astype(np.int64), "frame": X,
        "frame int labels": pd.DataFrame(X.to_numpy(), columns=[7]), "int y": X,
    }[kind]
    yk = y.to_numpy().round().astype(np.int64) if kind == "int y" else y.to_numpy()
    ours, theirs = MixedLinearRegressor(), MixedLinearRegressor()
    theirs.feature_names_in_ = ours.feature_names_in_ = np.array(["stale"], dtype=object)
    Xa, ya = ours._validate_X(Xk, yk, groups=g)
    Xb, yb = validate_data(theirs, Xk, yk, y_numeric=True, dtype=np.float64)
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(ya, yb)
    assert Xa.dtype == Xb.dtype and ya.dtype == yb.dtype
    assert ours.n_features_in_ == theirs.n_features_in_
    assert hasattr(ours, "feature_names_in_") == hasattr(theirs, "feature_names_in_")
    if hasattr(theirs, "feature_names_in_"):
        np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    # a value that is not finite goes to scikit-learn, which says what is wrong
    bad = np.array(Xk, dtype=float)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MixedLinearRegressor().fit(bad, yk, groups=g)


def test_feature_names_of_mixed_types_are_refused(sleep):
    X, y, g = sleep
    Xm = pd.DataFrame({"Days": X["Days"], 1: X["Days"] ** 2})
    with pytest.raises(TypeError, match="Feature names are only supported if all input features"):
        MixedLinearRegressor().fit(Xm, y, groups=g)


def test_crossed_groups_as_dataframe_or_array():
    df = load_penicillin()
    X = np.empty((len(df), 0))
    a = MixedLinearRegressor().fit(X, df["diameter"], groups=df[["plate", "sample"]])
    b = MixedLinearRegressor().fit(X, df["diameter"], groups=df[["plate", "sample"]].to_numpy())
    assert a.criterion_ == pytest.approx(b.criterion_, rel=1e-12)
    assert set(a.random_effects_) == {"plate", "sample"}
    assert set(b.random_effects_) == {"group0", "group1"}


# --------------------------------------------------------------- the README's recipes


def test_recipe_routing_off_cross_validate(sleep):
    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes=["Days"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoGroupsWarning)  # groups must reach fit
        res = cross_validate(m, X, y, groups=g, cv=GroupKFold(5), params={"groups": g},
                             return_estimator=True)
    for e, (tr, te) in zip(res["estimator"], GroupKFold(5).split(X, y, g)):
        assert e.n_groups_ == {"Subject": g.iloc[tr].nunique()}  # test subjects held out
    # with routing off score gets no groups: population-level R^2, which is what GroupKFold
    # can score anyway (every test subject is unseen)
    for e, (tr, te), s in zip(res["estimator"], GroupKFold(5).split(X, y, g), res["test_score"]):
        assert s == pytest.approx(e.score(X.iloc[te], y.iloc[te]))


def test_recipe_routing_off_pipeline(sleep):
    X, y, g = sleep
    pipe = make_pipeline(StandardScaler().set_output(transform="pandas"),
                         MixedLinearRegressor(random_slopes=["Days"]))
    pipe.fit(X, y, mixedlinearregressor__groups=g)
    m = pipe[-1]
    assert m.n_groups_ == {"Subject": 18}
    np.testing.assert_allclose(pipe.predict(X, groups=g), m.predict(pipe[0].transform(X), groups=g))
    # the pitfall: Pipeline.score drops groups when routing is off -> population-level score
    assert pipe.score(X, y, groups=g) == pytest.approx(pipe.score(X, y))
    assert pipe.score(X, y, groups=g) < m.score(pipe[0].transform(X), y, groups=g)


def test_recipe_routing_off_grid_search_needs_a_pipeline(sleep):
    X, y, g = sleep
    pipe = make_pipeline(StandardScaler().set_output(transform="pandas"), MixedLinearRegressor())
    gs = GridSearchCV(pipe, {"mixedlinearregressor__reml": [True, False]}, cv=GroupKFold(3))
    gs.fit(X, y, groups=g, mixedlinearregressor__groups=g)
    assert gs.best_estimator_[-1].n_groups_ == {"Subject": 18}
    # a bare estimator cannot receive groups from GridSearchCV.fit with routing off:
    # 'groups' goes to the splitter only, and fit warns that it fitted fixed effects only
    with pytest.warns(NoGroupsWarning):
        GridSearchCV(MixedLinearRegressor(), {"reml": [True]}, cv=GroupKFold(3)).fit(X, y, groups=g)


def test_recipe_routing_on(sleep):
    X, y, g = sleep
    with sklearn.config_context(enable_metadata_routing=True):
        m = MixedLinearRegressor(random_slopes=["Days"])  # requests groups by default
        with warnings.catch_warnings():
            warnings.simplefilter("error", NoGroupsWarning)
            grouped = cross_validate(m, X, y, cv=GroupKFold(5), params={"groups": g})
            kfold = cross_validate(m, X, y, cv=KFold(5, shuffle=True, random_state=0),
                                   params={"groups": g}, return_estimator=True)
            pipe = make_pipeline(StandardScaler().set_output(transform="pandas"),
                                 MixedLinearRegressor(random_slopes=["Days"]))
            pipe.fit(X, y, groups=g)
            gs = GridSearchCV(pipe, {"mixedlinearregressor__reml": [True, False]},
                              cv=GroupKFold(3)).fit(X, y, groups=g)
        # routing on: score receives groups, so KFold scores use the conditional predictions
        tr, te = next(KFold(5, shuffle=True, random_state=0).split(X))
        e = kfold["estimator"][0]
        assert kfold["test_score"][0] == pytest.approx(e.score(X.iloc[te], y.iloc[te], groups=g.iloc[te]))
        assert kfold["test_score"].mean() > grouped["test_score"].mean()
        assert pipe.score(X, y, groups=g) > pipe.score(X, y)
        assert gs.best_estimator_[-1].n_groups_ == {"Subject": 18}
        # requests can be switched off like any scikit-learn request
        off = MixedLinearRegressor().set_score_request(groups=False)
        res = cross_validate(off, X, y, cv=KFold(3), params={"groups": g}, return_estimator=True)
        tr, te = next(KFold(3).split(X))
        assert res["test_score"][0] == pytest.approx(res["estimator"][0].score(X.iloc[te], y.iloc[te]))


def test_warm_start_reuses_theta_and_reaches_the_same_optimum(sleep):
    X, y, g = sleep
    # cross-validation folds of a crossed design: each warm fit starts at the previous theta
    rng = np.random.default_rng(0)
    n = 4000
    a, b, x = rng.integers(0, 200, n), rng.integers(0, 40, n), rng.normal(size=n)
    yc = (1 + x + rng.normal(0, 0.6, 200)[a] + rng.normal(0, 0.3, 40)[b]
          + rng.normal(0, 0.1, 40)[b] * x + rng.normal(size=n))
    G = np.column_stack([a, b])
    kw = dict(random_slopes={"group1": [0]})
    warm = MixedLinearRegressor(warm_start=True, **kw)
    n_cold = n_warm = 0
    for k, (tr, _) in enumerate(KFold(4, shuffle=True, random_state=0).split(x)):
        previous = getattr(warm, "theta_", None)
        cold = MixedLinearRegressor(**kw).fit(x[tr, None], yc[tr], groups=G[tr])
        warm.fit(x[tr, None], yc[tr], groups=G[tr])
        assert warm.criterion_ == pytest.approx(cold.criterion_, rel=1e-10)
        if k:
            np.testing.assert_array_equal(warm.optimizer_.initial, previous)
            n_cold, n_warm = n_cold + cold.n_iter_, n_warm + warm.n_iter_
    assert n_warm < n_cold
    # a changed random-effect structure starts from lme4's start again
    warm.set_params(random_slopes=None).fit(X, y, groups=g)
    assert warm.criterion_ == pytest.approx(MixedLinearRegressor().fit(X, y, groups=g).criterion_, rel=1e-10)


def test_verbose_prints_progress(sleep, capsys):
    X, y, g = sleep
    MixedLinearRegressor(verbose=1).fit(X, y, groups=g)
    out = capsys.readouterr().out
    assert "optimizing 1 covariance parameter(s)" in out and "FTOL_REACHED" in out
    with pytest.warns(ConvergenceWarning):
        MixedLinearRegressor(verbose=2, max_iter=3).fit(X, y, groups=g)
    assert capsys.readouterr().out.count("[sklmm] eval") == 3
    MixedLinearRegressor().fit(X, y, groups=g)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("loader, n_groups", [("load_sleepstudy", 1), ("load_penicillin", 2), ("load_pastes", 2),
                                              ("load_dyestuff", 1), ("load_schools", 1), ("load_mcycle", 0),
                                              ("load_engine", 0)])
def test_loaders_follow_scikit_learns_return_X_y_and_as_frame(loader, n_groups):
    import sklmm.datasets as ds

    load = getattr(ds, loader)
    df = load()
    parts = load(return_X_y=True)
    assert len(parts) == (3 if n_groups else 2)
    X, y = parts[:2]
    assert len(X) == len(y) == len(df) and y.name in df.columns and set(X.columns) <= set(df.columns)
    arrays = load(return_X_y=True, as_frame=False)
    np.testing.assert_array_equal(arrays[0], X.to_numpy(dtype=float))
    np.testing.assert_array_equal(arrays[1], y.to_numpy(dtype=float))
    if n_groups:
        g = parts[2]
        assert (g.shape[1] if g.ndim == 2 else 1) == n_groups and arrays[2].dtype == object
        if n_groups == 1:  # the triple is what fit takes
            MixedLinearRegressor().fit(X, y, groups=g)
    assert isinstance(load(as_frame=False), np.ndarray)


def test_slope_names_with_an_array_X_are_refused(sleep):
    X, y, g = sleep
    with pytest.raises(ValueError, match="names 'x0', but X has no column names"):
        MixedLinearRegressor(random_slopes=["x0"]).fit(X.to_numpy(), y, groups=g)
    m = MixedLinearRegressor(random_slopes=[0]).fit(X.to_numpy(), y, groups=g)  # indices work
    assert m.theta_names_[-1] == "Subject.x0"


def test_likelihood_ratio_test_prints_its_whole_table(sleep):
    import sklmm

    X, y, g = sleep
    r = sklmm.likelihood_ratio_test(MixedLinearRegressor().fit(X, y, groups=g),
                                    MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g))
    text = str(r)
    assert "..." not in text and all(c in text for c in ["npar", "AIC", "logLik", "deviance", "Pr(>Chisq)"])
    assert "chi-squared = 42.1393 on 2 df" in text and "..." not in repr(r)


def test_plots_keep_their_labels_inside_the_figure(sleep, tmp_path):
    """The axis labels of the library's plots survive a plain savefig (constrained layout)."""
    import matplotlib

    matplotlib.use("Agg")
    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    gam = PenalizedSplineRegressor(n_basis=6).fit(X, y)
    for axes in (m.plot_random_effects(), gam.plot_partial_dependence()):
        fig = np.ravel(axes)[0].figure
        fig.savefig(tmp_path / "plot.png")
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        for ax in np.ravel(axes):
            for label in (ax.xaxis.label, ax.yaxis.label):
                if not label.get_text():
                    continue
                ext = label.get_window_extent(renderer)
                assert ext.x0 >= box.x0 - 1 and ext.y0 >= box.y0 - 1 and ext.x1 <= box.x1 + 1 and ext.y1 <= box.y1 + 1
