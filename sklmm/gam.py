"""PenalizedSplineRegressor: GAMs and GAMMs fitted as mixed models, smoothing by REML."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import d2_tweedie_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import GroupedMixin
from ._engine.smooth import BASES
from ._engine.terms import theta_layout
from ._engine.threads import sparing_busy_cpus
from ._inference import gam_compare, gam_family, smooth_summary, smooth_tests
from ._inference.gam_predict import SmoothPredictionMixin
from ._input import smooth_terms
from ._input.arrays import check_count, check_level, check_sample_weight
from ._input.gam_formula import GAM_FORMULA_PARAMS, parse_gam_formula

__all__ = ["PenalizedSplineRegressor"]


class _PenalizedSpline(SmoothPredictionMixin, GroupedMixin, BaseEstimator):
    """What the penalized spline estimators share: smooths, the fit, predictions of the curve,
    partial dependence, mgcv's tables. :class:`PenalizedSplineRegressor` and
    :class:`~sklmm.PenalizedSplineClassifier` add their family and response."""

    _parameter_constraints = {
        **GroupedMixin._group_parameter_constraints,
        "unseen_groups": [StrOptions({"population", "error", "marginal"})],
        "smooths": [None, list, tuple],
        "smooth_features": [None, list, tuple],
        "n_basis": [Interval(numbers.Integral, 3, None, closed="left"), dict],
        "basis": [StrOptions(set(BASES)), dict],
        "smoothing_params": [None, dict],
        "knots": [None, dict],
    }
    #: what a ``formula`` sets, with the defaults those parameters must keep then
    _formula_defaults = GAM_FORMULA_PARAMS
    _parse_formula = staticmethod(parse_gam_formula)

    def _family_name(self):
        return getattr(self, "family", "gaussian")

    def _encode_target(self, y):
        """y as the family takes it (the classifier: labels to 0/1)."""
        return y

    # ------------------------------------------------------------------ design

    def _make_smooths(self, X):
        return smooth_terms.make_smooths(self, X)

    def _fixed_design(self, X, designs=None):
        """``[1, linear features, null-space columns of each smooth]`` and the smooth Z blocks."""
        if designs is None:
            designs = smooth_terms.designs_of(self.smooths_, X)
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
            Smooths ``s(x, k=..., bs=...)``, ``s(x, z, k=30)``, ``s(x, by=f)``, ``te(x, z)``
            and ``ti(...)`` as in mgcv (``s``'s default basis ``"tp"``), parametric terms read
            by formulaic (``C(f)``, ``np.log(x)``), and lme4 random-effect terms for a GAMM
            (gamm4's ``random = ~ (1 | g)`` written into the formula), e.g.
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
        with sparing_busy_cpus():  # BLAS within the CPUs free when the fit starts
            self._check_group_params()
            X, y, groups, sample_weight = self._resolve_fit(X, y, groups, sample_weight)
            if y is None:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y is None (only "
                    "a model with a formula reads y from the data)."
                )
            X = smooth_terms.encode_by_factors(self, X, fitting=True)
            X, y = self._validate_X(X, self._encode_target(y), groups=None)
            sample_weight = check_sample_weight(sample_weight, X.shape[0],
                                                case_weights=self._family_name() != "gaussian")
            n = X.shape[0]
            if n < 2:
                raise ValueError(f"n_samples = {n}: fitting a model needs at least 2 observations.")
            self.smooths_, self._linear, designs = self._make_smooths(X)
            used = sorted({j for sm in self.smooths_ for j in sm.columns})
            self._train_range = {j: (float(X[:, j].min()), float(X[:, j].max())) for j in used}
            step = max(1, X.shape[0] // 20000)  # (the rug of plots: quantiles of a strided sample)
            self._rug = {j: np.unique(np.quantile(X[::step, j], np.linspace(0, 1, 200))) for j in used}
            rows = np.random.default_rng(0).permutation(X.shape[0])[:2000]  # (data dots of 2-d plots)
            self._data_points = {sm.name: X[np.ix_(rows, sm.columns)] for sm in self.smooths_ if len(sm.columns) == 2}
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
            # the smooths' terms after the grouping factors', those with levels (fs) first, most
            # levels first: the blocked factorization takes the first term level by level
            order = sorted(range(len(self.smooths_)), key=lambda i: -len(getattr(self.smooths_[i], "labels", ())))
            sm_terms = self._smooth_term_index = [0] * len(self.smooths_)
            for pos, i in enumerate(order):
                sm_terms[i] = n_group_terms + pos
            terms += [self.smooths_[i].random_term(Zs[i]) for i in order]
            family = self._family = gam_family.engine_family(self._family_name())
            fit = gam_family.fit_family(family, terms, Xf, y, fe_names, sample_weight=sample_weight,
                                        reml=bool(self.reml), solver=self.solver, max_iter=self.max_iter,
                                        verbose=self.verbose, theta_fixed=self._fixed_theta(terms),
                                        theta_start=self._warm_theta(terms))
            self._set_engine_attributes(fit)
            self.fixed_effects_names_ = fe_names
            self.intercept_ = float(fit.beta[0])
            self.coef_ = fit.beta[1 : 1 + len(self._linear)]
            post, self.edf_, self.smoothing_params_, self.edf_total_ = smooth_summary.smooth_posterior(
                fit, self.smooths_, sm_terms)
            self._Vp = post.cov.scaled(fit.sigma**2)  # the posterior covariance of the smooths' u and beta: mgcv's Vp
            fitted = Xf @ fit.beta + sum(Z @ fit.b[k].ravel() for k, Z in zip(sm_terms, Zs))
            if groups is not None and self._group_factors:
                fitted = fitted + self._random_part(X, groups)
            names = fe_names[: 1 + len(self._linear)]
            if family is None:
                table = smooth_summary.parametric_table(fit, self._Vp, names, y, fitted, sample_weight, self.edf_total_)
                residuals = (1.0 if sample_weight is None else np.sqrt(sample_weight)) * (y - fitted)
            else:
                fitted = family.mean(fitted)
                table = gam_family.glm_table(family, self._Vp, fit.beta, len(fit.u), fit.keep, names, y, fitted,
                                             sample_weight, self.edf_total_)
                w = np.ones(n) if sample_weight is None else sample_weight
                residuals = gam_family.deviance_residuals(family, y, fitted, w)
            self.deviance_ = float(residuals @ residuals)
            self._edf_totals = None  # (edf2: computed when asked, gam_compare.edf_totals)
            self.fixed_effects_, self.residual_df_, self.r2_adj_, self.deviance_explained_ = table
            self.coefficients_, self.coefficients_cov_ = smooth_summary.coefficient_table(self, fe_names)
            self.conditional_aic_ = gam_family.conditional_aic(family, y, fitted,
                                                               sample_weight, self.edf_total_)
            starts = np.cumsum([1 + len(self._linear)] + [sm.n_fixed for sm in self.smooths_])
            null_space = [list(range(a, a + sm.n_fixed)) for a, sm in zip(starts, self.smooths_)]
            # the smooths' tests when first asked for (smooth_tests_): their p-values are numerical
            # integrals, n-independent but up to a few tenths of a second for strong effects
            self._smooth_tests = None
            self._smooth_tests_args = (post, sm_terms, null_space, n_group_terms, gam_family.known_scale(family))
            rows = smooth_tests.basis_check_rows(n)  # (a subsample first, as mgcv's k.check)
            self._basis_check = smooth_tests.basis_dimension_state(
                residuals if rows is None else residuals[rows],
                smooth_summary.check_covariates(self, X if rows is None else X[rows]))
            fit.tables["variance_components"] = smooth_summary.variance_rows(
                self.variance_components_, self.smooths_, self.smoothing_params_, self.sigma_,
                not gam_family.known_scale(family))
            return self

    def __getstate__(self):
        # the smooth tests' inputs (the posterior) are not kept in a pickle: computed first
        if self.__dict__.get("_smooth_tests_args") is not None:
            self.smooth_tests_  # noqa: B018 (computes and keeps them)
        state = super().__getstate__()
        state.pop("_smooth_tests_args", None)
        return state

    @property
    def smooth_tests_(self):
        """mgcv's ``summary(gam)$s.table``: per smooth ``edf``, ``ref_df``, ``statistic`` (F, or
        Chi.sq for a known scale) and ``p_value`` (Wood's tests), computed when first asked for
        (the p-values are numerical integrals) and kept."""
        check_is_fitted(self)
        if self.__dict__.get("_smooth_tests") is None:
            with self._fit.lock:  # (moves the factorization for a smooth shrunk to 0)
                if self.__dict__.get("_smooth_tests") is None:
                    post, sm_terms, null_space, n_group_terms, known = self._smooth_tests_args
                    self._smooth_tests = smooth_tests.significance_table(
                        self._fit, post, self.smooths_, sm_terms, null_space, n_group_terms, known_scale=known)
        return self._smooth_tests

    @property
    def edf1_total_(self):
        """mgcv's ``sum(edf1)``, ``tr(2F - F^2)`` with F the map from the data to the fitted
        coefficients: the upper bound of :attr:`edf2_total_` (GAMs without groups)."""
        check_is_fitted(self)
        return gam_compare.edf_totals(self)["edf1"]

    @property
    def edf2_total_(self):
        """mgcv's ``sum(edf2)``: the edf of the posterior covariance widened for the uncertainty
        of the smoothing parameters, at most :attr:`edf1_total_`, computed when first asked
        for (see :mod:`sklmm._inference.gam_compare` for what differs from mgcv). GAMs without
        groups."""
        check_is_fitted(self)
        return gam_compare.edf_totals(self)["edf2"]

    @property
    def corrected_aic_(self):
        """mgcv's ``AIC()``: minus twice the conditional log-likelihood plus twice
        :attr:`edf2_total_` (plus 2 for an estimated scale); :attr:`conditional_aic_` with
        edf2 in place of the edf (mgcv's ``$aic``). GAMs without groups."""
        check_is_fitted(self)
        t = gam_compare.edf_totals(self)
        return self.conditional_aic_ + 2.0 * (t["edf2"] - t["edf"])

    def _fixed_theta(self, terms):
        """Positions and values of theta for smooths with a given smoothing parameter (sp)."""
        slices = theta_layout(terms)[0]
        by_name = {t.name: s.start for t, s in zip(terms, slices)}
        return {by_name[sm.name] + j: th for sm in self.smooths_ if sm.spec.sp is not None
                for j, th in enumerate(sm.thetas(sm.spec.sp))}

    # ------------------------------------------------------------------ predict

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
        grid_resolution = check_count(grid_resolution, "grid_resolution", 2)
        return smooth_summary.curves(self, feature, grid_resolution, norm.ppf(0.5 + check_level(level) / 2))

    def plot_partial_dependence(self, feature=None, ax=None, level=0.95, rug=True):
        """Draw each smooth with its pointwise confidence band (matplotlib), on the link scale; a
        smooth of two features as a contour map of its estimate with the contours of estimate
        +- one standard error dashed (as mgcv's ``plot.gam``) and the data as dots.

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
        check_is_fitted(self)
        return smooth_summary.plot_curves(self, self.partial_dependence(feature, level=level), ax, rug)

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
        n_permutations = check_count(n_permutations, "n_permutations", 1)
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
        return "\n".join(smooth_summary.summary_lines(self) + ["", "Variance components:"]
                         + self._variance_lines() + ["", self._optimizer_line()])


class PenalizedSplineRegressor(RegressorMixin, _PenalizedSpline):
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
    smooths : list of s(...), te(...), ti(...), default=None
        The smooth terms, written as in mgcv: ``[s("x", bs="cr", k=10), s("x", "z", k=30),
        te("x", "w", k=(5, 5)), ti("x", "w"), s("x", by="f")]`` (:func:`~sklmm.s`,
        :func:`~sklmm.te`, :func:`~sklmm.ti`; ``s`` defaults to mgcv's thin plate basis).
        Columns of X that no smooth reads (as a feature or ``by``) enter linearly. None: the
        per-feature parameters below say which features get a smooth.
    smooth_features : list of str or int, default=None
        Columns of X that get a one-variable smooth (names when X has column names, or
        indices). None: all columns. The other columns enter linearly. With ``n_basis``,
        ``basis``, ``knots`` and ``smoothing_params``: a shortcut for ``smooths``, whose
        ``s()`` terms they become.
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
        Grouped random effects, as in :class:`MixedLinearRegressor`; ``unseen_groups`` may also
        be ``"marginal"``: for a non-Gaussian family the mean of a row whose group effects are
        unknown is averaged over their distribution (as :class:`MixedPoissonRegressor` does).
    reml : bool, default=True
        REML (mgcv ``method="REML"``) or maximum likelihood (``method="ML"``). For a
        non-Gaussian family: the Laplace approximate REML of Wood (2011), mgcv's
        ``gam(method="REML")``, or (False) the Laplace likelihood that gamm4 / glmer fit.
    family : {"gaussian", "poisson", "gamma"}, default="gaussian"
        The response's distribution: Gaussian (identity link), Poisson counts (log link;
        ``predict`` gives mean counts and ``score`` the D^2, the deviance explained), or a
        positive response with the Gamma distribution (log link, as mgcv's ``Gamma(link =
        "log")``; an estimated scale, ``sigma_**2``; ``reml=True`` only). Binary responses:
        :class:`~sklmm.PenalizedSplineClassifier`. See the GAM user guide.
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
        formula sets ``smooths`` and the random-effect parameters, which keep their defaults
        (as do ``smooth_features``, ``n_basis`` and ``basis``). It clones, so it works in ``cross_validate``
        and ``GridSearchCV``.

    Attributes
    ----------
    smooths_ : list of FittedSmooth
        The fitted smooths (name, columns, the engine's basis with its knots and
        reparameterization; a factor ``by`` gives one per level).
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
    deviance_ : float
        mgcv's ``deviance(gam)``: the residual sum of squares (weighted), or the family's
        deviance.
    conditional_aic_, corrected_aic_ : float
        mgcv's ``gam$aic`` (minus twice the conditional log-likelihood plus twice the edf) and
        mgcv's ``AIC()`` (with ``edf2_total_`` in place of the edf).
    edf1_total_, edf2_total_ : float
        mgcv's ``sum(edf1)`` and ``sum(edf2)`` (the edf corrected for smoothing-parameter
        uncertainty, which ``likelihood_ratio_test`` between GAMs uses as mgcv's ``anova``
        does); computed when first asked for, for GAMs without groups.
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

    _parameter_constraints = {**_PenalizedSpline._parameter_constraints,
                              "family": [StrOptions({"gaussian", "poisson", "gamma"})]}

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
        family="gaussian",
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
        self.family = family
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
        tags.target_tags.positive_only = self.family in ("poisson", "gamma")
        return tags

    def predict(self, X, groups=None, return_std=False):
        """Predict the response: the mean (a mean count for ``family="poisson"``), optionally with
        the posterior standard error of the population curve (the delta method's on the
        response scale for a non-Gaussian family; :meth:`linear_predictor` gives the link
        scale's). Parameters as :meth:`linear_predictor`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        return self._response_mean(X, groups, return_std)

    def score(self, X, y=None, groups=None, sample_weight=None):
        """R^2 of ``predict(X, groups)``; for ``family="poisson"`` the D^2, the fraction of
        Poisson deviance explained (as :class:`sklearn.linear_model.PoissonRegressor`)."""
        if self.family == "gaussian":
            return GroupedMixin.score(self, X, y, groups, sample_weight)
        y = self._response(X, y)
        return d2_tweedie_score(y, self.predict(X, groups=groups), sample_weight=sample_weight,
                                power=gam_family.tweedie_power(self._family))
