"""PenalizedSplineRegressor: GAMs and GAMMs fitted as mixed models, smoothing by REML."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import GroupedMixin
from ._engine.fit import fit_mixed
from ._engine.smooth import BASES, SmoothTerm
from ._engine.terms import RandomTerm, theta_layout
from ._inference import smooth_summary, smooth_tests
from ._input.arrays import check_level, check_sample_weight
from ._input.gam_formula import GAM_FORMULA_PARAMS, parse_gam_formula

__all__ = ["PenalizedSplineRegressor"]


class PenalizedSplineRegressor(GroupedMixin, RegressorMixin, BaseEstimator):
    """Additive model of penalized regression splines, fitted as a mixed model (mgcv / gamm4).

    Each smooth ``f_j(x_j)`` is a penalized spline whose smoothing parameter is a variance
    ratio: after absorbing a sum-to-zero constraint and eigen-decomposing its penalty, the
    unpenalized part of the basis becomes fixed effects and the penalized part a random-effect
    term with iid ``N(0, sigma^2 / lambda_j)`` coefficients. The smoothing parameters are then
    estimated by REML (or ML) with the same profiled criterion and optimizer as
    :class:`MixedLinearRegressor`, together with any grouping-factor variances, so
    ``PenalizedSplineRegressor(...).fit(X, y, groups=g)`` is gamm4's
    ``y ~ s(x) + (1 | g)``.

    Parameters
    ----------
    smooth_features : list of str or int, default=None
        Columns of X that get a smooth (names when X has column names, or indices). None: all
        columns. The other columns enter linearly.
    n_basis : int or dict, default=10
        Basis dimension ``k`` of each smooth (mgcv's ``k``), or a dict from feature to ``k``.
        After the sum-to-zero constraint a smooth has ``k - 1`` coefficients.
    basis : {"cr", "ps", "rk", "cc", "tp"} or dict, default="cr"
        "cr": cubic regression spline, knots at quantiles (mgcv ``bs="cr"``); "ps": P-spline
        (``bs="ps"``); "rk": the cubic smoothing-spline basis of Wood (2006, section 3.2); "cc":
        cyclic cubic spline (``bs="cc"``); "tp": thin plate regression spline (``bs="tp"``,
        mgcv's default). A dict chooses per feature. See the user guide's GAM page.
    smoothing_params : dict, default=None
        Smoothing parameters held fixed instead of estimated (mgcv's ``sp``): a dict from
        smooth feature to ``lambda`` on the scale of :attr:`smoothing_params_` (the basis's
        unscaled penalty). Smooths not in the dict are estimated.
    knots : dict, default=None
        Knots per feature, in the feature's units ("cr": ``k`` knots; "ps": ``k - 2`` equally
        spaced base knots; "rk": ``k - 2`` kernel knots). Features not in the dict get knots
        placed from the data.
    random_slopes, correlated_slopes, nested, random_intercept, unseen_groups
        Grouped random effects, exactly as in :class:`MixedLinearRegressor`.
    reml : bool, default=True
        REML (mgcv ``method="REML"``) or maximum likelihood (``method="ML"``).
    solver : {"auto", "blocked", "cholmod", "dense"}, default="auto"
        Cholesky factorization, as in :class:`MixedLinearRegressor`.
    max_iter : int, default=10000
        Maximum number of evaluations of the profiled criterion.
    warm_start : bool, default=False
        Start the optimizer from the ``theta_`` of the previous fit of this estimator when the
        random-effect structure is unchanged (same theta names), instead of the moment start. Useful
        when refitting after ``set_params`` or on new data in a loop; note that scikit-learn's
        ``GridSearchCV`` and ``cross_validate`` clone the estimator for every fit, which
        discards the previous fit.
    verbose : int, default=0
        0: silent. 1: print the optimizer's progress every 10 evaluations and when it
        finishes. 2: every evaluation.
    group_columns : str, int or list, default=None
        Columns of X that hold group labels (names for a DataFrame, positions for an array),
        used as ``groups`` in ``fit``, ``predict`` and ``score`` and not as features, so that
        scikit-learn's tools pass the labels along inside X. ``groups=`` given as well must hold
        the same labels. See :class:`MixedLinearRegressor`.
    formula : str, default=None
        An mgcv / gamm4 style formula, ``"Reaction ~ s(Days, k=5, bs='cr') + (1 | Subject)"``
        (see :meth:`from_formula`). X is then the data frame: ``fit(df)``, ``predict(df)``
        (with the random effects when df holds the grouping columns) and ``score(df)``; the
        formula sets ``smooth_features``, ``n_basis``, ``basis`` and the random-effect
        parameters, which keep their defaults. It clones, so it works in ``cross_validate``
        and ``GridSearchCV``.

    Attributes
    ----------
    smooths_ : list of SmoothTerm
        The fitted smooths (knots, basis, reparameterization).
    edf_ : Series
        Effective degrees of freedom of each smooth (mgcv ``summary(gam)$edf``).
    edf_total_ : float
        Total effective degrees of freedom of the fitted values, intercept and linear terms
        included (mgcv ``sum(gam$edf)``), counting grouping factors' random effects too.
    fixed_effects_ : DataFrame
        The parametric terms (intercept and linear features) as mgcv's ``summary(gam)$p.table``:
        ``estimate``, ``std_error`` (posterior, from ``Vp``), ``t_value``, ``p_value`` (t with
        ``residual_df_`` degrees of freedom).
    smooth_tests_ : DataFrame
        Approximate significance of each smooth (mgcv's ``summary(gam)$s.table``, Wood 2013):
        ``edf``, ``ref_df``, ``statistic`` (F) and ``p_value`` of the test of ``f = 0``; in a GAMM
        conditional on the estimated variances, as gamm4's ``summary(b$gam)``. See also
        :meth:`check_basis_dimension` (mgcv's ``k.check``).
    residual_df_, r2_adj_, deviance_explained_ : float
        ``n - edf_total_``, the adjusted R^2 and the deviance explained, as mgcv's
        ``summary(gam)`` reports them (with prior weights as mgcv weighs them).
    smoothing_params_ : Series
        ``lambda`` of each smooth in ``||y - f||^2 + lambda beta' S beta`` with the basis's
        own, unscaled penalty ``S`` (for "cr": ``int f''^2``); mgcv reports ``sp = lambda *
        S.scale``. ``inf`` for a smooth estimated as its null space (a straight line).
    intercept_ : float
    coef_ : ndarray of shape (n_linear_features,)
        Coefficients of the features that enter linearly (in the order of ``linear_features_``).
    linear_features_ : list of str
    sigma_, theta_, theta_names_, criterion_, loglik_, aic_, bic_, converged_, n_iter_,
    variance_components_, random_effects_, is_singular_, solver_
        As in :class:`MixedLinearRegressor`. ``variance_components_`` lists each smooth as a
        factor ``"s(x)"`` whose variance is ``sigma_**2 / lambda`` (the variance of its
        penalized coefficients for the unscaled penalty); ``is_singular_`` concerns grouping
        factors only (a smooth at variance 0 is a straight line, a legitimate estimate).

    See Also
    --------
    MixedLinearRegressor : the linear mixed model on the same engine.

    Notes
    -----
    The REML criterion is lme4's (as reported by gamm4's ``$mer``). mgcv's ``gam`` REML score
    differs from half of it by a constant that depends on its penalty scaling; the fitted
    values, EDF and variance components agree.

    Examples
    --------
    >>> from sklmm import PenalizedSplineRegressor
    >>> from sklmm.datasets import load_mcycle
    >>> d = load_mcycle()
    >>> gam = PenalizedSplineRegressor(n_basis=20).fit(d[["times"]], d["accel"])
    >>> round(float(gam.edf_["s(times)"]), 1)
    11.8
    """

    _parameter_constraints = {
        **GroupedMixin._group_parameter_constraints,
        "smooth_features": [None, list, tuple],
        "n_basis": [Interval(numbers.Integral, 3, None, closed="left"), dict],
        "basis": [StrOptions(set(BASES)), dict],
        "smoothing_params": [None, dict],
        "knots": [None, dict],
    }
    #: what a ``formula`` sets, with the defaults those parameters must keep then
    _formula_defaults = GAM_FORMULA_PARAMS
    _parse_formula = staticmethod(parse_gam_formula)

    def __init__(
        self,
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

    # ------------------------------------------------------------------ design

    def _per_feature(self, value, name, j):
        """A per-feature setting: the value, or a dict's entry for this feature (by name, or by
        integer label or position)."""
        if isinstance(value, dict):
            labels = getattr(self, "_column_labels", None)
            for key in (name, j if labels is None else labels[j]):
                if key in value:
                    return value[key]
            return None
        return value

    def _check_feature_keys(self, structure, cols, names):
        """Every dict keyed by smooth feature (n_basis, basis, knots, smoothing_params) names
        smooth features only: a misspelt key would otherwise fall back to the default."""
        labels = getattr(self, "_column_labels", None)
        valid = {names[j] for j in cols} | (set(cols) if labels is None else {labels[j] for j in cols})
        for param in ("n_basis", "basis", "knots", "smoothing_params"):
            value = structure[param] if param in structure else getattr(self, param)
            if isinstance(value, dict):
                unknown = [k for k in value if k not in valid]
                if unknown:
                    raise ValueError(
                        f"{param} has keys {unknown} that are not smooth features (the smooth "
                        f"features: {[names[j] for j in cols]}); keys are feature names or indices."
                    )

    def _make_smooths(self, X):
        names = self._feature_names()
        structure = self._structure  # the parameters, or what the formula says
        cols = (
            list(range(X.shape[1]))
            if structure["smooth_features"] is None
            else self._column_index(structure["smooth_features"], names, "smooth_features")
        )
        repeated = sorted({names[j] for j in cols if cols.count(j) > 1})
        if repeated:
            raise ValueError(
                f"smooth_features lists {repeated} more than once; a feature has one smooth (two "
                "identical smooths are not identifiable)."
            )
        self._check_feature_keys(structure, cols, names)
        smooths, designs = [], []
        for j in cols:
            nm = names[j]
            k = self._per_feature(structure["n_basis"], nm, j)
            k = 10 if k is None else k
            if not isinstance(k, numbers.Integral) or isinstance(k, bool):
                raise ValueError(f"n_basis must be an int or a dict of ints; got {k!r} for {nm!r}.")
            b = self._per_feature(structure["basis"], nm, j) or "cr"
            if b not in BASES:
                raise ValueError(f"basis must be one of {BASES} (or a dict of them); got {b!r} for {nm!r}.")
            knots = self._per_feature(self.knots or {}, nm, j)
            sm = SmoothTerm(f"s({nm})", j, b, k, knots)
            designs.append(sm.fit_design(X[:, j]))
            smooths.append(sm)
        linear = [j for j in range(X.shape[1]) if j not in cols]
        return smooths, linear, designs

    def _fixed_design(self, X, designs=None):
        """``[1, linear features, null-space columns of each smooth]`` and the smooth Z blocks."""
        if designs is None:
            designs = [sm.design(X[:, sm.column]) for sm in self.smooths_]
        fixed = [np.ones((X.shape[0], 1)), X[:, self._linear]] + [F for F, _ in designs]
        return np.hstack(fixed), [Z for _, Z in designs]

    # ------------------------------------------------------------------ fit

    @classmethod
    def from_formula(cls, formula, data, **params):
        """Fit an mgcv / gamm4 style formula: ``PenalizedSplineRegressor(formula=formula,
        **params).fit(data)``.

        Parameters
        ----------
        formula : str
            Smooths ``s(x, k=..., bs=...)`` (``bs`` one of ``"cr"``, ``"ps"``, ``"rk"``; mgcv's
            default ``"tp"`` is not available yet, so ``bs`` must be given), parametric terms
            read by formulaic (``C(f)``, ``np.log(x)``), and lme4 random-effect terms for a
            GAMM (gamm4's ``random = ~ (1 | g)`` written into the formula), e.g.
            ``"Reaction ~ s(Days, k=5, bs='cr') + (1 | Subject)"``.
        data : pandas.DataFrame
            The data; rows missing any variable of the model are dropped.
        **params
            Other constructor parameters (``reml``, ``smoothing_params``, ``knots``, ...).

        Returns
        -------
        model : PenalizedSplineRegressor
            Fitted, with ``formula`` set: ``predict(df)`` and ``score(df)`` take data frames.

        Examples
        --------
        >>> from sklmm import PenalizedSplineRegressor
        >>> from sklmm.datasets import load_mcycle
        >>> gam = PenalizedSplineRegressor.from_formula("accel ~ s(times, k=20, bs='cr')", load_mcycle())
        >>> round(float(gam.edf_["s(times)"]), 1)
        11.8
        """
        return cls(formula=formula, **params).fit(data)

    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the additive (mixed) model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            The response; None only with ``formula``, which reads it from X.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels for random effects (gamm4's ``random = ~ (1 | g)``). None: a GAM.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights, as mgcv's ``weights``: row i has residual variance
            ``sigma^2 / sample_weight[i]``. Positive and finite; any units (``sigma_`` and
            ``smoothing_params_`` are in theirs).

        Returns
        -------
        self : PenalizedSplineRegressor
        """
        self._check_group_params()
        X, y, groups, sample_weight = self._resolve_fit(X, y, groups, sample_weight)
        if y is None:
            raise ValueError(
                "PenalizedSplineRegressor requires y to be passed, but the target y is None (only "
                "a model with a formula reads y from the data)."
            )
        X, y = self._validate_X(X, y, groups=None)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"n_samples = {n}: fitting a model needs at least 2 observations.")
        self.smooths_, self._linear, designs = self._make_smooths(X)
        self._train_range = {sm.column: (float(X[:, sm.column].min()), float(X[:, sm.column].max()))
                             for sm in self.smooths_}
        self._rug = {sm.column: np.unique(np.quantile(X[:, sm.column], np.linspace(0, 1, 200)))
                     for sm in self.smooths_}
        names = self._feature_names()
        self.linear_features_ = [names[j] for j in self._linear]
        Xf, Zs = self._fixed_design(X, designs)
        fe_names = ["(Intercept)"] + self.linear_features_
        for sm in self.smooths_:
            fe_names += [f"{sm.name}.fx{i}" for i in range(sm.n_fixed)]
        self._check_fixed_names(fe_names, "'(Intercept)', or a smooth's null space 's(x).fx0'")
        if groups is not None:
            terms = self._group_terms(X, groups)
            clash = sorted({t.name for t in terms} & {sm.name for sm in self.smooths_})
            if clash:
                raise ValueError(
                    f"the grouping factor(s) {clash} are named like smooth terms; rename those "
                    "group columns (the tables would confuse a factor with a smooth)."
                )
        else:
            terms, self._group_factors, self._group_columns = [], [], None
            self._group_names_given = False
        n_group_terms = len(terms)
        for sm, Z in zip(self.smooths_, Zs):
            terms.append(
                RandomTerm(
                    name=sm.name, levels=pd.Index([sm.name]), codes=np.zeros(n, dtype=np.intp),
                    values=Z, column_names=[f"{sm.name}.{i}" for i in range(Z.shape[1])],
                    correlated=False, scalar=True,
                )
            )
        fit = fit_mixed(terms, Xf, y, fe_names, sample_weight=sample_weight, reml=bool(self.reml), solver=self.solver,
                        max_iter=self.max_iter, theta_start=self._warm_theta(terms),
                        verbose=self.verbose, theta_fixed=self._fixed_theta(terms))
        self._set_engine_attributes(fit)
        self.fixed_effects_names_ = fe_names
        self.intercept_ = float(fit.beta[0])
        self.coef_ = fit.beta[1 : 1 + len(self._linear)]
        sm_terms = self._smooth_term_index = list(range(n_group_terms, len(terms)))
        M, Minv, self.edf_, self.smoothing_params_, self.edf_total_ = smooth_summary.smooth_posterior(
            fit, self.smooths_, sm_terms)
        self._Vp = fit.sigma**2 * Minv  # the posterior covariance of (u, kept beta): mgcv's Vp
        fitted = Xf @ fit.beta + sum(Z @ fit.b[k][0] for k, Z in zip(sm_terms, Zs))
        if groups is not None and self._group_factors:
            fitted = fitted + self._random_part(X, groups)
        table = smooth_summary.parametric_table(fit, self._Vp, fe_names[: 1 + len(self._linear)], y, fitted,
                                                sample_weight, self.edf_total_)
        self.fixed_effects_, self.residual_df_, self.r2_adj_, self.deviance_explained_ = table
        starts = np.cumsum([1 + len(self._linear)] + [sm.n_fixed for sm in self.smooths_])
        null_space = [list(range(a, a + sm.n_fixed)) for a, sm in zip(starts, self.smooths_)]
        self.smooth_tests_ = smooth_tests.significance_table(fit, M, Minv, self.smooths_, sm_terms, null_space,
                                                             n_group_terms)
        w = 1.0 if sample_weight is None else np.sqrt(sample_weight)
        self._basis_check = smooth_tests.basis_dimension_state(w * (y - fitted),
                                                               [X[:, sm.column] for sm in self.smooths_])
        # a smooth's variance on the scale of its own (unscaled) penalty: sigma^2 / lambda
        vc = self.variance_components_
        for nm, lam in self.smoothing_params_.items():
            var = 0.0 if np.isinf(lam) else self.sigma_**2 / lam
            vc.loc[vc["factor"] == nm, ["variance", "std_dev"]] = [var, np.sqrt(var)]
        return self

    def _fixed_theta(self, terms):
        """Positions and values of theta for smooths with a given smoothing parameter."""
        if self.smoothing_params is None:
            return {}
        slices = theta_layout(terms)[0]
        by_name = {t.name: s.start for t, s in zip(terms, slices)}
        fixed = {}
        names = self._feature_names()
        for sm in self.smooths_:  # (unknown keys were refused before the fit)
            lam = self._per_feature(self.smoothing_params, names[sm.column], sm.column)
            if lam is None:
                continue
            if not lam > 0:
                raise ValueError(f"smoothing_params for {sm.name} must be positive; got {lam!r}.")
            fixed[by_name[sm.name]] = 1.0 / np.sqrt(lam * sm.penalty_scale_)
        return fixed

    # ------------------------------------------------------------------ predict

    def predict(self, X, groups=None, return_std=False):
        """Predict the response, optionally with the standard error of the fitted curve.

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
        y_pred : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        check_is_fitted(self)
        X, groups = self._resolve_predict(X, groups)
        X = self._validate_X(X, reset=False)
        fit = self._fit
        Xf, Zs = self._fixed_design(X)
        smooths = list(zip(self._smooth_term_index, Zs))
        mean = Xf @ fit.beta + sum(Z @ fit.b[k][0] for k, Z in smooths)
        if groups is not None and self._group_factors:
            mean = mean + self._random_part(X, groups)
        if not return_std:
            return mean
        return mean, smooth_summary.posterior_se(self._fit, self._Vp, dict(enumerate(Xf.T)), smooths)

    # ------------------------------------------------------------------ smooth curves

    def partial_dependence(self, feature=None, grid_resolution=100, level=0.95):
        """Each smooth's centred curve with a pointwise confidence band.

        Parameters
        ----------
        feature : str or int, default=None
            The smooth's feature; None for all smooths.
        grid_resolution : int, default=100
            Points on an even grid over the training range of the feature.
        level : float, default=0.95
            Coverage of the pointwise band (Bayesian, as mgcv's ``plot.gam``).

        Returns
        -------
        curves : DataFrame
            Columns ``smooth``, ``x``, ``estimate``, ``std_error``, ``lower``, ``upper``.
        """
        check_is_fitted(self)
        fit = self._fit
        z = norm.ppf(0.5 + check_level(level) / 2)
        frames = []
        fixed_start = 1 + len(self._linear)
        for sm, k in zip(self.smooths_, self._smooth_term_index):
            if feature is not None and feature not in (sm.name, sm.name[2:-1], sm.column):
                fixed_start += sm.n_fixed
                continue
            x = np.linspace(*self._train_range[sm.column], grid_resolution)
            F, Z = sm.design(x)
            fixed_cols = list(range(fixed_start, fixed_start + sm.n_fixed))
            fixed_start += sm.n_fixed
            est = F @ fit.beta[fixed_cols] + Z @ fit.b[k][0]
            se = smooth_summary.posterior_se(self._fit, self._Vp, dict(zip(fixed_cols, F.T)), [(k, Z)])
            frames.append(pd.DataFrame({"smooth": sm.name, "x": x, "estimate": est, "std_error": se,
                                        "lower": est - z * se, "upper": est + z * se}))
        if not frames:
            raise ValueError(f"{feature!r} is not a smooth feature; smooths: {[s.name for s in self.smooths_]}.")
        return pd.concat(frames, ignore_index=True)

    def plot_partial_dependence(self, feature=None, ax=None, level=0.95, rug=True):
        """Draw each smooth with its pointwise confidence band (matplotlib).

        Parameters
        ----------
        feature : str or int, default=None
            One smooth, or all of them (one axes each).
        ax : matplotlib Axes or array of Axes, default=None
            Where to draw; None makes a new figure.
        level : float, default=0.95
        rug : bool, default=True
            Mark the training values of the feature along the x axis.

        Returns
        -------
        axes : list of matplotlib Axes
        """
        import matplotlib.pyplot as plt

        curves = self.partial_dependence(feature, level=level)
        names = list(dict.fromkeys(curves["smooth"]))
        if ax is None:
            # constrained layout: the axis labels stay inside the figure on a plain savefig
            _, ax = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False,
                                 layout="constrained")
        axes = list(np.ravel(ax))
        for a, nm in zip(axes, names):
            c = curves[curves["smooth"] == nm]
            a.fill_between(c["x"], c["lower"], c["upper"], alpha=0.25, lw=0)
            a.plot(c["x"], c["estimate"], lw=2)
            if rug:
                sm = next(s for s in self.smooths_ if s.name == nm)
                xs = self._rug[sm.column]
                a.plot(xs, np.full(len(xs), c["lower"].min()), "|", color="k", alpha=0.4)
            a.set_xlabel(nm[2:-1])
            a.set_ylabel(f"{nm}, edf {self.edf_[nm]:.2f}")
        return axes

    def check_basis_dimension(self, n_permutations=400, random_state=None):
        """Whether each smooth's basis is large enough: mgcv's ``k.check`` (printed by ``gam.check``).

        The residuals ordered by the smooth's feature: when the basis is too small to follow the
        signal, neighbouring residuals resemble each other. ``k_index`` is their mean squared
        difference (halved) over the residuals' mean square, near 1 or above when nothing is
        left to fit; below 1 with a small p-value, refit with a larger ``n_basis`` and see
        whether the edf grows. Residuals are weighted by ``sqrt(sample_weight)`` and, in a
        GAMM, include the random effects; beyond 5,000 rows a fixed subsample of 5,000 is used.

        Parameters
        ----------
        n_permutations : int, default=400
            Random orders of the residuals for the p-value (mgcv's ``n.rep``).
        random_state : int, RandomState instance or None, default=None
            Seeds the permutations. The p-value is a Monte Carlo estimate, the share of
            permutations with a smaller mean squared difference: it differs from mgcv's
            (R's generator) within Monte Carlo error; the k-index is mgcv's exactly.

        Returns
        -------
        table : DataFrame
            Indexed by smooth: ``k_prime`` (basis dimension after the sum-to-zero constraint,
            mgcv's ``k'``), ``edf``, ``k_index``, ``p_value``.

        Examples
        --------
        >>> from sklmm import PenalizedSplineRegressor
        >>> from sklmm.datasets import load_mcycle
        >>> d = load_mcycle()
        >>> gam = PenalizedSplineRegressor(n_basis=5).fit(d[["times"]], d["accel"])
        >>> gam.check_basis_dimension(random_state=0).round(2)
                  k_prime   edf  k_index  p_value
        s(times)        4  3.82     0.41      0.0
        """
        check_is_fitted(self)
        return smooth_tests.basis_dimension_table(self._basis_check, [sm.name for sm in self.smooths_],
                                                  [sm.n_fixed + sm.n_random for sm in self.smooths_],
                                                  self.edf_.to_numpy(), n_permutations, random_state)

    def summary(self):
        """A text summary: smooths (lambda, edf and mgcv's approximate significance), parametric
        terms with t tests, adjusted R^2 and deviance explained (as mgcv's ``summary.gam``),
        variance components, criterion.

        Returns
        -------
        text : str
        """
        check_is_fitted(self)
        how = "REML" if self.reml else "ML"
        lines = [f"Penalized spline model fit by {how} (sklmm, solver={self.solver_})",
                 f"{'REML criterion' if self.reml else 'deviance'}: {self.criterion_:.4f}   "
                 f"sigma: {self.sigma_:.4f}   total edf: {self.edf_total_:.3f}", "",
                 "Smooth terms (approximate significance: Wood 2013, as mgcv's summary.gam):"]
        lines += smooth_summary.smooth_lines(self.smooths_, self.edf_, self.smoothing_params_, self.smooth_tests_)
        lines += ["", "Parametric terms:",
                  f" {'':<16}{'Estimate':>12}{'Std. Error':>12}{'t value':>10}{'Pr(>|t|)':>11}"]
        for nm, r in self.fixed_effects_.iterrows():
            lines.append(f" {nm:<16}{r['estimate']:12.4f}{r['std_error']:12.4f}{r['t_value']:10.3f}"
                         f"{r['p_value']:11.3g}")
        lines.append(f"R-sq.(adj) = {self.r2_adj_:.4f}   Deviance explained = {100 * self.deviance_explained_:.1f}%")
        lines += ["", "Variance components:"] + self._variance_lines() + ["", self._optimizer_line()]
        return "\n".join(lines)


