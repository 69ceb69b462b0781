"""The per-partition work of a Dask fit and its reduction in a tree (see :mod:`sklmm._input.dask_collections`).

Each partition, on a worker, validates its rows as the in-memory fit does, numbers the levels it
holds and forms its cross-products (:func:`_partition_cross_products`); partial results are
combined ``SPLIT_EVERY`` at a time (:func:`_combine`), mapping each operand's levels to the
merged numbering.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib

import numpy as np
import pandas as pd

from .._engine.crossprod import cross_products, sum_cross_products
from .._engine.terms import RandomTerm
from .arrays import check_sample_weight
from .groups import as_group_frame

__all__ = ["SPLIT_EVERY"]


#: How many partial results one task of the reduction tree combines.
SPLIT_EVERY = 8


_ALIGN_HINT = (
    "X, y, groups (and sample_weight) must be partitioned alike: partition i of each holds the "
    "same rows. Take them as columns of one Dask DataFrame (ddf[['x']], ddf['y'], ddf['g']) or as "
    "Dask arrays with the same chunks along the rows."
)


def _kind(obj, what):
    """"frame" for a Dask DataFrame / Series, "array" for a Dask array."""
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(obj, (dd.DataFrame, dd.Series)):
        return "frame"
    if isinstance(obj, da.Array):
        return "array"
    raise TypeError(
        f"{what} is a {type(obj).__name__}; sklmm accepts Dask DataFrames, Series and arrays "
        "(or in-memory data)."
    )


def _n_partitions(obj):
    return obj.npartitions if _kind(obj, "") == "frame" else obj.numblocks[0]


def _where(partition_info):
    if partition_info is None:
        return "in a partition of the Dask input"
    return f"in partition {partition_info['number']} of the Dask input"


def _check_lengths(where, **parts):
    lengths = {k: len(v) for k, v in parts.items() if v is not None}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v} rows" for k, v in lengths.items())
        raise ValueError(f"{where}: {desc}. {_ALIGN_HINT}")
    return next(iter(lengths.values()))


@dataclasses.dataclass(frozen=True)
class _FitSpec:
    """What every partition needs to know about the model (small; part of the task graph)."""

    template: object  # an unfitted clone of the estimator: its checks of X, y and weights
    factors: tuple  # ((name, group-column positions, slope columns), ...) in make_factors order
    random_intercept: bool
    correlated: bool
    fit_intercept: bool
    decategorize: tuple  # per group column: categorical with categories unknown to Dask


@dataclasses.dataclass
class _Partial:
    """Cross-products of some partitions with their own level numbering.

    ``levels[k]`` has one row of group labels (the factor's columns) per level of factor k, in
    the partial's numbering; ``fingerprints`` are the per-partition digests of y and weights.
    """

    n: int
    cp: object
    levels: list
    fingerprints: list


def _local_codes(frame, cols, cache):
    """Level index of each row for the factor on these group columns, and each level's first row."""
    if cols in cache:
        return cache[cols]
    if len(cols) == 1:
        codes, uniq = pd.factorize(frame.iloc[:, cols[0]])
        n_levels = len(uniq)
    else:  # nested: a level is a combination of the outer factor's level and this column's label
        outer, _ = _local_codes(frame, cols[:-1], cache)
        inner, _ = _local_codes(frame, cols[-1:], cache)
        key = outer.astype(np.int64) * (int(inner.max()) + 1) + inner
        codes, uniq = pd.factorize(key)
        n_levels = len(uniq)
    codes = codes.astype(np.intp)
    first = np.full(n_levels, len(codes), dtype=np.intp)
    np.minimum.at(first, codes, np.arange(len(codes), dtype=np.intp))
    cache[cols] = (codes, first)
    return codes, first


def _fingerprint(y, w):
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(y, dtype=float).tobytes())
    if w is not None:
        h.update(np.ascontiguousarray(w, dtype=float).tobytes())
    return h.hexdigest()


