"""The inference methods and attributes of MixedLinearRegressor (standard errors, degrees of
freedom, intervals, conditional variances, prediction intervals, simulation, bootstrap).

The estimator-facing layer of :mod:`sklmm._inference`: each method checks its arguments and
calls one of the modules beside this one, which work on the fitted state."""

from __future__ import annotations

import hashlib
import numbers

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._input.arrays import check_level
from .bootstrap import (
    TrainingDesign,
    bootstrap_replicates,
    percentile_intervals,
    simulate_responses,
)
from .conditional import (
    conditional_covariances,
    conditional_mean_variance,
    prior_covariances,
)
from .covariance import fixed_effects_table, wald_intervals
from .parameters import sdcor_of_fit
from .profile import profile_intervals

__all__ = ["InferenceMixin"]


def _fingerprint(y, sample_weight):
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(y, dtype=float).tobytes())
    if sample_weight is not None:
        h.update(np.ascontiguousarray(sample_weight, dtype=float).tobytes())
    return (len(y), h.hexdigest())


class InferenceMixin:
    """What an lme4 user expects after the fit. Needs ``self._fit`` (a MixedFit), ``self._design``
    (a TrainingDesign or None) and ``fixed_effects_names_``."""

    @staticmethod
    def _training_design(Xf, terms, sample_weight):
        """The rows simulate and bootstrap need; taken before the engine strips the terms."""
        return TrainingDesign.from_terms(Xf, terms, sample_weight)

    def _remember_training(self, design, y, sample_weight):
        """Called by a successful fit: the design, a fingerprint of the data, an empty cache."""
        self._design = design
        self._data_fingerprint = _fingerprint(y, sample_weight)
        self._inference_cache = {}

    def _cached(self, key, compute):
        """A quantity computed once, under the fit's lock (the computations move the shared
        factorization to other values of theta and back)."""
        check_is_fitted(self)
        cache = self.__dict__.setdefault("_inference_cache", {})
        if key not in cache:
            with self._fit.lock:
                if key not in cache:
                    cache[key] = compute()
        return cache[key]

    # ------------------------------------------------------------------ fixed effects

    def _fixed_tables(self):
        return self._cached("fixed", lambda: fixed_effects_table(self._fit, self.fixed_effects_names_))

    @property
    def fixed_effects_(self):
        """DataFrame of the fixed effects (lmerTest's ``summary`` table).

        Indexed by term name (``"(Intercept)"`` first), with columns ``estimate``, ``std_error``,
        ``df`` (Satterthwaite), ``t_value`` and ``p_value`` (two-sided, t with ``df``).
        Aliased columns that the fit dropped are NaN. Computed on first access.
        """
        return self._fixed_tables()[0].copy()

    @property
    def fixed_effects_cov_(self):
        """DataFrame: covariance matrix of the fixed effects (lme4 ``vcov``), by term name."""
        return self._fixed_tables()[1].copy()

    # ------------------------------------------------------------------ random effects

    def _condvar(self):
        return self._cached("condvar", lambda: conditional_covariances(self._fit))

    @property
    def random_effects_std_(self):
        """Conditional standard deviations of the random effects (lme4 ``ranef(condVar = TRUE)``).

        A dict with the keys, index and columns of ``random_effects_``: the square roots of the
        diagonals of the conditional covariance of each level's random effects given the data
        (at the estimated variance parameters and fixed effects). Computed on first access.
        """
        covs = self._condvar()
        return {
            t.name: pd.DataFrame(
                np.sqrt(np.clip(np.diagonal(covs[k], axis1=1, axis2=2), 0, None)),
                index=t.levels, columns=t.column_names,
            )
            for k, t in self._group_terms_fitted
        }

    def random_effects_cov(self, factor):
        """Conditional covariance matrices of one factor's random effects.

        Parameters
        ----------
        factor : str
            A key of ``random_effects_``.

        Returns
        -------
        cov : ndarray of shape (n_levels, n_coef, n_coef)
            lme4's ``attr(ranef(fit, condVar = TRUE)[[factor]], "postVar")``, levels first.
        """
        check_is_fitted(self)
        for k, t in self._group_terms_fitted:
            if t.name == factor:
                return self._condvar()[k].copy()
        raise ValueError(f"no grouping factor {factor!r}; the factors are {list(self.random_effects_)}.")

    def plot_random_effects(self, factor=None, level=0.95, ax=None, max_levels=200):
        """Caterpillar plot: each level's conditional mode with its conditional interval.

        lme4's ``dotplot(ranef(fit, condVar = TRUE))``: one panel per coefficient, levels sorted
        by their mode, with ``mode +- z * conditional sd`` bars.

        Parameters
        ----------
        factor : str, default=None
            A key of ``random_effects_``; None for the first (largest) factor.
        level : float, default=0.95
            Coverage of the bars.
        ax : matplotlib Axes or array of Axes, default=None
            One per coefficient; None makes a new figure.
        max_levels : int, default=200
            Above this many levels the labels are left out (the bars are all drawn).

        Returns
        -------
        axes : list of matplotlib Axes
        """
        import matplotlib.pyplot as plt

        check_is_fitted(self)
        level = check_level(level)
        if not self.random_effects_:
            raise ValueError("the model has no random effects to plot (it was fitted without groups).")
        factor = next(iter(self.random_effects_)) if factor is None else factor
        if factor not in self.random_effects_:
            raise ValueError(f"no grouping factor {factor!r}; the factors are {list(self.random_effects_)}.")
        modes, sds = self.random_effects_[factor], self.random_effects_std_[factor]
        z = stats.norm.ppf(0.5 + level / 2.0)
        cols = list(modes.columns)
        if ax is None:
            height = max(3.0, min(12.0, 0.12 * len(modes) + 1.0))
            _, ax = plt.subplots(1, len(cols), figsize=(3.5 * len(cols), height), squeeze=False, sharey=False,
                                 layout="constrained")  # labels inside the figure on a plain savefig
        axes = list(np.ravel(ax))
        labels = [":".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in modes.index]
        for a, col in zip(axes, cols):
            order = np.argsort(modes[col].to_numpy(), kind="stable")
            y = np.arange(len(order))
            a.errorbar(modes[col].to_numpy()[order], y, xerr=z * sds[col].to_numpy()[order], fmt="o",
                       ms=3, lw=1, capsize=0)
            a.axvline(0.0, color="grey", lw=0.8, ls="--")
            a.set_title(f"{col} | {factor}")
            if len(order) <= max_levels:
                a.set_yticks(y)
                a.set_yticklabels([labels[i] for i in order], fontsize=7)
            else:
                a.set_yticks([])
        return axes

    # ------------------------------------------------------------------ predictions

    def _prediction_variance(self, X, groups, rows=None):
        """Variance of the predicted mean: the joint posterior covariance of the fixed effects
        and the seen levels' random effects, plus the prior covariance of unseen levels'
        (``rows``: the estimator's ``_group_rows`` already computed)."""
        fit = self._fit
        Xf = self._fixed_columns(X)
        seen_rows, extra = [], np.zeros(X.shape[0])
        if groups is not None and fit.terms:
            prior = prior_covariances(fit)
            for k, t, codes, seen, vals in (self._group_rows(X, groups) if rows is None else rows):
                seen_rows.append((k, np.flatnonzero(seen), codes[seen], vals))
                unseen = ~seen
                if unseen.any():
                    v = t.rows(X[unseen])
                    extra[unseen] += np.einsum("ij,jk,ik->i", v, prior[k], v)
        return conditional_mean_variance(fit, Xf[:, fit.keep], seen_rows) + extra

    def _new_group_variance(self, X):
        """Prior variance of all random effects at these rows (an observation of a new group)."""
        fit = self._fit
        var = np.zeros(X.shape[0])
        for t, S in zip(fit.terms, prior_covariances(fit)):
            v = t.rows(X)
            var += np.einsum("ij,jk,ik->i", v, S, v)
        return var

    def predict_interval(self, X, groups=None, level=0.95):
        """Prediction intervals for new observations.

        The variance of a new observation is the variance of the predicted mean (see
        ``predict(return_std=True)``) plus the residual variance ``sigma_**2``. Without
        ``groups`` the observation is taken to come from a new group, so the prior variance of
        every random effect is added too. Intervals are normal: ``mean +- z sd``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like, default=None
            Group labels, as in ``predict``.
        level : float, default=0.95
            Coverage of the intervals.

        Returns
        -------
        intervals : DataFrame
            Columns ``prediction``, ``lower``, ``upper`` (one row per sample).
        """
        level = check_level(level)
        check_is_fitted(self)
        mean, se = self.predict(X, groups=groups, return_std=True)
        Xd, groups_d = self._resolve_predict(X, groups)
        Xv = self._validate_X(Xd, reset=False)
        var = se**2 + self.sigma_**2
        if groups_d is None and self._fit.terms:
            var = var + self._new_group_variance(Xv)
        z = stats.norm.ppf(0.5 + level / 2.0)
        sd = np.sqrt(var)
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame({"prediction": mean, "lower": mean - z * sd, "upper": mean + z * sd}, index=index)

    # ------------------------------------------------------------------ simulation and intervals

    def _require_design(self, what):
        if getattr(self, "_design", None) is None:
            raise ValueError(
                f"{what} needs the training rows, which this fit does not keep (fits from Dask "
                "collections keep only cross-products); refit on in-memory data."
            )
        return self._design

    def simulate(self, n_draws=1, random_state=None):
        """Responses simulated from the fitted model at the training rows (lme4 ``simulate``).

        Each draw takes new random effects from their fitted distribution and new residuals
        (with variance ``sigma_**2 / sample_weight`` for weighted fits), around the fitted fixed
        effects.

        Parameters
        ----------
        n_draws : int, default=1
            Number of simulated response vectors.
        random_state : int, RandomState instance or None, default=None
            Seed for reproducible draws.

        Returns
        -------
        y_sim : ndarray of shape (n_samples, n_draws)
        """
        check_is_fitted(self)
        if not isinstance(n_draws, numbers.Integral) or n_draws < 1:
            raise ValueError(f"n_draws must be a positive integer; got {n_draws!r}.")
        design = self._require_design("simulate")
        rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))
        return simulate_responses(self._fit, design, int(n_draws), rng)

    def bootstrap(self, n_boot=1000, random_state=None, n_jobs=None, progress=None):
        """Parametric bootstrap (lme4 ``bootMer``, MixedModels.jl ``parametricbootstrap``).

        Simulates ``n_boot`` responses from the fitted model and refits each, reusing the fit's
        cross-products of Z and X (only the response's are recomputed) and starting at the
        fitted theta.

        Parameters
        ----------
        n_boot : int, default=1000
            Number of bootstrap replicates.
        random_state : int, RandomState instance or None, default=None
            Seed; the same seed gives the same replicates for any ``n_jobs``.
        n_jobs : int, default=None
            Parallel jobs (joblib; -1 for all cores).
        progress : bool, default=None
            Show a progress bar (tqdm); None shows it when ``n_boot >= 200`` on a terminal.

        Returns
        -------
        replicates : DataFrame of shape (n_boot, n_parameters)
            One row per replicate: the standard deviations, correlations and sigma (named as
            in :meth:`confidence_intervals`), then the fixed effects. A replicate whose refit
            failed is a row of NaN.
        """
        check_is_fitted(self)
        if not isinstance(n_boot, numbers.Integral) or n_boot < 1:
            raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}.")
        design = self._require_design("bootstrap")
        if progress is None:
            progress = None if n_boot >= 200 else False
        return bootstrap_replicates(self._fit, design, self.fixed_effects_names_, int(n_boot),
                                        random_state, n_jobs, progress)

    def confidence_intervals(self, method="wald", level=0.95, *, n_boot=1000, random_state=None,
                             n_jobs=None, progress=None):
        """Confidence intervals for the model's parameters (lme4 ``confint``).

        Parameters
        ----------
        method : {"wald", "profile", "bootstrap"}, default="wald"
            "wald": ``estimate +- z std_error`` for the fixed effects only (lme4 gives none for
            variance parameters). "profile": profile-likelihood intervals for the standard
            deviations, correlations, sigma and fixed effects, as lme4's
            ``confint(method = "profile")``: profiles of the likelihood, so a REML fit is first
            refitted by maximum likelihood and both the intervals and the ``estimate`` column
            are those of the ML fit. "bootstrap": percentile intervals of a parametric
            bootstrap (see :meth:`bootstrap`), around the fit's own estimates.
        level : float, default=0.95
            Coverage.
        n_boot, random_state, n_jobs, progress
            For ``method="bootstrap"``; see :meth:`bootstrap`.

        Returns
        -------
        intervals : DataFrame
            Indexed by parameter: ``sd_<coef>|<factor>``, ``cor_<coef1>.<coef2>|<factor>``,
            ``sigma`` (lme4's ``oldNames = FALSE`` names), then the fixed effects; columns
            ``estimate``, ``lower``, ``upper``.
        """
        check_is_fitted(self)
        level = check_level(level)
        if method == "wald":
            return wald_intervals(self.fixed_effects_.dropna(subset=["std_error"]), level)
        fit = self._fit
        if method == "profile":
            return profile_intervals(fit, self.fixed_effects_names_, level)
        if method == "bootstrap":
            reps = self.bootstrap(n_boot, random_state=random_state, n_jobs=n_jobs, progress=progress)
            est = pd.Series(
                np.concatenate([sdcor_of_fit(fit), fit.beta[fit.keep]]),
                index=reps.columns,
            )
            return percentile_intervals(reps, est, level)
        raise ValueError(f"method must be 'wald', 'profile' or 'bootstrap'; got {method!r}.")

