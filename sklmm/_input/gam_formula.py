"""mgcv / gamm4 style formulas for :class:`PenalizedSplineRegressor`.

``"accel ~ s(times, k=20, bs='cr')"`` or ``"Reaction ~ s(Days, k=5, bs='cr') + (1 | Subject)"``:
smooth terms ``s(x, k=..., bs=...)`` (arguments as Python literals; as in mgcv, ``bs`` defaults
to the thin plate regression spline ``"tp"`` and ``k`` to 10), a parametric part read by
formulaic, and lme4 random-effect terms (gamm4's ``random = ~ (1 | g)`` written into the
formula). The smooths map onto the estimator's ``smooth_features``, ``n_basis`` and ``basis``;
the rest is an lme4 formula without the smooths (:class:`~sklmm._input.formula.MixedFormula`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._engine.smooth import BASES
from .formula import _as_frame, _scan, _split_signed, parse_formula

__all__ = ["GamFormula", "parse_gam_formula", "GAM_FORMULA_PARAMS"]

#: the estimator parameters a GAM formula sets, with their defaults
GAM_FORMULA_PARAMS = dict(smooth_features=None, n_basis=10, basis="cr", random_slopes=None,
                          correlated_slopes=True, nested=False, random_intercept=True)


def _smooth_call(piece, formula):
    """``(variable, k, bs)`` for a piece ``s(x, k=10, bs='cr')``, or None for other pieces.

    Without ``bs=`` the basis is mgcv's default, the thin plate regression spline ``"tp"``;
    without ``k=`` it is 10 (mgcv's default for one variable, for every basis here)."""
    if not piece.startswith("s("):
        return None
    try:
        node = ast.parse(piece, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot read the smooth {piece!r} in {formula!r}: write s(x, k=10, bs='cr').") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "s"):
        return None
    if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
        raise ValueError(
            f"{piece}: sklmm's s() smooths one variable, named as a column of the data "
            "(s(x, k=10, bs='cr')); smooths of several variables are not available yet."
        )
    unknown = sorted({k.arg for k in node.keywords} - {"k", "bs"})
    if unknown:
        raise ValueError(f"{piece}: s() takes k= and bs= here; {unknown} are not supported yet.")
    kw = {}
    for k in node.keywords:
        try:
            kw[k.arg] = ast.literal_eval(k.value)
        except ValueError:
            raise ValueError(f"{piece}: the argument {k.arg}= must be a literal (a number or a string).") from None
    bs = kw.get("bs", "tp")
    if bs not in BASES:
        raise ValueError(f"{piece}: bs={bs!r} is not available; sklmm has {list(BASES)}.")
    k = kw.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"{piece}: k must be an integer; got {k!r}.")
    return node.args[0].id, k, bs


@dataclass
class GamFormula:
    """A parsed GAM formula: the smooths, and the lme4 formula of everything else.

    Stored on a fitted estimator as ``formula_design_``. Its design puts the parametric
    columns first, then one column per smoothed variable.
    """

    formula: str
    smooths: list  # (variable, k, bs)
    rest: object  # the MixedFormula of the formula without its smooths
    complete_rows: np.ndarray = field(default=None, repr=False)

    def __str__(self):
        return self.formula

    @property
    def variables(self):
        return [v for v, _, _ in self.smooths]

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
        params.update(smooth_features=list(self.variables), n_basis={v: k for v, k, _ in self.smooths},
                      basis={v: bs for v, _, bs in self.smooths})
        return X, y, groups, params

    def _smooth_frame(self, data):
        return pd.DataFrame({v: np.asarray(data[v], dtype=float) for v in self.variables})

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
    smooths, rest = [], []
    for sign, piece in _split_signed(rhs):
        sm = _smooth_call(piece, formula)
        if sm is None:
            rest.append(f"{sign} {piece}")
            continue
        if sign == "-":
            raise ValueError(f"a smooth cannot be subtracted: '- {piece}'.")
        if sm[0] in [v for v, _, _ in smooths]:
            raise ValueError(f"{sm[0]!r} is smoothed twice in {formula!r}; give each variable one s().")
        smooths.append(sm)
    if not smooths:
        raise ValueError(f"{formula!r} has no smooth s(x, bs=...); for a linear mixed model use MixedLinearRegressor.")
    text = " ".join(rest).strip()
    text = "1" if not text else (text[1:].strip() if text.startswith("+") else "1 " + text)
    return GamFormula(formula=formula, smooths=smooths,
                      rest=parse_formula(f"{lhs.strip()} ~ {text}", require_random=False))
