"""Bad input gets an error that names the problem and the fix, before any linear algebra."""

import numpy as np
import pandas as pd
import pytest

from sklmm import MixedLinearRegressor


def test_groups_length_mismatch(sleep):
    X, y, g = sleep
    with pytest.raises(ValueError, match="groups has 179 rows but X has 180"):
        MixedLinearRegressor().fit(X, y, groups=g.iloc[:-1])


def test_missing_group_labels(sleep):
    X, y, g = sleep
    g = g.astype(object).copy()
    g.iloc[[3, 7]] = None
    with pytest.raises(ValueError, match="2 missing labels .* rows \\[3, 7\\]"):
        MixedLinearRegressor().fit(X, y, groups=g)


def test_nan_in_X_or_y(sleep):
    X, y, g = sleep
    Xn = X.copy()
    Xn.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MixedLinearRegressor().fit(Xn, y, groups=g)
    yn = y.copy()
    yn.iloc[0] = np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        MixedLinearRegressor().fit(X, yn, groups=g)


def test_single_level_factor(sleep):
    X, y, _ = sleep
    with pytest.raises(ValueError, match="'group' has a single level"):
        MixedLinearRegressor().fit(X, y, groups=np.zeros(len(y)))


def test_one_level_per_observation(sleep):
    X, y, _ = sleep
    with pytest.raises(ValueError, match="180 levels for 180 observations"):
        MixedLinearRegressor().fit(X, y, groups=np.arange(len(y)))


def test_random_slope_not_a_column(sleep):
    X, y, g = sleep
    with pytest.raises(ValueError, match="names 'Hours', which is not a column of X"):
        MixedLinearRegressor(random_slopes=["Hours"]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="column index 3, but X has 1 columns"):
        MixedLinearRegressor(random_slopes=[3]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="keys \\['Patient'\\] that are not grouping factors"):
        MixedLinearRegressor(random_slopes={"Patient": ["Days"]}).fit(X, y, groups=g)


def test_slopes_by_index_equal_slopes_by_name(sleep):
    X, y, g = sleep
    a = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    b = MixedLinearRegressor(random_slopes=[0]).fit(X.to_numpy(), y, groups=g)
    c = MixedLinearRegressor(random_slopes={"Subject": ["Days"]}).fit(X, y, groups=g)
    assert a.criterion_ == pytest.approx(b.criterion_, rel=1e-12) == c.criterion_


def test_bad_parameters(sleep):
    X, y, g = sleep
    # scikit-learn's parameter validation and its standard messages
    with pytest.raises(ValueError, match="The 'unseen_groups' parameter of MixedLinearRegressor must be a str among"):
        MixedLinearRegressor(unseen_groups="zero").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="The 'solver' parameter of MixedLinearRegressor must be a str among"):
        MixedLinearRegressor(solver="sparse").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="The 'random_slopes' parameter of MixedLinearRegressor must be None"):
        MixedLinearRegressor(random_slopes="Days").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="random_intercept=False leaves"):
        MixedLinearRegressor(random_intercept=False).fit(X, y, groups=g)


def test_groups_with_three_dimensions(sleep):
    X, y, _ = sleep
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        MixedLinearRegressor().fit(X, y, groups=np.zeros((180, 1, 1)))


def test_predict_with_other_group_columns(sleep):
    X, y, g = sleep
    m = MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.raises(ValueError, match="groups has 2 column\\(s\\) but the model was fitted with 1"):
        m.predict(X, groups=pd.DataFrame({"a": g, "b": g}))
    with pytest.raises(ValueError, match="groups has 10 rows but X has 180"):
        m.predict(X, groups=g.iloc[:10])


def test_rank_deficient_fixed_effects_are_dropped_like_lme4(sleep):
    X, y, g = sleep
    X2 = X.assign(Days2=2 * X["Days"], Hours=24 * X["Days"] + 1)
    with pytest.warns(UserWarning, match=r"dropping 2 column\(s\): \['Days2', 'Hours'\]"):
        m2 = MixedLinearRegressor().fit(X2, y, groups=g)
    m = MixedLinearRegressor().fit(X, y, groups=g)
    assert m2.criterion_ == pytest.approx(m.criterion_, rel=1e-10)
    np.testing.assert_allclose(m2.coef_, [m.coef_[0], 0, 0])
    np.testing.assert_allclose(m2.predict(X2, groups=g), m.predict(X, groups=g))


