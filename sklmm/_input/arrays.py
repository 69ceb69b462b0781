"""X, y and weights as the estimators take them: validation, fast paths and the fixes in messages."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

__all__ = ["binary_target", "check_coefficient_range", "check_count", "check_level", "check_sample_weight",
           "check_response", "mixed_labels", "positive_number",
           "_empty_frame_as_array", "_plain_valid_inputs", "_plain_fitted_input", "_reject_label_columns",
           "_check_magnitude"]


def _empty_frame_as_array(X):
    """A DataFrame without columns as an (n, 0) float array (pandas gives it no dtype)."""
    if isinstance(X, pd.DataFrame) and X.shape[1] == 0:
        return np.empty((X.shape[0], 0))
    return X


#: scikit-learn validation messages and the fix sklmm appends to them
_VALIDATION_HINTS = [
    ("could not convert string to float",
     "X and y must be numeric: encode categorical features first (OneHotEncoder in a "
     "ColumnTransformer, or pandas.get_dummies), and pass group labels as groups=, not as a "
     "column of X."),
    ("inconsistent numbers of samples",
     "X, y (and groups) need one row per observation, in the same order."),
    ("0 sample(s)", "Pass at least 2 observations to fit (and 1 row to predict)."),
    ("0 feature(s)",
     "Give X at least one column, or pass groups= to fit an intercept-only mixed model."),
    ("Input y contains NaN",
     "Drop the rows with a missing response (as lme4's na.omit does) before fitting."),
    ("contains infinity", "Fix or drop the rows with infinite values."),
    ("y should be a 1d array", "sklmm models one response: pass y as a 1-D array or Series."),
    ("feature names should match", "Pass X with the columns used in fit, in the same order."),
]


#: magnitudes whose squares, summed over the rows, stay far inside the float range
_MAX_MAGNITUDE = 1e100


_MIN_MAGNITUDE = 1e-100


def _reject_label_columns(X):
    """pandas categorical columns of X are labels, and datetime or duration columns are not
    numbers to fit either: refuse them with the fix."""
    if isinstance(X, pd.DataFrame):
        cat = [str(c) for c, dt in X.dtypes.items() if isinstance(dt, pd.CategoricalDtype)]
        if cat:
            raise ValueError(
                f"X has categorical column(s) {cat[:10]}: features must be numeric. Encode them "
                "first (OneHotEncoder in a ColumnTransformer, or pandas.get_dummies); if they are "
                "grouping factors, pass them as groups= instead of in X."
            )
        times = [str(c) for c, dt in X.dtypes.items() if getattr(dt, "kind", None) in ("m", "M")]
    else:
        times = ["(the array)"] if getattr(getattr(X, "dtype", None), "kind", None) in ("m", "M") else []
    if times:
        raise ValueError(
            f"X has datetime or time-duration column(s) {times[:10]}: features must be numeric. "
            "Convert them first, e.g. days since a reference date: "
            "(X[col] - X[col].min()) / pd.Timedelta(days=1)."
        )


def _plain_numeric_frame(X):
    """``(values, column names)`` of a DataFrame of numpy numeric columns named by ``str``, else None.

    Its names are the ``feature_names_in_`` scikit-learn would set (it keeps names only when
    every label is exactly a ``str``).
    """
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        return None
    if not all(type(c) is str for c in X.columns):
        return None
    if not all(isinstance(dt, np.dtype) and dt.kind in "fiu" for dt in X.dtypes):
        return None
    return X.to_numpy(dtype=np.float64), np.asarray(X.columns, dtype=object)


def _plain_X(X):
    """``(X as float64, feature names or None)`` for a 2-D numeric ndarray (no names) or a plain
    numeric DataFrame (:func:`_plain_numeric_frame`), else None."""
    if type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind in "fiu":
        return np.asarray(X, dtype=np.float64), None
    return _plain_numeric_frame(X)


def _plain_valid_inputs(X, y):
    """``(X as float64, y, feature names or None)`` when the training data need no conversion
    or checks beyond finiteness, else None.

    That is: X a 2-D numeric ndarray or a plain numeric DataFrame (:func:`_plain_numeric_frame`)
    with at least one row and one column, y a 1-D numeric ndarray of the same length, every
    value finite. scikit-learn's ``validate_data`` returns the same arrays for them, at several
    times the cost (about 0.3 ms of a 2.6 ms sleepstudy fit); everything else goes through it,
    and it writes the error messages.
    """
    plain = _plain_X(X)
    if plain is None:
        return None
    X, names = plain
    if not (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "fiu"):
        return None
    if X.shape[0] < 1 or X.shape[1] < 1 or y.shape[0] != X.shape[0]:
        return None
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        return None
    return X, y, names


def _plain_fitted_input(X, n_features, names):
    """X as float64 when data for a fitted estimator need no conversion or checks beyond
    finiteness, else None: a 2-D numeric ndarray where the fit had no feature names, or a plain
    numeric DataFrame (:func:`_plain_numeric_frame`) with the fitted names in their order; with
    ``n_features`` columns, at least one row and every value finite.

    scikit-learn's ``validate_data(reset=False)`` returns the same array for them at many times
    the cost (about 0.4 ms of a 1.3 ms prediction on sleepstudy); everything else goes through
    it, and it writes the error messages and the warnings about names.
    """
    plain = _plain_X(X)
    if plain is None or (plain[1] is None) != (names is None):  # (names gained or lost: warned)
        return None
    X, given = plain
    if given is not None and not np.array_equal(given, names):
        return None
    if X.shape[0] < 1 or X.shape[1] < 1 or X.shape[1] != n_features or not np.isfinite(X).all():
        return None
    return X


def _check_magnitude(A, what, names):
    """Refuse columns whose values would over- or underflow the cross-products (squares)."""
    if A.size == 0:
        return
    top = np.abs(A).max(axis=0)
    for j in np.flatnonzero((top > _MAX_MAGNITUDE) | ((top > 0) & (top < _MIN_MAGNITUDE))):
        col = what if what == "y" else f"X column {names[j]!r}"
        raise ValueError(
            f"{col} has values of magnitude {top[j]:.3g}: sklmm needs magnitudes between "
            f"{_MIN_MAGNITUDE:g} and {_MAX_MAGNITUDE:g}, because the fit is built from sums of "
            "squares that would overflow or underflow. Rescale it (multiply by a power of 10); "
            "the fit is equivariant to the scale of y and of each feature."
        )


def check_coefficient_range(X, y, names):
    """Refuse features whose coefficient would be beyond 1e+-100: the ratio of y's magnitude to
    a column's (its coefficient's order) squared in the coefficients' covariance would over- or
    underflow, though X and y are each within range."""
    if X.size == 0 or y.size == 0:
        return
    top_y = float(np.abs(y).max())
    top = np.abs(X).max(axis=0)
    if not top_y > 0:
        return
    with np.errstate(divide="ignore", over="ignore"):
        ratio = top_y / top
    for j in np.flatnonzero((top > 0) & ((ratio > _MAX_MAGNITUDE) | (ratio < _MIN_MAGNITUDE))):
        raise ValueError(
            f"X column {names[j]!r} (magnitude {top[j]:.3g}) and y (magnitude {top_y:.3g}) differ by "
            f"a factor {ratio[j]:.3g}: its coefficient would be of that order and its variance "
            f"beyond the float range. Rescale the column or y (multiply by a power of 10) so that "
            f"they differ by less than {_MAX_MAGNITUDE:g}; the fit is equivariant to both scales."
        )


def check_level(level):
    """A confidence or coverage level: a number strictly between 0 and 1."""
    if not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1 (e.g. 0.95); got {level!r}.")
    return float(level)


def positive_number(v):
    """Whether v is a real number above 0 (not a bool, a string or NaN)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0


