"""lme4-style formulas for :meth:`MixedLinearRegressor.from_formula`.

A formula such as ``"Reaction ~ Days + (Days | Subject)"`` is split into its fixed part
(``Reaction ~ Days``), turned into a model matrix by formulaic, and its random-effect terms
(``(Days | Subject)``), which are mapped onto the estimator's own parameters
(``random_slopes``, ``correlated_slopes``, ``random_intercept``, ``nested``) and a ``groups``
frame. What the estimator's parameters cannot express is refused with an error that says why.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["MixedFormula", "parse_formula", "formula_inputs", "FORMULA_PARAMS"]

#: constructor parameters that the formula sets and ``from_formula`` therefore refuses
FORMULA_PARAMS = ("random_slopes", "correlated_slopes", "nested", "random_intercept", "fit_intercept")
#: their defaults: with ``formula=`` as a parameter, a value other than these is a conflict
FORMULA_PARAM_DEFAULTS = dict(random_slopes=None, correlated_slopes=True, nested=False,
                              random_intercept=True, fit_intercept=True)

_DOCS = "see the sklmm docs, 'Coming from lme4' (docs/coming_from_lme4.md)"
_NAME = re.compile(r"^(?:[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`)$")


# ----------------------------------------------------------------------------- splitting


def _scan(text):
    """Yield ``(position, character, depth)`` outside quotes; depth counts (), [] and {}."""
    depth, quote = 0, None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
            continue
        if ch in "([{":
            depth += 1
            yield i, ch, depth - 1
            continue
        if ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in formula {text!r}.")
        yield i, ch, depth
    if depth != 0 or quote:
        raise ValueError(f"unbalanced parentheses or quotes in formula {text!r}.")


def _split_signed(rhs):
    """Top-level ``+`` / ``-`` pieces of a right-hand side: ``[(sign, text), ...]``."""
    pieces, start, sign = [], 0, "+"
    for i, ch, depth in _scan(rhs):
        if depth == 0 and ch in "+-":
            text = rhs[start:i].strip()
            if text:
                pieces.append((sign, text))
            elif pieces or sign == "-":
                raise ValueError(f"cannot read the formula part {rhs!r}: two operators in a row.")
            sign, start = ch, i + 1
    text = rhs[start:].strip()
    if not text:
        raise ValueError(f"cannot read the formula part {rhs!r}: it ends with an operator.")
    pieces.append((sign, text))
    return pieces


def _random_term(piece):
    """``(expr, bar, grouping)`` when ``piece`` is a whole ``( ... | ... )`` term, else None."""
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    inner = piece[1:-1]
    # the opening parenthesis must close at the very end: "(a) + (b)" is not one term
    for i, ch, depth in _scan(piece):
        if ch == ")" and depth == 0 and i != len(piece) - 1:
            return None
    bars = [i for i, ch, depth in _scan(inner) if depth == 0 and ch == "|"]
    if not bars:
        return None
    if len(bars) == 2 and bars[1] == bars[0] + 1:
        bar = "||"
    elif len(bars) == 1:
        bar = "|"
    else:
        raise ValueError(f"cannot read the random-effect term {piece!r}: use one '|' or '||'.")
    expr, grouping = inner[: bars[0]].strip(), inner[bars[-1] + 1 :].strip()
    if not expr or not grouping:
        raise ValueError(f"the random-effect term {piece!r} needs an expression on both sides of '{bar}'.")
    return expr, bar, grouping


def _embedded_random_term(piece):
    """A bare ``( ... | ... )`` group inside a larger piece (``(1 | g):x``), or None.

    A parenthesis that follows a name is a call (``I(a | b)``), not a random-effect term.
    """
    opened = None
    for i, ch, depth in _scan(piece):
        if ch == "(" and depth == 0:
            before = piece[:i].rstrip()
            opened = None if before and (before[-1].isalnum() or before[-1] in "_.)]`") else i
        elif ch == ")" and depth == 0 and opened is not None:
            group = piece[opened : i + 1]
            if _random_term(group) is not None:
                return group
            opened = None
    return None


def _r_powers(text):
    """R's ``^`` inside ``I(...)`` as Python's ``**`` (``I(x^2)``), which formulaic evaluates;
    in Python ``^`` is a bitwise XOR (a different model on integer columns, an error on floats)."""
    out, calls = list(text), []
    for i, ch, depth in _scan(text):
        if ch == "(" and text[:i].rstrip().endswith("I") and not text[: i].rstrip()[:-1][-1:].isalnum() \
                and not text[: i].rstrip()[:-1].endswith(("_", ".")):
            calls.append(depth)
        elif ch == ")" and calls and depth == calls[-1]:
            calls.pop()
        elif ch == "^" and calls:
            out[i] = "**"
    return "".join(out)


def _r_factors(text):
    """R's ``factor(x)`` and ``as.factor(x)`` in a fixed-effect term as formulaic's ``C(x)``
    (categorical coding, the first level the reference, as R's treatment contrasts)."""
    return re.sub(r"(?<![\w.])(?:as\.)?factor\s*\(", "C(", text)


def _r_name(column):
    """A model-matrix column named as R names it: formulaic's ``I(x ** 2)`` is ``I(x^2)``."""
    return str(column).replace(" ** ", "^")


def _grouping_levels(grouping, term):
    """``"a/b:c"`` -> ``[("a",), ("b", "c")]``: the nesting levels, each a tuple of variables."""
    levels = []
    for level in grouping.split("/"):
        names = tuple(v.strip() for v in level.split(":"))
        for v in names:
            if not _NAME.match(v):
                raise ValueError(
                    f"the grouping factor {grouping!r} in {term} must be data column names joined "
                    f"by '/' (nesting) or ':' (interaction); {v!r} is not a column name ({_DOCS})."
                )
        levels.append(tuple(v.strip("`") for v in names))
    return levels


# ----------------------------------------------------------------------------- parsed formula


@dataclass
class _Term:
    text: str  # as written, "(Days | Subject)"
    expr: str
    double_bar: bool
    levels: list  # nesting levels of the grouping factor, each a tuple of variable names
    intercept: bool = True
    slopes: list = field(default_factory=list)


@dataclass
class MixedFormula:
    """A parsed lme4 formula: the fixed part for formulaic, the random terms, and the mapping.

    After :meth:`fit_design` it also holds what :meth:`design` needs to turn new data into
    ``X`` and ``groups`` for ``predict`` and ``score``. Stored on a fitted estimator as
    ``formula_design_``.
    """

    formula: str
    response: str
    fixed_part: str
    terms: list
    fixed_spec: object = None  # formulaic ModelSpec of the fixed part (after fit_design)
    fixed_columns: list = None  # columns of X (the model matrix without its intercept)
    fit_intercept: bool = True
    nested: bool = False
    group_columns: list = None  # names of the columns of the groups frame
    group_sources: list = None  # for each groups column, the variables whose labels it joins
    random_only: list = field(default_factory=list)  # random slopes that are not fixed effects

    def __str__(self):
        return self.formula

    # ---------------------------------------------------------------- variables and rows

    @property
    def group_variables(self):
        """The data columns the grouping factors are made of."""
        out = []
        for t in self.terms:
            for level in t.levels:
                out += [v for v in level if v not in out]
        return out

    def _complete_rows(self, data):
        """Rows with no missing value in any variable of the model (lme4's ``na.omit``), and
        the model matrices formed to find them (the fixed part's, then each term's): where no
        row is missing they are the fit's own, and are not formed again."""
        from formulaic import model_matrix

        keep = data[self.group_variables].notna().all(axis=1)
        spec = f"{self.response} ~ {self.fixed_part}"
        fixed = _formulaic(lambda: model_matrix(spec, data, na_action="drop"), self.formula)
        keep &= data.index.isin(fixed.rhs.index)
        terms = []
        for t in self.terms:
            terms.append(_formulaic(lambda: model_matrix(t.expr, data, na_action="drop"), t.text))
            keep &= data.index.isin(terms[-1].index)
        return keep.to_numpy(), (fixed, terms)

    # ---------------------------------------------------------------- fit

    def fit_design(self, data):
        """``(X, y, groups, params)`` for fitting, from ``data``; remembers the encodings."""
        from formulaic import model_matrix

        data = _as_frame(data, "data")
        missing = [v for v in self.group_variables if v not in data.columns]
        if missing:
            raise ValueError(f"the grouping variable(s) {missing} of {self.formula!r} are not columns of data.")
        data = data.reset_index(drop=True)
        self.complete_rows, (mm, term_matrices) = self._complete_rows(data)  # lme4's na.omit
        if not self.complete_rows.all():  # the rows fitted, encoded afresh (levels seen in them)
            data = data.loc[self.complete_rows].reset_index(drop=True)
            mm = _formulaic(lambda: model_matrix(f"{self.response} ~ {self.fixed_part}", data, na_action="raise"),
                            self.formula)
            term_matrices = None
        if mm.lhs.shape[1] != 1:
            kind = (f"it holds text or categories ({data[self.response].dtype}), which the formula "
                    "expands into one column per level" if self.response in data.columns
                    and not pd.api.types.is_numeric_dtype(data[self.response]) else f"got {mm.lhs.shape[1]} columns")
            raise ValueError(f"the response {self.response!r} must be one numeric column; {kind}. A "
                             "linear model needs a numeric response (a classifier takes labels).")
        y = pd.Series(mm.lhs.iloc[:, 0].to_numpy(dtype=float), name=self.response)
        rhs = mm.rhs
        self.fixed_spec = rhs.model_spec.update(na_action="raise")  # (a reused matrix's says drop)
        self.fit_intercept = "Intercept" in rhs.columns
        self.fixed_columns = [_r_name(c) for c in rhs.columns if c != "Intercept"]
        X = self._fixed_frame(rhs)
        self._map_terms(data, term_matrices)
        if self.random_only:
            X = pd.concat([X, self._random_only_frame(data)], axis=1)
        groups = self.groups(data)
        return X, y, groups, self.params()

    def _map_terms(self, data, matrices=None):
        """Random coefficients of each term as columns of X; checks what the estimator can fit.
        ``matrices``: the terms' model matrices on these rows, where already formed."""
        from formulaic import model_matrix

        self.random_only, self._random_specs = [], {}
        for i, t in enumerate(self.terms):
            mm = matrices[i] if matrices is not None else \
                _formulaic(lambda: model_matrix(t.expr, data, na_action="raise"), t.text)
            cols = [_r_name(c) for c in mm.columns]
            t.intercept = "Intercept" in cols
            t.slopes = [c for c in cols if c != "Intercept"]
            if not cols:
                raise ValueError(f"the random-effect term {t.text} has no coefficient.")
            # a random slope that is not a fixed effect ((1 + x | g) without x in the fixed
            # part): a column of X that the fixed effects leave out
            for c in t.slopes:
                if c not in self.fixed_columns and c not in self.random_only:
                    self.random_only.append(c)
                    self._random_specs[c] = mm.model_spec.update(na_action="raise")
        self.terms = _merge_uncorrelated(self.terms, self.formula)
        intercepts = {t.intercept for t in self.terms}
        if len(intercepts) > 1:
            raise ValueError(
                f"{self.formula!r} gives some grouping factors a random intercept and others none; "
                "sklmm's random_intercept applies to every factor, so write all terms as "
                f"(x | g) or all as (0 + x | g) ({_DOCS})."
            )
        bars = {t.double_bar for t in self.terms if t.intercept + len(t.slopes) > 1}
        if len(bars) > 1:
            raise ValueError(
                f"{self.formula!r} mixes correlated (x | g) and uncorrelated (x || g) terms; "
                f"sklmm's correlated_slopes applies to every factor ({_DOCS})."
            )
        self._correlated = not bars.pop() if bars else True
        self._random_intercept = intercepts.pop() if intercepts else True
        self._layout()

    def _layout(self):
        """The groups columns: one nested hierarchy, or crossed factors (derived ``a:b`` columns)."""
        if len(self.terms) == 1 and len(self.terms[0].levels) > 1 and all(
            len(level) == 1 for level in self.terms[0].levels
        ):
            # (1 | a/b): the estimator's own nested=True, groups = [a, b] outer to inner
            self.nested = True
            self.group_columns = [level[0] for level in self.terms[0].levels]
            self.group_sources = [(c,) for c in self.group_columns]
            self._factor_slopes = {self.group_columns[-1]: self.terms[0].slopes}
            return
        self.nested = False
        columns, sources, slopes = [], [], {}
        for t in self.terms:
            for j in range(len(t.levels)):
                if len(t.levels) == 1:  # (1 | g) or (1 | a:b): named as written
                    src = t.levels[0]
                else:  # the j-th level of a/b/...: lme4's inner:outer name
                    src = tuple(v for level in reversed(t.levels[: j + 1]) for v in level)
                name = ":".join(src)
                if name in columns:
                    raise ValueError(
                        f"the grouping factor {name!r} appears in more than one random-effect term "
                        f"of {self.formula!r}; sklmm fits one term per factor: write (x || g) for "
                        f"(1 | g) + (0 + x | g) ({_DOCS})."
                    )
                columns.append(name)
                sources.append(src)
                slopes[name] = t.slopes
        self.group_columns, self.group_sources, self._factor_slopes = columns, sources, slopes

    def params(self):
        """The estimator parameters the formula sets."""
        lists = list(self._factor_slopes.values())
        if not any(lists):
            slopes = None
        elif all(s == lists[0] for s in lists):
            slopes = list(lists[0])
        else:
            slopes = {k: list(v) for k, v in self._factor_slopes.items() if v}
        return dict(random_slopes=slopes, correlated_slopes=self._correlated, nested=self.nested,
                    random_intercept=self._random_intercept, fit_intercept=self.fit_intercept)

    # ---------------------------------------------------------------- new data

    def _fixed_frame(self, mm):
        X = pd.DataFrame(mm.drop(columns=["Intercept"], errors="ignore"))
        X.columns = [_r_name(c) for c in X.columns]
        return X.reset_index(drop=True)

    def _random_only_frame(self, data):
        """The columns of the random slopes that are not fixed effects, evaluated on data."""
        out = {}
        for c in self.random_only:
            spec = self._random_specs[c]
            mm = _formulaic(lambda: spec.get_model_matrix(data, na_action="raise"), self.formula)
            out[c] = np.asarray(mm[[k for k in mm.columns if _r_name(k) == c][0]], dtype=float)
        return pd.DataFrame(out)

    def fixed(self, data):
        """The design ``X`` of new data, encoded as at fit: the fixed effects' columns, then
        those of random slopes that are not fixed effects."""
        data = _as_frame(data, "X")
        mm = _formulaic(lambda: self.fixed_spec.get_model_matrix(data, na_action="raise"), self.formula)
        X = self._fixed_frame(mm)
        if self.random_only:
            X = pd.concat([X, self._random_only_frame(data.reset_index(drop=True))], axis=1)
        return X

    def groups(self, data):
        """The ``groups`` frame of new data (derived ``a:b`` columns joined as lme4 labels them)."""
        data = _as_frame(data, "groups")
        if not self.terms:  # a formula without random-effect terms (a GAM's)
            return None
        missing = [v for v in self.group_variables if v not in data.columns]
        if missing:
            raise ValueError(f"groups lacks the grouping variable(s) {missing} of {self.formula!r}.")
        out = {}
        for name, src in zip(self.group_columns, self.group_sources):
            if len(src) == 1:
                out[name] = data[src[0]].to_numpy()
            else:
                parts = [data[v].astype(str) for v in src]
                out[name] = parts[0].str.cat(parts[1:], sep=":").to_numpy()
        return pd.DataFrame(out) if len(out) > 1 else pd.Series(out[name], name=name)

    def has_groups(self, data):
        """Whether ``data`` holds every variable the grouping factors are made of."""
        return all(v in data.columns for v in self.group_variables)

    def response_values(self, data):
        """The response (the formula's left side) evaluated on ``data``, or None if it is absent."""
        from formulaic import model_matrix

        data = _as_frame(data, "data")
        try:
            lhs = _formulaic(lambda: model_matrix(f"{self.response} ~ 1", data, na_action="raise").lhs,
                             self.formula)
        except ValueError:
            return None
        return lhs.iloc[:, 0].to_numpy(dtype=float)

    def design(self, data):
        """``(X, groups)`` for ``predict(X, groups=groups)`` or ``score`` from a DataFrame."""
        return self.fixed(data), self.groups(data)

    def is_fixed_design(self, X):
        return list(map(str, X.columns)) == self.fixed_columns + self.random_only


# ----------------------------------------------------------------------------- helpers


def _merge_uncorrelated(terms, formula):
    """lme4's ``(1 | g) + (0 + x | g)``, one coefficient per term, is ``(x || g)``: merge them."""
    out, seen = [], {}
    for t in terms:
        key = tuple(t.levels)
        if key not in seen:
            seen[key] = len(out)
            out.append(t)
            continue
        first = out[seen[key]]
        single = all(u.intercept + len(u.slopes) == 1 for u in (first, t))
        if not single or (first.intercept and t.intercept) or set(first.slopes) & set(t.slopes):
            raise ValueError(
                f"the grouping factor {'/'.join(':'.join(v) for v in key)!r} appears in more than "
                f"one random-effect term of {formula!r}; sklmm merges such terms only when each has "
                f"one coefficient, as in (1 | g) + (0 + x | g) = (x || g) ({_DOCS})."
            )
        intercept = first.intercept or t.intercept
        slopes = first.slopes + t.slopes
        out[seen[key]] = _Term(text=f"{first.text} + {t.text}", expr=f"{first.expr} + {t.expr}",
                               double_bar=True, levels=first.levels, intercept=intercept, slopes=slopes)
    return out


def _as_frame(data, what):
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas") and hasattr(data, "columns"):  # polars, pyarrow tables
        return data.to_pandas()
    try:
        return pd.DataFrame(data)
    except Exception as exc:  # pragma: no cover - pandas' own message is clear enough
        raise ValueError(f"{what} must be a pandas DataFrame (or a dict of columns); got {type(data).__name__}.") from exc


def _formulaic(build, where):
    """Run a formulaic call; unseen levels and formulaic's errors become clear ValueErrors."""
    from formulaic.errors import DataMismatchWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            return build()
        except DataMismatchWarning as exc:
            raise ValueError(f"{where}: {exc} (a fixed-effect factor level not seen in fit).") from None
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"formulaic could not evaluate {where!r}: {exc}") from exc


