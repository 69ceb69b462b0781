"""PenalizedSplineClassifier: binary responses with smooth effects (a binomial GAM / GAMM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from ._input.arrays import binary_target
from .gam import _PenalizedSpline

__all__ = ["PenalizedSplineClassifier"]


class PenalizedSplineClassifier(ClassifierMixin, _PenalizedSpline):
    """Binary classification with penalized smooth effects: mgcv's
    ``gam(y ~ s(x), family = binomial, method = "REML")``, and with ``groups`` a binomial GAMM.

    The log-odds of the positive class are an additive model ``eta = b0 + X_lin beta + sum_j
    f_j(x_j)`` (+ random effects of ``groups``), each smooth a penalized spline whose penalized
    coefficients are a random-effect term, as in :class:`PenalizedSplineRegressor`. The fit is
    penalized IRLS with the Laplace approximation, on the engine of
    :class:`MixedLogisticRegression`. With ``reml=True`` (the default) the smoothing parameters
    and group variances maximize the Laplace approximate restricted likelihood of Wood (2011),
    which integrates out the fixed effects as well: mgcv's ``method = "REML"`` for a binomial
    GAM (and for ``s(g, bs = "re")`` random effects). With ``reml=False`` they maximize the
    Laplace likelihood, glmer's, which is what gamm4 fits for a binomial GAMM; ``criterion_``
    is then ``-2 log L`` on glmer's scale, and with ``reml=True`` twice the negative Laplace REML
    (mgcv's score up to a constant that depends on its penalty scaling). Neither is PQL.

    Parameters
    ----------
    smooths, smooth_features, n_basis, basis, smoothing_params, knots, random_slopes, correlated_slopes,
    nested, random_intercept, solver, max_iter, warm_start, verbose, group_columns, formula
        As :class:`PenalizedSplineRegressor` (smoothing parameters on the logit scale).
        ``warm_start`` has no effect here (the GLMM engine starts from glmer's start).
    reml : bool, default=True
        The Laplace approximate REML (mgcv) or the Laplace likelihood (gamm4).
    unseen_groups : {"population", "error", "marginal"}, default="population"
        Group levels not seen in fit (and every row when ``groups`` is not given): the
        population curve (random effects 0), an error, or ``"marginal"``: the probability
        averaged over the group effects' distribution (by Gauss-Hermite quadrature), as
        :class:`MixedLogisticRegression`'s.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; the second is the positive class.
    smooths_, edf_, edf_total_, smoothing_params_, intercept_, coef_, linear_features_,
    theta_, theta_names_, criterion_, converged_, n_iter_, variance_components_, solver_
        As in :class:`PenalizedSplineRegressor`, on the logit scale (``sigma_`` is 1).
    fixed_effects_ : DataFrame
        The parametric terms as mgcv's ``summary(gam)$p.table``: ``estimate``, ``std_error``,
        ``z_value``, ``p_value`` (normal reference: the scale is known).
    smooth_tests_ : DataFrame
        mgcv's ``s.table``: ``edf``, ``ref_df``, ``statistic`` (Chi.sq), ``p_value``.
    r2_adj_, deviance_explained_, residual_df_ : float
        mgcv's ``r.sq`` (on the probability scale), ``dev.expl`` (1 - deviance / null
        deviance) and ``residual.df``.

    See Also
    --------
    MixedLogisticRegression : the binomial GLMM without smooths.
    PenalizedSplineRegressor : Gaussian, Poisson and Gamma responses.

    Examples
    --------
    >>> import numpy as np
    >>> from sklmm import PenalizedSplineClassifier
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 1, (500, 1))
    >>> y = rng.random(500) < 1 / (1 + np.exp(-2 * np.sin(6 * x[:, 0])))
    >>> from sklmm import s
    >>> clf = PenalizedSplineClassifier(smooths=[s(0, bs="cr")]).fit(x, y)
    >>> clf.classes_
    array([False,  True])
    >>> clf.predict_proba(x[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        smooths=None,
        smooth_features=None,
        n_basis=10,
        basis="cr",
        smoothing_params=None,
        knots=None,
        random_slopes=None,
        correlated_slopes=True,
        nested=False,
        reml=True,
        unseen_groups="population",
        random_intercept=True,
        solver="auto",
        max_iter=10000,
        warm_start=False,
        verbose=0,
        group_columns=None,
        formula=None,
    ):
        self.smooths = smooths
        self.smooth_features = smooth_features
        self.n_basis = n_basis
        self.basis = basis
        self.smoothing_params = smoothing_params
        self.knots = knots
        self.random_slopes = random_slopes
        self.correlated_slopes = correlated_slopes
        self.nested = nested
        self.reml = reml
        self.unseen_groups = unseen_groups
        self.random_intercept = random_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.verbose = verbose
        self.group_columns = group_columns
        self.formula = formula

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _family_name(self):
        return "binomial"

    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the binomial GAM (GAMM with ``groups``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Two class labels; None only with ``formula``, whose response column may hold the
            labels (``"Y"``/``"N"``, a category, booleans) or 0/1.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels for random effects (gamm4's ``random = ~ (1 | g)``).
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights (mgcv's ``weights``): a weight w counts a row w times.

        Returns
        -------
        self : PenalizedSplineClassifier
        """
        labels = None
        response = self._label_column(X, y)
        if response is not None:  # labels in the formula's response column: 0/1 for the design
            labels, y01 = binary_target(X[response].dropna(), type(self).__name__)
            X = X.assign(**{response: X[response].map({labels[0]: 0.0, labels[1]: 1.0}).astype(float)})
        super().fit(X, y, groups, sample_weight)
        if labels is not None:
            self.classes_ = labels
        return self

    def _label_column(self, X, y):
        """The formula's response column of the data frame X when it holds labels, else None."""
        if self.formula is None or y is not None or not isinstance(X, pd.DataFrame):
            return None
        lhs = self.formula.split("~", 1)[0].strip()
        numeric = lhs in X.columns and pd.api.types.is_numeric_dtype(X[lhs]) and X[lhs].dtype != bool
        return lhs if lhs in X.columns and not numeric else None

    def _response(self, X, y):
        response = self._label_column(X, y)
        return X[response].to_numpy() if response is not None else super()._response(X, y)

    def _encode_target(self, y):
        self.classes_, y = binary_target(y, type(self).__name__)
        return y

    def predict_proba(self, X, groups=None):
        """Class probabilities, conditional on the groups' levels (without groups: the
        population curve, random effects 0).

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
        """
        p = self._response_mean(X, groups, False)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X, groups=None):
        """The log-odds of the positive class (:meth:`linear_predictor`, which also gives its
        standard error)."""
        return self.linear_predictor(X, groups)

    def predict(self, X, groups=None):
        """The more probable class (see :meth:`predict_proba`)."""
        check_is_fitted(self)
        return self.classes_[(self._response_mean(X, groups, False) > 0.5).astype(int)]

    def score(self, X, y=None, groups=None, sample_weight=None):
        """Accuracy of ``predict(X, groups)``, as every scikit-learn classifier."""
        y = self._response(X, y)
        return accuracy_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)
