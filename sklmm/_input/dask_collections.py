"""Dask input: fit from data that never sits in memory at once, partitions reduced in parallel.

Everything a fit needs from the rows is a sum over rows (the cross-products of ``[Z X y]``,
:func:`sklmm._engine.crossprod.cross_products`), so ``MixedLinearRegressor.fit`` given Dask collections
computes them partition by partition, on whatever scheduler Dask is using (a distributed
``Client``, or the local threads), and adds them up in a tree. Only the summed cross-products,
whose size grows with the number of group levels and not with the number of rows, reach the
process that called ``fit``; the optimizer then runs there exactly as for in-memory data.

One pass over the data. Each partition, on a worker:

1. validates its rows as the in-memory fit does (numeric finite X and y, no missing group
   labels, positive weights, X / y / groups / sample_weight of equal length),
2. finds the levels of each grouping factor present in it (its own level numbering, in order of
   first appearance) and keeps one row of labels per level,
3. forms the cross-products with those local levels.

Partial results are combined in a tree (``SPLIT_EVERY`` at a time, left to right): the level
tables are merged (the left operand's levels keep their numbers, new levels are appended) and
the cross-products added after mapping each operand's levels to the merged numbering
(:func:`sklmm._engine.crossprod.sum_cross_products`). On the client the merged levels are put in the order
``sklmm._input.groups.make_factors`` gives in-memory data (sorted labels; categories in category
order; nested factors by sorted label tuples), the factors are checked (more than one level,
fewer levels than rows) and sorted by decreasing number of levels, and
:func:`sklmm._engine.fit.fit_cross_products` fits the model.
The per-partition work and the reduction are in :mod:`sklmm._input.dask_partitions`.

``predict`` and ``score`` run the fitted estimator's own in-memory ``predict`` on each
partition (a copy without the cross-products, shipped once to each worker); ``predict`` returns
a lazy Dask array, ``score`` reduces R^2's sums to the client.

Dask is imported only when a Dask collection is passed; sklmm works without it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
import warnings

import numpy as np
import pandas as pd

from .._engine.crossprod import reorder_terms, shift_term, sum_cross_products
from .._engine.factor import make_factor
from .._engine.fit import fit_cross_products
from .._engine.terms import RandomTerm
from .arrays import _empty_frame_as_array, check_response, check_sample_weight
from .dask_partitions import (
    _ALIGN_HINT,
    _check_lengths,
    _combine,
    _FitSpec,
    _kind,
    _map_partitions,
    _n_partitions,
    _partition_cross_products,
    _tree_reduce,
    _where,
)
from .groups import (
    GroupFrame,
    GroupingFactor,
    NoGroupsWarning,
    _observed_index,
    as_group_frame,
    encode,
    make_factors,
    names_given,
)
from .random_terms import _check_identifiable

__all__ = ["is_dask_collection", "fit", "predict", "score"]


def is_dask_collection(*objs):
    """Whether any argument is a Dask collection (checked without importing dask)."""
    return any(o is not None and hasattr(type(o), "__dask_graph__") for o in objs)


# ----------------------------------------------------------------------------- inputs


def _meta(obj):
    """An empty in-memory object of the same type, columns and dtypes."""
    if _kind(obj, "") == "frame":
        return obj._meta
    return np.empty((0,) + tuple(obj.shape[1:]), dtype=obj.dtype)


def _prepare(X, y=None, groups=None, sample_weight=None, need_y=True):
    """Check the Dask inputs' shapes and partitions; return them with 1-D y and whole rows."""
    from sklearn.exceptions import DataConversionWarning

    named = {"X": X, "y": y, "groups": groups, "sample_weight": sample_weight}
    given = {k: v for k, v in named.items() if v is not None}
    not_dask = [k for k, v in given.items() if not is_dask_collection(v)]
    if not_dask:
        raise TypeError(
            f"{', '.join(not_dask)} {'is' if len(not_dask) == 1 else 'are'} in memory but "
            f"{', '.join(k for k in given if k not in not_dask)} Dask: pass all of X, y, groups and "
            "sample_weight as Dask collections (with the same partitions) or all in memory."
        )
    kinds = {k: _kind(v, k) for k, v in given.items()}
    if kinds["X"] == "frame":
        if X.ndim != 2:
            raise ValueError(
                "X must be 2-D: a Dask DataFrame or a 2-D Dask array; got a Dask Series (use "
                "X.to_frame())."
            )
    else:
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D Dask array; got {X.ndim} dimension(s).")
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
    if y is not None:
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y should be a 1d array, got a Dask collection with {y.shape[1]} columns.")
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the "
                "shape of y to (n_samples, ), for example using ravel().",
                DataConversionWarning, stacklevel=4,
            )
            y = y.iloc[:, 0] if kinds["y"] == "frame" else y[:, 0]
        elif y.ndim != 1:
            raise ValueError(f"y should be a 1d array; got {y.ndim} dimensions.")
    elif need_y:
        raise ValueError("y is required.")
    if groups is not None and kinds["groups"] == "array":
        if groups.ndim not in (1, 2):
            raise ValueError(
                "groups must be 1-D (one grouping factor) or 2-D (one column per factor); got "
                f"an array with {groups.ndim} dimensions."
            )
        if groups.ndim == 2 and groups.numblocks[1] > 1:
            groups = groups.rechunk({1: -1})
    if sample_weight is not None and sample_weight.ndim != 1:
        raise ValueError("sample_weight must be 1-D: one weight per row.")
    out = {"X": X, "y": y, "groups": groups, "sample_weight": sample_weight}
    # arrays with known chunks line up with an X array by position: rechunk them like X
    if kinds["X"] == "array" and not np.isnan(X.shape[0]):
        for k in ("y", "groups", "sample_weight"):
            a = out[k]
            if a is None or kinds[k] != "array" or np.isnan(a.shape[0]):
                continue
            if a.shape[0] != X.shape[0]:
                raise ValueError(
                    f"Found input variables with inconsistent numbers of samples: X has "
                    f"{X.shape[0]} rows, {k} has {a.shape[0]}."
                )
            if a.chunks[0] != X.chunks[0]:
                out[k] = a.rechunk({0: X.chunks[0]})
    nparts = {k: _n_partitions(v) for k, v in out.items() if v is not None}
    if len(set(nparts.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in nparts.items())
        raise ValueError(f"the Dask inputs have different numbers of partitions ({desc}). {_ALIGN_HINT}")
    frames = [(k, v) for k, v in out.items() if v is not None and kinds[k] == "frame"]
    known = [(k, v.divisions) for k, v in frames if v.known_divisions]
    if len({d for _, d in known}) > 1:
        desc = ", ".join(k for k, _ in known)
        raise ValueError(f"the Dask inputs {desc} have different divisions (index ranges per partition). {_ALIGN_HINT}")
    return out["X"], out["y"], out["groups"], out["sample_weight"]


# ----------------------------------------------------------------------------- fit


def fit(est, X, y, groups=None, sample_weight=None):
    """``est.fit(X, y, groups, sample_weight)`` for Dask collections (see the module docstring)."""
    import dask
    from sklearn.base import clone
    from sklearn.utils.validation import validate_data


    X, y, groups, sample_weight = _prepare(X, y, groups, sample_weight)
    X_meta = _empty_frame_as_array(_meta(X))
    validate_data(est, X_meta, skip_check_array=True)  # n_features_in_, feature_names_in_
    if groups is None and X_meta.shape[1] == 0:
        raise ValueError(
            f"0 feature(s) (shape=(n, 0)) while a minimum of 1 is required by {type(est).__name__}."
        )
    names = est._feature_names()
    specs, decat, group_columns = (), (), None
    if groups is None:
        warnings.warn(
            "fit was called without groups, so no random effects are fitted: this is an "
            "ordinary least-squares fit of the fixed effects. Pass groups=<labels> to fit "
            "random effects.",
            NoGroupsWarning, stacklevel=3,
        )
    else:
        g_meta = _meta(groups)
        g_frame = as_group_frame(g_meta)
        group_columns = list(g_frame.columns)
        factors = make_factors(g_frame, est._structure["nested"])
        slopes = est._slopes_for(factors, group_columns, names)
        for f in factors:
            if not est._structure["random_intercept"] and not slopes[f.name]:
                raise ValueError(
                    f"random_intercept=False leaves grouping factor {f.name!r} with no random "
                    "coefficient; give it random_slopes or set random_intercept=True."
                )
        specs = tuple((f.name, tuple(f.columns), tuple(slopes[f.name])) for f in factors)
        decat = tuple(
            isinstance(g_frame.series[j].dtype, pd.CategoricalDtype) and not _known_categories(g_meta, j)
            for j in range(len(group_columns))
        )
    structure = est._structure
    spec = _FitSpec(clone(est).set_params(group_columns=None), specs, bool(structure["random_intercept"]),
                    bool(structure["correlated_slopes"]), bool(structure["fit_intercept"]), decat)
    t0 = time.perf_counter()
    parts = _map_partitions(_partition_cross_products, [X, y, groups, sample_weight], spec)
    (partial,) = dask.compute(_tree_reduce(parts, _combine))
    n = 0 if partial is None else partial.n
    if n < 2:
        raise ValueError(f"n_samples = {n}: fitting a mixed model needs at least 2 observations.")
    if est.verbose:
        print(f"[sklmm] cross-products of {len(parts)} Dask partitions ({n} rows) formed in "
              f"{time.perf_counter() - t0:.3g} s")
    terms, group_factors, cp = _finish_terms(est, partial, specs, group_columns, n)
    fe_names = (["(Intercept)"] if structure["fit_intercept"] else []) + names
    est._check_fixed_names(fe_names, "'(Intercept)'")
    fit = fit_cross_products(terms, cp, fe_names, reml=bool(est.reml), solver=est.solver,
                             max_iter=est.max_iter, theta_start=est._warm_theta(terms),
                             verbose=est.verbose, stacklevel=4)
    est._group_factors, est._group_columns = group_factors, group_columns
    est._group_names_given = names_given(groups)
    est._fixed_index = None  # every column of X is a fixed effect (formulas are in-memory only)
    # the training rows are not kept (simulate / bootstrap need an in-memory fit)
    est._design = None
    digest = hashlib.blake2b("".join(partial.fingerprints).encode(), digest_size=16).hexdigest()
    est._data_fingerprint = (n, "partitions:" + digest)
    est._inference_cache = {}
    est._set_engine_attributes(fit)
    est.fixed_effects_names_ = fe_names
    est.intercept_ = float(fit.beta[0]) if structure["fit_intercept"] else 0.0
    est.coef_ = fit.beta[1:] if structure["fit_intercept"] else fit.beta
    return est


def _known_categories(meta, j):
    """Whether Dask knows the categories of group column j (else partitions may differ)."""
    from dask.dataframe.utils import has_known_categories

    return has_known_categories(meta.iloc[:, j] if isinstance(meta, pd.DataFrame) else meta)


def _finish_terms(est, partial, specs, group_columns, n):
    """Terms with the in-memory level order, and the cross-products renumbered to match them."""
    if not specs:
        return [], [], partial.cp
    factors, terms, perms, n_levels = [], [], [], []
    for k, (name, cols, slope_cols) in enumerate(specs):
        labels = GroupFrame.from_pandas(partial.levels[k])
        index, category_levels = _observed_index(labels, tuple(range(len(cols))))
        f = GroupingFactor(name, tuple(range(len(cols))), index, category_levels)
        perm = encode(f, labels)
        if np.any(perm < 0):  # pragma: no cover - the level tables and the index disagree
            raise RuntimeError(f"level table of {name!r} does not match its index.")
        if len(index) < 2:
            raise ValueError(
                f"grouping factor {name!r} has a single level; a variance between groups "
                "cannot be estimated from one group. Drop it from groups."
            )
        if len(index) >= n:
            raise ValueError(
                f"grouping factor {name!r} has {len(index)} levels for {n} observations; "
                "a random effect per observation is not identifiable with a residual. Use "
                "a coarser grouping."
            )
        factors.append(GroupingFactor(name, cols, index))
        perms.append(perm.astype(np.intp))
        n_levels.append(len(index))
        structure = est._structure
        colnames = (["(Intercept)"] if structure["random_intercept"] else []) + [
            est._feature_names()[c] for c in slope_cols]
        terms.append(RandomTerm(name=name, levels=index, codes=None, values=None, column_names=colnames,
                                correlated=bool(structure["correlated_slopes"]), slope_columns=list(slope_cols),
                                intercept=bool(structure["random_intercept"])))
    cp = sum_cross_products([partial.cp], [perms], n_levels)
    _check_identifiable(terms, factors, group_columns, bool(est._structure["nested"]), n,
                        gram=lambda k: cp.diag[k].sum(axis=0), n_pairs=lambda a, b: len(cp.off[(b, a)][0]))
    for k, t in enumerate(terms):  # as in memory, far-from-centred slopes in centred coordinates
        if t.centre_slopes(gram=cp.diag[k].sum(axis=0)) is not None:
            cp = shift_term(cp, k, t._shift_matrix())
    order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)  # as GroupedMixin._group_terms
    cp = reorder_terms(cp, order)
    return [terms[k] for k in order], [factors[k] for k in order], cp