def parse_formula(formula, require_random=True):
    """Split an lme4 formula into response, fixed part and random terms (no data needed).

    ``require_random=False`` accepts a formula without random-effect terms (a GAM's)."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as 'y ~ x + (x | g)'; got {type(formula).__name__}.")
    tildes = [i for i, ch, depth in _scan(formula) if ch == "~" and depth == 0]
    if len(tildes) != 1 or not formula[: tildes[0]].strip():
        raise ValueError(f"the formula {formula!r} needs a response: 'y ~ fixed + (random | group)'.")
    response, rhs = _r_powers(formula[: tildes[0]].strip()), _r_powers(formula[tildes[0] + 1 :])
    fixed, terms = [], []
    for sign, piece in _split_signed(rhs):
        if re.match(r"\s*offset\s*\(", piece):
            raise ValueError(
                f"{piece.strip()!r}: offset() terms are not supported. For a Gaussian model subtract "
                "the offset from the response; a count model with an exposure has no equivalent yet."
            )
        rand = _random_term(piece)
        if rand is None:
            bad = _embedded_random_term(piece)
            if bad:
                raise ValueError(
                    f"the random-effect term {bad} must stand on its own, joined to the rest of "
                    f"the formula by '+'; {piece!r} is not supported ({_DOCS})."
                )
            fixed.append((sign, _r_factors(piece)))
            continue
        if sign == "-":
            raise ValueError(f"a random-effect term cannot be subtracted: '- {piece}'.")
        expr, bar, grouping = rand
        terms.append(_Term(text=piece, expr=expr, double_bar=bar == "||",
                           levels=_grouping_levels(grouping, piece)))
    if not terms and require_random:
        raise ValueError(
            f"the formula {formula!r} has no random-effect term such as (1 | g); lme4's lmer "
            "refuses it too. For fixed effects only use sklearn.linear_model.LinearRegression."
        )
    text = " ".join(f"{s} {p}" for s, p in fixed).strip()
    if not text:
        text = "1"
    elif text.startswith("+"):
        text = text[1:].strip()
    else:  # starts with "-": keep the implicit intercept it subtracts from
        text = "1 " + text
    return MixedFormula(formula=formula, response=response, fixed_part=text, terms=terms)


def formula_inputs(estimator, X, groups):
    """``(X, groups)`` for an estimator fitted by ``from_formula``: data frames become designs.

    For other estimators, or inputs that already are the fitted design, nothing changes.
    """
    design = getattr(estimator, "formula_design_", None)
    if design is None:
        return X, groups
    if isinstance(X, pd.DataFrame) and not design.is_fixed_design(X):
        X = design.fixed(X)
    if isinstance(groups, pd.DataFrame) and all(v in groups.columns for v in design.group_variables):
        groups = design.groups(groups)
    return X, groups
