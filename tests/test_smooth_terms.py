"""Smooth terms as objects (s, te, ti; by=), through the estimators and their formulas, against
mgcv: tools/mgcv_by_reference.R (by= smooths, a two-variable tp) and
tools/mgcv_tensor_reference.R (te, ti)."""

import json
import pickle
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from sklmm import PenalizedSplineClassifier, PenalizedSplineRegressor, s, te, ti

matplotlib.use("Agg")

DATA = Path(__file__).parent / "data"
BY = json.loads((DATA / "mgcv_by_reference.json").read_text())
TENSOR = json.loads((DATA / "mgcv_tensor_reference.json").read_text())


@pytest.fixture(scope="module")
def by_data():
    d = pd.read_csv(DATA / "sim_by.csv")
    d["f"] = pd.Categorical(d["f"])
    d["fo"] = pd.Categorical(d["f"], ordered=True)  # (R's ordered(f))
    d["w"] = 1 + (np.arange(len(d)) % 5) / 4  # (a numeric by, as tools/mgcv_by_reference.R)
    return d


@pytest.fixture(scope="module")
def tensor_data():
    return pd.read_csv(DATA / "sim_tensor.csv")


BY_FORMULAS = {
    "factor_by": "y ~ f + s(x, by=f, bs='cr')",
    "numeric_by": "y ~ f + s(x, bs='cr') + s(x, by=z, bs='cr')",
    "both_by": "y ~ f + s(x, by=f, bs='cr') + s(x, by=z, bs='cr')",
    "tp2": "y ~ s(x, z, k=20)",
    # each level's curve constrained over all rows (mgcv), not its own: another model without f
    "factor_by_no_main": "y ~ s(x, by=f, bs='cr')",
    # an ordered factor: no curve for the first level, as mgcv (difference smooths)
    "ordered_by": "y ~ f + s(x, bs='cr') + s(x, by=fo, bs='cr')",
    # tensor products with by: a factor (a surface per level), a numeric variable, ti by a factor
    "te_by_factor": "y ~ f + te(x, z, by=f)",
    "te_by_numeric": "y ~ te(x, z, by=w)",
    "ti_by_factor": "y ~ f + ti(x) + ti(z) + ti(x, z, by=f)",
}


@pytest.mark.parametrize("key", sorted(BY_FORMULAS))
def test_by_smooths_and_a_two_variable_tp_match_mgcv(by_data, key):
    ref = BY[key]
    m = PenalizedSplineRegressor.from_formula(BY_FORMULAS[key], by_data)
    sd = by_data["y"].std()
    np.testing.assert_allclose(m.predict(by_data), ref["fitted"], atol=1e-4 * sd)
    assert list(m.edf_.index) == ref["smooth_labels"]
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    assert m.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    assert m.sigma_**2 == pytest.approx(ref["sig2"], rel=1e-4)
    # F statistics where the smooth is not at a boundary of its smoothing parameter
    inside = np.array(ref["edf_smooth"]) > 2.01
    np.testing.assert_allclose(m.smooth_tests_["statistic"].to_numpy()[inside], np.array(ref["s_table_F"])[inside],
                               rtol=2e-3)


def test_term_objects_fit_the_formulas_models(by_data):
    """smooths=[...] is the formula's model: with the factor's main effect as dummy columns."""
    X = pd.concat([by_data[["x", "z", "f"]], pd.get_dummies(by_data["f"], prefix="f", drop_first=True).astype(float)],
                  axis=1)
    m = PenalizedSplineRegressor(smooths=[s("x", by="f", bs="cr"), s("x", by="z", bs="cr")]).fit(X, by_data["y"])
    ref = BY["both_by"]
    np.testing.assert_allclose(m.predict(X), ref["fitted"], atol=1e-4 * by_data["y"].std())
    assert m.linear_features_ == ["f_b", "f_c"]  # (x, z and f are read by the smooths)
    with pytest.raises(ValueError, match="not seen in fit"):
        m.predict(X.assign(f=pd.Categorical(["d"] * len(X))))
    two = PenalizedSplineRegressor(smooths=[s("x", "z", k=20)]).fit(by_data[["x", "z"]], by_data["y"])
    np.testing.assert_allclose(two.predict(by_data[["x", "z"]]), BY["tp2"]["fitted"], atol=1e-4 * by_data["y"].std())
    curves = two.partial_dependence(grid_resolution=7)
    assert len(curves) == 49 and curves["x2"].notna().all()
    two.plot_partial_dependence()