def check_count(value, name, minimum):
    """A whole number of at least ``minimum`` (a grid's points, permutations), or a clear error."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}; got {value!r}.")
    return int(value)


def check_sample_weight(sample_weight, n_samples, case_weights=False):
    """Prior weights: None, or positive finite numbers, one per row (fit, score and the Dask
    partitions use this one check). ``case_weights`` (GLMMs: a weight counts a row that many
    times) also allows zeros, rows that count for nothing, as scikit-learn's estimators do."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight has shape {w.shape} but X has {n_samples} rows; pass one weight per row."
        )
    try:
        w = w.astype(float)
    except (TypeError, ValueError):
        raise ValueError("sample_weight must be numeric (prior weights, one per row).") from None
    if case_weights:
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise ValueError(
                "sample_weight must be finite and non-negative, and not all zero (case weights: "
                "a weight w counts the row w times)."
            )
        return w
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(
            "sample_weight must be positive and finite (they are prior weights: residual "
            "variance sigma^2 / weight); a weight of zero is not allowed: drop those rows instead."
        )
    return w


def check_response(y, n_samples=None, what="y"):
    """y as a 1-D float array, or a clear error: dates and durations are not numbers to fit."""
    arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    kind = getattr(getattr(y, "dtype", None), "kind", None) or arr.dtype.kind
    if kind == "O":  # datetimes as objects (tz-aware, or a list of them)
        inferred = pd.api.types.infer_dtype(arr.ravel(), skipna=True)
        if inferred in ("datetime", "datetime64", "date"):
            kind = "M"
        elif inferred.startswith("timedelta"):
            kind = "m"
    if kind in ("m", "M"):
        raise ValueError(
            f"{what} holds {'datetimes' if kind == 'M' else 'time durations'} ({getattr(y, 'dtype', arr.dtype)}); "
            "sklmm models a numeric response: convert it first (e.g. days since a reference date, "
            "(y - y.min()) / np.timedelta64(1, 'D'))."
        )
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} should be a 1d array; got shape {arr.shape}.")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{what} has {arr.shape[0]} rows but X has {n_samples}; pass one value per row.")
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric; got values of dtype {arr.dtype}.") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Input {what} contains NaN or infinity; drop or fix those rows.")
    return arr


