"""edf1 / edf2, mgcv's AIC() and anova() between GAMs, against tools/mgcv_anova_reference.R."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sklmm import MixedLinearRegressor, PenalizedSplineClassifier, PenalizedSplineRegressor, likelihood_ratio_test, s

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "mgcv_anova_reference.json").read_text())
GAUSSIAN = [["x0", "x1"], ["x0", "x1", "x2"], ["x0", "x1", "x2", "x3"]]
BINOMIAL = [["x0"], ["x0", "x2"]]


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "sim_anova.csv")


@pytest.fixture(scope="module")
def gaussian(data):
    return [PenalizedSplineRegressor(smooths=[s(f, bs="cr") for f in fs]).fit(data[fs], data["y"]) for fs in GAUSSIAN]


@pytest.fixture(scope="module")
def binomial(data):
    return [PenalizedSplineClassifier(smooths=[s(f, bs="cr") for f in fs]).fit(data[fs], data["b"]) for fs in BINOMIAL]


def _first_order_df(ref, n):
    """mgcv's residual df with the first-order edf2 (capped at edf1, as mgcv caps it)."""
    edf2 = min(ref["edf2_first_order"], ref["edf1"])
    return n - ref["edf1"] - (edf2 - ref["edf"])


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_edf1_edf2_deviance_and_aic_match_mgcv(family, gaussian, binomial):
    models = gaussian if family == "gaussian" else binomial
    for m, ref in zip(models, REF[family]["models"]):
        assert m.edf1_total_ == pytest.approx(ref["edf1"], abs=2e-3)
        # the first-order edf2 (J V_rho J'), computed in R from mgcv's own fits
        assert m.edf2_total_ == pytest.approx(min(ref["edf2_first_order"], ref["edf1"]), abs=2e-3)
        if ref["edf2"] == ref["edf1"] and ref["edf2_first_order"] >= ref["edf1"]:  # mgcv's capped: equal
            assert m.edf2_total_ == pytest.approx(ref["edf2"], abs=2e-3)
        assert m.deviance_ == pytest.approx(ref["deviance"], rel=1e-5)
        # mgcv's AIC() with the first-order edf2 in place of mgcv's
        aic = ref["aic"] + 2 * (min(ref["edf2_first_order"], ref["edf1"]) - ref["edf2"])
        assert m.corrected_aic_ == pytest.approx(aic, abs=5e-3)
        assert m.edf_total_ <= m.edf2_total_ <= m.edf1_total_ + 1e-12


@pytest.mark.parametrize("test", ["F", "Chisq"])
def test_gaussian_anova_as_mgcv(test, gaussian, data):
    n = len(data)
    refs = REF["gaussian"]["models"]
    table = REF["gaussian"][test]
    for i in (0, 1):
        res = likelihood_ratio_test(gaussian[i], gaussian[i + 1], test=test)
        df0, df1 = _first_order_df(refs[i], n), _first_order_df(refs[i + 1], n)
        np.testing.assert_allclose(res.table["Resid. Df"], [df0, df1], atol=5e-3)
        np.testing.assert_allclose(res.table["Resid. Dev"], table["resid_dev"][i : i + 2], rtol=1e-5)
        dev = table["resid_dev"][i] - table["resid_dev"][i + 1]
        assert res.table["Deviance"].iloc[1] == pytest.approx(dev, rel=1e-4)
        # mgcv's statistic and p-value for these residual df (R's stat.anova)
        big = refs[i + 1]
        if test == "F":
            F = dev / (df0 - df1) / big["sig2"]
            assert res.statistic == pytest.approx(F, rel=2e-3)
            assert res.p_value == pytest.approx(stats.f.sf(F, df0 - df1, df1), rel=2e-2)
        else:
            assert res.statistic == pytest.approx(dev / big["sig2"], rel=1e-4)
            assert res.p_value == pytest.approx(stats.chi2.sf(dev / big["sig2"], df0 - df1), rel=2e-2)
        assert res.df == pytest.approx(df0 - df1, abs=1e-2)
    # where mgcv's residual df did not need the term sklmm leaves out, mgcv's own table
    assert _first_order_df(refs[0], n) == pytest.approx(table["resid_df"][0], abs=1e-9)


def test_binomial_anova_as_mgcv(binomial, data):
    n = len(data)
    refs = REF["binomial"]["models"]
    res = likelihood_ratio_test(*binomial)
    assert res.test == "Chisq"
    dev = REF["binomial"]["Chisq"]["deviance"][0]
    assert res.statistic == pytest.approx(dev, rel=1e-4)
    df = _first_order_df(refs[0], n) - _first_order_df(refs[1], n)
    assert res.df == pytest.approx(df, abs=5e-3)
    assert res.p_value == pytest.approx(stats.chi2.sf(dev, df), rel=2e-2)
    statistic, df_, p = res  # unpacks as the mixed models' test does
    assert (statistic, df_, p) == (res.statistic, res.df, res.p_value)


def test_anova_errors(gaussian, binomial, data):
    with pytest.raises(TypeError, match="one kind and family"):
        likelihood_ratio_test(gaussian[0], binomial[1])
    with pytest.raises(TypeError, match="fitted GAM"):
        likelihood_ratio_test(gaussian[0], MixedLinearRegressor())
    with pytest.raises(ValueError, match="test must be"):
        likelihood_ratio_test(gaussian[0], gaussian[1], test="LRT")
    half = PenalizedSplineRegressor(smooths=[s("x0", bs="cr")]).fit(data[["x0"]][:200], data["y"][:200])
    with pytest.raises(ValueError, match="different numbers of rows"):
        likelihood_ratio_test(half, gaussian[1])
    groups = np.arange(len(data)) % 20
    gamm = PenalizedSplineRegressor(smooths=[s("x0", bs="cr")]).fit(data[["x0"]], data["y"], groups=groups)
    with pytest.raises(ValueError, match="without grouping factors"):
        gamm.edf2_total_
