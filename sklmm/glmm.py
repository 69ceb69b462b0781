"""MixedLogisticRegression and MixedPoissonRegressor: GLMMs fitted as lme4's glmer fits them."""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, d2_tweedie_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._base import GroupedMixin, variance_table
from ._engine.families import Binomial, Poisson
from ._engine.glmm_fit import SeparationWarning, fit_glmm
from ._engine.threads import sparing_busy_cpus
from ._inference.conditional import left_out_variance, marginal_mean
from ._inference.glmm import GlmmInferenceMixin
from ._inference.mixin import _fingerprint
from ._input import dask_collections as _dask
from ._input.arrays import binary_target, check_sample_weight
from ._input.formula import FORMULA_PARAM_DEFAULTS, FORMULA_PARAMS, parse_formula
from ._input.groups import NoGroupsWarning

__all__ = ["MixedLogisticRegression", "MixedPoissonRegressor", "SeparationWarning"]

_CBIND = re.compile(r"^\s*cbind\s*\(\s*([^,()]+?)\s*,\s*([^()]+?)\s*\)\s*~")
#: the 0/1 response column a ``cbind(successes, failures)`` formula becomes
CBIND_COLUMN = "_cbind_response"


class _MixedGLM(GlmmInferenceMixin, GroupedMixin, BaseEstimator):
    """What the two GLMM estimators share: the fit, the linear predictor, the tables."""

    _family = None
    #: GLMMs are fitted by maximum likelihood (the Laplace approximation); there is no REML
    reml = False
    warm_start = False
    _observation_level_effects = True
    _formula_defaults = FORMULA_PARAM_DEFAULTS
    _parse_formula = staticmethod(parse_formula)
    _parameter_constraints = {
        **{k: v for k, v in GroupedMixin._group_parameter_constraints.items()
           if k not in ("reml", "warm_start")},
        "fit_intercept": ["boolean"],
        "unseen_groups": [StrOptions({"population", "error", "marginal"})],
        "n_quadrature_points": [Interval(numbers.Integral, 1, 100, closed="both")],
    }

    def __init__(self, random_slopes=None, correlated_slopes=True, nested=False, fit_intercept=True,
                 unseen_groups="population", n_quadrature_points=1, random_intercept=True,
                 solver="auto", max_iter=10000, verbose=0, group_columns=None, formula=None):
        self.random_slopes = random_slopes
        self.correlated_slopes = correlated_slopes
        self.nested = nested
        self.fit_intercept = fit_intercept
        self.unseen_groups = unseen_groups
        self.n_quadrature_points = n_quadrature_points
        self.random_intercept = random_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.verbose = verbose
        self.group_columns = group_columns
        self.formula = formula

    # ------------------------------------------------------------------ fit

    def _encode_target(self, y):
        """y as floats of the family's scale (0/1 for the classifier)."""
        return y

    def _check_weighted_target(self, y, sample_weight):
        """What the response must have beyond its values (the classifier: both classes)."""

    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the GLMM by glmer's two stages (see the class description).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fixed-effect features (and the source of random-slope columns).
        y : array-like of shape (n_samples,)
            The response.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels, one column per grouping factor. Without groups a GLM is fitted,
            with a warning.
        sample_weight : array-like of shape (n_samples,), default=None
            Case weights: a weight w counts the row w times in the likelihood (binomial data
            with trials: two rows per observation, successes and failures as weights).

        Returns
        -------
        self
        """
        with sparing_busy_cpus():  # BLAS within the CPUs free when the fit starts
            self._check_group_params()
            if _dask.is_dask_collection(X, y, groups, sample_weight):
                raise ValueError(
                    f"{type(self).__name__} fits in-memory data only: each step of penalized IRLS "
                    "needs a pass over every row with new weights (a GLMM fit makes hundreds), which "
                    "over Dask partitions would be hundreds of distributed passes. Compute the "
                    "collections (.compute()) and pass numpy or pandas objects."
                )
            labels = None
            if self.formula is not None:  # a cbind or label response made ready for the design
                y_given = y is not None
                X, sample_weight, labels = self._formula_frame(self.formula, X, sample_weight)
            X, y, groups, sample_weight = self._resolve_fit(X, y, groups, sample_weight)
            if labels is not None and not y_given:
                y = np.asarray(labels)[self.formula_design_.complete_rows]
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
            n = _num_samples(y)
            if n < 2:
                raise ValueError(f"n_samples = {n}: fitting a GLMM needs at least 2 observations.")
            y = self._encode_target(y)
            X, y = self._validate_X(X, y, groups=groups)
            y = np.asarray(y, dtype=float)  # (a boolean y stays boolean through scikit-learn's checks)
            self._family.check(y)
            sample_weight = check_sample_weight(sample_weight, X.shape[0], case_weights=True)
            self._check_weighted_target(y, sample_weight)
            if np.ptp(y) == 0:
                raise ValueError(
                    f"y has no variation (every value is {y[0]:g}): no {self._family.name} model can be "
                    "fitted (the intercept would run to infinity, or every effect is 0)."
                )
            if groups is None:
                warnings.warn(
                    "fit was called without groups, so no random effects are fitted: this is an "
                    "ordinary GLM fit of the fixed effects. Pass groups=<labels> to fit random effects.",
                    NoGroupsWarning, stacklevel=2,
                )
                terms, self._group_factors, self._group_columns = [], [], None
                self._group_names_given = False
            else:
                terms = self._group_terms(X, groups)
            if self.n_quadrature_points > 1 and (len(terms) != 1 or terms[0].n_coef != 1):
                raise ValueError(
                    f"n_quadrature_points={self.n_quadrature_points} (adaptive Gauss-Hermite "
                    "quadrature) needs a single grouping factor with a random intercept only, as "
                    "glmer's nAGQ > 1; this model has "
                    f"{sum(t.n_coef for t in terms)} random coefficient(s) in {len(terms)} factor(s). Use "
                    "n_quadrature_points=1 (the Laplace approximation)."
                )
            names = self._feature_names()
            self._fixed_index = None
            Xf = self._fixed_columns(X)
            fe_names = (["(Intercept)"] if self._structure["fit_intercept"] else []) + names
            self._check_fixed_names(fe_names, "'(Intercept)'")
            fit = fit_glmm(terms, Xf, y, fe_names, self._family, sample_weight=sample_weight,
                           n_agq=int(self.n_quadrature_points), solver=self.solver, max_iter=self.max_iter,
                           verbose=self.verbose)
            self._set_engine_attributes(fit)
            del self.sigma_  # (1 for these families: not a parameter)
            self.n_passes_ = int(fit.n_passes)
            self.fixed_effects_names_ = fe_names
            self._data_fingerprint = _fingerprint(y, sample_weight)
            self._inference_cache = {}
            self._set_coefficients(fit.beta if self._structure["fit_intercept"] else np.r_[0.0, fit.beta])
            return self

        # ------------------------------------------------------------------ predictions

    def _linear_predictor(self, X, groups):
        """``(eta, var)``: the linear predictor conditional on the groups' seen levels, and the
        variance of the random effects left out (unseen levels, or every factor without groups),
        which only ``unseen_groups="marginal"`` integrates over."""
        check_is_fitted(self)
        X, groups = self._resolve_predict(X, groups)
        X = self._validate_X(X, reset=False)
        fit = self._fit
        eta = self._fixed_columns(X) @ fit.beta
        var = np.zeros(X.shape[0])
        marginal = self.unseen_groups == "marginal"
        if not fit.terms:
            return eta, var
        rows = None
        if groups is not None:
            rows = list(self._group_rows(X, groups))
            eta = eta + self._random_part(X, groups, rows)
        if marginal:
            var = left_out_variance(fit, self._group_terms_fitted, X, rows)
        return eta, var

    def _mean(self, X, groups):
        return marginal_mean(self._family, *self._linear_predictor(X, groups))

    def linear_predictor(self, X, groups=None):
        """The linear predictor (log-odds or log-mean), conditional on the groups' levels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like, default=None
            Group labels; without them the population-level linear predictor (random
            effects 0). ``unseen_groups="marginal"`` does not change the linear predictor.

        Returns
        -------
        eta : ndarray of shape (n_samples,)
        """
        return self._linear_predictor(X, groups)[0]

    # ------------------------------------------------------------------ tables

    @property
    def variance_components_(self):
        """DataFrame: the random effects' variances, standard deviations and correlations (lme4
        ``VarCorr``; no residual row: these families have none)."""
        table = self._fit_table("variance_components", variance_table)
        return table[table["factor"] != "Residual"].reset_index(drop=True)

    def summary(self):
        """A glmer-like text summary: family, AIC/BIC/logLik/deviance, variance components,
        fixed effects with z tests.

        Returns
        -------
        text : str
        """
        check_is_fitted(self)
        how = "Laplace Approximation" if self.n_quadrature_points == 1 else \
            f"Adaptive Gauss-Hermite Quadrature (nAGQ = {self.n_quadrature_points})"
        lines = [f"Generalized linear mixed model fit by maximum likelihood ({how}) [sklmm]",
                 f" Family: {self._family.name}  ( {self._family.link} )",
                 "     AIC       BIC    logLik  -2logLik",
                 f"{self.aic_:9.2f} {self.bic_:9.2f} {self.loglik_:9.2f} {self.criterion_:9.2f}",
                 "", "Random effects:"]
        lines += self._variance_lines()
        lines += ["", "Fixed effects:",
                  f" {'':<14}{'Estimate':>12}{'Std. Error':>12}{'z value':>10}{'Pr(>|z|)':>11}"]
        for nm, r in self.fixed_effects_.iterrows():
            if np.isnan(r["estimate"]):
                lines.append(f" {nm:<14}{'(dropped: aliased)':>30}")
                continue
            lines.append(f" {nm:<14}{r['estimate']:12.4f}{r['std_error']:12.4f}{r['z_value']:10.3f}"
                         f"{r['p_value']:11.3g}")
        lines += ["", self._optimizer_line() + f"; {self.n_passes_} passes over the rows"]
        return "\n".join(lines)

    # ------------------------------------------------------------------ formulas

    @classmethod
    def _formula_frame(cls, formula, data, weights):
        """``(data, weights, labels)`` ready for the formula's design: what the classifier
        changes (a ``cbind(s, f)`` response as two case-weighted rows per observation; a
        response of labels coded as numbers for formulaic, ``labels`` keeping them); else the
        data as they are and ``labels`` None."""
        return data, weights, None

    @classmethod
    def from_formula(cls, formula, data, weights=None, **params):
        """Fit an lme4 formula: ``glmer(formula, data, family)`` in one line.

        The fixed part is turned into a model matrix by formulaic; the random-effect terms set
        the parameters (``(1 | g)``, ``(x | g)``, ``(x || g)``, crossed and nested factors), as
        :meth:`sklmm.MixedLinearRegressor.from_formula`. For the classifier the response may
        be any two labels (a factor such as ``"N"``/``"Y"``) or ``cbind(successes, failures)``.

        Parameters
        ----------
        formula : str
        data : pandas.DataFrame
        weights : str or array-like, default=None
            Case weights: a column of data or one value per row.
        **params
            Other constructor parameters (``n_quadrature_points``, ``unseen_groups``, ...).

        Returns
        -------
        model : the fitted estimator
        """
        given = [p for p in FORMULA_PARAMS if p in params]
        if given:
            raise ValueError(f"{given} are set by the formula; remove them from the arguments of from_formula.")
        if isinstance(weights, str):
            if weights not in getattr(data, "columns", []):
                raise ValueError(f"weights={weights!r} is not a column of data.")
            weights = np.asarray(data[weights], dtype=float)
        data, weights, labels = cls._formula_frame(formula, data, weights)
        spec = cls._parse_formula(formula)
        X, y, groups, formula_params = spec.fit_design(data)
        if spec.random_only:
            raise ValueError(
                f"{formula!r} has a random slope that is not a fixed effect; add it to the fixed part."
            )
        keep = spec.complete_rows
        if labels is not None:
            y = np.asarray(labels)[keep]
        w = None if weights is None else cls._rows_kept(weights, keep, "weights")
        model = cls(**formula_params, **params).fit(X, y, groups=groups, sample_weight=w)
        model.formula_ = formula
        model.formula_design_ = spec
        return model


def _cbind_counts(data, expr, which, s_expr, f_expr):
    """The counts ``expr`` of a ``cbind(successes, failures)`` response, as floats (NaN where
    missing); a clear error for a name not in the data, text, or a negative or infinite count."""
    where = f"cbind({s_expr}, {f_expr}): the {which} {expr!r}"
    try:
        values = data.eval(expr)
    except Exception as exc:  # (pandas' UndefinedVariableError, a syntax error, ...)
        raise ValueError(f"{where} could not be computed from the data ({exc}); give columns of "
                         "the data frame (or expressions of them) holding the counts.") from None
    try:
        values = np.asarray(pd.to_numeric(pd.Series(np.ravel(values)), errors="raise"), dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must hold numbers (counts of trials); it holds text or other "
                         "non-numeric values.") from None
    if values.shape != (len(data),):
        raise ValueError(f"{where} must be one count per row of the data; got {values.size} values "
                         f"for {len(data)} rows.")
    bad = np.flatnonzero(np.isinf(values) | (values < 0))
    if bad.size:
        rows = list(data.index[bad[:5]])
        raise ValueError(f"{where} has {bad.size} negative or infinite value(s) (rows {rows}): counts "
                         "of trials must be 0 or more. Fix or drop those rows.")
    return values


class MixedLogisticRegression(ClassifierMixin, _MixedGLM):
    """Logistic regression with random effects: a binomial GLMM fitted as lme4's ``glmer``.

    The log-odds of the positive class are ``eta = X beta + Z b`` with random effects
    ``b ~ N(0, Sigma_theta)`` for the levels of one or more grouping factors (``groups``). The
    likelihood integrates over b by the Laplace approximation (glmer's default) or, for a
    single grouping factor with a random intercept, by adaptive Gauss-Hermite quadrature.
    The fit follows glmer: penalized iteratively reweighted least squares (PIRLS) for the
    conditional modes of b at each value of the parameters, on the same Cholesky factorization
    of ``Lambda' Z'WZ Lambda + I`` as :class:`MixedLinearRegressor`; BOBYQA first over the
    variance parameters with beta inside PIRLS (glmer's ``nAGQ = 0``), then over the variance
    parameters and beta together.

    Parameters
    ----------
    random_slopes : None, list or dict, default=None
        Features with a random slope, as in :class:`MixedLinearRegressor`.
    correlated_slopes : bool, default=True
        lme4 ``(x | g)`` (True) or ``(x || g)`` (False).
    nested : bool, default=False
        Several group columns as a hierarchy (lme4 ``(1 | a/b)``) rather than crossed.
    fit_intercept : bool, default=True
        Whether the fixed effects include an intercept.
    unseen_groups : {"population", "error", "marginal"}, default="population"
        What prediction does for a level not seen in fit (and, with ``groups=None``, for every
        factor): ``"population"`` sets its random effect to 0 (lme4 ``re.form = NA``), the
        probability of a typical group; ``"marginal"`` averages the probability over the
        random effects' distribution, the probability of a new group drawn at random (calibrated
        across groups); ``"error"`` raises.
    n_quadrature_points : int, default=1
        1: the Laplace approximation. More: adaptive Gauss-Hermite quadrature with that many
        points (glmer's ``nAGQ``), only for a single grouping factor with a random intercept.
    random_intercept : bool, default=True
        Whether each grouping factor has a random intercept.
    solver : {"auto", "blocked", "cholmod", "dense"}, default="auto"
        The Cholesky factorization (see :class:`MixedLinearRegressor`).
    max_iter : int, default=10000
        Most evaluations of the criterion per optimization stage.
    verbose : int, default=0
    group_columns : str, int or list, default=None
        Columns of X that hold the group labels (see :class:`MixedLinearRegressor`).
    formula : str, default=None
        An lme4 formula (``"r2 ~ Anger + Gender + (1 | id) + (1 | item)"``, or
        ``"cbind(successes, failures) ~ ..."``): ``fit``, ``predict`` and ``score`` then take
        the data frame as X (the response and the groups are its columns; a response of two
        labels is read as labels), so the estimator clones and cross-validates on data frames.
        The random-effect parameters then come from the formula and must keep their defaults.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; the second is the positive class.
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    theta_ : ndarray
        Relative covariance parameters, lme4's ``getME(fit, "theta")``.
    variance_components_ : DataFrame
    random_effects_ : dict of DataFrame
        Conditional modes per factor (lme4 ``ranef``).
    random_effects_std_ : dict of DataFrame
        Their conditional standard deviations (lme4 ``ranef(condVar = TRUE)``).
    fixed_effects_ : DataFrame
        ``estimate``, ``std_error``, ``z_value``, ``p_value`` (glmer's summary).
    fixed_effects_cov_ : DataFrame
    criterion_ : float
        ``-2 log L`` at the optimum (lme4's ``-2 * logLik(fit)`` for a Laplace fit of 0/1 data;
        with case weights, the likelihood of the weighted rows, without binomial coefficients).
    loglik_, aic_, bic_ : float
    converged_ : bool
    n_iter_ : int
        Evaluations of the criterion, both stages.
    n_passes_ : int
        Passes over the rows (PIRLS steps and quadrature nodes).
    is_singular_ : bool

    See Also
    --------
    MixedPoissonRegressor : The Poisson GLMM.
    sklearn.linear_model.LogisticRegression : Without random effects.

    Notes
    -----
    ``sample_weight`` are case weights. Binomial data with trials (lme4
    ``cbind(successes, failures)``) are two rows per observation, y = 1 with weight
    ``successes`` and y = 0 with weight ``failures``; :meth:`from_formula` accepts ``cbind``.
    The estimates are lme4's; the log-likelihood lacks lme4's binomial coefficients
    ``sum(log choose(n, s))``, a constant.

    Examples
    --------
    >>> from sklmm import MixedLogisticRegression
    >>> from sklmm.datasets import load_contraception
    >>> X, y, groups = load_contraception(return_X_y=True)
    >>> clf = MixedLogisticRegression().fit(X, y, groups=groups)
    >>> round(clf.criterion_, 2)  # glmer: 2372.73
    2372.73
    >>> clf.predict_proba(X.head(2), groups=groups.head(2)).round(3)
    array([[0.84 , 0.16 ],
           [0.777, 0.223]])
    """

    _family = Binomial

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _encode_target(self, y):
        self.classes_, y = binary_target(y, type(self).__name__)
        return y

    def _check_weighted_target(self, y, sample_weight):
        w = np.ones_like(y) if sample_weight is None else sample_weight
        present = [bool(np.any((y == v) & (w > 0))) for v in (0.0, 1.0)]
        if not all(present):
            raise ValueError(
                f"y has a single class with positive sample_weight ({self.classes_[present.index(True)]!r}); "
                "a classifier needs samples of both classes."
            )

    def _set_coefficients(self, beta):
        self.intercept_ = np.array([beta[0]])
        self.coef_ = np.asarray(beta[1:])[None, :]

    def predict_proba(self, X, groups=None):
        """Class probabilities, conditional on the groups' levels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like, default=None
            Group labels. Seen levels use their conditional modes; unseen levels (and every
            factor when groups is None) follow ``unseen_groups``.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
        """
        mu = self._mean(X, groups)
        return np.column_stack([1.0 - mu, mu])

    def decision_function(self, X, groups=None):
        """The log-odds of the positive class: :meth:`linear_predictor`.

        Returns
        -------
        eta : ndarray of shape (n_samples,)
        """
        return self.linear_predictor(X, groups)

    def predict(self, X, groups=None):
        """The more probable class (see :meth:`predict_proba`)."""
        positive = self._mean(X, groups) > 0.5
        return self.classes_[positive.astype(int)]

    def score(self, X, y=None, groups=None, sample_weight=None):
        """Accuracy of ``predict(X, groups)``, as every scikit-learn classifier."""
        y = self._response(X, y)
        return accuracy_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    @staticmethod
    def _parse_formula(formula):
        # a cbind(s, f) response is the 0/1 column that _formula_frame makes
        return parse_formula(_CBIND.sub(CBIND_COLUMN + " ~", formula, count=1))

    @classmethod
    def _formula_frame(cls, formula, data, weights):
        if not isinstance(data, pd.DataFrame):
            return data, weights, None
        m = _CBIND.match(formula)
        if m is not None:  # two rows per observation, y = 1 weighted s and y = 0 weighted f
            s, f = (_cbind_counts(data, m.group(k), which, m.group(1), m.group(2))
                    for k, which in ((1, "successes"), (2, "failures")))
            w0 = np.ones(len(data)) if weights is None else np.asarray(weights, dtype=float)
            both = pd.concat([data.assign(**{CBIND_COLUMN: 1.0}), data.assign(**{CBIND_COLUMN: 0.0})],
                             ignore_index=True)
            # an observation with a missing count is left out whole (lme4's na.omit), not as a 0
            complete = np.tile(np.isfinite(s) & np.isfinite(f), 2)
            w = np.concatenate([s * w0, f * w0])
            keep = complete & (w > 0)  # (rows of weight 0 count for nothing)
            return both.loc[keep].reset_index(drop=True), w[keep], None
        response = parse_formula(formula).response
        if response in data.columns and not pd.api.types.is_numeric_dtype(data[response]):
            labels = data[response]  # numbers for formulaic, the labels for fit
            return data.assign(**{response: pd.factorize(labels, sort=True)[0].astype(float)}), weights, labels
        return data, weights, None

    def _response(self, X, y):
        """y, or with a formula the response column of X (labels as they are)."""
        design = getattr(self, "formula_design_", None)
        if y is None and getattr(self, "formula", None) is not None and design is not None \
                and isinstance(X, pd.DataFrame) and design.response in X.columns \
                and not pd.api.types.is_numeric_dtype(X[design.response]):
            return X[design.response].to_numpy()
        return super()._response(X, y)


class MixedPoissonRegressor(RegressorMixin, _MixedGLM):
    """Poisson regression with random effects: a Poisson GLMM (log link) fitted as lme4's
    ``glmer(family = poisson)``.

    The log of the mean count is ``eta = X beta + Z b``; everything else is as in
    :class:`MixedLogisticRegression` (same parameters and fitted attributes), except:
    ``predict`` returns the mean count, ``score`` is D^2 (the fraction of Poisson deviance
    explained, as :class:`sklearn.linear_model.PoissonRegressor`), ``coef_`` is 1-D and
    ``intercept_`` a float. With ``unseen_groups="marginal"`` the mean of a new group is
    ``exp(eta + v / 2)``, v the variance of its random effects.

    Parameters
    ----------
    random_slopes, correlated_slopes, nested, fit_intercept, unseen_groups,
    n_quadrature_points, random_intercept, solver, max_iter, verbose, group_columns, formula
        As :class:`MixedLogisticRegression` (a Poisson formula's response is a count column).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    theta_, variance_components_, random_effects_, random_effects_std_, fixed_effects_,
    fixed_effects_cov_, criterion_, loglik_, aic_, bic_, converged_, n_iter_, n_passes_,
    is_singular_
        As :class:`MixedLogisticRegression`.

    See Also
    --------
    MixedLogisticRegression : The binomial GLMM.

    Examples
    --------
    >>> from sklmm import MixedPoissonRegressor
    >>> from sklmm.datasets import load_grouseticks
    >>> X, y, groups = load_grouseticks(return_X_y=True)
    >>> X = X.assign(HEIGHT=X["HEIGHT"] - X["HEIGHT"].mean())
    >>> m = MixedPoissonRegressor().fit(X, y, groups=groups)
    >>> round(m.criterion_, 2)
    1780.54
    """

    _family = Poisson

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def _set_coefficients(self, beta):
        self.intercept_ = float(beta[0])
        self.coef_ = np.asarray(beta[1:])

    def predict(self, X, groups=None):
        """The mean count, conditional on the groups' levels (see
        :meth:`MixedLogisticRegression.predict_proba` for ``groups`` and unseen levels).

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        """
        return self._mean(X, groups)

    def score(self, X, y=None, groups=None, sample_weight=None):
        """D^2: the fraction of Poisson deviance explained by ``predict(X, groups)``."""
        y = self._response(X, y)
        return d2_tweedie_score(y, self.predict(X, groups=groups), sample_weight=sample_weight, power=1)
