"""Thin plate ("tp") and cyclic cubic ("cc") regression splines against mgcv 1.8-41
(numbers from tools/mgcv_bases_reference.R; data tests/data/sim_bases.csv)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklmm import PenalizedSplineRegressor
from sklmm._engine.criteria import profiled_criterion
from sklmm._engine.fit import fit_mixed
from sklmm._engine.smooth import SmoothTerm
from sklmm._engine.smooth_bases import (
    ThinPlateBasis,
    cc_basis,
    cc_matrices,
    tps_null_space_dim,
    tps_order,
    tps_powers,
)
from sklmm._engine.terms import RandomTerm
from sklmm.datasets import load_mcycle

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_bases_reference.json").read_text())
SIM = pd.read_csv(DATA / "sim_bases.csv")

#: how each reference entry is fitted with the estimator: (data, response, features, parameters)
ESTIMATOR_CASES = {
    "mcycle_tp_k5": ("mcycle", "accel", ["times"], dict(basis="tp", n_basis=5)),
    "mcycle_tp_k10": ("mcycle", "accel", ["times"], dict(basis="tp", n_basis=10)),
    "mcycle_tp_k20": ("mcycle", "accel", ["times"], dict(basis="tp", n_basis=20)),
    "mcycle_tp_knots": ("mcycle", "accel", ["times"],
                        dict(basis="tp", n_basis=10, knots={"times": np.linspace(2, 57, 25)})),
    "weird_tp_k5": ("sim", "y_w", ["x_w"], dict(basis="tp", n_basis=5)),
    "weird_tp_k10": ("sim", "y_w", ["x_w"], dict(basis="tp", n_basis=10)),
    "weird_tp_k20": ("sim", "y_w", ["x_w"], dict(basis="tp", n_basis=20)),
    "large_tp_k15": ("large", "y1", ["u"], dict(basis="tp", n_basis=15)),
    "mcycle_cr_k3": ("mcycle", "accel", ["times"], dict(basis="cr", n_basis=3)),
    "doy_cc": ("sim", "y_doy", ["doy"], dict(basis="cc", n_basis=10)),
    "doy_cc_ends": ("sim", "y_doy", ["doy"], dict(basis="cc", n_basis=10, knots={"doy": (0, 365)})),
    "add_cc_tp": ("sim", "y_add", ["doy", "x_w"],
                  dict(basis={"doy": "cc", "x_w": "tp"}, n_basis={"doy": 12, "x_w": 10},
                       knots={"doy": (0, 365)})),
}


def _large():
    """The closed-form data of tools/mgcv_bases_reference.R's 800-point entries."""
    i = np.arange(1, 801)
    u, v, e = np.mod(i * (np.sqrt(5) - 1) / 2, 1), np.mod(i * np.sqrt(2), 1), np.sin(37 * i) / 5
    return pd.DataFrame({"u": u, "v": v, "y1": np.sin(6 * u) + e,
                         "y2": np.exp(-((u - 0.3) ** 2 + (v - 0.6) ** 2) / 0.08) + u * v + e})


def _data(name):
    return {"mcycle": load_mcycle, "large": _large}.get(name, lambda: SIM)()


def _fit(key):
    data, response, features, params = ESTIMATOR_CASES[key]
    d = _data(data)
    return PenalizedSplineRegressor(**params).fit(d[features], d[response]), d[features]


def _criterion_at(fit, smooths, lambdas):
    """sklmm's REML criterion at given smoothing parameters (lambda of each smooth's own penalty).

    Moves the fit's factorization: call it after reading what the fit holds."""
    theta = np.array([1.0 / np.sqrt(lam * sm.penalty_scale_) for lam, sm in zip(lambdas, smooths)])
    return profiled_criterion(fit.factor.update(theta), fit.n, fit.cp.p, True)


def _check_reml(fit, smooths, ref):
    """REML on one scale: along mgcv's profile (fixed sp) sklmm's criterion is twice mgcv's score
    plus a constant, and sklmm's optimum is at or below its value at mgcv's optimum."""
    optimum = fit.criterion
    at_mgcv = _criterion_at(fit, smooths, ref["lambda"])
    diffs = [at_mgcv - 2 * ref["reml_score"]]
    for point in ref["reml_profile"]:
        lam = np.asarray(point["sp"]) / np.asarray(ref["S_scale"])
        diffs.append(_criterion_at(fit, smooths, lam) - 2 * point["score"])
    assert np.ptp(diffs) < 1e-7 * abs(optimum) + 1e-6
    assert optimum <= at_mgcv + 1e-8 * abs(at_mgcv)
    # in mgcv's units: sklmm's optimum is at or below mgcv's REML score
    assert (optimum - diffs[0]) / 2 <= ref["reml_score"] + 1e-8 * abs(ref["reml_score"])