# ----------------------------------------------------------------------------- predict and score


def _predict_state(est, return_std=False):
    """A copy of the fitted estimator for the workers, without the training rows.

    The factorization is left out (a CHOLMOD factor does not pickle): for standard errors each
    task rebuilds it from the cross-products; for the mean the cross-products are left out too
    (``predict`` needs the coefficients and random effects only).
    """
    state = copy.copy(est)
    state.group_columns = None  # the label columns were split off on the client
    state._design = None
    state._inference_cache = {}
    state._fit = dataclasses.replace(est._fit, factor=None, cp=est._fit.cp if return_std else None)
    return state


def _task_copy(state, return_std):
    """The state for one task. Dask may serialize ``state`` again (to move it to another worker)
    and threads may share it, so a task never modifies it: it works on a shallow copy with its
    own cache and, for standard errors, its own factorization."""
    local = copy.copy(state)
    local._inference_cache = {}
    if return_std:
        fit = state._fit
        local._fit = dataclasses.replace(fit, factor=make_factor(fit.cp, fit.terms, state.solver_))
        local._fit.factor.update(fit.theta)
    return local


def _predict_partition(Xp, gp, state, return_std, partition_info=None):
    where = _where(partition_info)
    n = _check_lengths(where, X=Xp, groups=gp)
    if n == 0:
        return np.zeros((0, 2) if return_std else 0)
    local = _task_copy(state, return_std)
    try:
        with warnings.catch_warnings():  # feature names were checked once on the client
            warnings.filterwarnings("ignore", message=".*feature names", category=UserWarning)
            out = local.predict(Xp, groups=gp, return_std=True) if return_std else local.predict(Xp, groups=gp)
    except ValueError as e:
        raise ValueError(f"{e} ({where})") from e
    return np.column_stack(out) if return_std else out


