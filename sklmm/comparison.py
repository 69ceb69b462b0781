"""Comparing fitted models: the likelihood-ratio test between nested mixed models (linear or
generalized) of one kind."""

from __future__ import annotations

from sklearn.utils.validation import check_is_fitted

from ._inference import lrt
from .glmm import MixedLogisticRegression, MixedPoissonRegressor
from .mixed import MixedLinearRegressor

__all__ = ["likelihood_ratio_test"]


def likelihood_ratio_test(smaller, larger, refit=True):
    """Likelihood-ratio test between two nested mixed models (lme4 ``anova(smaller, larger)``).

    Parameters
    ----------
    smaller, larger : MixedLinearRegressor, MixedLogisticRegression or MixedPoissonRegressor
        Fitted to the same rows and response, both of one kind; every fixed effect and every
        random-effect term of ``smaller`` must be in ``larger``, which has more parameters.
        GLMMs are compared on ``-2 log L`` (Laplace or, for both alike, quadrature), as lme4's
        ``anova`` of two glmer fits.
    refit : bool, default=True
        Refit REML fits by maximum likelihood first (lme4's default): REML likelihoods are not
        comparable between models with different fixed effects. With ``refit=False`` two REML
        fits with the same fixed effects are compared on their REML criteria.

    Returns
    -------
    result : LikelihoodRatioTestResult
        ``statistic`` (twice the log-likelihood difference), ``df`` (difference in the number
        of parameters), ``p_value`` (chi-squared), ``refitted`` and ``table`` (lme4's anova
        table). It unpacks as ``statistic, df, p_value = likelihood_ratio_test(m0, m1)``.

    Notes
    -----
    As lme4, the p-value uses the chi-squared distribution even when the smaller model puts a
    variance on the boundary of its space (0), where it is conservative; a parametric
    bootstrap of the statistic is the remedy.
    """
    kinds = (MixedLinearRegressor, MixedLogisticRegression, MixedPoissonRegressor)
    for nm, est in (("smaller", smaller), ("larger", larger)):
        if not isinstance(est, kinds):
            raise TypeError(
                f"{nm} must be a fitted MixedLinearRegressor, MixedLogisticRegression or "
                f"MixedPoissonRegressor; got {type(est).__name__}."
            )
        check_is_fitted(est)
    if type(smaller) is not type(larger):
        raise TypeError(
            f"both models must be of one kind (one family); got {type(smaller).__name__} and "
            f"{type(larger).__name__}."
        )
    if getattr(smaller, "n_quadrature_points", 1) != getattr(larger, "n_quadrature_points", 1):
        raise ValueError("the two GLMMs use different approximations (n_quadrature_points); fit both alike.")
    return lrt.likelihood_ratio_test(smaller, larger, refit=refit)