@pytest.mark.parametrize("key", sorted(ESTIMATOR_CASES))
def test_fits_match_mgcv(key):
    ref = REF[key]
    gam, X = _fit(key)
    tol = 1e-4 * ref["y_sd"]
    np.testing.assert_allclose(gam.predict(X), ref["fitted"], atol=tol)
    np.testing.assert_allclose(gam.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)
    assert gam.edf_total_ == pytest.approx(ref["edf_total"], abs=1e-3)
    assert gam.sigma_**2 == pytest.approx(ref["sig2"], rel=1e-4)
    np.testing.assert_allclose(gam.smoothing_params_.to_numpy(), ref["lambda"], rtol=1e-3)
    new = pd.DataFrame(ref["new"])[X.columns]
    mean, se = gam.predict(new, return_std=True)
    np.testing.assert_allclose(mean, ref["new_fit"], atol=tol)
    np.testing.assert_allclose(se, ref["new_se"], rtol=1e-3)
    for sm, want in zip(gam.smooths_, ref["smooths"]):
        assert sm.n_fixed == want["null_space_dim"]
        if sm.basis == "cc":
            np.testing.assert_allclose(sm.knots_, want["knots"], rtol=1e-12, atol=1e-12)
    _check_reml(gam._fit, gam.smooths_, ref)


def test_formula_fits_the_same_models():
    """s(x) is bs='tp' with k=10; the formula door maps cc and tp as the parameters do."""
    ref = REF["mcycle_tp_k10"]
    gam = PenalizedSplineRegressor.from_formula("accel ~ s(times)", load_mcycle())
    np.testing.assert_allclose(gam.predict(load_mcycle()), ref["fitted"], atol=1e-4 * ref["y_sd"])
    ref = REF["add_cc_tp"]
    gam = PenalizedSplineRegressor.from_formula("y_add ~ s(doy, bs='cc', k=12) + s(x_w)", SIM,
                                                knots={"doy": (0, 365)})
    np.testing.assert_allclose(gam.predict(SIM), ref["fitted"], atol=1e-4 * ref["y_sd"])
    np.testing.assert_allclose(gam.edf_.to_numpy(), ref["edf_smooth"], atol=1e-3)


# ----------------------------------------------------------------------------- two variables


def _engine_fit(X, y, k):
    """A tp smooth of the columns of X fitted through the engine, as PenalizedSplineRegressor fits
    one smooth: fixed effects [1, null space], the range space as one scalar random term."""
    sm = SmoothTerm("s(x2,z2)", None, "tp", k)
    F, Z = sm.fit_design(X)
    n = len(y)
    Xf = np.hstack([np.ones((n, 1)), F])
    term = RandomTerm(name=sm.name, levels=np.array([sm.name]), codes=np.zeros(n, dtype=np.intp),
                      values=Z, column_names=[f"{sm.name}.{i}" for i in range(Z.shape[1])],
                      correlated=False, scalar=True)
    names = ["(Intercept)"] + [f"{sm.name}.fx{i}" for i in range(F.shape[1])]
    fit = fit_mixed([term], Xf, y, names, reml=True)
    Minv = np.linalg.inv(fit.posterior_precision())
    edf = sm.n_fixed + float(np.sum(1.0 - np.diag(Minv)[: Z.shape[1]]))

    def predict(Xnew):
        Fn, Zn = sm.design(Xnew)
        return np.hstack([np.ones((len(Xnew), 1)), Fn]) @ fit.beta + Zn @ fit.b[0][0]

    return sm, fit, edf, predict