TENSOR_FORMULAS = {
    "te_default": ("y_te ~ te(x, z)", "y_te"),
    "te_k64": ("y_te ~ te(x, z, k=(6, 4))", "y_te"),
    "te_tp_cr": ("y_te ~ te(x, z, bs=('tp', 'cr'), k=(6, 5))", "y_te"),
    "te_cr_cc": ("y_te ~ te(x, z, bs=('cr', 'cc'), k=(5, 6))", "y_te"),
    "te_add": ("y_add ~ te(x, z) + s(w)", "y_add"),
    "ti_anova": ("y_ti ~ ti(x) + ti(z) + ti(x, z)", "y_ti"),
}


@pytest.mark.parametrize("key", sorted(TENSOR_FORMULAS))
def test_tensor_products_in_the_estimator_match_mgcv(tensor_data, key):
    formula, response = TENSOR_FORMULAS[key]
    ref = TENSOR[key]
    m = PenalizedSplineRegressor.from_formula(formula, tensor_data)
    sd = tensor_data[response].std()
    np.testing.assert_allclose(m.predict(tensor_data), ref["fitted"], atol=1e-4 * sd)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    new = pd.DataFrame(ref["new"]).assign(**{c: 0.5 for c in ("w",) if c not in ref["new"]})
    np.testing.assert_allclose(m.predict(new) - m.predict(new.iloc[:1]), np.array(ref["new_fit"]) - ref["new_fit"][0],
                               atol=1e-4 * sd)
    assert len(m.smoothing_params_) == sum(2 if nm.count(",") else 1 for nm in m.edf_.index)


def test_tensor_product_partial_dependence_is_a_surface(tensor_data):
    m = PenalizedSplineRegressor(smooths=[te("x", "z")]).fit(tensor_data[["x", "z"]], tensor_data["y_te"])
    surf = m.partial_dependence("te(x,z)", grid_resolution=6)
    assert surf.shape[0] == 36 and surf["std_error"].gt(0).all()
    axes = m.plot_partial_dependence()
    assert axes[0].get_xlabel() == "x" and axes[0].get_ylabel() == "z"
    assert "te(x,z)" in m.summary()


def test_term_objects_are_parameters_that_clone_pickle_and_search(by_data):
    terms = [s("x", bs="cr", k=8), ti("x", "z", k=(4, 4))]
    assert repr(terms[0]) == "s('x', k=8, bs='cr')"
    assert repr(ti("x", "z")) == "ti('x', 'z', k=(5, 5), bs=('cr', 'cr'))"
    m = PenalizedSplineRegressor(smooths=terms)
    assert clone(m).get_params()["smooths"] == terms
    m.fit(by_data[["x", "z"]], by_data["y"])
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(by_data[["x", "z"]]), m.predict(by_data[["x", "z"]]))
    grid = GridSearchCV(PenalizedSplineRegressor(), {"smooths": [[s("x", bs="cr")], [s("x", bs="cr"), s("z", bs="cr")]]},
                        cv=3).fit(by_data[["x", "z"]], by_data["y"])
    assert len(grid.best_params_["smooths"]) in (1, 2)
    y01 = (by_data["y"] > by_data["y"].median()).astype(int)
    clf = PenalizedSplineClassifier(smooths=[te("x", "z")]).fit(by_data[["x", "z"]], y01)
    assert clf.predict_proba(by_data[["x", "z"]]).shape == (len(by_data), 2)


