"""Factor-smooth interactions ``s(x, fac, bs="fs")`` against mgcv (tools/mgcv_fs_reference.R).

The cyclic base (a one-dimensional null space) is mgcv's own ``bs = "fs"`` model; for ``cr`` and
``tp`` bases the reference is mgcv's construction with the null space in sklmm's canonical basis,
fitted by mgcv's ``gam(paraPen = ...)`` (the script checks that construction against mgcv's fs).
"""

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sklmm import PenalizedSplineRegressor, s
from sklmm._engine.criteria import profiled_criterion
from sklmm._engine.terms import theta_layout

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_fs_reference.json").read_text())

#: key -> (response, base of s(x), xt of the fs smooth, its k)
CASES = {"fs_cr": ("y", "cr", "cr", 5), "fs_tp": ("y", "cr", "tp", 6), "fs_cc": ("yc", "cc", "cc", 6)}


def _data():
    d = pd.read_csv(DATA / "sim_fs.csv")
    d["f"] = d["f"].astype("category")
    return d


def _fit(key):
    response, base, xt, k = CASES[key]
    d = _data()
    est = PenalizedSplineRegressor(smooths=[s("x", bs=base), s("x", "f", bs="fs", xt=xt, k=k)])
    return est.fit(d[["x", "f"]], d[response]), d


def _mgcv_lambdas(ref):
    """mgcv's smoothing parameters in the units of each penalty, as (s(x), fs) arrays: gam()
    divides a smooth's penalties by S.scale; a paraPen term's come first and are unscaled."""
    sp, scale, names = np.asarray(ref["sp"]), np.asarray(ref["S_scale"]), np.asarray(ref["sp_names"])
    para = np.char.startswith(names, "Xfs")
    lam = sp.copy()
    lam[~para] /= scale
    main = names == "s(x)"
    return lam[main], lam[~main]


@pytest.mark.parametrize("key", sorted(CASES))
def test_fs_matches_mgcv(key):
    ref = REF[key]
    est, d = _fit(key)
    response = CASES[key][0]
    np.testing.assert_allclose(est.predict(d[["x", "f"]]), ref["fitted"], atol=1e-4 * d[response].std())
    assert est.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    assert est.sigma_**2 == pytest.approx(ref["sig2"], rel=1e-4)
    lam_s, lam_fs = _mgcv_lambdas(ref)
    fs_names = [nm for nm in est.smoothing_params_.index if nm.startswith("s(x,f).")]
    assert fs_names == ["s(x,f).wiggly", "s(x,f).null1", "s(x,f).null2"][: len(lam_fs)]
    np.testing.assert_allclose(est.smoothing_params_[fs_names], lam_fs, rtol=1e-2)
    # sklmm's REML optimum is at or below its criterion at mgcv's smoothing parameters
    fit = est._fit
    optimum = fit.criterion
    theta, slices = fit.theta.copy(), theta_layout(fit.terms)[0]
    for sm, k, lam in zip(est.smooths_, est._smooth_term_index, (lam_s, lam_fs)):
        theta[slices[k]] = sm.thetas(lam)
    at_mgcv = profiled_criterion(fit.factor.update(theta), fit.n, fit.cp.p, True)
    assert optimum <= at_mgcv + 1e-8 * abs(at_mgcv)
    assert optimum == pytest.approx(at_mgcv, rel=1e-6)


def test_fs_edf_and_test_match_mgcv_summary():
    """mgcv's own fs model (cyclic base): per-term edf and the random-effect test (reTest) of
    summary.gam (mgcv prints p-values below its Davies bound as 0)."""
    est, _ = _fit("fs_cc")
    ref = REF["fs_cc"]
    table = np.asarray(ref["s_table"])
    np.testing.assert_allclose(est.edf_[["s(x)", "s(x,f)"]], ref["edf_smooth"], atol=1e-3)
    np.testing.assert_allclose(est.smooth_tests_["ref_df"], table[:, 1], atol=1e-6)
    np.testing.assert_allclose(est.smooth_tests_["statistic"], table[:, 2], rtol=1e-4)
    assert (est.smooth_tests_["p_value"] < 1e-8).all()


def test_fs_poisson_matches_mgcv():
    d = _data()
    ref = REF["fs_cc_poisson"]
    est = PenalizedSplineRegressor(family="poisson", smooths=[s("x", "f", bs="fs", xt="cc", k=6)])
    est.fit(d[["x", "f"]], d["count"])
    np.testing.assert_allclose(est.predict(d[["x", "f"]]), ref["fitted"], rtol=1e-4)
    assert est.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    np.testing.assert_allclose(est.smoothing_params_, _mgcv_lambdas(ref)[1], rtol=1e-2)
    np.testing.assert_allclose(est.smooth_tests_["statistic"], np.asarray(ref["s_table"])[:, 2], rtol=1e-4)