def test_a_string_response_is_refused_before_any_arithmetic():
    """numpy string arrays pass scikit-learn's y_numeric as they are: sklmm says what is wrong."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1))
    with pytest.raises(ValueError, match="y must be numeric.*dtype <U1"):
        MixedLinearRegressor().fit(X, np.array(["a", "b"] * 20), groups=np.repeat(np.arange(8), 5))


def test_the_residual_row_of_a_weighted_fit_is_sigma_in_the_weights_units():
    """lme4: Var(e_i) = sigma^2 / w_i, so weights 10 w give 10 sigma^2 and the same random-effect
    variances; the Residual row of variance_components_ is sigma_ (lme4's VarCorr)."""
    from sklmm.datasets import load_sleepstudy

    d = load_sleepstudy()
    w = 1 + (np.arange(len(d)) % 4) / 2
    fits = [MixedLinearRegressor(random_slopes=["Days"]).fit(d[["Days"]], d["Reaction"], groups=d["Subject"],
                                                           sample_weight=c * w) for c in (1.0, 10.0)]
    vc1, vc10 = (f.variance_components_ for f in fits)
    assert vc1["std_dev"].iloc[-1] == pytest.approx(fits[0].sigma_, rel=1e-12)
    assert vc10["variance"].iloc[-1] == pytest.approx(10 * vc1["variance"].iloc[-1], rel=1e-6)
    np.testing.assert_allclose(vc10["variance"].iloc[:-1], vc1["variance"].iloc[:-1], rtol=1e-6)


def test_predict_fast_path_returns_what_scikit_learn_returns_and_leaves_it_the_rest(sleep):
    """Plain numeric data with the fitted names (or an array where the fit had none) skip
    validate_data at predict with the same result; everything else still meets its checks,
    warnings and messages."""
    from sklearn.utils.validation import validate_data

    from sklmm._input.arrays import _plain_fitted_input

    X, y, g = sleep
    m = MixedLinearRegressor(random_slopes={"Subject": ["Days"]}).fit(X, y, groups=g)
    fast = _plain_fitted_input(X, m.n_features_in_, m.feature_names_in_)
    np.testing.assert_array_equal(fast, validate_data(m, X, reset=False, dtype=np.float64))
    assert fast.dtype == np.float64
    arr = X.to_numpy()
    assert _plain_fitted_input(arr, 1, None) is not None  # (a fit without names)
    for other in (arr,  # fitted with names: scikit-learn warns
                  X.rename(columns={"Days": "days"}),  # other names: scikit-learn refuses
                  X.astype("Int64"),  # an extension dtype: scikit-learn converts
                  X.iloc[:0],  # no rows: scikit-learn refuses
                  X.assign(Days=np.where(X["Days"] > 3, np.nan, X["Days"]))):  # NaN: refused
        assert _plain_fitted_input(other, m.n_features_in_, m.feature_names_in_) is None
    assert _plain_fitted_input(X.assign(R=y), 1, np.array(["Days"], dtype=object)) is None
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        m.predict(arr, groups=g)
    with pytest.raises(ValueError, match="feature names should match"):
        m.predict(X.rename(columns={"Days": "days"}), groups=g)
    with pytest.raises(ValueError, match="NaN"):
        m.predict(X.assign(Days=np.nan), groups=g)


def test_every_form_of_groups_gives_the_same_factors_levels_and_codes(sleep):
    """Groups as a Series (object, categorical, pyarrow text), a list, a 1-D or 2-D array or a
    DataFrame (integer column label) read as the same factor: the same sorted levels (a
    categorical's in its categories' order), the same codes; nested columns as combinations."""
    from sklmm._input.groups import as_group_frame, encode, make_factors

    _, _, g = sleep
    text = g.astype(str)
    forms = [text, text.astype(object), list(text), text.to_numpy(), text.to_numpy()[:, None],
             pd.DataFrame({0: text}), text.astype("category"), text.astype("string[pyarrow]")]
    expected = np.sort(text.unique())
    for groups in forms:
        frame = as_group_frame(groups, len(text))
        (f,) = make_factors(frame, nested=False)
        np.testing.assert_array_equal(np.asarray(f.index, dtype=object), expected)
        codes = encode(f, frame)
        np.testing.assert_array_equal(np.asarray(f.index, dtype=object)[codes], text.to_numpy())
        assert frame.columns == [str(groups.name) if isinstance(groups, pd.Series) and groups.name is not None
                                 else "0" if isinstance(groups, pd.DataFrame) else "group"]
    cat = as_group_frame(text.astype("category"), len(text)).to_pandas()
    assert isinstance(cat.iloc[:, 0].dtype, pd.CategoricalDtype)
    outer = pd.Series(np.where(text.str[-1].astype(int) % 2 == 0, "even", "odd"), name="parity")
    frame = as_group_frame(pd.concat([outer, text], axis=1), len(text))
    _, nested = make_factors(frame, nested=True)
    assert nested.name == "Subject:parity" and len(nested.index) == len(expected)
    pairs = list(zip(outer, text))
    np.testing.assert_array_equal([nested.index[c] for c in encode(nested, frame)], pairs)
    assert frame.select(["Subject"]).columns == ["Subject"]
