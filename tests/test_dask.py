"""Fits from Dask collections on a local cluster: the same estimator and the same fit as in memory.

One ``distributed.LocalCluster`` (two worker processes) serves the whole module; every fit
below reduces its partitions there, except where a test picks another scheduler.
"""

import pickle
import re
import signal
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from reference import problem  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

from sklmm import MixedLinearRegressor  # noqa: E402
from sklmm._engine.factor_cholmod import HAS_CHOLMOD  # noqa: E402
from sklmm.datasets import load_sleepstudy  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(autouse=True)
def _fail_instead_of_hanging():
    """A Dask computation that never finishes fails its test after 120 s."""
    def stop(signum, frame):
        raise TimeoutError("a Dask computation did not finish in 120 s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _frame(key, shuffle=True):
    """A reference problem as one pandas frame (rows shuffled) and the names of its parts."""
    X, y, g, kw, ref = problem(key)
    gcols = list(g.columns) if isinstance(g, pd.DataFrame) else [g.name]
    df = pd.concat([X, y, g], axis=1)
    if shuffle:
        df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return df, list(X.columns), y.name, gcols, kw, ref


def _parts(df, xcols, ycol, gcols):
    g = df[gcols[0]] if len(gcols) == 1 else df[gcols]
    return df[xcols], df[ycol], g


def _same_fit(mem, dsk, crit_rtol=1e-10, theta_rtol=0.0):
    """The fitted attributes of an in-memory and a Dask fit agree."""
    assert sorted(vars(dsk)) == sorted(vars(mem))  # every attribute a fit sets, private ones too
    assert dsk.criterion_ == pytest.approx(mem.criterion_, rel=crit_rtol)
    for attr in ("theta_names_", "fixed_effects_names_", "n_groups_", "n_obs_", "solver_",
                 "is_singular_", "converged_", "n_features_in_"):
        assert getattr(dsk, attr) == getattr(mem, attr), attr
    if hasattr(mem, "feature_names_in_"):
        assert list(dsk.feature_names_in_) == list(mem.feature_names_in_)
    np.testing.assert_allclose(dsk.theta_, mem.theta_, atol=1e-5, rtol=theta_rtol)
    np.testing.assert_allclose(dsk.coef_, mem.coef_, rtol=1e-6, atol=1e-8)
    assert dsk.intercept_ == pytest.approx(mem.intercept_, rel=1e-6)
    assert dsk.sigma_ == pytest.approx(mem.sigma_, rel=1e-6)
    assert list(dsk.random_effects_) == list(mem.random_effects_)
    for name, re_mem in mem.random_effects_.items():
        re_dsk = dsk.random_effects_[name]
        assert re_dsk.index.equals(re_mem.index) and list(re_dsk.columns) == list(re_mem.columns)
        scale = np.abs(re_mem.to_numpy()).max() + 1e-12
        np.testing.assert_allclose(re_dsk.to_numpy(), re_mem.to_numpy(), atol=1e-5 * scale)
    vm, vd = mem.variance_components_, dsk.variance_components_
    assert vm.shape == vd.shape and list(vm["factor"]) == list(vd["factor"])
    np.testing.assert_allclose(vd["variance"], vm["variance"], rtol=1e-5)


# ----------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("key", ["sleep_slope_reml", "sleep_ri_ml", "crossed_ml", "crossed_reml",
                                 "pastes_reml", "nested_reml", "penicillin_ml"])