@pytest.mark.parametrize("key, data, columns, k", [
    ("tp2d_k30", SIM, ["x2", "z2", "y2"], 30),
    ("large_tp2d_k40", _large(), ["u", "v", "y2"], 40),  # 800 points: E's eigenvectors by Lanczos
])
def test_two_variable_thin_plate_spline_matches_mgcv(key, data, columns, k):
    ref = REF[key]
    X = data[columns[:2]].to_numpy()
    sm, fit, edf, predict = _engine_fit(X, data[columns[2]].to_numpy(), k)
    tol = 1e-4 * ref["y_sd"]
    assert sm.n_fixed == 2 and sm.n_random == k - 3  # x, z; k - 3
    np.testing.assert_allclose(predict(X), ref["fitted"], atol=tol)
    assert edf == pytest.approx(ref["edf_smooth"][0], abs=1e-3)
    assert fit.sigma**2 == pytest.approx(ref["sig2"], rel=1e-4)
    assert sm.lambda_from_theta(float(fit.theta[0])) == pytest.approx(ref["lambda"][0], rel=1e-3)
    new = np.column_stack([ref["new"][c] for c in columns[:2]])
    np.testing.assert_allclose(predict(new), ref["new_fit"], atol=tol)
    assert sm.knots_.shape == (ref["smooths"][0]["n_knots"], 2)
    np.testing.assert_allclose(sm._tp.shift_, ref["smooths"][0]["shift"], rtol=1e-14)
    _check_reml(fit, [sm], ref)


def test_thin_plate_spline_is_isotropic_and_translation_invariant():
    """A rotation or a shift of the covariates leaves the fitted surface unchanged (the REML
    criterion moves by a constant: the null-space columns, fixed effects, are scaled otherwise)."""
    X = SIM[["x2", "z2"]].to_numpy()
    y = SIM["y2"].to_numpy()
    _, fit, edf, predict = _engine_fit(X, y, 20)
    a = np.pi / 5
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    _, fit2, edf2, predict2 = _engine_fit(X @ R.T + [100.0, -50.0], y, 20)
    assert edf2 == pytest.approx(edf, abs=1e-6)
    # (sigma moves at first order with theta, and the criterion is flat at its optimum: two
    # searches ending within 1e-11 of the minimum differ by a few 1e-8 in sigma)
    assert fit2.sigma == pytest.approx(fit.sigma, rel=1e-7)
    new = np.random.default_rng(1).uniform(-0.1, 1.1, (50, 2))
    np.testing.assert_allclose(predict2(new @ R.T + [100.0, -50.0]), predict(new), atol=1e-7)


# ----------------------------------------------------------------------------- the bases themselves


def test_cyclic_basis_is_periodic_to_second_derivatives():
    knots = np.array([0.0, 1.0, 2.5, 3.0, 4.5, 6.0, 7.0])
    F, S = cc_matrices(knots)
    beta = np.random.default_rng(0).normal(size=len(knots) - 1)
    f = lambda x: cc_basis(np.atleast_1d(x), knots, F) @ beta  # noqa: E731
    h = 1e-4
    lo, hi = knots[0], knots[-1]
    assert f(lo) == pytest.approx(f(hi), abs=1e-12)
    d1 = lambda x0, s: s * (f(x0 + s * h) - f(x0)) / h  # noqa: E731  one-sided first derivative
    assert d1(lo, 1) == pytest.approx(d1(hi, -1), abs=1e-3)
    d2 = lambda x0, s: (f(x0 + 2 * s * h) - 2 * f(x0 + s * h) + f(x0)) / h**2  # noqa: E731
    assert d2(lo, 1) == pytest.approx(d2(hi, -1), abs=1e-2)
    # wrapped beyond the period, interpolating at the knots, constant in the penalty's null space
    np.testing.assert_allclose(f(np.array([1.7 - 7.0, 1.7 + 14.0])), f(1.7).repeat(2), atol=1e-12)
    np.testing.assert_allclose(cc_basis(knots[:-1], knots, F), np.eye(len(knots) - 1), atol=1e-12)
    np.testing.assert_allclose(S @ np.ones(len(knots) - 1), 0, atol=1e-10)
    assert np.linalg.matrix_rank(S) == len(knots) - 2


def test_cyclic_term_has_no_fixed_effects():
    sm = SmoothTerm("s(doy)", 0, "cc", 10)
    F, Z = sm.fit_design(SIM["doy"].to_numpy())
    assert F.shape == (len(SIM), 0) and Z.shape == (len(SIM), 8) and sm.n_fixed == 0
    np.testing.assert_allclose(Z.sum(axis=0), 0, atol=1e-9 * np.abs(Z).max() * len(Z))
    gam, X = _fit("doy_cc")
    assert list(gam.fixed_effects_.index) == ["(Intercept)"]
    curve = gam.partial_dependence()
    np.testing.assert_allclose(curve["estimate"] + gam.intercept_,
                               gam.predict(pd.DataFrame({"doy": curve["x"]})), atol=1e-10)
    assert "cc" in gam.summary()


