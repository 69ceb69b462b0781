"""Comparing fitted models: the likelihood-ratio test between nested mixed models (linear or
generalized) of one kind."""

from __future__ import annotations

from sklearn.utils.validation import check_is_fitted

from ._inference import gam_compare, lrt
from .glmm import MixedLogisticRegression, MixedPoissonRegressor
from .mixed import MixedLinearRegressor

__all__ = ["likelihood_ratio_test"]


def likelihood_ratio_test(smaller, larger, refit=True, test=None):
    """Likelihood-ratio test between two nested mixed models (lme4 ``anova(smaller, larger)``),
    or the analysis of deviance between two GAMs (mgcv ``anova(smaller, larger, test = test)``).

    Parameters
    ----------
    smaller, larger : MixedLinearRegressor, MixedLogisticRegression, MixedPoissonRegressor, \
PenalizedSplineRegressor or PenalizedSplineClassifier
        Fitted to the same rows and response, both of one kind; every fixed effect and every
        random-effect term of ``smaller`` must be in ``larger``, which has more parameters.
        GLMMs are compared on ``-2 log L`` (Laplace or, for both alike, quadrature), as lme4's
        ``anova`` of two glmer fits. GAMs (without ``groups``, of one family) are compared as
        mgcv compares them (see Notes).
    refit : bool, default=True
        Refit REML fits by maximum likelihood first (lme4's default): REML likelihoods are not
        comparable between models with different fixed effects. With ``refit=False`` two REML
        fits with the same fixed effects are compared on their REML criteria. Not used for GAMs.
    test : {"F", "Chisq"}, default=None
        For GAMs: mgcv's ``test``; None is "F" for an estimated scale (Gaussian, Gamma) and
        "Chisq" for a known one (binomial, Poisson). Not used for mixed models.

    Returns
    -------
    result : LikelihoodRatioTestResult or GamAnovaResult
        ``statistic`` (twice the log-likelihood difference), ``df`` (difference in the number
        of parameters), ``p_value`` (chi-squared), ``refitted`` and ``table`` (lme4's anova
        table). It unpacks as ``statistic, df, p_value = likelihood_ratio_test(m0, m1)``. For
        GAMs a ``GamAnovaResult``: the F (or the deviance difference), the difference in
        residual df and the p-value, and mgcv's table (Resid. Df, Resid. Dev, Df, Deviance, F,
        Pr(>F)).

    Notes
    -----
    As lme4, the p-value uses the chi-squared distribution even when the smaller model puts a
    variance on the boundary of its space (0), where it is conservative; a parametric
    bootstrap of the statistic is the remedy.

    Between GAMs, as mgcv's ``anova``: each model's residual df is ``n - edf1 - (edf2 -
    edf)``, with ``edf2`` the edf corrected for smoothing-parameter uncertainty
    (``edf2_total_``), and the deviance difference is tested with the dispersion of the model
    with fewer residual df. sklmm's ``edf2`` leaves out a second-order term of mgcv's that
    depends on mgcv's coefficient basis (:mod:`sklmm._inference.gam_compare`), so residual df
    can differ from mgcv's by a fraction of a degree of freedom where mgcv's edf2 is not capped
    at edf1.
    """
    from .gam import _PenalizedSpline

    if isinstance(smaller, _PenalizedSpline) or isinstance(larger, _PenalizedSpline):
        for nm, est in (("smaller", smaller), ("larger", larger)):
            if not isinstance(est, _PenalizedSpline):
                raise TypeError(f"{nm} must be a fitted GAM like the other; got {type(est).__name__}.")
            check_is_fitted(est)
        if type(smaller) is not type(larger) or smaller._family_name() != larger._family_name():
            raise TypeError(f"both GAMs must be of one kind and family; got {type(smaller).__name__} "
                            f"({smaller._family_name()}) and {type(larger).__name__} ({larger._family_name()}).")
        return gam_compare.gam_anova(smaller, larger, test=test)
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
