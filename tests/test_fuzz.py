"""Fuzz: random shapes, dtypes and label types into fit and predict of both estimators.

Every call must either succeed with finite results or raise a ValueError whose message is one of
the documented ones (docs/reliability.md); anything else (another exception, a RuntimeWarning
from a silent NaN or overflow, which the pytest configuration turns into an error, or a
non-finite estimate) is a bug. Hypothesis draws the structure (sizes, kinds of data and labels,
estimator options) and a seed for the values; ``derandomize=True`` keeps CI deterministic.
"""

import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sklmm import MixedLinearRegressor, PenalizedSplineRegressor

#: the errors a user can get from fit / predict on bad input (one row each in docs/reliability.md)
DOCUMENTED = [
    r"Found input variables with inconsistent numbers of samples",
    r"groups has \d+ rows but X has \d+",
    r"Found array with 0 sample\(s\)",
    r"Found array with 0 feature\(s\)",
    r"n_samples = \d+: fitting a .*needs at least 2 observations",
    r"Input (X|y) contains (NaN|infinity)",
    r"could not convert string to float",
    r"X has categorical column\(s\)",
    r"missing labels \(NaN/None\)",
    r"infinite labels \(inf/-inf\)",
    r"has a single level",
    r"levels for \d+ observations",
    r"random effects for \d+ observations",
    r"random coefficients of .* are \(nearly\) collinear",
    r"group the rows identically",
    r"must subdivide the one before it",
    r"not seen in fit",
    r"groups has \d+ column\(s\) but the model was fitted with",
    r"X has \d+ features, but \w+ is expecting \d+ features",
    r"feature names should match those that were passed during fit",
    r"y is fitted exactly by the (fixed|model)",
    r"lists \[.*\] more than once",
    r"REML needs more observations",
    r"needs at least \d+ distinct values",
    r"a smooth needs at least 3",
    r"has values of magnitude",
    r"y should be a 1d array",
    r"Expected 2D array",
]
_DOCUMENTED = re.compile("|".join(f"(?:{p})" for p in DOCUMENTED))

