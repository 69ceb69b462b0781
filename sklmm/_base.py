"""What every sklmm estimator shares: group-term building, parameter checks, the random part
of predictions, and the fitted attributes of the mixed-model engine."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import validate_data

from ._engine.terms import RandomTerm, internal_theta, theta_layout
from ._input import dask_collections as _dask
from ._input.arrays import (
    _MAX_MAGNITUDE,
    _VALIDATION_HINTS,
    _check_magnitude,
    _empty_frame_as_array,
    _plain_fitted_input,
    _plain_valid_inputs,
    _reject_label_columns,
    check_coefficient_range,
    check_response,
    check_sample_weight,
)
from ._input.formula import formula_inputs
from ._input.groups import (
    NoGroupsWarning,
    align_group_frame,
    as_group_frame,
    encode,
    make_factors,
    names_given,
    repeated_as_text,
    unseen_type_hint,
)
from ._input.label_columns import check_group_columns, split_label_columns
from ._input.random_terms import _check_identifiable

__all__ = ["GroupedMixin", "NoGroupsWarning"]


def variance_table(fit):
    """lme4's ``as.data.frame(VarCorr(fit))`` with sklmm's column names, from a :class:`MixedFit`
    (in the user's coordinates: a random intercept's variance is that at x = 0)."""
    rows = []
    s2 = fit.sigma**2
    slices, _ = theta_layout(fit.terms)
    for t, s in zip(fit.terms, slices):
        T = t.user_template(fit.theta[s])
        cov = s2 * (T @ T.T)
        sd = np.sqrt(np.diag(cov))
        names = [t.name] if t.scalar else t.column_names
        for a, nm in enumerate(names):
            rows.append((t.name, nm, None, cov[a, a], sd[a], np.nan))
        if t.correlated and not t.scalar:
            for a in range(t.n_coef):
                for c in range(a + 1, t.n_coef):
                    denom = sd[a] * sd[c]
                    corr = cov[a, c] / denom if denom > 0 else np.nan
                    rows.append((t.name, t.column_names[a], t.column_names[c], cov[a, c], np.nan, corr))
    # (sigma in the units of the user's weights, as lme4's sigma(fit); the random effects'
    # variances above do not depend on the weights' scale)
    sigma = fit.user_sigma()
    rows.append(("Residual", None, None, sigma**2, sigma, np.nan))
    return pd.DataFrame(rows, columns=["factor", "term", "term2", "variance", "std_dev", "correlation"])


def _same_param(value, default):
    """Whether a parameter still has its default (``==`` that also works for arrays)."""
    try:
        return bool(value == default) if not isinstance(value, (list, dict)) else value == default
    except (TypeError, ValueError):
        return False


class GroupedMixin:
    """Random intercepts and slopes from ``groups``, shared by the estimators.

    Expects the parameters ``random_slopes``, ``correlated_slopes``, ``nested``,
    ``random_intercept``, ``unseen_groups``, ``solver``, ``max_iter`` and ``group_columns``
    (and, where the estimator has it, ``formula``). What a fit reads of the random-effect
    structure it reads from ``self._structure``, set by :meth:`_resolve_fit`: the parameters, or
    what the formula says.
    """

    #: whether a factor may have a level per observation (a GLMM's observation-level random
    #: effect models overdispersion; with a Gaussian residual it is not identifiable)
    _observation_level_effects = False

    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

    #: scikit-learn's parameter constraints of what every estimator shares (each estimator's
    #: ``_parameter_constraints`` adds its own); checked at fit by ``_validate_params``
    _group_parameter_constraints = {
        "random_slopes": [None, list, tuple, dict],
        "correlated_slopes": ["boolean"],
        "nested": ["boolean"],
        "reml": ["boolean"],
        "unseen_groups": [StrOptions({"population", "error"})],
        "random_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "blocked", "cholmod", "dense"})],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "group_columns": [None, str, numbers.Integral, list, tuple],
        "formula": [None, str],
    }

    def _check_group_params(self):
        """The parameters' types and values (scikit-learn's standard messages), then what the
        constraints cannot say (``group_columns`` without repeats)."""
        # scikit-learn's own check (what _validate_params does, without get_params' signature
        # inspection: 0.2 ms of a 3 ms sleepstudy fit)
        validate_parameter_constraints(
            self._parameter_constraints, {k: getattr(self, k) for k in self._parameter_constraints},
            caller_name=type(self).__name__,
        )
        check_group_columns(self.group_columns)

    # ------------------------------------------------------------------ what the user passes

    def _resolve_fit(self, X, y, groups, sample_weight=None):
        """``(X, y, groups, sample_weight)`` for the fit, from what the user passed.

        With ``formula``, X is the data frame: the fixed design, the response (unless y is
        given) and the groups come from it, and the random-effect structure from the formula.
        With ``group_columns`` the label columns of X are the groups. Sets ``self._structure``.
        """
        for attr in ("formula_", "formula_design_"):  # a refit forgets an earlier formula
            self.__dict__.pop(attr, None)
        defaults = self._formula_defaults
        structure = {k: getattr(self, k) for k in defaults}
        structure["random_only"] = []  # columns of X that are random slopes only (formulas)
        formula = getattr(self, "formula", None)
        if formula is not None:
            changed = [k for k in defaults if not _same_param(getattr(self, k), defaults[k])]
            if changed or self.group_columns is not None:
                raise ValueError(
                    f"{changed + (['group_columns'] if self.group_columns is not None else [])} "
                    "are set by the formula; leave them at their defaults when formula is given."
                )
            if groups is not None:
                raise ValueError("with formula, the groups come from the data's columns; do not pass groups=.")
            spec = self._parse_formula(formula)
            X, y_formula, groups, params = spec.fit_design(X)
            keep = spec.complete_rows
            y = y_formula if y is None else self._rows_kept(y, keep, "y")
            sample_weight = None if sample_weight is None else self._rows_kept(sample_weight, keep, "sample_weight")
            structure.update(params, random_only=list(getattr(spec, "random_only", [])))
            self.formula_, self.formula_design_ = formula, spec
        else:
            cols = check_group_columns(self.group_columns)
            if cols is not None:
                X, groups = split_label_columns(X, cols, groups)
        self._structure = structure
        return X, y, groups, sample_weight

    @staticmethod
    def _rows_kept(values, keep, what):
        """A per-row argument restricted to the rows a formula fit keeps (its complete rows)."""
        values = np.asarray(values)
        if values.shape[0] != keep.shape[0]:
            raise ValueError(f"{what} has {values.shape[0]} rows but the data {keep.shape[0]}; pass one per row.")
        return values[keep]

    def _resolve_predict(self, X, groups):
        """``(X, groups)`` for predict: a formula's design and groups from a data frame (groups
        only when its grouping columns are there: else population-level predictions, as lme4's
        ``predict(fit, newdata)`` without them), or the label columns of X."""
        design = getattr(self, "formula_design_", None)
        if design is not None and not isinstance(X, pd.DataFrame) and hasattr(X, "to_pandas") \
                and hasattr(X, "columns"):  # polars and the like, as the formula door takes them
            X = X.to_pandas()
        if getattr(self, "formula", None) is not None and design is not None and isinstance(X, pd.DataFrame) \
                and not design.is_fixed_design(X):
            if groups is None and design.has_groups(X):
                groups = design.groups(X)
            return design.fixed(X), groups
        if design is not None:  # a from_formula fit
            return formula_inputs(self, X, groups)
        cols = check_group_columns(self.group_columns)
        if cols is not None:
            X, groups = split_label_columns(X, cols, groups)
        return X, groups

    def _fixed_columns(self, X):
        """The fixed-effect design at X: the columns that are fixed effects (all but a formula's
        random-only slopes), after a column of ones when the model has an intercept."""
        idx = getattr(self, "_fixed_index", None)
        Xf = X if idx is None else X[:, idx]
        return np.hstack([np.ones((X.shape[0], 1)), Xf]) if self._structure.get("fit_intercept", True) else Xf

    def _response(self, X, y):
        """y, or for a formula model without y, the response evaluated on the data frame X."""
        design = getattr(self, "formula_design_", None)
        if y is None and getattr(self, "formula", None) is not None and design is not None:
            if hasattr(X, "to_pandas") and not isinstance(X, pd.DataFrame):
                X = X.to_pandas()
            y = design.response_values(X)
            if y is None:
                raise ValueError(f"y is None and the data lack the response of {self.formula!r}.")
        return y

    def _validate_X(self, X, y=None, groups=None, reset=True):
        """validate_data, allowing X without columns once groups are given (intercept-only).

        scikit-learn's messages get the fix appended; at fit, values whose squares over- or
        underflow the cross-products are refused.
        """
        X = _empty_frame_as_array(X)
        if isinstance(X, pd.DataFrame):  # before scikit-learn, whose message is another's
            repeated = repeated_as_text(X.columns)
            if repeated:
                raise ValueError(
                    f"X has columns whose names repeat as text: {repeated}; give every column a name "
                    "of its own (names are what random_slopes, smooth_features and the fitted tables use)."
                )
        # column labels that are not all text (integers): names to sklmm, though scikit-learn
        # keeps no feature names for them
        labels = list(X.columns) if isinstance(X, pd.DataFrame) and not all(
            isinstance(c, str) for c in X.columns) else None
        if not reset and labels is not None and getattr(self, "_column_labels", None) is not None \
                and labels != self._column_labels:
            raise ValueError(
                f"X has the column labels {labels[:20]} but was fitted with {self._column_labels[:20]}; "
                "pass the columns used in fit, in the same order (integer labels are names, not positions)."
            )
        if y is not None and getattr(getattr(y, "dtype", None), "kind", None) in ("m", "M"):
            check_response(y)  # dates and durations: the message says how to convert them
        if isinstance(y, pd.Series) and isinstance(y.dtype, np.dtype) and y.dtype.kind in "fiu":
            y = y.to_numpy()  # a plain numeric Series: scikit-learn's pandas path costs 0.1 ms
        fast = _plain_valid_inputs(X, y) if reset else None
        try:
            if fast is not None:  # what validate_data(reset=True) returns and sets
                X, y, names = fast
                self.n_features_in_ = X.shape[1]
                if names is not None:
                    self.feature_names_in_ = names
                else:
                    self.__dict__.pop("feature_names_in_", None)
            elif not reset:
                plain = _plain_fitted_input(X, self.n_features_in_, getattr(self, "feature_names_in_", None))
                if plain is None:  # (else what validate_data(reset=False) returns)
                    _reject_label_columns(X)
                    plain = validate_data(self, X, reset=False, dtype=np.float64,
                                          ensure_min_features=0 if self.n_features_in_ == 0 else 1)
                if plain.size and np.abs(plain).max() > _MAX_MAGNITUDE:  # (else inf and NaN out)
                    _check_magnitude(plain, "X", self._feature_names())
                return plain
            else:
                _reject_label_columns(X)
                X, y = validate_data(
                    self, X, y, y_numeric=True, dtype=np.float64,
                    ensure_min_features=0 if groups is not None else 1,
                )
        except ValueError as e:
            hint = next((h for pattern, h in _VALIDATION_HINTS if pattern in str(e)), None)
            if hint is None:
                raise
            raise ValueError(f"{e} {hint}") from e
        if y is not None and y.dtype.kind not in "fiub":  # numpy strings pass y_numeric as they are
            raise ValueError(
                f"y must be numeric; got values of dtype {y.dtype} (e.g. {y[:3].tolist()}). Convert "
                "it to numbers; for two class labels use MixedLogisticRegression."
            )
        if labels is not None:
            self._column_labels = labels
        else:
            self.__dict__.pop("_column_labels", None)
        names = self._feature_names()  # (unique: a frame's were checked above, an array's are made)
        _check_magnitude(X, "X", names)
        _check_magnitude(y[:, None], "y", ["y"])
        check_coefficient_range(X, y, names)
        return X, y

    def _feature_names(self):
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        labels = getattr(self, "_column_labels", None)
        if labels is not None and len(labels) == self.n_features_in_:
            return [str(c) for c in labels]
        return [f"x{j}" for j in range(self.n_features_in_)]

    def _label_position(self, key):
        """The position of an integer key: of the column so labelled when X's labels are
        integers (labels are names, not positions), else the key itself. None if absent."""
        labels = getattr(self, "_column_labels", None)
        if labels is None:
            return int(key)
        return labels.index(key) if key in labels else None

    @staticmethod
    def _check_fixed_names(fe_names, made):
        """Fixed-effect names must be unique: a feature named like one sklmm makes (its
        intercept, a smooth's null-space column) would shadow it in every table."""
        clash = sorted({nm for nm in fe_names if fe_names.count(nm) > 1})
        if clash:
            raise ValueError(
                f"the fixed effects would have the name(s) {clash} twice: a column of X is named "
                f"like a term sklmm makes ({made}). Rename that column."
            )

    def _column_index(self, spec, names, what):
        out = []
        named = hasattr(self, "feature_names_in_") or getattr(self, "_column_labels", None) is not None
        for s in spec:
            if isinstance(s, (numbers.Integral, np.integer)) and not isinstance(s, bool):
                j = self._label_position(s)
                if getattr(self, "_column_labels", None) is not None and j is None:
                    raise ValueError(
                        f"{what} names {s!r}, which is not a column label of X (labels: "
                        f"{self._column_labels[:20]}); integer labels are names, not positions."
                    )
                if not 0 <= j < len(names):
                    without = (" without its group_columns (positions count the feature columns left "
                               "once the label columns are taken out)"
                               if getattr(self, "group_columns", None) is not None else "")
                    raise ValueError(f"{what} names column index {s}, but X{without} has {len(names)} columns.")
                out.append(int(j))
            elif not named:  # "x1" would silently be column 1 of an array
                raise ValueError(
                    f"{what} names {s!r}, but X has no column names (an array): give column "
                    "indices (0 for the first column) or pass X as a DataFrame with named columns."
                )
            elif str(s) in names:
                out.append(names.index(str(s)))
            else:
                raise ValueError(
                    f"{what} names {s!r}, which is not a column of X (columns: {names[:20]}). Pass "
                    "X as a DataFrame with that column (in a Pipeline, keep names with "
                    "transformer.set_output(transform='pandas')) or give column indices instead "
                    "(see the pitfalls in docs/model_selection.md)."
                )
        return out

    def _slopes_for(self, factors, frame_columns, names):
        spec = self._structure["random_slopes"]
        if spec is None:
            return {f.name: [] for f in factors}
        if isinstance(spec, dict):
            known = {f.name for f in factors} | set(frame_columns)
            unknown = [k for k in spec if str(k) not in known]
            if unknown:
                raise ValueError(
                    f"random_slopes has keys {unknown} that are not grouping factors; the factors "
                    f"are {sorted(known)}."
                )
            out = {}
            for f in factors:
                inner = frame_columns[f.columns[-1]]
                key = f.name if f.name in spec else (inner if inner in spec else None)
                out[f.name] = (
                    self._column_index(spec[key], names, f"random_slopes for {f.name!r}")
                    if key is not None else []
                )
            return out
        return {f.name: self._column_index(spec, names, f"random_slopes for {f.name!r}") for f in factors}

    def _group_terms(self, X, groups):
        """Random-effect terms for ``groups`` (lme4 order: decreasing number of levels)."""
        n = X.shape[0]
        frame = as_group_frame(groups, n)
        names = self._feature_names()
        structure = self._structure
        factors = make_factors(frame, structure["nested"])
        for f in factors:
            if len(f.index) < 2:
                raise ValueError(
                    f"grouping factor {f.name!r} has a single level; a variance between groups "
                    "cannot be estimated from one group. Drop it from groups."
                )
            if len(f.index) >= n and not self._observation_level_effects:
                raise ValueError(
                    f"grouping factor {f.name!r} has {len(f.index)} levels for {n} observations; "
                    "a random effect per observation is not identifiable with a residual. Use "
                    "a coarser grouping."
                )
        slopes = self._slopes_for(factors, list(frame.columns), names)
        terms = []
        for f in factors:
            cols = slopes[f.name]
            repeated = sorted({names[c] for c in cols if cols.count(c) > 1})
            if repeated:
                raise ValueError(
                    f"random_slopes for {f.name!r} lists {repeated} more than once; give each "
                    "slope once (a repeated slope is not identifiable)."
                )
            if not structure["random_intercept"] and not cols:
                raise ValueError(
                    f"random_intercept=False leaves grouping factor {f.name!r} with no random "
                    "coefficient; give it random_slopes or set random_intercept=True."
                )
            parts = ([np.ones((n, 1))] if structure["random_intercept"] else []) + [X[:, cols]]
            colnames = (["(Intercept)"] if structure["random_intercept"] else []) + [names[c] for c in cols]
            terms.append(
                RandomTerm(
                    name=f.name, levels=f.index, codes=encode(f, frame), values=np.hstack(parts),
                    column_names=colnames, correlated=bool(structure["correlated_slopes"]),
                    slope_columns=cols, intercept=bool(structure["random_intercept"]),
                )
            )
        grams = [t.values.T @ t.values for t in terms]  # one pass over the rows per term, used twice
        _check_identifiable(terms, factors, list(frame.columns), bool(structure["nested"]), n,
                            gram=grams.__getitem__, observation_level=self._observation_level_effects)
        for t, G in zip(terms, grams):  # a correlated term with far-from-centred slopes: centred
            t.centre_slopes(G)
        order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
        self._group_factors = [factors[k] for k in order]
        self._group_columns = list(frame.columns)
        self._group_names_given = names_given(groups)
        return [terms[k] for k in order]

    def _warm_theta(self, terms):
        """The previous fit's theta when warm_start is on and the structure is unchanged."""
        if not self.warm_start or not hasattr(self, "theta_"):
            return None
        names = [nm for t in terms for nm in t.theta_names()]
        return internal_theta(terms, self.theta_) if names == list(self.theta_names_) else None

    def _set_engine_attributes(self, fit):
        """Fitted attributes common to the estimators, from a :class:`MixedFit`."""
        self._fit = fit
        self.theta_ = fit.user_theta()  # lme4's coordinates and weights' units
        self.theta_names_ = fit.theta_names()
        self.sigma_ = fit.user_sigma()
        self.criterion_ = fit.criterion
        self.loglik_ = fit.loglik
        self.aic_ = fit.aic
        self.bic_ = fit.bic
        self.converged_ = bool(fit.optimizer.converged)
        self.n_iter_ = int(fit.optimizer.n_evals)
        self.optimizer_ = fit.optimizer
        self.solver_ = fit.factor.name
        self.is_singular_ = fit.is_singular
        self.n_obs_ = fit.n
        group_terms = [(k, t) for k, t in enumerate(fit.terms) if not t.scalar]
        self._group_terms_fitted = group_terms
        self.n_groups_ = {t.name: t.n_levels for _, t in group_terms}

    # the two tables are built on first access (a pandas frame costs as much as a small fit) and
    # kept with the fit they describe, so a refit replaces them

    def _fit_table(self, key, build):
        """The fitted model's table ``key``, built by ``build(fit)`` on first access."""
        fit = self.__dict__.get("_fit")
        if fit is None:
            raise AttributeError(f"{key}_ (the estimator is not fitted)")
        if key not in fit.tables:
            fit.tables[key] = build(fit)
        return fit.tables[key]

    @property
    def variance_components_(self):
        return self._fit_table("variance_components", variance_table)

    @property
    def random_effects_(self):
        return self._fit_table("random_effects", lambda fit: {
            t.name: pd.DataFrame(t.user_coefficients(fit.b[k]), index=t.levels, columns=t.column_names)
            for k, t in self._group_terms_fitted
        })

    def _random_part(self, X, groups, rows=None):
        """Sum over grouping factors of each row's random effects (0 for unseen levels);
        ``rows``: :meth:`_group_rows` already computed."""
        out = np.zeros(X.shape[0])
        for k, _, codes, seen, vals in (self._group_rows(X, groups) if rows is None else rows):
            # the levels' effects gathered column by column (np.take along rows of b', 3x the
            # speed of a gather of b's rows at 500,000 rows)
            b = np.take(self._fit.b[k].T, codes[seen], axis=1)
            part = np.zeros(b.shape[1])
            for a in range(b.shape[0]):
                part += vals[:, a] * b[a]
            out[seen] += part
        return out

    def _group_rows(self, X, groups):
        """Per fitted grouping factor: ``(term index, term, codes, seen mask, model-matrix rows
        of the seen rows)``; unseen levels (code -1) raise when ``unseen_groups="error"``."""
        by_name = getattr(self, "_group_names_given", False) and names_given(groups)
        frame = align_group_frame(as_group_frame(groups, X.shape[0]), self._group_columns, by_name)
        for f, (k, t) in zip(self._group_factors, self._group_terms_fitted):
            codes = encode(f, frame)
            unseen = codes < 0
            hint = unseen_type_hint(f, frame, unseen) if unseen.any() else None
            if hint is not None:
                warnings.warn(hint, UserWarning, stacklevel=4)
            if unseen.any() and self.unseen_groups == "error":
                levels = pd.unique(
                    frame.to_pandas().iloc[unseen, list(f.columns)].astype(str).agg(":".join, axis=1).to_numpy()
                )
                raise ValueError(
                    f"groups has {len(levels)} level(s) of {f.name!r} not seen in fit: "
                    f"{list(levels[:10])}{' ...' if len(levels) > 10 else ''}. Set "
                    "unseen_groups='population' to predict them at the population level (see "
                    "'Unseen levels' in the user guide, docs/user_guide.md)."
                )
            seen = ~unseen
            yield k, t, codes, seen, t.rows(X[seen])

    def score(self, X, y=None, groups=None, sample_weight=None):
        """R^2 of ``predict(X, groups)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (with ``group_columns``, the label columns too; with ``formula``, the data
            frame).
        y : array-like of shape (n_samples,), default=None
            The response; None only with ``formula``, which then evaluates its left side on X.
        groups : array-like, default=None
            Group labels, as in ``predict``. Without them (and without label columns in X) the
            score is of the population-level prediction.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        y = self._response(X, y)
        if y is None:
            raise ValueError("score needs y (only a model with a formula reads it from X).")
        if _dask.is_dask_collection(X, y, groups, sample_weight):  # sums reduced, rows not gathered
            X, groups = self._resolve_predict(X, groups)
            return _dask.score(self, X, y, groups, sample_weight)
        pred = self.predict(X, groups=groups)
        # the response and the weights are checked as fit checks them
        y = check_response(y, len(pred))
        sample_weight = check_sample_weight(sample_weight, len(pred))
        return r2_score(y, pred, sample_weight=sample_weight)

    def _variance_lines(self):
        vc = self.variance_components_
        rows = vc[vc["term2"].isna()]
        # (columns as wide as the longest name, one space between)
        wg = max([11] + [len(str(f)) for f in rows["factor"]]) + 1
        wn = max([13] + [len(str(t)) for t in rows["term"].dropna()]) + 1
        lines = [f" {'Groups':<{wg}}{'Name':<{wn}}{'Variance':>12}{'Std.Dev.':>11}  Corr"]
        for _, r in rows.iterrows():
            corr = vc[(vc["factor"] == r["factor"]) & (vc["term2"] == r["term"])]["correlation"]
            ctext = " ".join(f"{c:6.3f}" for c in corr)
            name = "" if pd.isna(r["term"]) else r["term"]
            lines.append(f" {r['factor']:<{wg}}{name:<{wn}}{r['variance']:12.4f}{r['std_dev']:11.4f}  {ctext}")
        grp = ", ".join(f"{k}, {v}" for k, v in self.n_groups_.items())
        lines.append(f"Number of obs: {self.n_obs_}" + (f", groups:  {grp}" if grp else ""))
        return lines

    def _optimizer_line(self):
        status = "converged" if self.converged_ else "NOT converged"
        return (f"Optimizer: BOBYQA (nlopt), {self.n_iter_} evaluations, {status}"
                + ("; boundary (singular) fit" if self.is_singular_ else ""))
