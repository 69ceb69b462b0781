"""Tests of the smooth terms against mgcv 1.8's summary.gam and k.check, and gamm4's $gam
(numbers from tools/mgcv_smooth_tests_reference.R)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from sklmm import PenalizedSplineRegressor, te, ti
from sklmm._engine.smooth import BASES
from sklmm._inference.smooth_tests import chisq_sum_sf as chisq_sum
from sklmm._inference.smooth_tests import fractional_rank_test, random_effect_test
from sklmm.datasets import load_mcycle, load_sleepstudy

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_smooth_tests_reference.json").read_text())
#: the absolute accuracy of mgcv's p-values from psum.chisq (Davies' algorithm, tol = 2e-5)
DAVIES_TOL = 2e-5


def _two():
    """tests/data/sim_two_smooth.csv with the columns the R script adds (z, w, g, y_g)."""
    d = pd.read_csv(DATA / "sim_two_smooth.csv")
    i = np.arange(len(d))
    d["z"] = ((37 * i) % 400) / 400
    d["w"] = 1 + (i % 4) / 2
    d["g"] = [f"g{j}" for j in i % 8]
    d["y_g"] = d["y"] + ((3 * (i % 8)) % 8 - 3.5) / 2
    return d


def _mcycle(rows=None):
    d = load_mcycle()
    return d if rows is None else d[d["times"] > float(rows.split(">")[1])].reset_index(drop=True)


# key -> (data, features, response, estimator parameters, fit keywords)
MODELS = {
    "mcycle_cr": (_mcycle, ["times"], "accel", dict(n_basis=20), {}),
    "mcycle_cr_k5": (_mcycle, ["times"], "accel", dict(n_basis=5), {}),
    "mcycle_late30": (lambda: _mcycle("times > 30"), ["times"], "accel", dict(n_basis=10), {}),
    "mcycle_late40": (lambda: _mcycle("times > 40"), ["times"], "accel", dict(n_basis=10), {}),
    "mcycle_ps": (_mcycle, ["times"], "accel", dict(n_basis=20, basis="ps"), {}),
    "two_smooth": (_two, ["x1", "x2"], "y", {}, {}),
    "two_linear": (_two, ["x1", "x2"], "y", dict(smooth_features=["x2"]), {}),
    "two_linear_weighted": (_two, ["x1", "x2"], "y", dict(smooth_features=["x2"]), dict(sample_weight="w")),
    "two_noise": (_two, ["x1", "x2", "z"], "y", {}, {}),
    "two_ps": (_two, ["x1", "z"], "y", dict(basis="ps"), {}),
    "mcycle_tp": (_mcycle, ["times"], "accel", dict(n_basis=20, basis="tp"), {}),
    "two_tp": (_two, ["x1", "x2"], "y", dict(basis="tp"), {}),
    "mcycle_cc": (_mcycle, ["times"], "accel", dict(n_basis=20, basis="cc"), {}),
    "two_cc": (_two, ["x1", "x2", "z"], "y", dict(basis={"x1": "cr", "x2": "cr", "z": "cc"}), {}),
    "two_cc_null": (_two, ["z"], "y", dict(basis="cc"), {}),
    "gamm4_sleep": (load_sleepstudy, ["Days"], "Reaction", dict(smooth_features=["Days"], n_basis=5),
                    dict(groups="Subject")),
    "gamm4_two": (_two, ["x1", "x2"], "y_g", {}, dict(groups="g")),
}


def _available(key):
    basis = MODELS[key][3].get("basis", "cr")
    return all(b in BASES for b in (basis.values() if isinstance(basis, dict) else [basis]))


GAMS = [k for k in MODELS if not k.startswith("gamm4") and _available(k)]
#: models where REML shrinks a smooth to a straight line or to 0: mgcv's optimizer stops at a
#: large finite sp there (edf 1.0003 or 1.0008; 0.0002), sklmm's at the boundary (edf 1; 0), so
#: their tests are compared at mgcv's smoothing parameters
BOUNDARY = ["two_noise", "two_ps", "two_cc_null"]
#: a REML criterion so flat in s(z)'s smoothing parameter that sklmm's optimum (2.8e-8 lower
#: than at mgcv's) has a lambda 4e-4 from mgcv's: the REML fits agree to 1e-3 (and at mgcv's
#: smoothing parameters to 1e-5, as the others)
FLAT = {"two_cc": 1e-3}


def _fit(key, at_mgcv_lambda=False):
    data, features, response, params, fit_kw = MODELS[key]
    d = data()
    params = dict(params)
    if at_mgcv_lambda:
        smooth = params.get("smooth_features", features)
        params["smoothing_params"] = dict(zip(smooth, REF[key]["lambda"]))
    fit_kw = {k: d[v] for k, v in fit_kw.items()}
    return PenalizedSplineRegressor(**params).fit(d[features], d[response], **fit_kw)


def _assert_p_values(ours, ref, from_f, p_tol=DAVIES_TOL):
    """mgcv's p-values: 0 where Davies' algorithm lost them below its accuracy; from the F
    distribution (an integer Ref.df, a smooth with a null space) to 1e-4; from psum.chisq (a
    fractional Ref.df, or the random-effect test) to its 2e-5."""
    for p, want, f in zip(ours, ref, from_f):
        if want == 0:
            assert p < 1e-8
        elif f:
            assert p == pytest.approx(want, rel=1e-4)
        else:
            assert abs(p - want) <= p_tol
            assert p == pytest.approx(want, rel=max(1e-3, p_tol / want))


def _assert_tests(m, ref, rel, rel_f=1e-4, p_tol=DAVIES_TOL):
    t = m.smooth_tests_
    assert list(t.index) == ref["smooths"]
    assert list(t.columns) == ["edf", "ref_df", "statistic", "p_value"]
    np.testing.assert_allclose(t["edf"], ref["edf"], rtol=rel)
    np.testing.assert_allclose(t["ref_df"], ref["ref_df"], rtol=rel)
    np.testing.assert_allclose(t["statistic"], ref["F"], rtol=rel_f)
    from_f = [df == np.round(df) and sm.n_fixed > 0 for df, sm in zip(ref["ref_df"], m.smooths_)]
    _assert_p_values(t["p_value"], ref["p_value"], from_f, p_tol)


@pytest.mark.parametrize("key", [k for k in GAMS if k not in BOUNDARY])
def test_smooth_tests_match_mgcv(key):
    """summary.gam's s.table on the REML fits: edf, Ref.df (the alternative edf, 2F - FF, or
    the rank of the random-effect test for cc smooths), F and p-value."""
    _assert_tests(_fit(key), REF[key], rel=FLAT.get(key, 1e-4), rel_f=FLAT.get(key, 1e-4))


@pytest.mark.parametrize("key", GAMS)
def test_smooth_tests_match_mgcv_at_its_smoothing_parameters(key):
    """The same with mgcv's smoothing parameters held fixed: the tests on the same fit."""
    _assert_tests(_fit(key, at_mgcv_lambda=True), REF[key], rel=1e-9, rel_f=1e-5)


