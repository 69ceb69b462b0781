"""Random-effect terms from user data: checks before the fit, and a term's rows at new X.

Structures whose variances cannot be estimated are refused here, before any linear algebra,
with the fix in the message (:func:`_check_identifiable`).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._engine.fit import independent_columns
from .._engine.terms import UNCENTRED_SLOPE_RATIO

__all__ = ["_check_identifiable"]


def _check_identifiable(terms, factors, columns, nested, n, gram=None, n_pairs=None, observation_level=False):
    """Random-effect structures whose variances cannot be estimated, refused before the fit.

    lme4's ``check.nobs.vs.nRE`` (as many random effects as observations), and two checks
    lme4 leaves to a failed or singular fit: collinear coefficients within a term (a constant,
    zero or repeated slope column), and two factors that group the rows identically with a
    coefficient in common (the same factor twice, or ``nested=True`` with a column that does not
    subdivide the one before it, as when the columns are given inner to outer).

    ``gram(k)`` (the Gram matrix ``values' values`` of term k's rows) and ``n_pairs(a, b)`` (how
    many pairs of levels of terms a and b share a row) are computed from the terms' rows unless
    given (a fit from cross-products has only those). ``observation_level`` allows as many
    random effects as observations (a GLMM, where they model overdispersion: glmer's
    ``check.nobs.vs.nRE = "ignore"``).
    """
    gram = gram or (lambda k: terms[k].values.T @ terms[k].values)
    n_pairs = n_pairs or (lambda a, b: np.unique(
        terms[a].codes.astype(np.int64) * terms[b].n_levels + terms[b].codes).size)
    for k, t in enumerate(terms):
        if t.q >= n and not observation_level:
            raise ValueError(
                f"grouping factor {t.name!r} has {t.n_levels} levels x {t.n_coef} random "
                f"coefficient(s) = {t.q} random effects for {n} observations; with at least as "
                "many random effects as observations the variances and the residual are not "
                "identifiable (lme4 stops here too). Use fewer random slopes or a coarser grouping."
            )
        G = gram(k)
        keep = independent_columns(G)
        if len(keep) < t.n_coef:
            bad = [t.column_names[j] for j in range(t.n_coef) if j not in keep]
            raise ValueError(
                f"the random coefficients of {t.name!r} are (nearly) collinear: {bad} is zero, "
                f"constant or a linear combination of {[t.column_names[j] for j in keep]} over the "
                "data (a constant slope column duplicates the random intercept), so their "
                "variances are not identifiable. Drop it from random_slopes, or center it if it "
                "has a large constant offset."
            )
        _warn_uncentred_slopes(t, G)
    for b in range(len(terms)):
        for a in range(b):
            ta, tb = terms[a], terms[b]
            shared = (ta.intercept and tb.intercept) or set(ta.slope_columns) & set(tb.slope_columns)
            if ta.n_levels != tb.n_levels or not shared:
                continue
            pairs = n_pairs(a, b)
            if pairs != ta.n_levels:
                continue
            if nested:
                inner = columns[factors[b].columns[-1]]
                raise ValueError(
                    f"with nested=True the columns of groups go from outer to inner and each must "
                    f"subdivide the one before it, but every level of {ta.name!r} holds a single "
                    f"level of {inner!r}: {tb.name!r} groups the rows exactly as {ta.name!r} does, "
                    "so their variances are not separately identifiable. If the columns are "
                    f"inner to outer, reorder them outermost first (groups=df[{columns[::-1]}]); "
                    f"otherwise drop {inner!r} from groups."
                )
            raise ValueError(
                f"grouping factors {ta.name!r} and {tb.name!r} group the rows identically (the "
                "same partition under two names), so their variances are not separately "
                "identifiable. Drop one of them from groups."
            )




def _warn_uncentred_slopes(t, G):
    """Warn about random slopes on columns far from centred (``G``: the term's Gram matrix)."""
    moments = t.slope_moments(G)
    if moments is None:
        return
    mean, sd = moments
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sd > 0, np.abs(mean) / sd, np.inf)
    for j in np.flatnonzero(ratio > UNCENTRED_SLOPE_RATIO):
        name = t.column_names[j + 1]
        if t.correlated:  # the engine fits the term in centred coordinates: the same model
            consequence = (
                "collinear: sklmm fits this term in centred coordinates (the same model), but the "
                f"intercept's variance is that at {name} = 0, far outside the data, and its "
                "correlation with the slope is near +-1. Center the column (x - mean) for variance "
                "components that describe the data; with correlated_slopes=True that is the same model."
            )
        else:
            consequence = (
                "collinear and the criterion badly conditioned, so the optimizer may stop at a wrong, "
                "often singular, optimum (lme4 says 'Rescale variables?'). Center the column (x - "
                "mean); with correlated_slopes=False that changes the model (the intercept's variance "
                "is then that at the mean)."
            )
        warnings.warn(
            f"the random slope column {name!r} of {t.name!r} is far from centred (|mean| / sd = "
            f"{ratio[j]:.0f}): the random intercept (at {name} = 0) and slope are then nearly "
            + consequence,
            UserWarning,
            stacklevel=5,
        )


