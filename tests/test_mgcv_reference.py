"""PenalizedSplineRegressor against mgcv 1.8 and gamm4 0.2 (numbers from tools/mgcv_reference.R)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklmm import PenalizedSplineRegressor
from sklmm._engine.criteria import profiled_criterion
from sklmm._engine.factor_cholmod import HAS_CHOLMOD
from sklmm.datasets import load_mcycle, load_sleepstudy

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_reference.json").read_text())
SOLVERS = ["blocked"] + (["cholmod"] if HAS_CHOLMOD else [])


def _mcycle(basis, solver="blocked"):
    d = load_mcycle()
    return PenalizedSplineRegressor(n_basis=20, basis=basis, solver=solver).fit(d[["times"]], d["accel"]), d


def _lambda_mgcv(ref, i=0):
    """mgcv's sp is lambda times its penalty rescaling S.scale."""
    return ref["sp"][i] / ref["S_scale"][i]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("basis", ["cr", "ps"])
def test_mcycle_matches_mgcv(basis, solver):
    gam, d = _mcycle(basis, solver)
    ref = REF[f"mcycle_{basis}"]
    scale = np.ptp(ref["fitted"])
    np.testing.assert_allclose(gam.predict(d[["times"]]), ref["fitted"], atol=1e-5 * scale)
    assert gam.edf_total_ == pytest.approx(ref["edf_total"], rel=1e-5)
    assert gam.edf_["s(times)"] == pytest.approx(ref["edf_smooth"][0], rel=1e-5)
    assert gam.sigma_**2 == pytest.approx(ref["sig2"], rel=1e-5)
    assert gam.smoothing_params_["s(times)"] == pytest.approx(_lambda_mgcv(ref), rel=1e-3)
    assert gam.intercept_ == pytest.approx(ref["coef_intercept"], rel=1e-9)


@pytest.mark.parametrize("basis", ["cr", "ps"])
def test_knots_are_mgcvs(basis):
    gam, _ = _mcycle(basis)
    sm = gam.smooths_[0]
    want = np.asarray(REF[f"mcycle_{basis}"]["knots"][0])
    got = sm.knots_ if basis == "cr" else sm.knot_sequence_
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("basis", ["cr", "ps"])
def test_standard_errors_match_mgcv(basis):
    gam, _ = _mcycle(basis)
    ref = REF[f"mcycle_{basis}"]
    mean, se = gam.predict(pd.DataFrame({"times": ref["grid"]}), return_std=True)
    np.testing.assert_allclose(mean, ref["grid_fit"], atol=1e-5 * np.ptp(ref["grid_fit"]))
    np.testing.assert_allclose(se, ref["grid_se"], rtol=1e-3)


@pytest.mark.parametrize("key", ["mcycle_cr", "mcycle_ps", "two_smooth"])
def test_reml_criterion_differs_from_mgcv_by_a_constant(key):
    """Along mgcv's REML profile (fixed sp), sklmm's criterion is 2 x mgcv's score + a constant."""
    ref = REF[key]
    if key == "two_smooth":
        d = pd.read_csv(DATA / "sim_two_smooth.csv")
        gam = PenalizedSplineRegressor(n_basis=10).fit(d[["x1", "x2"]], d["y"])
    else:
        gam, _ = _mcycle(key.split("_")[1])
    fit = gam._fit
    diffs = []
    for point in ref["reml_profile"]:
        lam = np.asarray(point["sp"]) / np.asarray(ref["S_scale"])
        theta = np.array([1.0 / np.sqrt(l * sm.penalty_scale_) for l, sm in zip(lam, gam.smooths_)])
        ours = profiled_criterion(fit.factor.update(theta), fit.n, fit.cp.p, True)
        diffs.append(ours - 2 * point["score"])
    assert np.ptp(diffs) < 1e-6 * abs(np.mean(diffs)) + 1e-7