def test_thin_plate_null_space():
    assert [tps_order(d) for d in (1, 2, 3, 4)] == [2, 2, 3, 3]
    assert tps_order(1, m=1) == 1 and tps_order(2, m=1) == 2  # 2m > d needed
    assert [tps_null_space_dim(d, tps_order(d)) for d in (1, 2, 3)] == [2, 3, 10]
    np.testing.assert_array_equal(tps_powers(2, 3), [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [0, 2]])
    x = load_mcycle()["times"].to_numpy()
    sm = SmoothTerm("s(times)", 0, "tp", 8)
    F, Z = sm.fit_design(x)
    assert sm.n_fixed == 1 and sm.n_random == 6
    np.testing.assert_allclose(np.corrcoef(F[:, 0], x)[0, 1] ** 2, 1, rtol=1e-9)  # the line
    # the basis at new points is the fitted one at the data
    F2, Z2 = sm.design(x)
    np.testing.assert_allclose(np.hstack([F2, Z2]), np.hstack([F, Z]), atol=1e-10)


def test_thin_plate_knot_subsample_above_max_knots():
    """Above max_knots unique points a seeded random subset is the knots (mgcv draws its own, with
    R's generator, so such bases differ from mgcv's); the same knots given by hand give the same
    basis."""
    x = np.random.default_rng(3).uniform(0, 1, 300)
    tp = ThinPlateBasis(10, max_knots=100)
    B = tp.fit(x)
    assert tp.knots_.shape == (100, 1)
    np.testing.assert_array_equal(ThinPlateBasis(10, max_knots=100).fit(x), B)
    B2 = ThinPlateBasis(10, knots=tp.knots_[:, 0]).fit(x)
    np.testing.assert_allclose(np.abs(B2), np.abs(B), atol=1e-8)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("params, match", [
    (dict(basis="cc", n_basis=3), r"n_basis \(mgcv's k\) must be at least 4 for basis 'cc'"),
    (dict(basis="cc", knots={"doy": (10.0, 300.0)}), r"lie outside them"),
    (dict(basis="cc", knots={"doy": (0.0, np.inf)}), "knots must be finite"),
    (dict(basis="cc", knots={"doy": (0.0, np.nan)}), "knots must be finite"),
    (dict(basis="cc", knots={"doy": (0.0, 100.0, 365.0)}), r"needs n_basis=10 knots, or the period's 2 ends"),
    (dict(basis="cc", n_basis=400), "needs at least 400 distinct values"),
    (dict(basis="tp", n_basis=400), "needs at least 400 distinct values"),
    (dict(basis="tp", knots={"doy": np.linspace(0, 365, 5)}), "needs at least 10 distinct knots"),
    (dict(basis="tp", knots={"doy": [0.0, np.inf] + list(range(10))}), "knots must be finite"),
])
def test_bad_input_is_refused(params, match):
    with pytest.raises(ValueError, match=match):
        PenalizedSplineRegressor(**params).fit(SIM[["doy"]], SIM["y_doy"])


def test_thin_plate_basis_dimension_below_the_null_space():
    with pytest.raises(ValueError, match="n_basis must be at least 3; got 2"):
        SmoothTerm("s(x)", 0, "tp", 2).fit(SIM["x_w"].to_numpy())
    with pytest.raises(ValueError, match="n_basis must be at least 4; got 3"):
        SmoothTerm("s(x2,z2)", None, "tp", 3).fit(SIM[["x2", "z2"]].to_numpy())
    with pytest.raises(ValueError, match="smooths one variable"):
        SmoothTerm("s(x2,z2)", None, "cr", 10).fit(SIM[["x2", "z2"]].to_numpy())
    with pytest.raises(ValueError, match=r"knots must have 2 column\(s\)"):
        ThinPlateBasis(10, knots=np.zeros((20, 3))).fit(SIM[["x2", "z2"]].to_numpy())


def test_new_bases_pickle_and_predict_alike():
    import pickle

    for key in ("mcycle_tp_k10", "add_cc_tp"):
        gam, X = _fit(key)
        again = pickle.loads(pickle.dumps(gam))
        np.testing.assert_array_equal(again.predict(X, return_std=True)[1], gam.predict(X, return_std=True)[1])
