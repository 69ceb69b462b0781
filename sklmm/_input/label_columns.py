"""Group labels that travel as columns of X (the estimators' ``group_columns``).

With ``group_columns`` the label columns are taken out of X before X is validated as features,
and used as ``groups``: every scikit-learn tool that passes X along (``cross_val_predict``,
scorers, ``permutation_importance``, ``PartialDependenceDisplay``, ``Pipeline`` with routing off)
then predicts conditionally, with no metadata routing at all.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .groups import as_group_frame

__all__ = ["check_group_columns", "split_label_columns"]


def check_group_columns(group_columns):
    """``group_columns`` as a list (None stays None); a single name is a list of one."""
    if group_columns is None:
        return None
    if isinstance(group_columns, (str, numbers.Integral)) and not isinstance(group_columns, bool):
        group_columns = [group_columns]
    if not isinstance(group_columns, (list, tuple)) or not group_columns:
        raise ValueError(
            "group_columns must be None, a column name, or a non-empty list of the names (or, "
            f"for an array X, positions) of the columns of X holding group labels; got {group_columns!r}."
        )
    out = list(group_columns)
    if len(set(map(repr, out))) < len(out):
        raise ValueError(f"group_columns lists a column more than once: {out}.")
    return out


def _same_labels(a, b):
    """Whether two group frames hold the same labels row by row (compared as text)."""
    if a.shape != b.shape:
        return False
    return all(np.array_equal(a.iloc[:, j].astype(str).to_numpy(), b.iloc[:, j].astype(str).to_numpy())
               for j in range(a.shape[1]))


def split_label_columns(X, group_columns, groups=None):
    """``(X without the label columns, groups frame)`` for an X that holds group labels.

    For a DataFrame the columns are named (integer labels are names, never positions); for an
    array they are positions. ``groups`` given as well must hold the same labels.
    """
    if hasattr(type(X), "__dask_graph__"):  # a Dask DataFrame: split lazily by name
        missing = [c for c in group_columns if c not in X.columns]
        if missing or not hasattr(X, "drop"):
            raise ValueError(
                f"X lacks the group column(s) {missing} named in group_columns; with Dask pass a "
                "Dask DataFrame holding them (or groups= instead of group_columns)."
            )
        labels = X[group_columns]
        if groups is not None:
            raise ValueError("pass group labels either in X (group_columns) or as groups=, not both, with Dask input.")
        return X.drop(columns=group_columns), labels
    if isinstance(X, pd.DataFrame):
        missing = [c for c in group_columns if c not in X.columns]
        if missing:
            raise ValueError(
                f"X lacks the group column(s) {missing} named in group_columns (its columns: "
                f"{list(X.columns)[:20]}); pass X with the label columns (in a ColumnTransformer, "
                "let them through with remainder='passthrough' and pandas output)."
            )
        labels = X[group_columns].reset_index(drop=True)
        features = X.drop(columns=group_columns)
    else:
        if hasattr(X, "to_pandas") and hasattr(X, "columns"):  # polars and the like: by name
            return split_label_columns(X.to_pandas(), group_columns, groups)
        arr = np.asarray(X, dtype=object) if not hasattr(X, "dtype") else np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D to hold group columns; got {arr.ndim} dimension(s).")
        bad = [c for c in group_columns if not isinstance(c, numbers.Integral) or not 0 <= c < arr.shape[1]]
        if bad:
            raise ValueError(
                f"group_columns {bad} are not column positions of this X (an array with "
                f"{arr.shape[1]} columns): for an array X give positions; names need a DataFrame."
            )
        # named as groups= names an array's columns ("group", or "group0", "group1", ...): not
        # "x<position>", which the remaining features' names ("x0", "x1", ...) would reuse
        names = ["group"] if len(group_columns) == 1 else [f"group{k}" for k in range(len(group_columns))]
        labels = pd.DataFrame({nm: arr[:, c] for nm, c in zip(names, group_columns)})
        keep = [j for j in range(arr.shape[1]) if j not in set(group_columns)]
        features = arr[:, keep]
        if features.dtype == object:
            features = features.astype(float)
    labels.columns = [str(c) for c in labels.columns]
    if groups is not None:
        given = as_group_frame(groups, len(labels))
        if not _same_labels(given.to_pandas(), labels):
            raise ValueError(
                f"groups disagrees with the label columns {group_columns} of X: pass group labels "
                "one way (group_columns, or groups=), or the same labels both ways."
            )
    return features, labels