def test_two_smooths_match_mgcv():
    ref = REF["two_smooth"]
    d = pd.read_csv(DATA / "sim_two_smooth.csv")
    gam = PenalizedSplineRegressor(n_basis=10).fit(d[["x1", "x2"]], d["y"])
    np.testing.assert_allclose(gam.predict(d[["x1", "x2"]]), ref["fitted"], atol=1e-5 * np.ptp(ref["fitted"]))
    np.testing.assert_allclose(gam.edf_.to_numpy(), ref["edf_smooth"], rtol=1e-4)
    np.testing.assert_allclose(gam.smoothing_params_.to_numpy(),
                               [_lambda_mgcv(ref, i) for i in range(2)], rtol=1e-3)
    assert gam.sigma_**2 == pytest.approx(ref["sig2"], rel=1e-5)
    assert list(gam.edf_.index) == ["s(x1)", "s(x2)"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_gamm_matches_gamm4(solver):
    ref = REF["gamm4_sleep"]
    s = load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the smooth at variance 0 is a line, not a singular fit
        gamm = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5, solver=solver).fit(
            s[["Days"]], s["Reaction"], groups=s["Subject"])
    assert gamm.criterion_ <= ref["reml_criterion"] * (1 + 1e-9)
    assert gamm.criterion_ == pytest.approx(ref["reml_criterion"], rel=1e-8)
    vc = gamm.variance_components_.set_index("factor")
    want = {r["grp"]: r for r in ref["varcorr"]}
    assert vc.loc["Subject", "variance"] == pytest.approx(want["Subject"]["vcov"], rel=1e-5)
    assert vc.loc["Residual", "variance"] == pytest.approx(want["Residual"]["vcov"], rel=1e-5)
    assert vc.loc["s(Days)", "variance"] == pytest.approx(0, abs=1e-6)
    assert gamm.sigma_ == pytest.approx(ref["sigma"], rel=1e-6)
    np.testing.assert_allclose(gamm.predict(s[["Days"]], groups=s["Subject"]), ref["fitted_conditional"], rtol=1e-6)
    np.testing.assert_allclose(gamm.predict(s[["Days"]]), ref["fitted_population"], rtol=1e-6)
    assert gamm.edf_["s(Days)"] == pytest.approx(ref["edf_smooth"], rel=1e-6)
    np.testing.assert_allclose(gamm.smooths_[0].knots_, ref["knots"], atol=1e-12)
    re = gamm.random_effects_["Subject"]["(Intercept)"]
    np.testing.assert_allclose(re.rename(index=str).loc[ref["ranef_subject"]["levels"]],
                               ref["ranef_subject"]["values"], rtol=1e-5)


WEIGHTED = json.loads((DATA / "mgcv_weights_reference.json").read_text())


@pytest.mark.parametrize("basis", ["cr", "ps"])
@pytest.mark.parametrize("unit", [1.0, 1e-6])
def test_prior_weights_match_mgcvs(basis, unit):
    """sample_weight is mgcv's weights (tools/mgcv_weights_reference.R), in any units."""
    ref = WEIGHTED[f"mcycle_{basis}_weighted"]
    d = load_mcycle()
    w = 1 + (np.arange(len(d)) % 4) / 2
    gam = PenalizedSplineRegressor(n_basis=20, basis=basis).fit(d[["times"]], d["accel"], sample_weight=unit * w)
    scale = np.ptp(ref["fitted"])
    np.testing.assert_allclose(gam.predict(d[["times"]]), ref["fitted"], atol=1e-5 * scale)
    assert gam.edf_["s(times)"] == pytest.approx(ref["edf_smooth"], rel=1e-5)
    assert gam.sigma_**2 / unit == pytest.approx(ref["sig2"], rel=1e-5)
    assert gam.smoothing_params_["s(times)"] / unit == pytest.approx(ref["lambda"], rel=1e-3)
    mean, se = gam.predict(pd.DataFrame({"times": ref["grid"]}), return_std=True)
    np.testing.assert_allclose(se, ref["grid_se"], rtol=1e-3)
    fixed = PenalizedSplineRegressor(n_basis=20, basis=basis, smoothing_params={"times": ref["lambda"] * unit}).fit(
        d[["times"]], d["accel"], sample_weight=unit * w)  # mgcv's lambda held fixed: the same fit
    np.testing.assert_allclose(fixed.predict(d[["times"]]), ref["fitted"], atol=1e-4 * scale)


SUMMARY = json.loads((DATA / "mgcv_summary_reference.json").read_text())


@pytest.mark.parametrize("key", ["mcycle_cr", "two_linear", "two_linear_weighted"])
def test_summary_statistics_match_mgcv(key):
    """summary.gam's parametric table (posterior standard errors, t tests on n - total edf),
    adjusted R^2 and deviance explained (tools/mgcv_summary_reference.R)."""
    ref = SUMMARY[key]
    if key == "mcycle_cr":
        d = load_mcycle()
        m = PenalizedSplineRegressor(n_basis=20, basis="cr").fit(d[["times"]], d["accel"])
    else:
        d = pd.read_csv(DATA / "sim_two_smooth.csv")
        w = 1 + (np.arange(len(d)) % 4) / 2 if key.endswith("weighted") else None
        m = PenalizedSplineRegressor(smooth_features=["x2"], basis="cr", n_basis=10).fit(
            d[["x1", "x2"]], d["y"], sample_weight=w)
    fe = m.fixed_effects_
    assert list(fe.index) == ref["terms"]
    for col in ("estimate", "std_error", "t_value"):
        np.testing.assert_allclose(fe[col], ref[col], rtol=1e-5)
    np.testing.assert_allclose(fe["p_value"], ref["p_value"], rtol=1e-3)
    assert m.residual_df_ == pytest.approx(ref["residual_df"], rel=1e-6)
    assert m.r2_adj_ == pytest.approx(ref["r2_adj"], abs=1e-6)
    assert m.deviance_explained_ == pytest.approx(ref["deviance_explained"], abs=1e-6)
    assert "R-sq.(adj)" in m.summary()
