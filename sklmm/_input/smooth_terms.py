"""The smooth terms of a penalized spline model: how users give them, and their fitted designs.

Terms are given as objects written like mgcv's (``smooths=[s("x", bs="cr"), te("x", "z"),
s("x", by="f")]``, importable from ``sklmm``), by a formula (which makes the same objects), or
by the older per-feature parameters (``smooth_features``, ``n_basis``, ``basis``, ``knots``,
``smoothing_params``; turned into ``s(...)`` objects here, so there is one path). Each becomes
one or more :class:`FittedSmooth` (a factor ``by`` gives one per level): the engine's basis
(:class:`~sklmm._engine.smooth.SmoothTerm` or :class:`~sklmm._engine.tensor.TensorSmooth`),
the columns of X it reads, its fixed (null-space) and random columns, and its smoothing
parameters.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._engine.factor_smooth import FS_BASES, FactorSmooth
from .._engine.smooth import BASES, SmoothTerm
from .._engine.tensor import MARGIN_BASES, TensorSmooth
from .._engine.threads import free_cpus, single_threaded_blas
from .arrays import mixed_labels, positive_number

__all__ = ["Smooth", "s", "te", "ti", "FittedSmooth", "FittedFactorSmooth", "make_smooths", "per_feature", "check_feature_keys",
           "encode_by_factors", "LEGACY_DEFAULTS"]

#: mgcv's default basis dimension of a thin plate spline of d variables
TP_DEFAULT_K = {1: 10, 2: 30, 3: 110}

#: the per-feature parameters and their defaults (``smooths`` replaces them)
LEGACY_DEFAULTS = dict(smooth_features=None, n_basis=10, basis="cr", knots=None, smoothing_params=None)


@dataclass(frozen=True, eq=True, repr=False)
class Smooth:
    """One smooth term as mgcv writes it; made by :func:`s`, :func:`te` and :func:`ti`."""

    kind: str
    features: tuple
    k: object = None
    bs: object = None
    by: object = None
    knots: object = None
    sp: object = None
    xt: object = None

    def __repr__(self):
        args = [repr(f) for f in self.features]
        args += [f"{a}={getattr(self, a)!r}" for a in ("k", "bs", "by", "knots", "sp", "xt")
                 if getattr(self, a) is not None]
        return f"{self.kind}({', '.join(args)})"


def _features(kind, features):
    if not features:
        raise ValueError(f"{kind}() needs at least one feature: {kind}('x').")
    for f in features:
        if not isinstance(f, (str, numbers.Integral)) or isinstance(f, bool):
            raise ValueError(f"{kind}(): features are column names or positions; got {f!r}.")
    if len(set(features)) < len(features):
        raise ValueError(f"{kind}{tuple(features)} names a feature twice.")
    return tuple(features)


def _positive(value, what):
    if value is None:
        return None
    vals = np.atleast_1d(np.asarray(value, dtype=float))
    if not np.all(vals > 0):
        raise ValueError(f"{what} must be positive; got {value!r}.")
    return tuple(float(v) for v in vals) if np.ndim(value) else float(value)


def s(*features, k=None, bs="tp", by=None, knots=None, sp=None, xt=None):
    """A smooth of one or more features, as mgcv's ``s()``.

    Parameters
    ----------
    *features : str or int
        Column names (or positions) of X. Several features: a thin plate spline (``bs="tp"``),
        or, with ``bs="fs"``, the smoothed feature(s) and a factor.
    k : int, default=None
        Basis dimension (mgcv's ``k``); None: mgcv's default (10, or 30 / 110 for a thin plate
        spline of 2 / 3 features).
    bs : {"tp", "cr", "ps", "cc", "rk", "fs"}, default="tp"
        Basis, as mgcv's ``bs`` (its default, the thin plate regression spline). ``"fs"`` is
        mgcv's factor-smooth interaction ``s(x, fac, bs="fs", xt="cr")``: a smooth of x for
        each level of the factor (the feature of category, string or bool dtype; in a numeric
        array, the last feature, integer labels), not centred, every level sharing the
        smoothing parameters of its wiggly part and of each null-space direction (a random
        intercept and slope per level): the usual GAMM for individual curves. See
        :mod:`sklmm._engine.factor_smooth` for the construction and the one choice that
        differs from mgcv (the null space's basis).
    by : str or int, default=None
        A numeric feature multiplying the smooth (a varying coefficient, ``f(x) z``), or a
        categorical one (a DataFrame column of category, string or bool dtype): one smooth per
        level, each with its own smoothing parameter (add the factor's main effect as a
        parametric term, as in mgcv).
    knots : array-like, default=None
        Knots, as the ``knots`` parameter of :class:`~sklmm.PenalizedSplineRegressor` takes
        them (``cc``: two values give the period's ends).
    sp : float, default=None
        A smoothing parameter held fixed (mgcv's ``sp``); None: estimated. For ``"fs"``, one
        per penalty (the wiggly part, then each null-space direction) or one for all.
    xt : str or dict, default=None
        For ``bs="fs"``, the basis of each level's smooth, as mgcv's ``xt``: ``"cr"`` or
        ``{"bs": "cr"}`` (default ``"tp"``).

    Returns
    -------
    Smooth
    """
    features = _features("s", features)
    if bs not in BASES + ("fs",):
        raise ValueError(f"s(): bs must be one of {list(BASES) + ['fs']}; got {bs!r}.")
    if xt is not None and bs != "fs":
        raise ValueError(f"s(): xt gives the basis of an 'fs' smooth; with bs={bs!r} leave it out.")
    if bs == "fs":
        base = xt.get("bs", "tp") if isinstance(xt, dict) else ("tp" if xt is None else xt)
        if isinstance(xt, dict) and set(xt) - {"bs"}:
            raise ValueError(f"s(): xt takes only 'bs' here; got {sorted(xt)}.")
        if base not in FS_BASES:
            raise ValueError(f"s(..., bs='fs'): xt (the basis of each level's smooth) must be one of "
                             f"{list(FS_BASES)}; got {base!r}.")
        if len(features) < 2:
            raise ValueError(f"s{features}: an 'fs' smooth takes the smoothed feature(s) and a factor, "
                             "s('x', 'fac', bs='fs').")
        if len(features) > 2 and base != "tp":
            raise ValueError(f"s{features}: an 'fs' smooth of several features needs xt='tp'.")
        if by is not None:
            raise ValueError("s(..., bs='fs'): by is not supported with a factor-smooth interaction.")
        xt = base
    elif len(features) > 1 and bs != "tp":
        raise ValueError(f"s{features}: a smooth of several features is a thin plate spline (bs='tp'); "
                         f"for other bases use te({', '.join(map(repr, features))}).")
    if k is not None and (not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 3):
        raise ValueError(f"s(): k must be an integer of at least 3; got {k!r}.")
    if by is not None and (not isinstance(by, (str, numbers.Integral)) or isinstance(by, bool)):
        raise ValueError(f"s(): by must be a column name or position; got {by!r}.")
    if knots is not None:
        try:
            arr = np.asarray(knots, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"s(): knots must be numbers; got {knots!r}.") from None
        knots = tuple(map(tuple, arr)) if arr.ndim == 2 else tuple(float(v) for v in arr.ravel())
    return Smooth("s", features, None if k is None else int(k), bs, by, knots, _positive(sp, "sp"), xt)


def _tensor(kind, features, k, bs, sp, by=None):
    features = _features(kind, features)
    if by is not None and (not isinstance(by, (str, numbers.Integral)) or isinstance(by, bool)):
        raise ValueError(f"{kind}(): by must be a column name or position; got {by!r}.")
    m = len(features)
    ks = (k,) * m if isinstance(k, numbers.Integral) else tuple(k)
    bss = (bs,) * m if isinstance(bs, str) else tuple(bs)
    if len(ks) != m or len(bss) != m:
        raise ValueError(f"{kind}{features}: give k and bs once or once per feature ({m}); got k={k!r}, bs={bs!r}.")
    for b, kk in zip(bss, ks):
        if b not in MARGIN_BASES:
            raise ValueError(f"{kind}(): a margin's bs must be one of {list(MARGIN_BASES)}; got {b!r}.")
        if not isinstance(kk, numbers.Integral) or isinstance(kk, bool) or kk < 3:
            raise ValueError(f"{kind}(): each margin's k must be an integer of at least 3; got {kk!r}.")
    if sp is not None and np.size(sp) not in (1, m):
        raise ValueError(f"{kind}{features}: sp takes one value per margin ({m}); got {sp!r}.")
    return Smooth(kind, features, tuple(int(v) for v in ks), bss, by, None, _positive(sp, "sp"))


def te(*features, k=5, bs="cr", by=None, sp=None):
    """A tensor product smooth, as mgcv's ``te()``: one smoothing parameter per feature (margin).

    Parameters
    ----------
    *features : str or int
    k : int or tuple of int, default=5
        Each margin's basis dimension (one value for all).
    bs : str or tuple of str, default="cr"
        Each margin's basis: "cr", "ps", "cc" or "tp" (one variable).
    by : str or int, default=None
        As for :func:`s`: a numeric feature multiplying the surface (not centred), or a
        categorical one, a surface per level, each with its own smoothing parameters (the
        factor's main effect as a parametric term; an ordered factor has none for its first
        level).
    sp : float or tuple of float, default=None
        Smoothing parameters held fixed, one per margin.

    Returns
    -------
    Smooth
    """
    return _tensor("te", features, k, bs, sp, by)


def ti(*features, k=5, bs="cr", by=None, sp=None):
    """A tensor product interaction, as mgcv's ``ti()``: :func:`te` without the main effects of
    its margins (which ``ti(x)`` or ``s(x)`` terms carry), for an ANOVA decomposition
    ``ti(x) + ti(z) + ti(x, z)``. Parameters as :func:`te`."""
    return _tensor("ti", features, k, bs, sp, by)


class FittedSmooth:
    """One smooth of a fitted model: the engine's basis, the columns of X it reads and its
    ``by`` variable (a column, or a factor's level)."""

    def __init__(self, spec, name, columns, engine, by_column=None, by_level=None, constrain=True):
        self.spec, self.name, self.columns, self.engine = spec, name, list(columns), engine
        self.by_column, self.by_level, self.constrain = by_column, by_level, constrain
        engine.name = name

    @property
    def column(self):
        return self.columns[0]

    @property
    def tensor(self):
        return isinstance(self.engine, TensorSmooth)

    def _x(self, X):
        x = X[:, self.columns]
        return x[:, 0] if x.shape[1] == 1 and not self.tensor else x

    def _by(self, X):
        if self.by_column is None:
            return None
        z = X[:, self.by_column]
        return z if self.by_level is None else (z == self.by_level).astype(float)

    def fit_design(self, X):
        return self.engine.fit_design(self._x(X), by=self._by(X), constrain=self.constrain)

    def design(self, X):
        return self.engine.design(self._x(X), by=self._by(X))

    def random_term(self, Z):
        return self.engine.random_term(Z)

    @property
    def n_fixed(self):
        return self.engine.n_fixed

    @property
    def n_random(self):
        return self.engine.n_random

    @property
    def n_lambda(self):
        return self.engine.n_margins if self.tensor else 1

    def lambdas(self, theta):
        """The smoothing parameters (one per penalty) for the term's theta."""
        theta = np.asarray(theta, dtype=float)
        if self.tensor:
            return self.engine.lambda_from_theta(theta)
        return np.array([self.engine.lambda_from_theta(float(theta[0]))])

    def thetas(self, sp):
        """theta for given smoothing parameters (one, or one per margin)."""
        lam = np.broadcast_to(np.asarray(sp, dtype=float), (self.n_lambda,))
        return np.atleast_1d(self.engine.theta_from_lambda(lam))

    def lambda_names(self):
        return [self.name] if self.n_lambda == 1 else [f"{self.name}{j + 1}" for j in range(self.n_lambda)]

    @property
    def basis(self):
        return ".".join(self.engine.bases) if self.tensor else self.engine.basis

    @property
    def n_basis(self):
        return "x".join(map(str, self.engine.n_basis)) if self.tensor else self.engine.n_basis

    def __getattr__(self, attr):  # the engine's fitted attributes (knots_, U0_, Uplus_, ...)
        if attr.startswith("__") or attr == "engine":
            raise AttributeError(attr)
        return getattr(self.engine, attr)


class FittedFactorSmooth(FittedSmooth):
    """A factor-smooth interaction (``bs="fs"``) of a fitted model: its smoothed columns, its
    factor's column and that factor's levels (:class:`~sklmm._engine.factor_smooth.FactorSmooth`)."""

    def __init__(self, spec, name, columns, engine, factor_column, labels, level_names):
        super().__init__(spec, name, columns, engine)
        self.factor_column, self.labels, self.level_names = factor_column, labels, level_names

    def _codes(self, X):
        z = X[:, self.factor_column]
        codes = np.clip(np.searchsorted(self.labels, z), 0, len(self.labels) - 1)
        unseen = self.labels[codes] != z
        if np.any(unseen):
            raise ValueError(f"{self.name}: the factor has levels {np.unique(z[unseen])[:5].tolist()} not "
                             "seen in fit; an 'fs' smooth has a curve for the levels it was fitted on only.")
        return codes

    def fit_design(self, X):
        return self.engine.fit_design(self._x(X), self._codes(X), len(self.labels))

    def design(self, X):
        return self.engine.design(self._x(X), self._codes(X))

    def random_term(self, Z):
        return self.engine.random_term(self.level_names)

    @property
    def n_lambda(self):
        return self.engine.n_lambda

    def lambdas(self, theta):
        return self.engine.lambda_from_theta(theta)

    def thetas(self, sp):
        return np.atleast_1d(self.engine.theta_from_lambda(sp))

    def lambda_names(self):
        return [f"{self.name}.{nm}" for nm in self.engine.penalty_names()]


def _factor_smooth(t, cols, names, levels, X):
    """The :class:`FittedFactorSmooth` of an ``s(x, fac, bs="fs")``: the factor is the feature
    coded as categorical, or, in a numeric array, the last one (integer labels)."""
    label = ",".join(names[j] for j in cols)
    name = f"s({label})"
    cat = [j for j in cols if names[j] in levels]
    if len(cat) > 1:
        raise ValueError(f"{name}: an 'fs' smooth has one factor; {[names[j] for j in cat]} are all categorical.")
    if cat:
        fcol = cat[0]
        level_names = np.asarray(levels[names[fcol]])
        labels = np.arange(len(level_names), dtype=float)
    else:
        fcol = cols[-1]
        labels = np.unique(X[:, fcol])
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError(
                f"{name} (bs='fs'): no feature is categorical, and the last one, {names[fcol]!r}, taken "
                "as the factor, has non-integer values; give the factor as a DataFrame column of "
                "category or string dtype (or integer labels, last).")
        level_names = labels.astype(np.int64)
    smoothed = [j for j in cols if j != fcol]
    base = t.xt
    k = t.k if t.k is not None else (TP_DEFAULT_K.get(len(smoothed)) if base == "tp" else 10)
    if k is None:
        raise ValueError(f"{t!r}: give k for a thin plate spline of {len(smoothed)} features.")
    if len(smoothed) > 1 and base != "tp":
        raise ValueError(f"{name}: an 'fs' smooth of several features needs xt='tp'.")
    if len(level_names) < 2:
        raise ValueError(f"{name}: the factor {names[fcol]!r} has one level; use s({names[smoothed[0]]!r}).")
    engine = FactorSmooth(name, base, k, t.knots)
    return FittedFactorSmooth(t, name, smoothed, engine, fcol, labels, level_names)


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


def _legacy_specs(est, X, names):
    """``s(...)`` objects for the per-feature parameters."""
    structure = est._structure  # the parameters, or what the formula says
    cols = (list(range(X.shape[1])) if structure["smooth_features"] is None
            else est._column_index(structure["smooth_features"], names, "smooth_features"))
    repeated = sorted({names[j] for j in cols if cols.count(j) > 1})
    if repeated:
        raise ValueError(
            f"smooth_features lists {repeated} more than once; a feature has one smooth (two "
            "identical smooths are not identifiable)."
        )
    check_feature_keys(est, structure, cols, names)
    specs = []
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
        sp = per_feature(est, est.smoothing_params, nm, j) if est.smoothing_params is not None else None
        if sp is not None and not positive_number(sp):
            raise ValueError(f"smoothing_params for s({nm}) must be positive (a number above 0); got {sp!r}.")
        labels = getattr(est, "_column_labels", None)
        key = labels[j] if labels is not None else (nm if hasattr(est, "feature_names_in_") else j)
        specs.append(Smooth("s", (key,), int(k), b, None, knots, sp))  # (knots checked by the basis)
    return specs


def _specs(est, X, names):
    given = est._structure.get("smooths", getattr(est, "smooths", None))
    if given is None:
        return _legacy_specs(est, X, names)
    if getattr(est, "formula", None) is not None:  # a formula's s() terms take knots and sp by feature
        singles = sorted({t.features[0] for t in given if t.kind == "s" and len(t.features) == 1}, key=str)
        for param in ("knots", "smoothing_params"):  # (a misspelt key left that smooth at its default)
            value = getattr(est, param, None)
            if unknown := [k for k in value if k not in singles] if isinstance(value, dict) else []:
                raise ValueError(f"{param} has keys {unknown} that name no one-variable s() of the formula "
                                 f"(its smooths' features: {singles}); keys are those features' names.")
        return [_with_feature_settings(est, t) for t in given]
    changed = [p for p, v in LEGACY_DEFAULTS.items() if est._structure.get(p, getattr(est, p, v)) != v]
    if changed:
        raise ValueError(f"give smooths either as smooths=[s(...), ...] or by {changed}, not both: "
                         "write each smooth's k, bs, knots and sp in its s() or te().")
    if not isinstance(given, (list, tuple)) or not all(isinstance(t, Smooth) for t in given):
        raise ValueError(f"smooths must be a list of s(...), te(...) or ti(...) terms; got {given!r}.")
    return list(given)


def _with_feature_settings(est, t):
    """A formula's one-variable ``s()`` with the ``knots`` and ``smoothing_params`` given for its
    feature (dicts keyed by name: a formula's smooth takes no literal knots)."""
    from dataclasses import replace

    if t.kind != "s" or len(t.features) != 1:
        return t
    (f,) = t.features
    knots = (est.knots or {}).get(f)
    sp = (est.smoothing_params or {}).get(f)
    if knots is not None:
        t = replace(t, knots=tuple(float(v) for v in np.ravel(np.asarray(knots, dtype=float))))
    if sp is not None:
        if not positive_number(sp):
            raise ValueError(f"smoothing_params for {t!r} must be positive (a number above 0); got {sp!r}.")
        t = replace(t, sp=float(sp))
    return t


def encode_by_factors(est, X, fitting):
    """X with each factor ``by`` column (a DataFrame column of category, string or bool dtype)
    replaced by its level codes: at fit, the levels are kept in ``est._by_levels`` (a category
    column's present categories in their order, as R's ``levels``; other labels sorted) and the
    ordered categorical columns in ``est._by_ordered``; later, the same codes (an unseen level
    is an error)."""
    given = getattr(est, "_structure", {}).get("smooths") or getattr(est, "smooths", None) or []
    columns = []
    for t in given:
        if isinstance(t, Smooth):
            columns += ([t.by] if t.by is not None else []) + (list(t.features) if t.bs == "fs" else [])
    if fitting:
        est._by_levels, est._by_ordered = {}, set()
    if not columns or not isinstance(X, pd.DataFrame):
        return X
    X = X.copy()
    for col in dict.fromkeys(columns):  # (each column once: several smooths may share it)
        if col not in X.columns:
            continue
        known = est._by_levels.get(col)
        factor = not pd.api.types.is_numeric_dtype(X[col]) or X[col].dtype == bool
        missing = np.flatnonzero(pd.isna(X[col]).to_numpy())
        if (known is not None or factor) and missing.size:  # (the factor has no level for them)
            raise ValueError(f"the factor {col!r} (of a by= or 'fs' smooth) has {missing.size} missing "
                             f"label(s) (rows {missing[:5].tolist()}): drop those rows or give them a level.")
        mixed = mixed_labels(X[col].to_numpy()) if fitting and known is None and factor else None
        if mixed:  # (sorting them raised Python's TypeError)
            raise ValueError(f"the factor {col!r} (of a by= or 'fs' smooth) mixes text and other labels "
                             f"(e.g. {mixed[0]!r} and {mixed[1]!r}): give its labels one type, e.g. astype(str).")
        if fitting and known is None and factor:
            if isinstance(X[col].dtype, pd.CategoricalDtype):
                cats = X[col].cat.categories
                levels = cats[np.isin(cats, X[col].dropna().unique())]
                if X[col].cat.ordered:
                    est._by_ordered.add(col)
            else:
                levels = pd.Index(pd.unique(X[col].dropna())).sort_values()
            est._by_levels[col] = known = levels
        if known is not None:
            codes = pd.Index(known).get_indexer(X[col])
            if (codes < 0).any():
                bad = X[col][codes < 0].unique()[:5].tolist()
                raise ValueError(f"the factor {col!r} (of a by= or 'fs' smooth) has levels {bad} not seen in "
                                 "fit; its smooths are per level.")
            X[col] = codes.astype(float)
    return X


def make_smooths(est, X):
    """``(smooths, linear columns, designs)``: each :class:`FittedSmooth` fitted on X, the
    columns entering linearly (those no smooth reads), and each smooth's ``(F, Z)``."""
    names = est._feature_names()
    specs = _specs(est, X, names)
    smooths, used = [], set()
    levels = getattr(est, "_by_levels", {})
    for t in specs:
        cols = est._column_index(list(t.features), names, "smooths")
        used.update(cols)
        label = ",".join(names[j] for j in cols)
        if t.kind in ("te", "ti"):
            name = f"{t.kind}({label})"

            def tensor(nm, t=t, cols=cols):
                return TensorSmooth(nm, cols, bases=t.bs, n_basis=t.k, interaction=t.kind == "ti",
                                    labels=[names[j] for j in cols])

            if t.by is None:
                smooths.append(FittedSmooth(t, name, cols, tensor(name)))
            else:
                _by_smooths(est, t, name, cols, names, levels, used, smooths, tensor)
            continue
        if t.bs == "fs":
            smooths.append(_factor_smooth(t, cols, names, levels, X))
            continue
        d = len(cols)
        k = t.k if t.k is not None else (TP_DEFAULT_K.get(d) if t.bs == "tp" else 10)
        if k is None:
            raise ValueError(f"{t!r}: give k for a thin plate spline of {d} features.")
        knots = t.knots
        if t.by is None:
            name = f"s({label})"
            smooths.append(FittedSmooth(t, name, cols, SmoothTerm(name, cols[0], t.bs, k, knots)))
            continue
        _by_smooths(est, t, f"s({label})", cols, names, levels, used, smooths,
                    lambda nm, t=t, cols=cols, k=k, knots=knots: SmoothTerm(nm, cols[0], t.bs, k, knots))
    seen = [sm.name for sm in smooths]
    twice = sorted({nm for nm in seen if seen.count(nm) > 1})
    if twice:
        raise ValueError(f"the smooth(s) {twice} are given twice; two identical smooths are not identifiable.")
    for sm in smooths:  # before any basis is formed: k = 2,000 on 200 rows took minutes
        k = int(np.prod(np.atleast_1d(getattr(sm.engine, "n_basis", 0))))
        if isinstance(sm.engine, SmoothTerm) and sm.engine.basis in ("cr", "cc", "tp"):
            continue  # (these need k distinct values of x, and say so)
        if k > X.shape[0]:
            raise ValueError(
                f"{sm.name} has {k} basis coefficients for {X.shape[0]} rows: a smooth cannot have "
                "more coefficients than data (mgcv refuses this too). Lower its k (n_basis)."
            )
    designs = designs_of(smooths, X, fit=True)
    linear = [j for j in range(X.shape[1]) if j not in used]
    return smooths, linear, designs


def _by_smooths(est, t, name, cols, names, levels, used, smooths, engine):
    """The smooths of a term with ``by``, appended to ``smooths``: for a factor one per level
    (mgcv: but the first of an ordered one), named ``name:fLEVEL``; for a numeric variable one,
    ``name:z``, not centred (its constant times z is the smooth's). ``engine(name)`` makes each
    one's basis."""
    (bcol,) = est._column_index([t.by], names, "by")
    used.add(bcol)
    byname = names[bcol]
    if byname in levels:
        ordered = byname in getattr(est, "_by_ordered", ())
        for code, lev in enumerate(levels[byname]):
            if ordered and code == 0 and len(levels[byname]) > 1:
                continue  # the reference level: its curve is the model's s(x), the others differences
            nm = f"{name}:{byname}{lev}"
            smooths.append(FittedSmooth(t, nm, cols, engine(nm), by_column=bcol, by_level=float(code)))
    else:
        nm = f"{name}:{byname}"
        smooths.append(FittedSmooth(t, nm, cols, engine(nm), by_column=bcol, constrain=False))


#: rows times smooths from which the smooths' bases are built in threads
PARALLEL_BASIS_ROWS = 200_000


def designs_of(smooths, X, fit=False):
    """Each smooth's ``(F, Z)`` at X (``fit``: fitting its knots, constraint and split there).

    With several smooths on many rows, in threads, as many as the CPUs left free
    (:func:`~sklmm._engine.threads.free_cpus`), BLAS on one thread inside: a basis is
    row-sized numpy work that releases the GIL, and the smooths are independent (four cr
    smooths on 10^6 rows, 2 CPUs: 1.9 s one after the other, 0.9 s in two threads). A
    smooth's error is raised as it would be in order."""
    def one(sm):
        return sm.fit_design(X) if fit else sm.design(X)

    workers = min(len(smooths), free_cpus()) if X.shape[0] * len(smooths) >= PARALLEL_BASIS_ROWS else 1
    if workers <= 1:
        return [one(sm) for sm in smooths]
    from concurrent.futures import ThreadPoolExecutor

    with single_threaded_blas(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, smooths))