def _partition_cross_products(Xp, yp, gp, wp, spec, partition_info=None):
    """One partition's :class:`_Partial` (None for an empty partition)."""
    where = _where(partition_info)
    n = _check_lengths(where, X=Xp, y=yp, groups=gp, sample_weight=wp)
    if n == 0:
        return None
    try:  # the in-memory checks and messages, on an unfitted copy of the estimator
        X, y = copy.copy(spec.template)._validate_X(Xp, yp, groups=gp)
        frame = as_group_frame(gp, n).to_pandas() if gp is not None else None
        w = check_sample_weight(wp, X.shape[0]) if wp is not None else None
    except ValueError as e:
        raise ValueError(f"{e} ({where})") from e
    if frame is not None:
        for j, decat in enumerate(spec.decategorize):
            if decat:
                frame[frame.columns[j]] = frame.iloc[:, j].astype(object)
    Xf = np.hstack([np.ones((n, 1)), X]) if spec.fit_intercept else X
    terms, levels, cache = [], [], {}
    for fname, cols, slope_cols in spec.factors:
        codes, first = _local_codes(frame, cols, cache)
        levels.append(frame.iloc[first, list(cols)].reset_index(drop=True))
        parts = ([np.ones((n, 1))] if spec.random_intercept else []) + [X[:, list(slope_cols)]]
        terms.append(RandomTerm(name=fname, levels=pd.RangeIndex(len(first)), codes=codes,
                                values=np.hstack(parts), column_names=[], correlated=spec.correlated))
    cp = cross_products(terms, Xf, y, sample_weight=w)
    return _Partial(n=n, cp=cp, levels=levels, fingerprints=[_fingerprint(y, w)])


def _level_key(frame):
    """The level labels as an index (one column: its values; several: a MultiIndex)."""
    if frame.shape[1] == 1:
        return pd.Index(frame.iloc[:, 0])
    return pd.MultiIndex.from_frame(frame)


def _merge_levels(acc, new):
    """Append ``new``'s unseen levels to ``acc``; the position in the result of each of new's."""
    pos = _level_key(acc).get_indexer(_level_key(new))
    fresh = np.flatnonzero(pos < 0)
    if len(fresh):
        pos[fresh] = len(acc) + np.arange(len(fresh))
        acc = pd.concat([acc, new.iloc[fresh]], ignore_index=True)
    return acc, pos


def _combine(*partials):
    """Sum of partial results, in order (the first operand's levels keep their numbers)."""
    parts = [p for p in partials if p is not None]
    if len(parts) <= 1:
        return parts[0] if parts else None
    n_factors = len(parts[0].levels)
    maps = [[None] * n_factors for _ in parts]
    merged = []
    for k in range(n_factors):
        acc = parts[0].levels[k]
        for i in range(1, len(parts)):
            acc, maps[i][k] = _merge_levels(acc, parts[i].levels[k])
        merged.append(acc)
    cp = sum_cross_products([p.cp for p in parts], maps, [len(m) for m in merged])
    return _Partial(n=sum(p.n for p in parts), cp=cp, levels=merged,
                    fingerprints=[f for p in parts for f in p.fingerprints])


def _map_partitions(func, inputs, *args):
    """``func(*partitions of inputs, *args, partition_info=...)`` per partition, as Delayed objects.

    Dask DataFrames go through one ``dask.dataframe.map_partitions`` (so a source shared by X, y
    and groups is read once per partition); otherwise the partitions are zipped by position.
    """
    import dask
    import dask.dataframe as dd

    present = [a for a in inputs if a is not None]
    if all(_kind(a, "") == "frame" for a in present):
        res = dd.map_partitions(func, *inputs, *args, align_dataframes=False,
                                meta=pd.Series([], dtype=object), enforce_metadata=False)
        return list(res.to_delayed())
    n = _n_partitions(present[0])
    blocks = []
    for a in inputs:  # unoptimized graphs: keys shared between inputs stay shared
        if a is None:
            blocks.append([None] * n)
        elif _kind(a, "") == "frame":
            blocks.append(a.to_delayed(optimize_graph=False))
        else:
            blocks.append(list(a.to_delayed(optimize_graph=False).ravel()))
    f = dask.delayed(func, pure=True)
    return [f(*(b[i] for b in blocks), *args, partition_info={"number": i, "division": None})
            for i in range(n)]


def _tree_reduce(parts, combine, split_every=SPLIT_EVERY):
    import dask

    f = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [f(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]