def _check_predict_inputs(est, X, groups):
    from sklearn.utils.validation import validate_data

    if getattr(est, "formula_design_", None) is not None:
        return  # data frames of the formula's variables: each partition's predict checks them
    validate_data(est, _empty_frame_as_array(_meta(X)), reset=False, skip_check_array=True)
    if groups is not None and est._fit.terms:
        k = as_group_frame(_meta(groups)).shape[1]
        if k != len(est._group_columns):
            raise ValueError(
                f"groups has {k} column(s) but the model was fitted with "
                f"{len(est._group_columns)} ({est._group_columns}); pass the same grouping columns."
            )


def predict(est, X, groups=None, return_std=False):
    """``est.predict`` for Dask collections: a lazy Dask array, one chunk per partition of X."""
    import dask
    import dask.array as da

    X, _, groups, _ = _prepare(X, None, groups, None, need_y=False)
    _check_predict_inputs(est, X, groups)
    state = dask.delayed(_predict_state(est, return_std), pure=False)
    parts = _map_partitions(_predict_partition, [X, groups], state, bool(return_std))
    rows = X.chunks[0] if _kind(X, "") == "array" else [np.nan] * len(parts)
    shape = (lambda r: (r, 2)) if return_std else (lambda r: (r,))
    out = da.concatenate([da.from_delayed(p, shape=shape(r), dtype=float) for p, r in zip(parts, rows)])
    return (out[:, 0], out[:, 1]) if return_std else out


