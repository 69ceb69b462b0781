"""Predictions of the penalized spline estimators: the linear predictor with its posterior
standard error, the response's mean (and its delta-method error), intervals on the response
scale, each term's contribution and the linear predictor matrix (mgcv's ``predict.gam`` types
``"link"``, ``"response"``, ``"terms"`` and ``"lpmatrix"``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import norm
from sklearn.utils.validation import check_is_fitted

from .._input import smooth_terms
from .._input.arrays import check_level
from . import smooth_summary
from .conditional import left_out_variance, marginal_mean

__all__ = ["SmoothPredictionMixin"]


class SmoothPredictionMixin:
    """The prediction methods of :class:`~sklmm.PenalizedSplineRegressor` and
    :class:`~sklmm.PenalizedSplineClassifier` (what they share beyond the fit)."""

    def _prediction_rows(self, X, groups):
        check_is_fitted(self)
        X, groups = self._resolve_predict(X, groups)
        return self._validate_X(smooth_terms.encode_by_factors(self, X, fitting=False), reset=False), groups

    def linear_predictor(self, X, groups=None, return_std=False):
        """The fitted curve on the link scale (mgcv's ``predict(type = "link")``; for a Gaussian
        family the prediction itself), optionally with its standard error.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like, default=None
            Group labels: with them the prediction adds each group's random effects (levels
            unseen in fit get 0, or an error, per ``unseen_groups``); without, the population
            curve (intercept, linear terms and smooths).
        return_std : bool, default=False
            Also return the standard error of the population curve: the posterior (Bayesian)
            standard error of intercept + linear terms + smooths, as mgcv's
            ``predict(se.fit = TRUE)``. It does not include the residual or group effects.

        Returns
        -------
        eta : ndarray of shape (n_samples,)
        eta_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        X, groups = self._prediction_rows(X, groups)
        return self._eta(X, groups, return_std)

    def _eta(self, X, groups, return_std=False, left_out=False):
        """The linear predictor at validated rows (and its standard error); with ``left_out``
        also the variance of the random effects it leaves out (unseen levels, or every
        grouping factor without groups), which ``unseen_groups="marginal"`` integrates over."""
        fit = self._fit
        Xf, Zs = self._fixed_design(X)
        smooths = list(zip(self._smooth_term_index, Zs))
        mean = Xf @ fit.beta + sum(Z @ fit.b[k].ravel() for k, Z in smooths)
        rows = None
        if groups is not None and self._group_factors:
            rows = list(self._group_rows(X, groups))
            mean = mean + self._random_part(X, groups, rows)
        if left_out:
            return mean, (left_out_variance(fit, self._group_terms_fitted, X, rows) if self._group_factors
                          else np.zeros(X.shape[0]))
        if not return_std:
            return mean
        return mean, smooth_summary.posterior_se(self._fit, self._Vp, dict(enumerate(Xf.T)), smooths)

    def predict_terms(self, X, return_std=False):
        """Each term's contribution to the linear predictor, mgcv's ``predict(type = "terms")``:
        one column per linear feature (``coef * x``, not centred) and per smooth (its centred
        curve); the intercept is ``intercept_`` (mgcv's ``attr(, "constant")``). Group effects
        are not included.

        Returns
        -------
        terms : DataFrame of shape (n_samples, n_terms)
        terms_std : DataFrame
            Only with ``return_std=True``: the posterior standard error of each contribution.
        """
        X, _ = self._prediction_rows(X, None)
        return smooth_summary.term_contributions(self, X, return_std)

    def lpmatrix(self, X):
        """The linear predictor matrix, mgcv's ``predict(type = "lpmatrix")``: ``lpmatrix(X) @
        coefficients_`` is the population linear predictor at X, and ``coefficients_cov_`` the
        posterior covariance of the coefficients (mgcv's ``Vp``), so that any linear function of
        the fit has its standard error.

        Returns
        -------
        Xp : DataFrame of shape (n_samples, n_coefficients)
            Columns: the fixed effects (intercept, linear features, each smooth's unpenalized
            part ``s(x).fx0``) and each smooth's penalized coefficients ``s(x).0, ...``.
        """
        X, _ = self._prediction_rows(X, None)
        Xf, Zs = self._fixed_design(X)
        return pd.DataFrame(np.hstack([Xf] + [Z.toarray() if sp.issparse(Z) else Z for Z in Zs]),
                            columns=self.coefficients_.index)

    def _response_mean(self, X, groups, return_std):
        """The mean response with, optionally, its standard error by the delta method (mgcv's
        ``predict(type = "response", se.fit = TRUE)``). With ``unseen_groups="marginal"`` the
        mean of a row whose group effects are unknown (unseen levels, or no groups given) is
        averaged over their distribution, as for :class:`~sklmm.MixedLogisticRegression`."""
        family = getattr(self, "_family", None)
        if family is None:
            return self.linear_predictor(X, groups, return_std)
        X, groups = self._prediction_rows(X, groups)
        if return_std:
            eta, se = self._eta(X, groups, True)
            return family.mean(eta), se * family.mu_eta(eta)
        if self.unseen_groups != "marginal":
            return family.mean(self._eta(X, groups))
        return marginal_mean(family, *self._eta(X, groups, left_out=True))

    def predict_interval(self, X, groups=None, level=0.95):
        """A pointwise interval for the mean response: the posterior interval of the linear
        predictor (``linear_predictor +- z se``, mgcv's Bayesian interval) mapped through the
        inverse link, so that it stays inside the response's range (probabilities in [0, 1],
        positive means).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like, default=None
            As in :meth:`linear_predictor` (the group effects shift the interval; their own
            uncertainty is not included).
        level : float, default=0.95

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,)
        """
        eta, se = self.linear_predictor(X, groups, return_std=True)
        z = norm.ppf(0.5 + check_level(level) / 2)
        family = getattr(self, "_family", None)
        inverse = (lambda v: v) if family is None else family.mean
        return inverse(eta - z * se), inverse(eta + z * se)
