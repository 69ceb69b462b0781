"""mgcv / gamm4 style formulas for :class:`PenalizedSplineRegressor`.

``"accel ~ s(times, k=20, bs='cr')"`` or ``"y ~ f + s(x, by=f) + te(x, z, k=(5, 5)) + (1 | g)"``:
smooth terms ``s(x, z, k=..., bs=..., by=...)``, ``te(...)`` and ``ti(...)`` (variables and
``by`` as column names, other arguments as Python literals; as in mgcv, ``s``'s basis defaults
to the thin plate regression spline ``"tp"``), a parametric part read by formulaic, and lme4
random-effect terms (gamm4's ``random = ~ (1 | g)`` written into the formula). The smooths
become the estimator's ``smooths`` (:mod:`~sklmm._input.smooth_terms`); the rest is an lme4
formula without the smooths (:class:`~sklmm._input.formula.MixedFormula`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .formula import _as_frame, _scan, _split_signed, parse_formula
from .smooth_terms import s, te, ti

__all__ = ["GamFormula", "parse_gam_formula", "GAM_FORMULA_PARAMS"]

#: the estimator parameters a GAM formula sets, with their defaults
GAM_FORMULA_PARAMS = dict(smooths=None, smooth_features=None, n_basis=10, basis="cr", random_slopes=None,
                          correlated_slopes=True, nested=False, random_intercept=True)

_MAKERS = {"s": s, "te": te, "ti": ti}
_KEYWORDS = {"s": {"k", "bs", "by", "sp", "xt"}, "te": {"k", "bs", "by", "sp"}, "ti": {"k", "bs", "by", "sp"}}


def _smooth_call(piece, formula):
    """The :class:`~sklmm._input.smooth_terms.Smooth` of a piece ``s(x, k=10, bs='cr')``,
    ``te(x, z, k=(5, 5))``, ``ti(...)`` or ``s(x, by=f)``, or None for other pieces.

    Variables (and ``by``) are column names; the other arguments Python literals. As in mgcv,
    ``s()``'s basis defaults to the thin plate regression spline ``"tp"`` and ``te``'s margins
    to ``"cr"`` with ``k=5``."""
    head = piece.split("(", 1)[0].strip()
    if head not in _MAKERS or not piece.rstrip().endswith(")"):
        return None
    try:
        node = ast.parse(piece, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot read the smooth {piece!r} in {formula!r}: write s(x, k=10, bs='cr').") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == head):
        return None
    if not node.args or not all(isinstance(a, ast.Name) for a in node.args):
        raise ValueError(f"{piece}: name the smoothed variables as columns of the data, {head}(x, z, ...).")
    given = [k.arg for k in node.keywords]
    repeated = sorted({a for a in given if given.count(a) > 1}, key=str)
    if repeated:  # (Python's parser takes s(x, k=5, k=20); the call would keep the last)
        raise ValueError(f"{piece}: the argument(s) {repeated} are given more than once; give each once.")
    unknown = sorted({k.arg for k in node.keywords} - _KEYWORDS[head], key=str)
    if unknown:
        raise ValueError(f"{piece}: {head}() takes {sorted(_KEYWORDS[head])} here; {unknown} are not supported.")
    kw = {}
    for k in node.keywords:
        if k.arg == "by":
            if not isinstance(k.value, ast.Name):
                raise ValueError(f"{piece}: by= names a column of the data, by=f.")
            kw["by"] = k.value.id
            continue
        try:
            kw[k.arg] = ast.literal_eval(k.value)
        except ValueError:
            raise ValueError(f"{piece}: the argument {k.arg}= must be a literal (a number, string or tuple).") from None
    try:
        return _MAKERS[head](*[a.id for a in node.args], **kw)
    except ValueError as e:
        raise ValueError(f"{piece} in {formula!r}: {e}") from None


@dataclass
class GamFormula:
    """A parsed GAM formula: the smooths, and the lme4 formula of everything else.

    Stored on a fitted estimator as ``formula_design_``. Its design puts the parametric
    columns first, then one column per smoothed variable.
    """

    formula: str
    smooths: list  # Smooth terms
    rest: object  # the MixedFormula of the formula without its smooths
    complete_rows: np.ndarray = field(default=None, repr=False)

    def __str__(self):
        return self.formula

    @property
    def variables(self):
        """The smooths' variables and ``by`` columns, each once, in order."""
        out = [v for t in self.smooths for v in t.features + ((t.by,) if t.by is not None else ())]
        return list(dict.fromkeys(out))

    @property
    def fixed_columns(self):
        return self.rest.fixed_columns

    def fit_design(self, data):
        """``(X, y, groups, params)`` for fitting, from ``data`` (rows missing any variable of
        the model dropped); remembers the encodings."""
        data = _as_frame(data, "data").reset_index(drop=True)
        missing = [v for v in self.variables if v not in data.columns]
        if missing:
            raise ValueError(f"the smoothed variable(s) {missing} of {self.formula!r} are not columns of data.")
        has_smooth_values = data[self.variables].notna().all(axis=1).to_numpy()
        X, y, groups, params = self.rest.fit_design(data.loc[has_smooth_values])
        keep = has_smooth_values.copy()
        keep[has_smooth_values] = self.rest.complete_rows
        self.complete_rows = keep
        if not self.rest.fit_intercept:
            raise ValueError(f"{self.formula!r} removes the intercept; a GAM keeps it (its smooths are centred).")
        clash = [v for v in self.variables if v in self.rest.fixed_columns + self.rest.random_only]
        if clash:
            raise ValueError(
                f"{clash} enter {self.formula!r} both as a smooth and as a parametric term; a smooth "
                "holds the linear trend already: drop the parametric term."
            )
        if self.rest.random_only:
            raise ValueError(
                f"the random slope(s) {self.rest.random_only} of {self.formula!r} must also be "
                "parametric terms in a GAM formula."
            )
        X = pd.concat([X, self._smooth_frame(data.loc[keep])], axis=1)
        params = {k: v for k, v in params.items() if k != "fit_intercept"}
        params.update(smooths=list(self.smooths))
        return X, y, groups, params

    def _smooth_frame(self, data):
        # (a categorical by column stays as it is, categories and order included: the estimator
        # codes its levels)
        return pd.DataFrame({v: np.asarray(data[v], dtype=float)
                             if pd.api.types.is_numeric_dtype(data[v]) and data[v].dtype != bool else
                             data[v].array if isinstance(data[v].dtype, pd.CategoricalDtype) else
                             data[v].to_numpy() for v in self.variables})

    def fixed(self, data):
        """The design of new data: the parametric columns, then the smoothed variables."""
        data = _as_frame(data, "X").reset_index(drop=True)
        missing = [v for v in self.variables if v not in data.columns]
        if missing:
            raise ValueError(f"X lacks the smoothed variable(s) {missing} of {self.formula!r}.")
        return pd.concat([self.rest.fixed(data), self._smooth_frame(data)], axis=1)

    def groups(self, data):
        return self.rest.groups(data)

    def has_groups(self, data):
        return bool(self.rest.terms) and self.rest.has_groups(data)

    def response_values(self, data):
        return self.rest.response_values(data)

    def is_fixed_design(self, X):
        return list(map(str, X.columns)) == self.rest.fixed_columns + self.variables