def test_dataframe_fit_matches_lme4_and_in_memory(key):
    df, xcols, ycol, gcols, kw, ref = _frame(key)
    ddf = dd.from_pandas(df, npartitions=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these fits is singular or non-converged
        m = MixedLinearRegressor(**kw).fit(*_parts(ddf, xcols, ycol, gcols))
    # lme4's optimum, as tests/test_lme4_reference.py requires of in-memory fits
    assert m.criterion_ <= ref["criterion"] + 1e-6 * abs(ref["criterion"])
    assert m.criterion_ == pytest.approx(ref["criterion"], rel=1e-6)
    assert m.theta_names_ == ref["theta_names"]
    np.testing.assert_allclose(m.theta_, ref["theta"], atol=1e-3)
    mem = MixedLinearRegressor(**kw).fit(*_parts(df, xcols, ycol, gcols))
    _same_fit(mem, m)


def test_dask_arrays_with_string_labels_and_uneven_chunks():
    df = load_sleepstudy()
    X, y = df[["Days"]].to_numpy(), df["Reaction"].to_numpy()
    g = ("s" + df["Subject"].astype(str)).to_numpy(dtype=object)
    Xd = da.from_array(X, chunks=(50, 1))
    yd = da.from_array(y, chunks=70)  # rechunked like X
    gd = da.from_array(g, chunks=50)
    m = MixedLinearRegressor(random_slopes=[0], reml=False).fit(Xd, yd, groups=gd)
    mem = MixedLinearRegressor(random_slopes=[0], reml=False).fit(X, y, groups=g)
    _same_fit(mem, m)
    assert not hasattr(m, "feature_names_in_")


def test_dataframe_X_with_array_response_and_crossed_array_groups():
    df, xcols, ycol, gcols, kw, _ = _frame("crossed_reml")
    ddf = dd.from_pandas(df, npartitions=3)
    yd = ddf[ycol].to_dask_array(lengths=True)
    gd = ddf[gcols].astype(str).to_dask_array(lengths=True)  # 2-D object array: crossed factors
    m = MixedLinearRegressor(random_slopes={"group0": ["x"]}).fit(ddf[xcols], yd, groups=gd)
    mem = MixedLinearRegressor(random_slopes={"group0": ["x"]}).fit(
        df[xcols], df[ycol], groups=df[gcols].astype(str).to_numpy())
    _same_fit(mem, m)


def test_far_from_centred_slopes_are_centred_as_in_memory():
    """A correlated slope column far from centred is fitted in centred coordinates from the
    summed cross-products too (shifted after the reduction), with the in-memory fit's results."""
    df = load_sleepstudy().sample(frac=1.0, random_state=1).reset_index(drop=True)
    df["Days"] = df["Days"] + 300.0
    ddf = dd.from_pandas(df, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the column is far from centred: said at fit
        m = MixedLinearRegressor(random_slopes=["Days"]).fit(ddf[["Days"]], ddf["Reaction"], groups=ddf["Subject"])
        mem = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    assert m._fit.terms[0].shift is not None and mem._fit.terms[0].shift is not None
    # the intercept's theta at Days = 0 (about 69) is 300 times the slope's at the centre: the
    # two optimizers' end points, 1e-9 apart in the criterion, differ there in the sixth digit
    _same_fit(mem, m, crit_rtol=1e-9, theta_rtol=1e-5)


def test_group_columns_of_a_dask_frame():
    """Label columns named by group_columns are split off a Dask DataFrame lazily, in fit,
    predict and score, with the in-memory fit's results."""
    df = load_sleepstudy().sample(frac=1.0, random_state=2).reset_index(drop=True)
    ddf = dd.from_pandas(df[["Days", "Subject", "Reaction"]], npartitions=3)
    m = MixedLinearRegressor(random_slopes=["Days"], group_columns="Subject").fit(ddf[["Days", "Subject"]], ddf["Reaction"])
    mem = MixedLinearRegressor(random_slopes=["Days"], group_columns="Subject").fit(df[["Days", "Subject"]], df["Reaction"])
    _same_fit(mem, m)
    # (the two fits' optimizers stop 1e-10 apart in the criterion: predictions agree to 1e-7)
    np.testing.assert_allclose(m.predict(ddf[["Days", "Subject"]]).compute(), mem.predict(df[["Days", "Subject"]]),
                               rtol=1e-6)
    assert m.score(ddf[["Days", "Subject"]], ddf["Reaction"]) == pytest.approx(
        mem.score(df[["Days", "Subject"]], df["Reaction"]), rel=1e-6)


def test_level_in_one_partition_and_an_empty_partition():
    df = load_sleepstudy()
    df = df.sort_values("Subject", kind="stable").reset_index(drop=True)
    first = df["Subject"] == df["Subject"].iloc[0]  # a subject whose rows are all in partition 0
    chunks = [df[first], df[~first].iloc[:0], df[~first].iloc[:77], df[~first].iloc[77:]]
    ddf = dd.from_delayed([dask.delayed(c) for c in chunks], meta=df.iloc[:0])
    assert ddf.npartitions == 4
    kw = dict(random_slopes=["Days"], reml=False)
    m = MixedLinearRegressor(**kw).fit(ddf[["Days"]], ddf["Reaction"], groups=ddf["Subject"])
    mem = MixedLinearRegressor(**kw).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    _same_fit(mem, m)


def test_categories_unknown_to_dask_and_nested_factors():
    df, xcols, ycol, gcols, kw, _ = _frame("nested_reml")
    ddf = dd.from_pandas(df, npartitions=5)
    g = ddf[gcols].astype({c: "category" for c in gcols})
    g = g.assign(**{c: g[c].cat.as_unknown() for c in gcols})  # partitions' own categories
    m = MixedLinearRegressor(**kw).fit(ddf[xcols], ddf[ycol], groups=g)
    mem = MixedLinearRegressor(**kw).fit(df[xcols], df[ycol], groups=df[gcols])
    assert m.criterion_ == pytest.approx(mem.criterion_, rel=1e-10)
    assert m.n_groups_ == mem.n_groups_
    for name, eff in mem.random_effects_.items():  # same labels, here also in the same order
        assert list(m.random_effects_[name].index) == list(eff.index)


def test_prior_weights_no_groups_and_column_response():
    from sklearn.exceptions import DataConversionWarning

    from sklmm import NoGroupsWarning

    df = load_sleepstudy()
    df["w"] = 1.0 + df["Days"] / 10.0
    ddf = dd.from_pandas(df, npartitions=3)
    kw = dict(random_slopes=["Days"])
    m = MixedLinearRegressor(**kw).fit(ddf[["Days"]], ddf["Reaction"], groups=ddf["Subject"],
                                       sample_weight=ddf["w"])
    mem = MixedLinearRegressor(**kw).fit(df[["Days"]], df["Reaction"], groups=df["Subject"],
                                         sample_weight=df["w"])
    _same_fit(mem, m)
    with pytest.warns(NoGroupsWarning):
        ols = MixedLinearRegressor().fit(ddf[["Days"]], ddf["Reaction"])
    with pytest.warns(NoGroupsWarning):
        ols_mem = MixedLinearRegressor().fit(df[["Days"]], df["Reaction"])
    _same_fit(ols_mem, ols)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        col = MixedLinearRegressor().fit(ddf[["Days"]], ddf[["Reaction"]], groups=ddf["Subject"])
    assert col.criterion_ == pytest.approx(
        MixedLinearRegressor().fit(df[["Days"]], df["Reaction"], groups=df["Subject"]).criterion_, rel=1e-10)


def test_threaded_scheduler_without_the_cluster_and_verbose(capsys):
    df, xcols, ycol, gcols, kw, _ = _frame("sleep_slope_ml")
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler="threads"):
        m = MixedLinearRegressor(verbose=1, **kw).fit(*_parts(ddf, xcols, ycol, gcols))
    assert "cross-products of 3 Dask partitions (180 rows)" in capsys.readouterr().out
    mem = MixedLinearRegressor(**kw).fit(*_parts(df, xcols, ycol, gcols))
    assert m.criterion_ == pytest.approx(mem.criterion_, rel=1e-10)


@pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")
def test_cholmod_solver_and_prediction_standard_errors():
    df, xcols, ycol, gcols, kw, _ = _frame("crossed_ml")
    ddf = dd.from_pandas(df, npartitions=3)
    m = MixedLinearRegressor(solver="cholmod", **kw).fit(*_parts(ddf, xcols, ycol, gcols))
    mem = MixedLinearRegressor(solver="cholmod", **kw).fit(*_parts(df, xcols, ycol, gcols))
    _same_fit(mem, m)
    X, _, g = _parts(ddf, xcols, ycol, gcols)
    mean, sd = m.predict(X, groups=g, return_std=True)
    mean0, sd0 = m.predict(*_parts(df, xcols, ycol, gcols)[::2], return_std=True)
    np.testing.assert_allclose(mean.compute(), mean0, rtol=1e-12)
    np.testing.assert_allclose(sd.compute(), sd0, rtol=1e-10)


def test_fitted_model_pickles_small_and_keeps_inference():
    from sklmm import likelihood_ratio_test

    df = load_sleepstudy()
    ddf = dd.from_pandas(df, npartitions=3)
    X, y, g = ddf[["Days"]], ddf["Reaction"], ddf["Subject"]
    m0 = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
    m1 = MixedLinearRegressor(reml=False, random_slopes=["Days"]).fit(X, y, groups=g)
    blob = pickle.dumps(m1)
    assert b"dask" not in blob and len(blob) < 200_000
    m2 = pickle.loads(blob)
    np.testing.assert_array_equal(m2.predict(df[["Days"]], groups=df["Subject"]),
                                  m1.predict(df[["Days"]], groups=df["Subject"]))
    mem0 = MixedLinearRegressor(reml=False).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    mem1 = MixedLinearRegressor(reml=False, random_slopes=["Days"]).fit(
        df[["Days"]], df["Reaction"], groups=df["Subject"])
    lrt, lrt_mem = likelihood_ratio_test(m0, m1), likelihood_ratio_test(mem0, mem1)
    assert lrt.statistic == pytest.approx(lrt_mem.statistic, rel=1e-6)
    pd.testing.assert_frame_equal(m1.fixed_effects_, mem1.fixed_effects_, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the training rows"):
        m1.simulate()


# ----------------------------------------------------------------------------- predict and score


def test_predict_and_score_on_dask_input():
    df = load_sleepstudy()
    train = df[df["Subject"].astype(str) != "308"]  # predict 308 as an unseen level
    dtrain = dd.from_pandas(train, npartitions=3)
    ddf = dd.from_pandas(df, npartitions=4)
    X, y, g = ddf[["Days"]], ddf["Reaction"], ddf["Subject"]
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(dtrain[["Days"]], dtrain["Reaction"],
                                                          groups=dtrain["Subject"])
    pred = m.predict(X, groups=g)
    assert isinstance(pred, da.Array) and pred.ndim == 1
    want = m.predict(df[["Days"]], groups=df["Subject"])
    np.testing.assert_allclose(pred.compute(), want, rtol=1e-13)
    np.testing.assert_allclose(m.predict(X).compute(), m.predict(df[["Days"]]), rtol=1e-13)
    assert m.score(X, y, groups=g) == pytest.approx(
        r2_score(df["Reaction"], want), rel=1e-12)
    w = ddf["Days"] + 1.0
    assert m.score(X, y, groups=g, sample_weight=w) == pytest.approx(
        r2_score(df["Reaction"], want, sample_weight=df["Days"] + 1.0), rel=1e-12)
    # an in-memory fit predicts Dask input the same way
    mem = MixedLinearRegressor(random_slopes=["Days"]).fit(train[["Days"]], train["Reaction"],
                                                            groups=train["Subject"])
    np.testing.assert_allclose(mem.predict(X, groups=g).compute(),
                               mem.predict(df[["Days"]], groups=df["Subject"]), rtol=1e-13)
    # a model fitted from a formula predicts from the formula's variables, partition by partition
    f = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", train)
    np.testing.assert_allclose(f.predict(ddf, groups=ddf).compute(), f.predict(df, groups=df), rtol=1e-13)
    m.set_params(unseen_groups="error")
    lazy = m.predict(X, groups=g)  # lazy: the error comes with the computation
    with pytest.raises(ValueError, match="not seen in fit.*partition"):
        lazy.compute()


def test_predict_dask_arrays_keeps_chunks():
    df = load_sleepstudy()
    X = da.from_array(df[["Days"]].to_numpy(), chunks=(60, 1))
    g = da.from_array(df["Subject"].astype(str).to_numpy(dtype=object), chunks=60)
    m = MixedLinearRegressor(random_slopes=[0]).fit(X, da.from_array(df["Reaction"].to_numpy(), chunks=60),
                                                     groups=g)
    pred = m.predict(X, groups=g)
    assert pred.chunks == ((60, 60, 60),)
    np.testing.assert_allclose(pred.compute(), m.predict(df[["Days"]].to_numpy(),
                                                         groups=df["Subject"].astype(str).to_numpy()),
                               rtol=1e-13)


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def sleep_dask():
    df = load_sleepstudy()
    return df, dd.from_pandas(df, npartitions=4)


def test_groups_partitioned_differently(sleep_dask):
    _, ddf = sleep_dask
    X, y, g = ddf[["Days"]], ddf["Reaction"], ddf["Subject"]
    with pytest.raises(ValueError, match="different numbers of partitions .*groups has 2"):
        MixedLinearRegressor().fit(X, y, groups=g.repartition(npartitions=2))
    other = dd.from_pandas(load_sleepstudy().set_axis(np.arange(180) + 1000), npartitions=4)["Subject"]
    with pytest.raises(ValueError, match="different divisions"):
        MixedLinearRegressor().fit(X, y, groups=other)
    # same number of partitions, different rows in them: found while reducing
    labels = load_sleepstudy()["Subject"]
    cuts = [0, 40, 90, 140, 180]
    shifted = dd.from_delayed([dask.delayed(labels.iloc[a:b]) for a, b in zip(cuts, cuts[1:])], meta=g._meta)
    with pytest.raises(ValueError, match=r"partition \d of the Dask input: X has 45 rows, y has 45 rows, groups has [45]0 rows"):
        MixedLinearRegressor().fit(X, y, groups=shifted)


def test_bad_values_name_the_partition(sleep_dask):
    df, _ = sleep_dask
    bad = df.copy()
    bad.loc[150, "Days"] = np.nan
    ddf = dd.from_pandas(bad, npartitions=4)
    with pytest.raises(ValueError, match="(?s)Input X contains NaN.*partition 3 of the Dask input"):
        MixedLinearRegressor().fit(ddf[["Days"]], ddf["Reaction"], groups=ddf["Subject"])
    bad = df.astype({"Subject": object})
    bad.loc[[100, 101], "Subject"] = None
    ddf = dd.from_pandas(bad, npartitions=4)
    with pytest.raises(ValueError, match="(?s)2 missing labels.*partition 2"):
        MixedLinearRegressor().fit(ddf[["Days"]], ddf["Reaction"], groups=ddf["Subject"])


def test_errors_found_before_or_after_the_reduction(sleep_dask):
    df, ddf = sleep_dask
    X, y, g = ddf[["Days"]], ddf["Reaction"], ddf["Subject"]
    with pytest.raises(TypeError, match="y is in memory but X, groups Dask"):
        MixedLinearRegressor().fit(X, df["Reaction"], groups=g)
    with pytest.raises(ValueError, match="names 'Hours', which is not a column of X"):
        MixedLinearRegressor(random_slopes=["Hours"]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="'Subject' has a single level"):
        MixedLinearRegressor().fit(X, y, groups=g.where(g.isna(), df["Subject"].iloc[0]).astype(str))
    m = MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.raises(ValueError, match="feature names should match"):
        m.predict(ddf[["Days", "Reaction"]], groups=g)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="X has 2 features, but Mixed"):
        warnings.simplefilter("ignore", UserWarning)  # no feature names; categories to objects
        m.predict(ddf[["Days", "Reaction"]].to_dask_array(lengths=True), groups=g.to_dask_array(lengths=True))
    with pytest.raises(ValueError, match="groups has 2 column"):
        m.predict(X, groups=ddf[["Subject", "Days"]])


def _bad_inputs():
    df = load_sleepstudy()
    df["const"] = 1.0
    df["Subject2"] = df["Subject"]
    df["cell"] = df["Subject"].astype(str) + "_" + (df["Days"] // 2).astype(str)  # 90 cells of 2 rows
    nested = _frame("nested_reml", shuffle=False)[0]
    nested["id"] = nested["outer"].astype(str) + nested["inner"].astype(str)
    big = df.assign(Reaction=df["Reaction"] * 1e101)
    cat = df.assign(Days=df["Days"].astype("category"))
    return {
        "collinear slope": (df, ["Days", "const"], "Reaction", ["Subject"], dict(random_slopes=["const"])),
        "one factor twice": (df, ["Days"], "Reaction", ["Subject", "Subject2"], {}),
        "nested inner to outer": (nested, ["x"], "y", ["id", "outer"], dict(nested=True)),
        "as many effects as rows": (df, ["Days"], "Reaction", ["cell"], dict(random_slopes=["Days"])),
        "huge response": (big, ["Days"], "Reaction", ["Subject"], {}),
        "categorical feature": (cat, ["Days"], "Reaction", ["Subject"], {}),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_dask_fit_refuses_what_the_in_memory_fit_refuses_with_its_message(case):
    df, xcols, ycol, gcols, kw = _bad_inputs()[case]
    with pytest.raises(ValueError) as mem:
        MixedLinearRegressor(**kw).fit(*_parts(df, xcols, ycol, gcols))
    ddf = dd.from_pandas(df, npartitions=3)
    with pytest.raises(ValueError) as dsk:
        MixedLinearRegressor(**kw).fit(*_parts(ddf, xcols, ycol, gcols))
    # per-partition checks add where, and report the partition's largest value, not the column's
    number = re.compile(r"\d+(\.\d+)?(e[+-]\d+)?")
    assert number.sub("#", str(dsk.value)).startswith(number.sub("#", str(mem.value)))


def test_sklmm_imports_and_fits_without_dask():
    code = (
        "import sys\n"
        "for m in ('dask', 'distributed', 'dask.dataframe', 'dask.array'): sys.modules[m] = None\n"
        "import sklmm\n"
        "from sklmm.datasets import load_sleepstudy\n"
        "df = load_sleepstudy()\n"
        "m = sklmm.MixedLinearRegressor().fit(df[['Days']], df['Reaction'], groups=df['Subject'])\n"
        "print(round(m.predict(df[['Days']], groups=df['Subject'])[0], 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("weights", [0.0, -1.0])
def test_dask_score_checks_its_weights_as_the_in_memory_score(sleep_dask, weights):
    _, ddf = sleep_dask
    X, y, g = ddf[["Days"]], ddf["Reaction"], ddf["Subject"]
    m = MixedLinearRegressor().fit(X, y, groups=g)
    w = y * 0.0 + weights
    with pytest.raises(ValueError, match="sample_weight must be positive and finite"):
        m.score(X, y, groups=g, sample_weight=w)