def test_null_space_is_a_random_intercept_and_centred_slope():
    """The canonical null space of a one-variable fs smooth: the constant, then x centred,
    each with a mean square of 1 over the training rows (closed form)."""
    est, d = _fit("fs_cr")
    eng = est.smooths_[1].engine
    vals = eng.values(d["x"].to_numpy())
    null = vals[:, eng.rank_:]
    np.testing.assert_allclose(null[:, 0], 1.0, atol=1e-10)
    xc = d["x"].to_numpy() - d["x"].mean()
    np.testing.assert_allclose(null[:, 1], xc / np.sqrt(np.mean(xc**2)), atol=1e-10)
    # the wiggly columns are orthogonal to both over the training rows
    np.testing.assert_allclose(vals[:, : eng.rank_].T @ null, 0.0, atol=1e-8 * len(d))


def test_fs_design_and_api():
    est, d = _fit("fs_cr")
    X = d[["x", "f"]]
    lp = est.lpmatrix(X.iloc[:50])
    np.testing.assert_allclose(lp.to_numpy() @ est.coefficients_.to_numpy(), est.predict(X.iloc[:50]), atol=1e-10)
    # the standard error of predict is that of the lpmatrix row under coefficients_cov_
    _, se = est.predict(X.iloc[:50], return_std=True)
    V = est.coefficients_cov_.to_numpy()
    np.testing.assert_allclose(se, np.sqrt(np.einsum("ij,jk,ik->i", lp, V, lp)), rtol=1e-8)
    terms = est.predict_terms(X.iloc[:50])
    np.testing.assert_allclose(terms.sum(axis=1) + est.intercept_, est.predict(X.iloc[:50]), atol=1e-10)
    curves = est.partial_dependence("s(x,f)", grid_resolution=20)
    assert list(curves["level"].unique()) == list(d["f"].cat.categories)
    first = curves[curves["level"] == "g1"]
    rows = pd.DataFrame({"x": first["x"], "f": pd.Categorical(["g1"] * 20, categories=d["f"].cat.categories)})
    np.testing.assert_allclose(first["estimate"], est.predict_terms(rows)["s(x,f)"], atol=1e-10)
    # the same model from a formula, from clone, after pickling, with levels relabelled
    formula = PenalizedSplineRegressor.from_formula("y ~ s(x, bs='cr') + s(x, f, bs='fs', xt='cr', k=5)", d)
    np.testing.assert_allclose(formula.predict(d), est.predict(X), atol=1e-8)
    np.testing.assert_allclose(clone(est).fit(X, d["y"]).predict(X), est.predict(X), atol=1e-10)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(X), est.predict(X))
    codes = np.c_[d["x"], d["f"].cat.codes * 10 + 3]  # a numeric array: the last feature is the factor
    numeric = PenalizedSplineRegressor(smooths=[s(0, bs="cr"), s(0, 1, bs="fs", xt="cr", k=5)]).fit(codes, d["y"])
    np.testing.assert_allclose(numeric.predict(codes), est.predict(X), atol=1e-8)


def test_fs_errors():
    est, d = _fit("fs_cr")
    with pytest.raises(ValueError, match="not seen in fit"):
        est.predict(pd.DataFrame({"x": [0.5], "f": ["g99"]}))
    with pytest.raises(ValueError, match="smoothed feature"):
        s("x", bs="fs")
    with pytest.raises(ValueError, match="xt gives the basis"):
        s("x", bs="cr", xt="cr")
    with pytest.raises(ValueError, match="must be one of"):
        s("x", "f", bs="fs", xt="te")
    with pytest.raises(ValueError, match="one factor"):
        PenalizedSplineRegressor(smooths=[s("x", "f", "g", bs="fs")]).fit(
            d.assign(g=d["f"])[["x", "f", "g"]], d["y"])
    X = np.c_[d["x"], d["x"] * 2]
    with pytest.raises(ValueError, match="non-integer values"):
        PenalizedSplineRegressor(smooths=[s(0, 1, bs="fs", xt="cr", k=5)]).fit(X, d["y"])
    # a category without rows has no curve (as the levels of a by= factor)
    f = d["f"].cat.add_categories(["unused"])
    fitted = PenalizedSplineRegressor(smooths=[s("x", bs="cr"), s("x", "f", bs="fs", xt="cr", k=5)]).fit(
        d.assign(f=f)[["x", "f"]], d["y"])
    assert list(fitted.smooths_[1].level_names) == list(d["f"].cat.categories)
    np.testing.assert_allclose(fitted.predict(d[["x", "f"]]), est.predict(d[["x", "f"]]), atol=1e-8)
