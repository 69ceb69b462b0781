"""What every sklmm estimator shares: group-term building, parameter checks, the random part
of predictions, and the fitted attributes of the mixed-model engine."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.utils.validation import validate_data

from . import _dask
from ._groups import as_group_frame, encode, make_factors
from ._model import independent_columns
from ._terms import RandomTerm

__all__ = ["GroupedMixin", "NoGroupsWarning"]


class NoGroupsWarning(UserWarning):
    """``fit`` was called without ``groups``: no random effects were fitted."""


def _empty_frame_as_array(X):
    """A DataFrame without columns as an (n, 0) float array (pandas gives it no dtype)."""
    if isinstance(X, pd.DataFrame) and X.shape[1] == 0:
        return np.empty((X.shape[0], 0))
    return X


#: scikit-learn validation messages and the fix sklmm appends to them
_VALIDATION_HINTS = [
    ("could not convert string to float",
     "X and y must be numeric: encode categorical features first (OneHotEncoder in a "
     "ColumnTransformer, or pandas.get_dummies), and pass group labels as groups=, not as a "
     "column of X."),
    ("inconsistent numbers of samples",
     "X, y (and groups) need one row per observation, in the same order."),
    ("0 sample(s)", "Pass at least 2 observations to fit (and 1 row to predict)."),
    ("0 feature(s)",
     "Give X at least one column, or pass groups= to fit an intercept-only mixed model."),
    ("Input y contains NaN",
     "Drop the rows with a missing response (as lme4's na.omit does) before fitting."),
    ("contains infinity", "Fix or drop the rows with infinite values."),
    ("y should be a 1d array", "sklmm models one response: pass y as a 1-D array or Series."),
    ("feature names should match", "Pass X with the columns used in fit, in the same order."),
]

#: magnitudes whose squares, summed over the rows, stay far inside the float range
_MAX_MAGNITUDE = 1e100
_MIN_MAGNITUDE = 1e-100


def _reject_categorical_columns(X):
    """pandas categorical columns of X are labels, not numbers: refuse them with the fix."""
    if isinstance(X, pd.DataFrame):
        cat = [str(c) for c, dt in X.dtypes.items() if isinstance(dt, pd.CategoricalDtype)]
        if cat:
            raise ValueError(
                f"X has categorical column(s) {cat[:10]}: features must be numeric. Encode them "
                "first (OneHotEncoder in a ColumnTransformer, or pandas.get_dummies); if they are "
                "grouping factors, pass them as groups= instead of in X."
            )


def _plain_numeric_frame(X):
    """``(values, column names)`` of a DataFrame of numpy numeric columns named by ``str``, else None.

    Its names are the ``feature_names_in_`` scikit-learn would set (it keeps names only when
    every label is exactly a ``str``).
    """
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        return None
    if not all(type(c) is str for c in X.columns):
        return None
    if not all(isinstance(dt, np.dtype) and dt.kind in "fiu" for dt in X.dtypes):
        return None
    return X.to_numpy(dtype=np.float64), np.asarray(X.columns, dtype=object)


def _plain_valid_inputs(X, y):
    """``(X as float64, y, feature names or None)`` when the training data need no conversion
    or checks beyond finiteness, else None.

    That is: X a 2-D numeric ndarray or a plain numeric DataFrame (:func:`_plain_numeric_frame`)
    with at least one row and one column, y a 1-D numeric ndarray of the same length, every
    value finite. scikit-learn's ``validate_data`` returns the same arrays for them, at several
    times the cost (about 0.3 ms of a 2.6 ms sleepstudy fit); everything else goes through it,
    and it writes the error messages.
    """
    if type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind in "fiu":
        X, names = np.asarray(X, dtype=np.float64), None
    else:
        plain = _plain_numeric_frame(X)
        if plain is None:
            return None
        X, names = plain
    if not (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "fiu"):
        return None
    if X.shape[0] < 1 or X.shape[1] < 1 or y.shape[0] != X.shape[0]:
        return None
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        return None
    return X, y, names


def _check_magnitude(A, what, names):
    """Refuse columns whose values would over- or underflow the cross-products (squares)."""
    if A.size == 0:
        return
    top = np.abs(A).max(axis=0)
    for j in np.flatnonzero((top > _MAX_MAGNITUDE) | ((top > 0) & (top < _MIN_MAGNITUDE))):
        col = what if what == "y" else f"X column {names[j]!r}"
        raise ValueError(
            f"{col} has values of magnitude {top[j]:.3g}: sklmm needs magnitudes between "
            f"{_MIN_MAGNITUDE:g} and {_MAX_MAGNITUDE:g}, because the fit is built from sums of "
            "squares that would overflow or underflow. Rescale it (multiply by a power of 10); "
            "the fit is equivariant to the scale of y and of each feature."
        )


def _check_identifiable(terms, factors, columns, nested, n, gram=None, n_pairs=None):
    """Random-effect structures whose variances cannot be estimated, refused before the fit.

    lme4's ``check.nobs.vs.nRE`` (as many random effects as observations), and two checks
    lme4 leaves to a failed or singular fit: collinear coefficients within a term (a constant,
    zero or repeated slope column), and two factors that group the rows identically with a
    coefficient in common (the same factor twice, or ``nested=True`` with a column that does not
    subdivide the one before it, as when the columns are given inner to outer).

    ``gram(k)`` (the Gram matrix ``values' values`` of term k's rows) and ``n_pairs(a, b)`` (how
    many pairs of levels of terms a and b share a row) are computed from the terms' rows unless
    given (a fit from cross-products has only those).
    """
    gram = gram or (lambda k: terms[k].values.T @ terms[k].values)
    n_pairs = n_pairs or (lambda a, b: np.unique(
        terms[a].codes.astype(np.int64) * terms[b].n_levels + terms[b].codes).size)
    for k, t in enumerate(terms):
        if t.q >= n:
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


#: above this |mean| / sd a random slope's column makes intercept and slope nearly collinear
UNCENTRED_SLOPE_RATIO = 30.0


def _warn_uncentred_slopes(t, G):
    """Warn about random slopes on columns far from centred (``G``: the term's Gram matrix)."""
    if not t.intercept or t.n_coef < 2 or G[0, 0] <= 0:
        return
    mean = G[0, 1:] / G[0, 0]
    sd = np.sqrt(np.clip(np.diag(G)[1:] / G[0, 0] - mean**2, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sd > 0, np.abs(mean) / sd, np.inf)
    for j in np.flatnonzero(ratio > UNCENTRED_SLOPE_RATIO):
        name = t.column_names[j + 1]
        warnings.warn(
            f"the random slope column {name!r} of {t.name!r} is far from centred (|mean| / sd = "
            f"{ratio[j]:.0f}): the random intercept (at {name} = 0) and slope are then nearly "
            "collinear and the criterion badly conditioned, so the optimizer may stop at a wrong, "
            "often singular, optimum (lme4 says 'Rescale variables?'). Center the column (x - "
            "mean); with correlated_slopes=True that is the same model.",
            UserWarning,
            stacklevel=5,
        )


def term_rows(term, X):
    """A random-effect term's model-matrix rows at X: 1 for its intercept, then its slope columns."""
    return np.hstack([np.ones((X.shape[0], 1 if term.intercept else 0)), X[:, term.slope_columns]])


class GroupedMixin:
    """Random intercepts and slopes from ``groups``, shared by the estimators.

    Expects the parameters ``random_slopes``, ``correlated_slopes``, ``nested``,
    ``random_intercept``, ``unseen_groups``, ``solver`` and ``max_iter``.
    """

    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

    def _check_group_params(self):
        if self.unseen_groups not in ("population", "error"):
            raise ValueError(
                f"unseen_groups must be 'population' or 'error'; got {self.unseen_groups!r}."
            )
        if self.solver not in ("auto", "blocked", "cholmod", "dense"):
            raise ValueError(
                f"solver must be 'auto', 'blocked', 'cholmod' or 'dense'; got {self.solver!r}."
            )
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer; got {self.max_iter!r}.")
        if self.random_slopes is not None and not isinstance(self.random_slopes, (list, tuple, dict)):
            raise ValueError(
                "random_slopes must be None, a list of feature names / column indices, or a dict "
                f"from grouping-factor name to such a list; got {type(self.random_slopes).__name__}."
            )

    def _validate_X(self, X, y=None, groups=None, reset=True):
        """validate_data, allowing X without columns once groups are given (intercept-only).

        scikit-learn's messages get the fix appended; at fit, values whose squares over- or
        underflow the cross-products are refused.
        """
        X = _empty_frame_as_array(X)
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
                _reject_categorical_columns(X)
                return validate_data(
                    self, X, reset=False, dtype=np.float64,
                    ensure_min_features=0 if self.n_features_in_ == 0 else 1,
                )
            else:
                _reject_categorical_columns(X)
                X, y = validate_data(
                    self, X, y, y_numeric=True, dtype=np.float64,
                    ensure_min_features=0 if groups is not None else 1,
                )
        except ValueError as e:
            hint = next((h for pattern, h in _VALIDATION_HINTS if pattern in str(e)), None)
            if hint is None:
                raise
            raise ValueError(f"{e} {hint}") from e
        _check_magnitude(X, "X", self._feature_names())
        _check_magnitude(y[:, None], "y", ["y"])
        return X, y

    def _feature_names(self):
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{j}" for j in range(self.n_features_in_)]

    @staticmethod
    def _column_index(spec, names, what):
        out = []
        for s in spec:
            if isinstance(s, (numbers.Integral, np.integer)) and not isinstance(s, bool):
                if not 0 <= s < len(names):
                    raise ValueError(f"{what} names column index {s}, but X has {len(names)} columns.")
                out.append(int(s))
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
        spec = self.random_slopes
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
        factors = make_factors(frame, self.nested)
        for f in factors:
            if len(f.index) < 2:
                raise ValueError(
                    f"grouping factor {f.name!r} has a single level; a variance between groups "
                    "cannot be estimated from one group. Drop it from groups."
                )
            if len(f.index) >= n:
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
            if not self.random_intercept and not cols:
                raise ValueError(
                    f"random_intercept=False leaves grouping factor {f.name!r} with no random "
                    "coefficient; give it random_slopes or set random_intercept=True."
                )
            parts = ([np.ones((n, 1))] if self.random_intercept else []) + [X[:, cols]]
            colnames = (["(Intercept)"] if self.random_intercept else []) + [names[c] for c in cols]
            terms.append(
                RandomTerm(
                    name=f.name, levels=f.index, codes=encode(f, frame), values=np.hstack(parts),
                    column_names=colnames, correlated=bool(self.correlated_slopes),
                    slope_columns=cols, intercept=bool(self.random_intercept),
                )
            )
        _check_identifiable(terms, factors, list(frame.columns), bool(self.nested), n)
        order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
        self._group_factors = [factors[k] for k in order]
        self._group_columns = list(frame.columns)
        return [terms[k] for k in order]

    def _warm_theta(self, terms):
        """The previous fit's theta when warm_start is on and the structure is unchanged."""
        if not self.warm_start or not hasattr(self, "theta_"):
            return None
        names = [nm for t in terms for nm in t.theta_names()]
        return self.theta_ if names == list(self.theta_names_) else None

    def _set_engine_attributes(self, fit):
        """Fitted attributes common to the estimators, from a :class:`MixedFit`."""
        self._fit = fit
        self.theta_ = fit.theta.copy()
        self.theta_names_ = fit.theta_names()
        self.sigma_ = fit.sigma
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
        return self._fit_table("variance_components", lambda fit: fit.variance_table())

    @property
    def random_effects_(self):
        return self._fit_table("random_effects", lambda fit: {
            t.name: pd.DataFrame(fit.b[k], index=t.levels, columns=t.column_names)
            for k, t in self._group_terms_fitted
        })

    def _random_part(self, X, groups):
        """Sum over grouping factors of each row's random effects (0 for unseen levels)."""
        out = np.zeros(X.shape[0])
        for k, _, codes, seen, vals in self._group_rows(X, groups):
            out[seen] += np.einsum("ij,ij->i", vals, self._fit.b[k][codes[seen]])
        return out

    def _group_rows(self, X, groups):
        """Per fitted grouping factor: ``(term index, term, codes, seen mask, model-matrix rows
        of the seen rows)``; unseen levels (code -1) raise when ``unseen_groups="error"``."""
        frame = as_group_frame(groups, X.shape[0])
        if frame.shape[1] != len(self._group_columns):
            raise ValueError(
                f"groups has {frame.shape[1]} column(s) but the model was fitted with "
                f"{len(self._group_columns)} ({self._group_columns}); pass the same grouping columns."
            )
        for f, (k, t) in zip(self._group_factors, self._group_terms_fitted):
            codes = encode(f, frame)
            unseen = codes < 0
            if unseen.any() and self.unseen_groups == "error":
                levels = pd.unique(
                    frame.iloc[unseen, list(f.columns)].astype(str).agg(":".join, axis=1).to_numpy()
                )
                raise ValueError(
                    f"groups has {len(levels)} level(s) of {f.name!r} not seen in fit: "
                    f"{list(levels[:10])}{' ...' if len(levels) > 10 else ''}. Set "
                    "unseen_groups='population' to predict them at the population level (see "
                    "'Unseen levels' in the user guide, docs/user_guide.md)."
                )
            seen = ~unseen
            yield k, t, codes, seen, term_rows(t, X[seen])

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of ``predict(X, groups)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like, default=None
            Group labels, as in ``predict``. Without them the score is of the
            population-level prediction.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if _dask.is_dask_collection(X, y, groups, sample_weight):  # sums reduced, rows not gathered
            return _dask.score(self, X, y, groups, sample_weight)
        return r2_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    def _variance_lines(self):
        vc = self.variance_components_
        lines = [f" {'Groups':<12}{'Name':<14}{'Variance':>12}{'Std.Dev.':>11}  Corr"]
        for _, r in vc[vc["term2"].isna()].iterrows():
            corr = vc[(vc["factor"] == r["factor"]) & (vc["term2"] == r["term"])]["correlation"]
            ctext = " ".join(f"{c:6.3f}" for c in corr)
            name = "" if pd.isna(r["term"]) else r["term"]
            lines.append(f" {r['factor']:<12}{name:<14}{r['variance']:12.4f}{r['std_dev']:11.4f}  {ctext}")
        grp = ", ".join(f"{k}, {v}" for k, v in self.n_groups_.items())
        lines.append(f"Number of obs: {self.n_obs_}" + (f", groups:  {grp}" if grp else ""))
        return lines

    def _optimizer_line(self):
        status = "converged" if self.converged_ else "NOT converged"
        return (f"Optimizer: BOBYQA (nlopt), {self.n_iter_} evaluations, {status}"
                + ("; boundary (singular) fit" if self.is_singular_ else ""))