@pytest.mark.parametrize("make, match", [
    (lambda: s(), "at least one feature"),
    (lambda: s("x", bs="te"), "bs must be one of"),
    (lambda: s("x", "z", bs="cr"), "thin plate spline"),
    (lambda: s("x", k=2), "k must be an integer of at least 3"),
    (lambda: s("x", "x"), "names a feature twice"),
    (lambda: s("x", sp=-1.0), "sp must be positive"),
    (lambda: te("x", "z", k=(5, 5, 5)), "once per feature"),
    (lambda: te("x", "z", bs="rk"), "margin's bs must be one of"),
    (lambda: ti("x", "z", sp=(1.0, 2.0, 3.0)), "one value per margin"),
])
def test_bad_terms_are_refused_when_written(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_term_parameters_are_refused_at_fit(by_data):
    X, y = by_data[["x", "z"]], by_data["y"]
    with pytest.raises(ValueError, match="not both"):
        PenalizedSplineRegressor(smooths=[s("x")], n_basis=5).fit(X, y)
    with pytest.raises(ValueError, match="'w'"):
        PenalizedSplineRegressor(smooths=[s("w")]).fit(X, y)
    with pytest.raises(ValueError, match="given twice"):
        PenalizedSplineRegressor(smooths=[s("x", bs="cr"), s("x", bs="ps")]).fit(X, y)
    with pytest.raises(ValueError, match="list of s"):
        PenalizedSplineRegressor(smooths=["x"]).fit(X, y)


def test_predict_terms_and_lpmatrix_match_mgcv(by_data):
    """mgcv's predict(type = "terms") (a factor's dummies summed into its term) with standard
    errors, and lpmatrix %*% coef with the standard error of the linear predictor."""
    ref = BY["terms"]
    m = PenalizedSplineRegressor.from_formula("y ~ f + z + s(x, bs='cr')", by_data)
    rows = by_data.head(ref["rows"])
    terms, se = m.predict_terms(rows, return_std=True)
    want, want_se = np.array(ref["fit"]), np.array(ref["se"])
    f_cols = [c for c in terms if c.startswith("f[")]
    np.testing.assert_allclose(terms[f_cols].sum(axis=1), want[:, 0], atol=1e-6)
    np.testing.assert_allclose(se[f_cols].max(axis=1), want_se[:, 0], rtol=1e-4, atol=1e-8)
    for i, col in enumerate(ref["columns"][1:], start=1):
        np.testing.assert_allclose(terms[col], want[:, i], atol=1e-6)
        np.testing.assert_allclose(se[col], want_se[:, i], rtol=1e-4)
    assert terms.attrs["constant"] == pytest.approx(ref["constant"], abs=1e-6)
    Xp = m.lpmatrix(rows)
    np.testing.assert_allclose(Xp.to_numpy() @ m.coefficients_.to_numpy(), ref["lp"], atol=1e-6)
    v = np.einsum("ij,jk,ik->i", Xp.to_numpy(), m.coefficients_cov_.to_numpy(), Xp.to_numpy())
    np.testing.assert_allclose(np.sqrt(v), ref["lp_se"], rtol=1e-4)


def test_one_factor_may_be_the_by_of_several_smooths(by_data):
    m = PenalizedSplineRegressor.from_formula("y ~ f + s(x, by=f, bs='cr') + s(z, by=f, bs='cr')", by_data)
    assert len(m.smooths_) == 6
    assert np.isfinite(m.predict(by_data)).all()


def test_basis_check_of_smooths_of_several_variables_matches_mgcvs_k_check(by_data, tensor_data):
    """k.check's k-index of s(x, z) and te(x, z): the residuals against each point's 3 nearest
    neighbours (a te's covariates scaled by its slopes), exactly; the p-values are permutation
    estimates (sklmm's and mgcv's generators differ), within Monte Carlo error."""
    ref = BY["kcheck"]
    m = PenalizedSplineRegressor.from_formula("y ~ s(x, z, k=20)", by_data)
    t = m.check_basis_dimension(n_permutations=2000, random_state=0).iloc[0]
    assert t["k_index"] == pytest.approx(ref["tp2_k_index"], rel=1e-8)
    assert abs(t["p_value"] - ref["tp2_p_value"]) < 0.025
    m = PenalizedSplineRegressor.from_formula("y_te ~ te(x, z)", tensor_data)
    t = m.check_basis_dimension(n_permutations=2000, random_state=0).iloc[0]
    assert t["k_index"] == pytest.approx(ref["te_k_index"], rel=1e-6)
    assert abs(t["p_value"] - ref["te_p_value"]) < 0.05


# ---------------------------------------------------------------- a basin inside beside lambda = inf

INTERIOR = json.loads((DATA / "mgcv_interior_reference.json").read_text())


def _interior_formula(lam=None):
    """The model of tools/mgcv_interior_reference.R, with mgcv's smoothing parameters held when
    given (lambda = sp / S.scale, in mgcv's order of the terms)."""
    sp = (lambda i: "") if lam is None else (lambda i: f", sp={lam[i]!r}")
    sp2 = (lambda i: "") if lam is None else (lambda i: f", sp=({lam[i]!r}, {lam[i + 1]!r})")
    return (f"y ~ s(x1, bs='cr'{sp(0)}) + s(x2, bs='cr'{sp(1)}) + ti(x1, x2, bs=('tp', 'tp'), k=(4, 6){sp2(2)})"
            f" + s(x3, bs='cr'{sp(4)}) + s(x4, bs='cr'{sp(5)}) + ti(x3, x4, bs=('tp', 'ps'), k=(6, 5){sp2(6)})")


@pytest.mark.parametrize("seed", ["2", "20", "15"])
def test_search_leaves_the_basin_of_lambda_infinity_for_a_lower_one(seed):
    """Six smooths and two ti terms on 120 rows (tools/make_sim_interior.py): from theta = 1 the
    log-scale search ended with smooths at lambda = inf in a local minimum, 0.79 (seed 2) and 4.0
    (seed 20) above the criterion at mgcv's smoothing parameters, and no check saw it (they look
    at the slope there). Probing those smooths inside and restarting reaches mgcv's optimum or a
    lower one (seed 20: 0.25 lower); for seed 15 (0.13 above with the probe alone) the second
    search, from the less penalized side, reaches it."""
    d = pd.read_csv(DATA / "sim_interior.csv")
    d = d[d["seed"] == int(seed)].drop(columns="seed").reset_index(drop=True)
    ref = INTERIOR[seed]
    ours = PenalizedSplineRegressor.from_formula(_interior_formula(), d)
    at_mgcv = PenalizedSplineRegressor.from_formula(_interior_formula(ref["lambda"]), d)
    assert ours.criterion_ <= at_mgcv.criterion_ + 1e-7 * abs(at_mgcv.criterion_)
    if seed == "2":  # the same optimum as mgcv's (its criterion 1e-4 above): the same fit
        fitted = np.asarray(ref["fitted"])
        assert np.max(np.abs(ours.predict(d) - fitted)) < 1e-4 * np.std(d["y"])


def test_binomial_outer_iteration_leaves_the_basin_of_lambda_infinity():
    """The binomial GAM's outer iteration (laml_iteration) ended at a fixed point 1.03 above the
    criterion at mgcv's smoothing parameters; probing the heavily penalized smooths on its last
    surrogate and iterating again from the lower point reaches mgcv's optimum (fitted
    probabilities within 1e-4)."""
    d = pd.read_csv(DATA / "sim_interior_binomial.csv")
    ref = INTERIOR["binomial"]
    ours = PenalizedSplineClassifier.from_formula(_interior_formula(), d)
    at_mgcv = PenalizedSplineClassifier.from_formula(_interior_formula(ref["lambda"]), d)
    assert ours.criterion_ <= at_mgcv.criterion_ + 1e-7 * abs(at_mgcv.criterion_)
    np.testing.assert_allclose(ours.predict_proba(d)[:, 1], ref["fitted"], atol=1e-4)