@pytest.mark.parametrize("key", ["two_noise", "two_ps"])
def test_a_smooth_shrunk_to_a_line_is_not_significant(key):
    m = _fit(key)
    t = m.smooth_tests_.loc["s(z)"]
    assert t["edf"] == pytest.approx(1.0, abs=1e-6) and t["ref_df"] == pytest.approx(1.0, abs=1e-6)
    assert t["p_value"] == pytest.approx(REF[key]["p_value"][-1], abs=1e-3)
    assert t["p_value"] > 0.3


def _sp(lam, i, j=None):
    """mgcv's smoothing parameters ``lam[i]`` (one margin) or ``lam[i:j]`` (a tensor product's
    margins), or None to estimate them."""
    return None if lam is None else (lam[i] if j is None else tuple(lam[i:j]))


#: tensor products: key -> the terms, given mgcv's smoothing parameters (or None), on _two()
TENSORS = {
    "two_ti": lambda lam: [ti("x1", sp=_sp(lam, 0)), ti("x2", sp=_sp(lam, 1)), ti("x1", "x2", sp=_sp(lam, 2, 4))],
    "two_te": lambda lam: [te("x1", "z", k=(4, 4), sp=_sp(lam, 0, 2))],
    "two_te_ps": lambda lam: [te("x1", "x2", bs=("ps", "cr"), k=(6, 5), sp=_sp(lam, 0, 2))],
    "two_ti_ps": lambda lam: [ti("x1", bs="ps", k=6, sp=_sp(lam, 0)), ti("x2", sp=_sp(lam, 1)),
                              ti("x1", "x2", bs=("ps", "cr"), k=(6, 5), sp=_sp(lam, 2, 4))],
}


