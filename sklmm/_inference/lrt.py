"""Likelihood-ratio tests between nested fits (lme4 ``anova(smaller, larger)``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._engine.fit import _refit

__all__ = ["LikelihoodRatioTestResult", "likelihood_ratio_test"]


@dataclass(frozen=True)
class LikelihoodRatioTestResult:
    """A likelihood-ratio test between two nested fits (lme4 ``anova(smaller, larger)``).

    Unpacks as ``statistic, df, p_value``; ``table`` holds lme4's anova table (npar, AIC, BIC,
    logLik, deviance, Chisq, Df, Pr(>Chisq)), ``refitted`` whether REML fits were refitted by ML.
    """

    statistic: float
    df: int
    p_value: float
    refitted: bool
    table: pd.DataFrame

    def __iter__(self):
        return iter((self.statistic, self.df, self.p_value))

    def __str__(self):
        """lme4's anova table in full (pandas would elide its middle columns), then the test."""
        how = " (REML fits refitted by ML)" if self.refitted else ""
        return (f"{self.table.to_string()}\n\nlikelihood-ratio test{how}: chi-squared = "
                f"{self.statistic:.4f} on {self.df} df, p = {self.p_value:.4g}")

    def __repr__(self):
        return (f"LikelihoodRatioTestResult(statistic={self.statistic!r}, df={self.df!r}, "
                f"p_value={self.p_value!r}, refitted={self.refitted!r}, table=<{self.table.shape[0]} x "
                f"{self.table.shape[1]} DataFrame>)\n{self}")


def _ml_fit(est):
    """The estimator's fit by maximum likelihood (refitted from its cross-products if REML)."""
    fit = est._fit
    if not fit.reml:
        return fit
    kept = [est.fixed_effects_names_[j] for j in fit.keep]
    return _refit(fit, copy.copy(fit.cp), kept, fit.factor.name, reml=False)


def _structure(est):
    fixed = {est.fixed_effects_names_[j] for j in est._fit.keep}
    random = {}
    for t in est._fit.terms:
        for i, j in zip(t.tri_rows, t.tri_cols):
            random.setdefault(t.name, set()).add((t.column_names[i], t.column_names[j]))
    return fixed, random


def likelihood_ratio_test(smaller, larger, refit=True):
    """Compare two fitted mixed models, the smaller nested in the larger.

    The public :func:`sklmm.likelihood_ratio_test` checks that both are fitted estimators of
    the same kind; here they are any fitted estimators with a ``_fit`` (a MixedFit),
    ``_data_fingerprint``, ``reml`` and ``fixed_effects_names_``.
    """
    if smaller._data_fingerprint != larger._data_fingerprint:
        raise ValueError(
            "the two models were not fitted to the same data (the number of rows, the response or "
            "the sample weights differ); a likelihood-ratio test compares fits to the same rows."
        )
    fs, rs = _structure(smaller)
    fl, rl = _structure(larger)
    nested = fs <= fl and all(f in rl and cols <= rl[f] for f, cols in rs.items())
    k_s, k_l = smaller._fit.n_params, larger._fit.n_params
    if not nested or k_s >= k_l:
        raise ValueError(
            "the models are not nested: every fixed effect and every random-effect term "
            "(grouping factor and coefficient pair) of `smaller` must also be in `larger`, and "
            f"`larger` must have more parameters ({k_l} vs {k_s}). Check the order of the arguments."
        )
    refitted = bool(refit and (smaller.reml or larger.reml))
    if refitted:
        a, b = _ml_fit(smaller), _ml_fit(larger)
    else:
        if smaller.reml != larger.reml:
            raise ValueError("one fit is REML and the other ML; use refit=True to compare both by ML.")
        if smaller.reml and fs != fl:
            raise ValueError(
                "REML likelihoods of models with different fixed effects are not comparable; "
                "use refit=True (refit both by ML), as lme4's anova does."
            )
        a, b = smaller._fit, larger._fit
    stat = max(a.criterion - b.criterion, 0.0)
    df = int(k_l - k_s)
    pval = float(stats.chi2.sf(stat, df))
    table = pd.DataFrame(
        {
            "npar": [k_s, k_l],
            "AIC": [a.aic, b.aic],
            "BIC": [a.bic, b.bic],
            "logLik": [a.loglik, b.loglik],
            "deviance": [a.criterion, b.criterion],
            "Chisq": [np.nan, stat],
            "Df": [np.nan, df],
            "Pr(>Chisq)": [np.nan, pval],
        },
        index=["smaller", "larger"],
    )
    return LikelihoodRatioTestResult(float(stat), df, pval, refitted, table)