#: SKLMM_HYPOTHESIS_EXAMPLES=n runs n random (not derandomized) examples instead
DEEP = int(os.environ.get("SKLMM_HYPOTHESIS_EXAMPLES", "0"))
FUZZ = settings(max_examples=DEEP or 300, deadline=None, derandomize=not DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

X_KINDS = ["float64", "float32", "int64", "bool", "object", "frame", "nullable", "dup"]
Y_KINDS = ["float", "int", "object", "nullable"]
LABEL_KINDS = ["int", "str", "float", "bool", "category", "object", "tuple", "nullable_int",
               "string_dtype", "datetime"]
#: at most one defect per example; None (no defect) is drawn about half of the time
DEFECTS = [None] * 16 + [
    "x:str", "x:category", "x:nan", "x:inf", "x:pd_na", "x:huge", "x:tiny", "y:constant",
    "y:nan", "y:inf", "y:2d", "y:bool", "y:huge", "g:missing", "g:nan", "g:inf", "g:pd_na",
    "len:y", "len:g", "tiny", "no_features", "predict:group_columns",
]


def _labels(kind, codes, rng):
    """Group labels of one kind for integer codes (distinct codes give distinct labels)."""
    if kind == "int":
        return codes * 7 - 3
    if kind == "str":
        return np.array([f"g{c}" for c in codes], dtype=object)
    if kind == "float":
        return codes / 3.0 + 0.5
    if kind == "bool":
        return codes % 2 == 0
    if kind == "category":
        cats = [f"c{c}" for c in rng.permutation(int(codes.max(initial=0)) + 3)]  # unused ones too
        return pd.Categorical([f"c{c}" for c in codes], categories=cats)
    if kind == "object":  # ints, strings and floats side by side ("1" and 1 are different labels)
        return np.array([[c, str(c), c + 0.25][c % 3] for c in codes], dtype=object)
    if kind == "tuple":
        return pd.Series([(c % 2, c // 2) for c in codes], dtype=object)
    if kind == "nullable_int":
        return pd.array(codes * 2, dtype="Int64")
    if kind == "string_dtype":
        return pd.array([f"s{c}" for c in codes], dtype="string")
    if kind == "datetime":
        return pd.to_datetime("2024-01-01") + pd.to_timedelta(codes, unit="D")
    if kind == "pd_na":
        lab = pd.array(codes, dtype="Int64")
        if len(lab):
            lab[rng.integers(len(lab))] = pd.NA
        return lab
    lab = np.array([f"g{c}" for c in codes], dtype=object) if kind == "missing" else codes.astype(float)
    if len(lab):
        lab[rng.integers(len(lab))] = {"missing": None, "nan": np.nan, "inf": np.inf}[kind]
    return lab


def _features(kind, n, p, rng):
    Z = rng.normal(size=(n, p))
    if kind == "float64":
        return Z
    if kind == "float32":
        return Z.astype(np.float32)
    if kind == "int64":
        return rng.integers(-3, 4, size=(n, p))
    if kind == "bool":
        return Z > 0
    if kind == "object":
        return Z.astype(object)
    if kind == "frame":
        return pd.DataFrame({f"f{j}": (Z[:, j] if j % 2 == 0 else np.round(Z[:, j] * 3).astype(int))
                             for j in range(p)})
    if kind == "str":
        return np.array([[f"s{int(v > 0)}" for v in row] for row in Z], dtype=object).reshape(n, p)
    if kind == "category":
        return pd.DataFrame({f"f{j}": pd.Categorical(np.where(Z[:, j] > 0, "a", "b")) for j in range(p)})
    if kind == "nullable":
        return pd.DataFrame({f"f{j}": pd.array(Z[:, j], dtype="Float64") for j in range(p)})
    if kind == "pd_na":
        df = pd.DataFrame({f"f{j}": pd.array(Z[:, j], dtype="Float64") for j in range(p)})
        if n and p:
            df.iloc[rng.integers(n), rng.integers(p)] = pd.NA
        return df
    if kind == "dup":  # a repeated column: rank-deficient fixed effects
        return np.column_stack([Z, Z[:, :1]])
    if kind in ("huge", "tiny"):
        return Z * (1e120 if kind == "huge" else 1e-120)
    Z = Z.copy()
    if n and p:
        Z[rng.integers(n), rng.integers(p)] = np.nan if kind == "nan" else np.inf
    return Z


def _response(kind, n, rng, codes):
    y = rng.normal(size=n) + rng.normal(size=int(codes.max(initial=0)) + 1)[codes]
    if kind == "int":
        return np.round(3 * y).astype(int)
    if kind == "bool":
        return y > 0
    if kind == "object":
        return y.astype(object)
    if kind == "constant":
        return np.full(n, 2.5)
    if kind == "2d":
        return np.column_stack([y, y])
    if kind == "huge":
        return y * 1e150
    if kind == "nullable":
        return pd.array(y, dtype="Float64")
    if kind in ("nan", "inf") and n:
        y = y.copy()
        y[rng.integers(n)] = np.nan if kind == "nan" else -np.inf
    return y


@st.composite
def problems(draw):
    defect = draw(st.sampled_from(DEFECTS))
    n = draw(st.integers(0, 3)) if defect == "tiny" else draw(st.integers(4, 40))
    p = 0 if defect == "no_features" else draw(st.integers(1, 3))
    two_factors = draw(st.booleans())
    return dict(
        defect=defect, n=n, p=p, two_factors=two_factors,
        n_levels=draw(st.sampled_from([1, max(n, 1), max(n - 1, 1), 2]) if draw(st.integers(0, 9)) == 0
                      else st.integers(2, max(n // 3, 2))),
        seed=draw(st.integers(0, 2**32 - 1)),
        x_kind=defect[2:] if defect and defect.startswith("x:") else draw(st.sampled_from(X_KINDS)),
        gam_x_kind=draw(st.sampled_from(["float64", "float32", "object", "frame", "int64"])),
        y_kind=defect[2:] if defect and defect.startswith("y:") else draw(st.sampled_from(Y_KINDS)),
        label_kind=defect[2:] if defect and defect.startswith("g:") else draw(st.sampled_from(LABEL_KINDS)),
        label_kind2=draw(st.sampled_from(LABEL_KINDS[:6])),
        gam=draw(st.booleans()),
        slopes=draw(st.booleans()),
        nested=two_factors and draw(st.booleans()),
        reml=draw(st.booleans()),
        n_new=draw(st.integers(0, 12)),
        p_new_extra=draw(st.sampled_from([0, 0, 0, 1])),
        unseen_error=draw(st.booleans()),
        new_label_kind=draw(st.sampled_from(["same", "unseen", "other"])),
    )


def _documented(exc):
    return isinstance(exc, ValueError) and _DOCUMENTED.search(str(exc)) is not None


def _call(fn):
    """Run fn; a documented ValueError returns None, anything else propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", RuntimeWarning)  # a silent NaN or overflow is a bug
        try:
            return fn(), None
        except ValueError as e:
            if not _documented(e):
                raise AssertionError(f"undocumented error message: {e}") from e
            return None, e


@FUZZ
@given(problems())
def test_fit_and_predict_fail_only_with_documented_errors(pb):
    rng = np.random.default_rng(pb["seed"])
    n, p = pb["n"], pb["p"]
    codes = rng.integers(pb["n_levels"], size=n)
    if pb["gam"] and pb["defect"] is None:  # splines need many distinct values: mostly floats
        pb["x_kind"] = pb["gam_x_kind"]
    X = _features(pb["x_kind"], n, p, rng)
    y = _response(pb["y_kind"], n, rng, codes)
    g = _labels(pb["label_kind"], codes, rng)
    if pb["two_factors"]:
        codes2 = rng.integers(max(pb["n_levels"] // 2, 2), size=n)
        g = pd.DataFrame({"a": g, "b": _labels(pb["label_kind2"], codes2, rng)})
    if pb["defect"] == "len:y":
        y = y[: n - 1]
    elif pb["defect"] == "len:g":
        g = g[1:]
    if pb["gam"]:
        est = PenalizedSplineRegressor(n_basis=4, reml=pb["reml"],
                                       smooth_features=[0] if p > 1 else None,
                                       random_slopes=[p - 1] if pb["slopes"] and p > 1 else None,
                                       nested=pb["nested"],
                                       unseen_groups="error" if pb["unseen_error"] else "population")
    else:
        est = MixedLinearRegressor(reml=pb["reml"], random_slopes=[0] if pb["slopes"] and p else None,
                                   nested=pb["nested"],
                                   unseen_groups="error" if pb["unseen_error"] else "population")
    fitted, err = _call(lambda: est.fit(X, y, groups=g))
    event("fit: " + ("ok" if err is None else _DOCUMENTED.search(str(err)).group(0)[:40]))
    if err is not None:
        return
    for name in ("theta_", "sigma_", "intercept_", "coef_", "criterion_"):
        assert np.all(np.isfinite(getattr(fitted, name))), name
    assert fitted.sigma_ > 0
    # predict on new rows: same or other width, seen, unseen or other-typed labels
    m = pb["n_new"]
    x_kind = pb["x_kind"] if pb["x_kind"] in X_KINDS else "float64"
    X_new = _features(x_kind, m, p + pb["p_new_extra"], rng)
    new_codes = rng.integers(pb["n_levels"] + (3 if pb["new_label_kind"] == "unseen" else 0), size=m)
    kind = pb["label_kind"] if pb["new_label_kind"] != "other" else "str"
    g_new = _labels(kind, new_codes, rng)
    if pb["two_factors"] != (pb["defect"] == "predict:group_columns"):
        g_new = pd.DataFrame({"a": g_new, "b": _labels(pb["label_kind2"], rng.integers(2, size=m), rng)})
    for groups in (None, g_new):
        pred, err = _call(lambda: fitted.predict(X_new, groups=groups))
        event("predict: " + ("ok" if err is None else _DOCUMENTED.search(str(err)).group(0)[:40]))
        if err is None:
            assert pred.shape == (m,) and np.all(np.isfinite(pred))
    # the training rows themselves: conditional predictions are finite and differ from
    # the population ones only through the random effects
    pred, err = _call(lambda: fitted.predict(X, groups=g))
    assert err is None, err
    assert pred.shape == (n,) and np.all(np.isfinite(pred))


@FUZZ
@given(st.data())
def test_groups_of_any_label_type_give_the_fit_of_their_integer_codes(data):
    """Whatever the labels' type, the fit is that of their integer codes (same partition)."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    kind = data.draw(st.sampled_from(["int", "str", "float", "bool", "category", "object", "tuple"]))
    rng = np.random.default_rng(seed)
    n_levels = 2 if kind == "bool" else data.draw(st.integers(2, 6))
    n = data.draw(st.integers(n_levels + 3, 30))
    codes = np.r_[np.arange(n_levels), rng.integers(n_levels, size=n - n_levels)]
    X = rng.normal(size=(n, 1))
    y = X[:, 0] + rng.normal(size=n_levels)[codes] + rng.normal(size=n)
    labels = _labels(kind, codes, rng)
    if kind == "tuple":  # only 4 distinct tuples: recode the reference to the same partition
        codes = np.unique(np.asarray([str(t) for t in labels]), return_inverse=True)[1]
    ref, err_ref = _call(lambda: MixedLinearRegressor().fit(X, y, groups=codes))
    got, err = _call(lambda: MixedLinearRegressor().fit(X, y, groups=labels))
    assert (err is None) == (err_ref is None), (err, err_ref)
    if err is not None:
        return
    assert got.criterion_ == pytest.approx(ref.criterion_, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(got.predict(X, groups=labels), ref.predict(X, groups=codes),
                               rtol=1e-6, atol=1e-6 * np.std(y))