@pytest.mark.parametrize("at_mgcv_lambda", [False, True])
@pytest.mark.parametrize("key", list(TENSORS))
def test_tensor_smooth_tests_match_mgcv(key, at_mgcv_lambda):
    """te and ti: edf, Ref.df, F and p-value of summary.gam. With a fractional rank the F
    depends on the relative sign of two eigenvectors, fixed (as mgcv) in the QR coordinates
    of mgcv's basis of the term, not sklmm's: without that, ti's F differed by up to 40%. By
    REML, ti(x1, x2)'s second margin ends at its bound here (mgcv stops at sp 1e6), so edf,
    Ref.df and F agree to 2e-4 and the p-values to 1e-4; at mgcv's smoothing parameters the
    edf to 1e-6, the F to 1e-5, the p-values to psum.chisq's accuracy."""
    ref = REF[key]
    d = _two()
    terms = TENSORS[key](ref["lambda"] if at_mgcv_lambda else None)
    cols = ["x1", "z"] if key == "two_te" else ["x1", "x2"]  # (a column no smooth reads is linear)
    m = PenalizedSplineRegressor(smooths=terms).fit(d[cols], d["y"])
    if at_mgcv_lambda:
        _assert_tests(m, ref, rel=1e-6, rel_f=1e-5)
    else:
        _assert_tests(m, ref, rel=2e-4, rel_f=2e-4, p_tol=1e-4)  # (p 0.215: 2.6e-5 apart)


@pytest.mark.parametrize("key", ["gamm4_sleep", "gamm4_two"])
def test_gamm_smooth_tests_match_gamm4(key):
    """summary(gamm4(...)$gam): the smooths' data information marginal over the random effects
    at their estimated variances, Ref.df = edf and residual df n - edf of the fixed and smooth
    coefficients."""
    _assert_tests(_fit(key), REF[key], rel=1e-5)


@pytest.mark.skipif("cc" not in BASES, reason="the cyclic basis is not available")
def test_a_smooth_shrunk_to_zero_gets_the_limit_of_its_test():
    """A smooth without null space (cc) at variance 0: mgcv's random-effect test at a large sp
    tends to a limit as sp grows (a score test), which sklmm evaluates at the boundary."""
    ref = REF["two_cc_null"]
    m = _fit("two_cc_null")
    assert m.smooths_[0].n_fixed == 0 and m.theta_[0] == 0
    t = m.smooth_tests_.iloc[0]
    assert t["edf"] == pytest.approx(ref["edf"][0], abs=1e-3) and t["ref_df"] == ref["ref_df"][0]
    assert abs(t["p_value"] - ref["p_value"][0]) <= DAVIES_TOL


# ----------------------------------------------------------------------------- k.check


def _within_monte_carlo_error(p, want, n=400):
    sd = np.sqrt(2 * max(want * (1 - want), 1 / n) / n)  # two independent estimates
    return abs(p - want) <= 4 * sd


@pytest.mark.parametrize("key", GAMS + ["gamm4_sleep", "gamm4_two"])
def test_basis_dimension_check_matches_k_check(key):
    ref = REF[key]
    m = _fit(key)
    k = m.check_basis_dimension(random_state=0)
    assert list(k.index) == ref["smooths"]
    assert list(k.columns) == ["k_prime", "edf", "k_index", "p_value"]
    np.testing.assert_array_equal(k["k_prime"], ref["k_prime"])
    np.testing.assert_allclose(k["edf"], ref["k_edf"], rtol=FLAT.get(key, 1e-4), atol=1e-3 * (key in BOUNDARY))
    np.testing.assert_allclose(k["k_index"], ref["k_index"], rtol=1e-4)
    for p, want in zip(k["p_value"], ref["k_p_value"]):
        assert _within_monte_carlo_error(p, want)