def _score_partition(Xp, yp, gp, wp, state, partition_info=None):
    """Weighted count, mean and sum of squares of y, and residual sum of squares (R^2's sums);
    y and the weights are checked as the in-memory score (and fit) check them."""
    where = _where(partition_info)
    n = _check_lengths(where, X=Xp, y=yp, groups=gp, sample_weight=wp)
    if n == 0:
        return None
    pred = _predict_partition(Xp, gp, state, False, partition_info)
    try:
        y = check_response(yp, n)
        w = np.ones(n) if wp is None else check_sample_weight(wp, n)
    except ValueError as e:
        raise ValueError(f"{e} ({where})") from e
    sw = float(w.sum())
    mean = float(w @ y) / sw
    return np.array([sw, mean, float(w @ (y - mean) ** 2), float(w @ (y - pred) ** 2), n])


def _combine_moments(*parts):
    """Chan et al.'s pairwise update of weighted counts, means and sums of squares."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    acc = parts[0].copy()
    for p in parts[1:]:
        sw = acc[0] + p[0]
        delta = p[1] - acc[1]
        acc[2] += p[2] + delta**2 * acc[0] * p[0] / sw
        acc[1] += delta * p[0] / sw
        acc[0] = sw
        acc[3] += p[3]
        acc[4] += p[4]
    return acc


def score(est, X, y, groups=None, sample_weight=None):
    """R^2 of ``est.predict(X, groups)`` for Dask collections, reduced without gathering rows."""
    import dask
    from sklearn.exceptions import UndefinedMetricWarning

    X, y, groups, sample_weight = _prepare(X, y, groups, sample_weight)
    _check_predict_inputs(est, X, groups)
    state = dask.delayed(_predict_state(est), pure=False)
    parts = _map_partitions(_score_partition, [X, y, groups, sample_weight], state)
    (m,) = dask.compute(_tree_reduce(parts, _combine_moments))
    if m is None or m[4] < 2:
        warnings.warn("R^2 score is not well-defined with less than two samples.",
                      UndefinedMetricWarning, stacklevel=3)
        return float("nan")
    ss_tot, ss_res = m[2], m[3]
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return float(1.0 - ss_res / ss_tot)
