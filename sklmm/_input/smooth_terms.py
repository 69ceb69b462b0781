"""The smooths of a penalized spline model from its parameters (or its formula's): which
features get a smooth, with which basis, dimension and knots; each per-feature setting given
as one value or a dict keyed by feature name (or index), unknown keys refused."""

from __future__ import annotations

import numbers

from .._engine.smooth import BASES, SmoothTerm

__all__ = ["per_feature", "check_feature_keys", "make_smooths"]


def per_feature(est, value, name, j):
    """A per-feature setting: the value, or a dict's entry for this feature (by name, or by
    integer label or position)."""
    if isinstance(value, dict):
        labels = getattr(est, "_column_labels", None)
        for key in (name, j if labels is None else labels[j]):
            if key in value:
                return value[key]
        return None
    return value


def check_feature_keys(est, structure, cols, names):
    """Every dict keyed by smooth feature (n_basis, basis, knots, smoothing_params) names
    smooth features only: a misspelt key would otherwise fall back to the default."""
    labels = getattr(est, "_column_labels", None)
    valid = {names[j] for j in cols} | (set(cols) if labels is None else {labels[j] for j in cols})
    for param in ("n_basis", "basis", "knots", "smoothing_params"):
        value = structure[param] if param in structure else getattr(est, param)
        if isinstance(value, dict):
            unknown = [k for k in value if k not in valid]
            if unknown:
                raise ValueError(
                    f"{param} has keys {unknown} that are not smooth features (the smooth "
                    f"features: {[names[j] for j in cols]}); keys are feature names or indices."
                )


def make_smooths(est, X):
    names = est._feature_names()
    structure = est._structure  # the parameters, or what the formula says
    cols = (
        list(range(X.shape[1]))
        if structure["smooth_features"] is None
        else est._column_index(structure["smooth_features"], names, "smooth_features")
    )
    repeated = sorted({names[j] for j in cols if cols.count(j) > 1})
    if repeated:
        raise ValueError(
            f"smooth_features lists {repeated} more than once; a feature has one smooth (two "
            "identical smooths are not identifiable)."
        )
    check_feature_keys(est, structure, cols, names)
    smooths, designs = [], []
    for j in cols:
        nm = names[j]
        k = per_feature(est, structure["n_basis"], nm, j)
        k = 10 if k is None else k
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise ValueError(f"n_basis must be an int or a dict of ints; got {k!r} for {nm!r}.")
        b = per_feature(est, structure["basis"], nm, j) or "cr"
        if b not in BASES:
            raise ValueError(f"basis must be one of {BASES} (or a dict of them); got {b!r} for {nm!r}.")
        knots = per_feature(est, est.knots or {}, nm, j)
        sm = SmoothTerm(f"s({nm})", j, b, k, knots)
        designs.append(sm.fit_design(X[:, j]))
        smooths.append(sm)
    linear = [j for j in range(X.shape[1]) if j not in cols]
    return smooths, linear, designs