def test_basis_dimension_check_flags_an_underfitted_smooth():
    small = _fit("mcycle_cr_k5").check_basis_dimension(random_state=1)
    large = _fit("mcycle_cr").check_basis_dimension(random_state=1)
    assert REF["mcycle_cr_k5"]["k_index"][0] < 1 and small["k_index"].iloc[0] < 1
    assert REF["mcycle_cr_k5"]["k_p_value"][0] < 0.01 and small["p_value"].iloc[0] < 0.01
    assert REF["mcycle_cr"]["k_p_value"][0] > 0.5 and large["p_value"].iloc[0] > 0.5


def test_basis_dimension_check_is_seeded():
    m = _fit("two_smooth")
    a = m.check_basis_dimension(n_permutations=150, random_state=3)
    pd.testing.assert_frame_equal(a, m.check_basis_dimension(n_permutations=150, random_state=3))
    np.testing.assert_allclose(a["p_value"] * 150, np.round(a["p_value"] * 150))
    b = m.check_basis_dimension(n_permutations=150, random_state=4)
    pd.testing.assert_series_equal(a["k_index"], b["k_index"])


def test_basis_dimension_check_subsamples_large_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=12000)
    y = np.sin(6 * x) + rng.normal(scale=0.3, size=x.size)
    m = PenalizedSplineRegressor(n_basis=8).fit(x[:, None], y)
    assert len(m._basis_check[0]) == 5000
    k = m.check_basis_dimension(n_permutations=50, random_state=0)
    assert 0.9 < k["k_index"].iloc[0] < 1.1


# ----------------------------------------------------------------------------- reference sums


def test_chisq_sums_match_mgcvs_psum_chisq():
    """The fractional-rank reference distribution against psum.chisq (Davies' algorithm, accurate
    to its tol = 2e-5)."""
    for e in REF["psum_chisq"]:
        assert abs(chisq_sum(e["lb"], e["df"]) - e["p"]) <= DAVIES_TOL


def test_known_scale_chisq_sums_match_mgcvs_psum_chisq():
    """The chi-square reference of a known scale (non-Gaussian families)."""
    for e in REF["psum_chisq_known_scale"]:
        assert abs(chisq_sum(e["lb"], np.ones(len(e["lb"])), e["q"]) - e["p"]) <= DAVIES_TOL


@pytest.mark.parametrize("rank", [1, 2, 7])
@pytest.mark.parametrize("m", [1, 4, 120, 10**5])
def test_chisq_sums_are_accurate_in_the_tail(rank, m):
    """Integer weights give the F distribution: relative accuracy down to tiny p-values."""
    for f in [0.01, 0.7, 3.0, 30.0, 300.0]:
        p = chisq_sum(np.r_[np.ones(rank), -f * rank / m], np.r_[np.ones(rank), m])
        assert p == pytest.approx(stats.f.sf(f, rank, m), rel=1e-8)


@pytest.mark.parametrize("rank", [1, 2, 5, 20])
def test_chisq_sums_with_a_known_scale_are_accurate_in_both_tails(rank):
    for q in [0.01, 0.5, 3.0, 10.0, 50.0, 300.0, 1400.0]:
        assert chisq_sum(np.ones(rank), np.ones(rank), q) == pytest.approx(stats.chi2.sf(q, rank), rel=1e-10)


def test_chisq_sums_agree_with_imhof():
    """A mixture with unequal weights against Imhof's (1961) inversion formula."""
    lam, h = np.array([1.0, 1.18, 0.32, -0.05]), np.array([1, 1, 1, 60])

    def f(u):
        theta = 0.5 * np.sum(h * np.arctan(lam * u))
        return np.sin(theta) / (u * np.prod((1 + lam**2 * u**2) ** (h / 4)))

    imhof = 0.5 + integrate.quad(f, 0, np.inf, limit=500, epsabs=1e-13)[0] / np.pi
    assert chisq_sum(lam, h) == pytest.approx(imhof, rel=1e-8)


