"""MixedLinearRegressor: linear mixed-effects models as a scikit-learn estimator."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._base import GroupedMixin
from ._engine.fit import SingularFitWarning, fit_mixed
from ._engine.threads import sparing_busy_cpus
from ._inference.mixin import InferenceMixin
from ._input import dask_collections as _dask
from ._input.arrays import check_sample_weight
from ._input.formula import FORMULA_PARAM_DEFAULTS, FORMULA_PARAMS, parse_formula
from ._input.groups import NoGroupsWarning

__all__ = ["MixedLinearRegressor", "SingularFitWarning", "NoGroupsWarning"]


class MixedLinearRegressor(InferenceMixin, GroupedMixin, RegressorMixin, BaseEstimator):
    """Linear mixed-effects model fitted by lme4's penalized least squares.

    The model is ``y = X beta + Z b + e`` with random effects ``b ~ N(0, Sigma_theta)`` for the
    levels of one or more grouping factors (passed as ``groups``) and ``e ~ N(0, sigma^2 I)``.
    The covariance parameters are estimated by maximizing the likelihood (``reml=False``) or the
    restricted likelihood (``reml=True``) profiled over ``beta`` and ``sigma``, as
    ``lme4::lmer`` does, with the BOBYQA optimizer of nlopt.

    Parameters
    ----------
    random_slopes : None, list or dict, default=None
        Features that get a random slope. None: random intercepts only (lme4 ``(1 | g)``). A
        list of feature names (when X has column names) or column indices: slopes for every
        grouping factor (lme4 ``(x | g)``). A dict ``{factor name: list}``: slopes per factor
        (factors not in the dict get an intercept only). For ``nested=True`` the key may be the
        column name of the innermost level (``"cask"``) or lme4's name (``"cask:batch"``).
    correlated_slopes : bool, default=True
        True estimates an unstructured covariance between a factor's intercept and slopes
        (lme4 ``(x | g)``); False makes them independent (lme4 ``(x || g)``).
    nested : bool, default=False
        With several columns in ``groups``: False treats them as crossed factors
        (lme4 ``(1 | plate) + (1 | sample)``); True as a hierarchy, outer to inner
        (lme4 ``(1 | batch / cask)`` = ``(1 | batch) + (1 | batch:cask)``), so inner labels may
        repeat across outer groups.
    reml : bool, default=True
        REML (lme4's default) or maximum likelihood (lme4 ``REML = FALSE``).
    fit_intercept : bool, default=True
        Whether the fixed effects include an intercept.
    unseen_groups : {"population", "error"}, default="population"
        What ``predict`` does with a group level not seen in ``fit``: predict its random effect
        as 0 (its prior mean, lme4 ``allow.new.levels = TRUE``), or raise a ValueError naming
        the levels.
    random_intercept : bool, default=True
        Whether each grouping factor has a random intercept. False with ``random_slopes`` is
        lme4 ``(0 + x | g)``.
    solver : {"auto", "blocked", "cholmod", "dense"}, default="auto"
        The Cholesky factorization. "blocked" (numpy/scipy only): the largest factor level by
        level and the rest as a dense Schur complement, the fastest when the other factors are
        small. "cholmod": a sparse Cholesky by CHOLMOD (scikit-sparse), analysed once and
        refactored per theta. "dense": one dense Cholesky of the whole system, for small
        models. "auto" takes "dense" when the random-effect columns plus the fixed effects
        number at most 119, otherwise "blocked" unless the factors after the first have more
        than 3000 random-effect columns and scikit-sparse is installed. The choice is recorded
        in ``solver_``.
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
        Columns of X that hold group labels (names for a DataFrame, positions for an array).
        They are taken out of X in ``fit``, ``predict`` and ``score`` and used as ``groups``;
        they are not features. With them the labels travel inside X, so every scikit-learn tool
        (``cross_val_predict``, scorers, ``permutation_importance``, ``PartialDependenceDisplay``,
        Pipelines with metadata routing off) predicts conditionally. ``groups=`` given as well
        must hold the same labels. X at ``predict`` must hold the label columns too; rows with
        levels not seen in fit follow ``unseen_groups``.
    formula : str, default=None
        An lme4 formula such as ``"Reaction ~ Days + (Days | Subject)"``. X is then the data
        frame: ``fit(df)`` takes the fixed effects, the response (unless y is given) and the
        grouping factors from its columns, and the random-effect structure from the formula
        (leave ``random_slopes``, ``correlated_slopes``, ``nested``, ``random_intercept``,
        ``fit_intercept`` and ``group_columns`` at their defaults); ``predict(df)`` is
        conditional when df holds the grouping columns and population-level when it does not
        (lme4's ``predict(fit, newdata)``), and ``score(df)`` reads y from df. Unlike a model
        built by :meth:`from_formula`, it clones, so it works in ``cross_validate`` and
        ``GridSearchCV``. See :meth:`from_formula` for what the formula may hold.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Fixed-effect coefficients of the features (0 for aliased columns, see Notes).
    intercept_ : float
        Fixed intercept (0.0 when ``fit_intercept=False``).
    sigma_ : float
        Residual standard deviation.
    theta_ : ndarray
        Relative covariance parameters: for each factor, the column-major lower triangle of its
        relative Cholesky factor (lme4 ``getME(fit, "theta")``).
    theta_names_ : list of str
        lme4-style names of ``theta_``.
    random_effects_ : dict of str to DataFrame
        Per grouping factor, the conditional modes of its random effects (BLUPs), indexed by
        level with one column per coefficient (lme4 ``ranef``).
    variance_components_ : DataFrame
        lme4's ``as.data.frame(VarCorr(fit))``: columns ``factor``, ``term``, ``term2``,
        ``variance``, ``std_dev``, ``correlation``. A row with ``term2`` missing is a variance
        (``std_dev`` its square root); a row with ``term2`` set is a pair: ``variance`` holds
        the covariance and ``correlation`` the correlation. The last row is the residual.
    fixed_effects_names_ : list of str
        Names of the fixed effects, ``"(Intercept)"`` first.
    loglik_ : float
        Log-likelihood at the optimum (the REML log-likelihood for REML fits, as lme4).
    aic_, bic_ : float
        Information criteria on lme4's conventions (``-2 loglik_ + k * n_params``, with
        ``n_params`` = fixed effects + theta + 1).
    criterion_ : float
        The minimized objective on lme4's scale: the deviance for ML, the REML criterion for
        REML (``-2 loglik_``).
    converged_ : bool
        Whether the optimizer stopped on its tolerances.
    n_iter_ : int
        Number of evaluations of the profiled criterion.
    is_singular_ : bool
        lme4's ``isSingular``: a diagonal element of a relative covariance factor is below 1e-4.
    solver_ : str
        The factorization used: ``"blocked"``, ``"cholmod"`` or ``"dense"``.
    n_groups_ : dict of str to int
        Number of levels of each grouping factor.
    optimizer_ : OptSummary
        The optimizer's record (start, end, evaluations, return code).

    See Also
    --------
    PenalizedSplineRegressor : penalized regression splines (GAMs / GAMMs) on the same engine.

    Notes
    -----
    For a given theta the fixed effects and the spherical random effects solve a penalized
    least-squares problem through one Cholesky factorization, so the criterion is a function of
    theta alone. The cross-products of ``[Z X y]`` are formed once; an evaluation costs nothing
    that grows with the number of rows.

    Fixed-effect columns that are linear combinations of earlier ones are dropped before the
    fit, as lme4 does, with a warning naming them; their ``coef_`` is 0.

    Without ``groups``, ``fit`` warns (:class:`NoGroupsWarning`) and fits the fixed effects
    only (ordinary least squares, with ``sigma_`` from the ML or REML criterion).

    ``groups`` reaches ``fit``, ``predict`` and ``score`` as metadata: with scikit-learn's
    metadata routing on (``sklearn.set_config(enable_metadata_routing=True)``) the estimator
    requests ``groups`` by default for all three; with routing off, pass it explicitly
    (``params={"groups": g}`` in ``cross_validate``); see the README for the recipes.

    Examples
    --------
    >>> from sklmm import MixedLinearRegressor
    >>> from sklmm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor(random_slopes=["Days"]).fit(
    ...     df[["Days"]], df["Reaction"], groups=df["Subject"])
    >>> round(m.intercept_, 2), round(float(m.coef_[0]), 2)
    (251.41, 10.47)
    >>> round(m.criterion_, 2)
    1743.63
    """

    _parameter_constraints = {**GroupedMixin._group_parameter_constraints, "fit_intercept": ["boolean"]}
    #: what a ``formula`` sets, with the defaults those parameters must keep then
    _formula_defaults = FORMULA_PARAM_DEFAULTS
    _parse_formula = staticmethod(parse_formula)

    def __init__(
        self,
        random_slopes=None,
        correlated_slopes=True,
        nested=False,
        reml=True,
        fit_intercept=True,
        unseen_groups="population",
        random_intercept=True,
        solver="auto",
        max_iter=10000,
        warm_start=False,
        verbose=0,
        group_columns=None,
        formula=None,
    ):
        self.random_slopes = random_slopes
        self.correlated_slopes = correlated_slopes
        self.nested = nested
        self.reml = reml
        self.fit_intercept = fit_intercept
        self.unseen_groups = unseen_groups
        self.random_intercept = random_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.verbose = verbose
        self.group_columns = group_columns
        self.formula = formula

    @classmethod
    def from_formula(cls, formula, data, weights=None, **params):
        """Fit an lme4 formula: ``lmer(formula, data, REML = ...)`` in one line.

        The fixed part of the formula is turned into a model matrix by formulaic (so
        ``C(f)``, interactions, ``np.log(x)`` and ``0 +`` / ``- 1`` work as in formulaic);
        the random-effect terms set the estimator's parameters. Supported: ``(1 | g)``,
        ``(x | g)``, ``(x || g)``, ``(0 + x | g)``, crossed ``(1 | a) + (1 | b)``, nested
        ``(1 | a/b)``, interactions ``(1 | a:b)`` and ``(x | subj) + (1 | item)``. Rows with a
        missing value in any variable of the model are dropped, as lme4's ``na.omit`` does.
        R's ``I(x^2)`` is read as R reads it (formulaic's ``I(x**2)``); a polars data frame is
        converted to pandas.

        This is the shortcut for ``MixedLinearRegressor(formula=formula, **params).fit(data)``
        that returns the formula's settings as parameters; use the ``formula`` parameter for
        ``clone``, ``cross_validate`` and ``GridSearchCV`` on data frames.

        Parameters
        ----------
        formula : str
            An lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
        data : pandas.DataFrame
            The data; the formula's variables are its columns.
        weights : str or array-like, default=None
            Prior weights, as lme4's ``weights``: a column of data or one value per row of data.
        **params
            Other constructor parameters (``reml``, ``solver``, ``unseen_groups``,
            ``max_iter``, ...). ``REML=False`` is accepted as an alias of ``reml=False``.
            ``random_slopes``, ``correlated_slopes``, ``nested``, ``random_intercept`` and
            ``fit_intercept`` come from the formula and cannot be given.

        Returns
        -------
        model : MixedLinearRegressor
            The fitted estimator. Its parameters are those the formula maps to (see
            ``get_params()``), so ``clone(model)`` fits the same model on the design below.
            A formula with a random slope that is not a fixed effect
            (``y ~ 1 + (1 + x | g)``), which no parameter expresses, returns
            ``MixedLinearRegressor(formula=formula, **params)`` fitted to data instead.
            Two more fitted attributes: ``formula_`` (the formula string) and
            ``formula_design_``, whose ``design(data)`` returns ``(X, groups)``: the
            fixed-effects model matrix (without its intercept column) and the grouping
            columns, for cross-validation with the plain estimator. ``predict`` and
            ``score`` also accept data frames directly: ``predict(newdata)`` is the
            population-level prediction (lme4 ``re.form = NA``) and
            ``predict(newdata, groups=newdata)`` the conditional one (lme4's default).

        Raises
        ------
        ValueError
            For a formula the estimator cannot express: random intercepts on some factors
            but not others, ``|`` and ``||``
            with slopes in one formula, or a factor in two terms that are not the
            single-coefficient form ``(1 | g) + (0 + x | g)`` (which is ``(x || g)``).

        Examples
        --------
        >>> from sklmm import MixedLinearRegressor
        >>> from sklmm.datasets import load_sleepstudy
        >>> df = load_sleepstudy()
        >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
        >>> m.get_params()["random_slopes"], round(m.criterion_, 2)
        (['Days'], 1743.63)
        >>> m.predict(df.head(2), groups=df.head(2)).round(1)
        array([253.7, 273.3])
        """
        params = dict(params)
        if "REML" in params:
            reml = params.pop("REML")
            if "reml" in params and bool(params["reml"]) != bool(reml):
                raise ValueError(f"REML={reml!r} and reml={params['reml']!r} disagree; give one of them.")
            params["reml"] = bool(reml)
        given = [p for p in FORMULA_PARAMS if p in params]
        if given:
            raise ValueError(f"{given} are set by the formula; remove them from the arguments of from_formula.")
        if isinstance(weights, str):  # a column of data, as lme4's weights = w
            if weights not in getattr(data, "columns", []):
                raise ValueError(f"weights={weights!r} is not a column of data.")
            weights = np.asarray(data[weights], dtype=float)
        spec = parse_formula(formula)
        X, y, groups, formula_params = spec.fit_design(data)
        if spec.random_only:  # random slopes that are not fixed effects: no parameter says it
            return cls(formula=formula, **params).fit(data, sample_weight=weights)
        w = None if weights is None else cls._rows_kept(weights, spec.complete_rows, "weights")
        model = cls(**formula_params, **params).fit(X, y, groups=groups, sample_weight=w)
        model.formula_ = formula
        model.formula_design_ = spec
        return model

    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the mixed model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fixed-effect features (and the source of random-slope columns). With ``groups``, X
            may have no columns (an intercept-only model). X, y, groups and sample_weight may
            also all be Dask collections partitioned alike: the partitions are reduced to
            cross-products in parallel and no row reaches this process (see the Dask page).
        y : array-like of shape (n_samples,), default=None
            The response; None only with ``formula``, which reads it from X.
            Response.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels: one column per grouping factor (ints, strings or categoricals).
            Without groups only the fixed effects are fitted, with a warning.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior (precision) weights, as lme4's ``weights``: row i has residual variance
            ``sigma^2 / sample_weight[i]``. Must be positive and finite. They are not
            frequency weights: a weight of 2 is not the same as a duplicated row.

        Returns
        -------
        self : MixedLinearRegressor
            The fitted estimator.
        """
        with sparing_busy_cpus():  # BLAS within the CPUs free when the fit starts
            self._check_group_params()
            if getattr(self, "formula", None) is not None and _dask.is_dask_collection(X, y, groups, sample_weight):
                raise ValueError("formula takes in-memory data frames; for Dask input pass X, y and groups.")
            X, y, groups, sample_weight = self._resolve_fit(X, y, groups, sample_weight)
            if _dask.is_dask_collection(X, y, groups, sample_weight):  # partitions reduced in parallel
                return _dask.fit(self, X, y, groups, sample_weight)
            if y is None:
                raise ValueError(
                    "MixedLinearRegressor requires y to be passed, but the target y is None (only a "
                    "model with a formula reads y from the data)."
                )
            X, y = self._validate_X(X, y, groups=groups)
            n = X.shape[0]
            if n < 2:
                raise ValueError(f"n_samples = {n}: fitting a mixed model needs at least 2 observations.")
            sample_weight = check_sample_weight(sample_weight, X.shape[0])
            if groups is None:
                warnings.warn(
                    "fit was called without groups, so no random effects are fitted: this is an "
                    "ordinary least-squares fit of the fixed effects. Pass groups=<labels> to fit "
                    "random effects (in a Pipeline or cross-validation see 'Groups, pipelines and "
                    "model selection' in the sklmm docs, docs/model_selection.md).",
                    NoGroupsWarning,
                    stacklevel=2,
                )
                terms, self._group_factors, self._group_columns = [], [], None
                self._group_names_given = False
            else:
                terms = self._group_terms(X, groups)
            names = self._feature_names()
            fit_intercept = self._structure["fit_intercept"]
            random_only = self._structure["random_only"]
            self._fixed_index = [j for j, nm in enumerate(names) if nm not in random_only] if random_only else None
            Xf = self._fixed_columns(X)
            fe_names = (["(Intercept)"] if fit_intercept else []) + [nm for nm in names if nm not in random_only]
            self._check_fixed_names(fe_names, "'(Intercept)'")
            design = self._training_design(Xf, terms, sample_weight)  # before the engine strips the rows
            fit = fit_mixed(terms, Xf, y, fe_names, sample_weight=sample_weight, reml=bool(self.reml),
                            solver=self.solver, max_iter=self.max_iter,
                            theta_start=self._warm_theta(terms), verbose=self.verbose)
            self._remember_training(design, y, sample_weight)
            self._set_engine_attributes(fit)
            self.fixed_effects_names_ = fe_names
            self.intercept_ = float(fit.beta[0]) if fit_intercept else 0.0
            self.coef_ = fit.beta[1:] if fit_intercept else fit.beta
            return self

    def predict(self, X, groups=None, return_std=False):
        """Predict the response, optionally with the standard error of the prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features. With a Dask DataFrame or array (and groups partitioned alike), the
            prediction is a lazy Dask array computed partition by partition.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels. With groups, the prediction is conditional: fixed effects plus each
            group's conditional mode (levels not seen in fit get 0, or an error, per
            ``unseen_groups``). Without groups, the population-level prediction (fixed effects
            only, lme4 ``predict(fit, re.form = NA)``). For a model fitted by
            :meth:`from_formula`, X and groups may be data frames holding the formula's
            variables (``predict(newdata, groups=newdata)``).
        return_std : bool, default=False
            Also return the standard error of the predicted mean. For levels seen in fit it
            is the standard deviation of ``x' beta_hat + z' b_hat - (x' beta + z' b)`` under
            the joint conditional covariance of the fixed effects and the random effects
            given the data (at the estimated variance parameters), which includes their
            covariances; levels not seen in fit add their prior variance ``z' Sigma z``.
            Without groups it is the standard error of the population-level prediction
            (``sqrt(x' vcov x)``). The residual is not included: see
            :meth:`predict_interval`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        check_is_fitted(self)
        X, groups = self._resolve_predict(X, groups)
        if _dask.is_dask_collection(X, groups):  # a lazy Dask array, partition by partition
            return _dask.predict(self, X, groups, return_std=return_std)
        X = self._validate_X(X, reset=False)
        idx = getattr(self, "_fixed_index", None)
        pred = (X if idx is None else X[:, idx]) @ self.coef_ + self.intercept_
        # each row's levels, encoded once for the mean and the standard error
        rows = list(self._group_rows(X, groups)) if groups is not None and self._fit.terms else None
        if rows is not None:
            pred = pred + self._random_part(X, groups, rows)
        if return_std:
            return pred, np.sqrt(np.clip(self._prediction_variance(X, groups, rows), 0, None))
        return pred

    def summary(self):
        """An lme4 / lmerTest-like text summary: criterion, variance components, fixed effects
        with standard errors, Satterthwaite df, t values and p-values.

        Returns
        -------
        text : str
        """
        check_is_fitted(self)
        how = "REML" if self.reml else "maximum likelihood"
        lines = [f"Linear mixed model fit by {how} (sklmm, solver={self.solver_})"]
        if self.reml:
            lines.append(f"REML criterion at convergence: {self.criterion_:.4f}")
        else:
            lines.append(
                f"     AIC       BIC    logLik  deviance\n"
                f"{self.aic_:9.2f} {self.bic_:9.2f} {self.loglik_:9.2f} {self.criterion_:9.2f}"
            )
        lines += ["", "Random effects:"] + self._variance_lines() + ["", "Fixed effects:"]
        fe = self.fixed_effects_
        lines.append(f" {'':<14}{'Estimate':>12}{'Std. Error':>12}{'df':>10}{'t value':>10}{'Pr(>|t|)':>11}")
        for nm, r in fe.iterrows():
            if np.isnan(r["estimate"]):
                lines.append(f" {nm:<14}{'(dropped: aliased)':>30}")
                continue
            lines.append(
                f" {nm:<14}{r['estimate']:12.4f}{r['std_error']:12.4f}{r['df']:10.2f}"
                f"{r['t_value']:10.3f}{r['p_value']:11.3g}"
            )
        lines += ["", self._optimizer_line()]
        return "\n".join(lines)