def mixed_labels(values):
    """``(a text label, another label)`` where object labels mix text with other types (numbers:
    they cannot be sorted together), else None."""
    values = np.asarray(values, dtype=object) if getattr(values, "dtype", None) == object else None
    if values is None:
        return None
    text = np.array([isinstance(v, str) for v in values], dtype=bool)
    return (values[np.argmax(text)], values[np.argmin(text)]) if text.any() and not text.all() else None


def binary_target(y, estimator):
    """``(classes, y01)``: the two class labels of a binary classifier's y (sorted; the second
    is the positive class) and y as 0/1 floats, or a clear error for one class, more than two,
    or continuous values (binomial proportions are 0/1 rows weighted by successes and
    failures)."""
    y = column_or_1d(np.asarray(y) if not isinstance(y, pd.Series) else y.to_numpy(), warn=True)
    if y.dtype.kind in "OfU":  # (labels as objects or floats may be missing: None, NaN, pd.NA)
        missing = np.flatnonzero(pd.isna(y))
        if missing.size:
            raise ValueError(
                f"y has {missing.size} missing label(s) (None, NaN or NA; rows {missing[:5].tolist()}): "
                "drop those rows before fitting, as lme4's na.omit does."
            )
    mixed = mixed_labels(y)
    if mixed:
        raise ValueError(f"y mixes text and other labels (e.g. {mixed[0]!r} and {mixed[1]!r}): give the "
                         "two classes labels of one type, e.g. y.astype(str).")
    try:
        check_classification_targets(y)
    except ValueError as e:
        if type_of_target(y, input_name="y") != "continuous":
            raise
        builds = ("" if estimator == "PenalizedSplineClassifier"  # (a GAM formula has one response)
                  else ", which from_formula builds from 'cbind(successes, failures) ~ ...'")
        raise ValueError(
            f"{e} {estimator} takes two class labels; binomial proportions are two rows per "
            "observation (y = 1 weighted by the successes, y = 0 by the failures, as "
            f"sample_weight){builds}."
        ) from None
    if y.shape[0] == 0:
        raise ValueError("y has 0 sample(s) (shape=(0,)) while a minimum of 2 is required to fit.")
    classes = np.unique(y)
    if len(classes) > 2:
        raise ValueError(
            f"Only binary classification is supported. The type of the target is "
            f"{type_of_target(y, input_name='y')}: {len(classes)} classes ({classes[:5].tolist()}). "
            "For binomial proportions use 0/1 rows with sample_weight (successes and failures)."
        )
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}): with one class there is nothing to "
                         "classify; a classifier needs samples of both classes.")
    return classes, (y == classes[1]).astype(float)