def test_integer_rank_and_equal_weights_give_f_tests():
    """Both tests reduce to F tests (chi-square tests with a known scale): an integer rank, or a
    frequentist covariance equal to the Bayesian one (all weights 1)."""
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 5))
    V = A @ A.T + np.eye(5)
    c = rng.normal(size=5)
    R = np.linalg.cholesky(np.eye(5) + 0.1 * np.ones((5, 5))).T
    F, df, p = fractional_rank_test(c, V, R, 5.0, 37.0)
    assert df == 5 and F == pytest.approx(c @ np.linalg.solve(V, c) / 5, rel=1e-10)
    assert p == pytest.approx(stats.f.sf(F, 5, 37.0), rel=1e-12)
    F, df, p = random_effect_test(c, V, V, 37.2)
    assert df == 5 and p == pytest.approx(stats.f.sf(F, 5, 37), rel=1e-8)
    # a known scale: chi-square statistics and references
    chisq, df, p = fractional_rank_test(c, V, R, 5.0, None)
    assert chisq == pytest.approx(c @ np.linalg.solve(V, c), rel=1e-10)
    assert p == pytest.approx(stats.chi2.sf(chisq, 5), rel=1e-12)
    chisq, df, p = random_effect_test(c, V, V, None)
    assert p == pytest.approx(stats.chi2.sf(chisq, 5), rel=1e-8)


def test_summary_prints_the_smooth_tests():
    m = _fit("two_noise")
    text = m.summary()
    assert "Ref.df" in text and "p-value" in text and "<2e-16" in text
    line = next(s for s in text.splitlines() if s.startswith(" s(z)"))
    assert f"{m.smooth_tests_.loc['s(z)', 'p_value']:.3g}" in line


def test_sparse_posterior_of_many_groups_equals_the_dense_one(monkeypatch):
    """GAMMs with many groups use the sparse block elimination of sklmm/_inference/posterior.py
    instead of a dense inverse; both give the same tables (one factor with slopes: exact
    block inverses; two crossed factors: solves)."""
    import sklmm._inference.posterior as posterior
    from sklmm.datasets import load_sleepstudy

    d = load_sleepstudy()
    crossed = d.assign(day_group=(d["Days"] % 3).astype(str))
    cases = [(d, d["Subject"], dict(random_slopes=["Days"])),
             (crossed, crossed[["Subject", "day_group"]], {})]
    for data, groups, kw in cases:
        out = []
        for limit in (10**9, 0):
            monkeypatch.setattr(posterior, "DENSE_GROUP_LIMIT", limit)
            m = PenalizedSplineRegressor(n_basis=6, **kw).fit(data[["Days"]], data["Reaction"], groups=groups)
            out.append((m.edf_total_, m.smooth_tests_.to_numpy(), m.fixed_effects_.to_numpy(),
                        m.predict(data[["Days"]], return_std=True)[1], m.coefficients_cov_.to_numpy()))
        for a, b in zip(*out):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_a_reference_sum_with_a_million_residual_df_is_accurate_and_quiet():
    """The F-type reference of a smooth with edf 1 beside a residual df of 10^6 (a Gaussian GAM
    on 10^6 rows): P(w0 X0 + w1 X1 > |w2| Y), Y ~ chi^2(999,971). QUADPACK cannot reach its 1e-11
    relative target here, but the p-value is right far beyond reporting accuracy: no warning,
    and the value of the sum by conditioning on Y and X0 (midpoints of 4,000 x 200 quantiles)."""
    import warnings

    w = np.array([7.91909475e-06, 1.00000792e+00, -9.19542041e-07])
    df = np.array([1.0, 1.0, 999971.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = chisq_sum(w, df, 0.0)
    ys = stats.chi2.ppf((np.arange(4000) + 0.5) / 4000, df[2])
    x0 = stats.chi2.ppf((np.arange(200) + 0.5) / 200, 1)
    want = np.mean(stats.chi2.sf((-w[2] * ys[:, None] - w[0] * x0[None, :]) / w[1], 1))
    assert p == pytest.approx(want, abs=1e-7)
