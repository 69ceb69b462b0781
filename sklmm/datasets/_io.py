"""Reading the bundled CSV files, and the ``return_X_y`` split, shared by all loaders."""

from importlib.resources import files

import numpy as np
import pandas as pd


def _load(filename, categorical=()):
    """Read ``data/<filename>``; make ``categorical`` columns categories.

    ``categorical`` is a sequence of column names, whose categories are the
    sorted labels, or a dict ``{name: order}`` that also gives each column's
    category order: a list of the levels (R's factor levels, in R's order),
    ``int`` for integer labels in increasing numeric order (``"1"``, ``"2"``,
    ..., ``"10"``, as R orders such factors), or ``None`` for sorted labels.
    A label that is not among the given levels is an error, not a missing value.

    Every cell is read as text and numbers are converted with Python's
    correctly rounded ``float``, so the values are bit-for-bit the doubles
    that R wrote (the CSVs hold round-trip representations).
    """
    order = categorical if isinstance(categorical, dict) else dict.fromkeys(categorical)
    resource = files("sklmm.datasets") / "data" / filename
    with resource.open("r", encoding="utf-8") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    df = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for name in raw.columns:
        values = raw[name].tolist()
        if name in order:
            levels = order[name]
            if levels is None:
                levels = sorted(set(values))
            elif levels is int:
                levels = sorted(set(values), key=int)
            else:
                levels = list(levels)
                unknown = sorted(set(values) - set(levels))
                if unknown:
                    raise ValueError(f"{filename}: column {name!r} has labels {unknown} "
                                     f"that are not among its levels {levels}")
            df[name] = pd.Categorical(values, categories=levels)
        else:
            df[name] = np.array(
                [float("nan") if v == "NA" else float(v) for v in values],
                dtype=np.float64,
            )
    return df


def _split(df, target, features, groups, return_X_y, as_frame):
    """The frame, or ``(X, y[, groups])`` as scikit-learn's ``return_X_y`` loaders give them."""
    if not return_X_y:
        return df if as_frame else df.to_numpy()
    X, y = df[list(features)], df[target]
    g = None if not groups else (df[groups[0]] if len(groups) == 1 else df[list(groups)])
    if not as_frame:
        X, y = X.to_numpy(dtype=float), y.to_numpy(dtype=float)
        g = None if g is None else g.to_numpy(dtype=object)
    return (X, y) if g is None else (X, y, g)