def parse_gam_formula(formula):
    """Split a GAM formula into its smooths and an lme4 formula of the rest (no data needed)."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as \"y ~ s(x, k=10, bs='cr')\"; got {type(formula).__name__}.")
    tildes = [i for i, ch, depth in _scan(formula) if ch == "~" and depth == 0]
    if len(tildes) != 1:
        raise ValueError(f"the formula {formula!r} needs a response: \"y ~ s(x, bs='cr') + z\".")
    lhs, rhs = formula[: tildes[0]], formula[tildes[0] + 1 :]
    if "cbind(" in lhs.replace(" ", ""):
        raise ValueError(
            f"{lhs.strip()!r}: a GAM formula takes one response column. Binomial trials (mgcv's "
            "cbind(successes, failures)) go in as two rows per trial set, a 1 weighted by the "
            "successes and a 0 weighted by the failures (sample_weight); see docs/gam.md."
        )
    smooths, rest = [], []
    for sign, piece in _split_signed(rhs):
        sm = _smooth_call(piece, formula)
        if sm is None:
            rest.append(f"{sign} {piece}")
            continue
        if sign == "-":
            raise ValueError(f"a smooth cannot be subtracted: '- {piece}'.")
        if sm in smooths:
            raise ValueError(f"{sm!r} appears twice in {formula!r}; two identical smooths are not identifiable.")
        smooths.append(sm)
    if not smooths:
        raise ValueError(f"{formula!r} has no smooth s(x, bs=...); for a linear mixed model use MixedLinearRegressor.")
    text = " ".join(rest).strip()
    text = "1" if not text else (text[1:].strip() if text.startswith("+") else "1 " + text)
    return GamFormula(formula=formula, smooths=smooths,
                      rest=parse_formula(f"{lhs.strip()} ~ {text}", require_random=False))
