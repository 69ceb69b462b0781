"""MixedLinearRegressor: linear mixed-effects models as a scikit-learn estimator."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted, validate_data

from ._groups import as_group_frame, encode, make_factors
from ._optimize import minimize_bobyqa
from ._pls import cross_products, make_factor, profiled_criterion
from ._terms import RandomTerm, templates, theta_layout

__all__ = ["MixedLinearRegressor", "SingularFitWarning", "NoGroupsWarning"]

#: lme4's default tolerance for ``isSingular``
SINGULAR_TOL = 1e-4
#: relative tolerance of the sequential rank check of the fixed-effects design (lme4: 1e-7)
RANK_TOL = 1e-7


class SingularFitWarning(UserWarning):
    """The fit is singular: a variance component is (numerically) zero, or a correlation is +-1."""


class NoGroupsWarning(UserWarning):
    """``fit`` was called without ``groups``: only fixed effects were fitted."""


def _independent_columns(XtX, tol=RANK_TOL):
    """Columns of X kept in order, each only when not in the span of the earlier kept ones."""
    d = np.sqrt(np.clip(np.diag(XtX), 0, None))
    keep = []
    for j in range(XtX.shape[0]):
        if d[j] == 0:
            continue
        if keep:
            S = XtX[np.ix_(keep, keep)] / np.outer(d[keep], d[keep])
            s = XtX[keep, j] / (d[keep] * d[j])
            resid = 1.0 - s @ np.linalg.solve(S, s)
        else:
            resid = 1.0
        if resid > tol:
            keep.append(j)
    return keep


class MixedLinearRegressor(RegressorMixin, BaseEstimator):
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
    solver : {"auto", "blocked", "cholmod"}, default="auto"
        The Cholesky factorization. "blocked" (numpy/scipy only): the largest factor level by
        level and the rest as a dense Schur complement, the fastest when the other factors are
        small. "cholmod": a sparse Cholesky by CHOLMOD (scikit-sparse), analysed once and
        refactored per theta. "auto" takes "blocked" unless the factors after the first have
        more than 3000 random-effect columns and scikit-sparse is installed. The choice is
        recorded in ``solver_``.
    max_iter : int, default=10000
        Maximum number of evaluations of the profiled criterion.

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
        The factorization used: ``"blocked"`` or ``"cholmod"``.
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

    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

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

    # ------------------------------------------------------------------ parameter checks

    def _check_params(self):
        if self.unseen_groups not in ("population", "error"):
            raise ValueError(
                f"unseen_groups must be 'population' or 'error'; got {self.unseen_groups!r}."
            )
        if self.solver not in ("auto", "blocked", "cholmod"):
            raise ValueError(f"solver must be 'auto', 'blocked' or 'cholmod'; got {self.solver!r}.")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer; got {self.max_iter!r}.")
        if self.random_slopes is not None and not isinstance(self.random_slopes, (list, tuple, dict)):
            raise ValueError(
                "random_slopes must be None, a list of feature names / column indices, or a dict "
                f"from grouping-factor name to such a list; got {type(self.random_slopes).__name__}."
            )

    def _feature_names(self):
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{j}" for j in range(self.n_features_in_)]

    def _slope_index(self, spec, names, factor):
        out = []
        for s in spec:
            if isinstance(s, (numbers.Integral, np.integer)) and not isinstance(s, bool):
                if not 0 <= s < len(names):
                    raise ValueError(
                        f"random_slopes for {factor!r} names column index {s}, but X has "
                        f"{len(names)} columns."
                    )
                out.append(int(s))
            elif str(s) in names:
                out.append(names.index(str(s)))
            else:
                raise ValueError(
                    f"random_slopes for {factor!r} names {s!r}, which is not a column of X "
                    f"(columns: {names[:20]}). Pass X as a DataFrame with that column (in a Pipeline, "
                    "keep names with transformer.set_output(transform='pandas')) or give column "
                    "indices instead."
                )
        return out

    def _slopes_for(self, factors, frame_columns, names):
        spec = self.random_slopes
        if spec is None:
            return {f.name: [] for f in factors}
        if isinstance(spec, dict):
            known = {f.name for f in factors} | set(frame_columns)
            unknown = [k for k in spec if str(k) not in known]
            if unknown:
                raise ValueError(
                    f"random_slopes has keys {unknown} that are not grouping factors; the factors "
                    f"are {sorted(known)}."
                )
            out = {}
            for f in factors:
                inner = frame_columns[f.columns[-1]]
                key = f.name if f.name in spec else (inner if inner in spec else None)
                out[f.name] = self._slope_index(spec[key], names, f.name) if key is not None else []
            return out
        return {f.name: self._slope_index(spec, names, f.name) for f in factors}

    # ------------------------------------------------------------------ fit

    def _build_terms(self, X, frame):
        names = self._feature_names()
        factors = make_factors(frame, self.nested)
        n = X.shape[0]
        for f in factors:
            if len(f.index) < 2:
                raise ValueError(
                    f"grouping factor {f.name!r} has a single level; a variance between groups "
                    "cannot be estimated from one group. Drop it from groups."
                )
            if len(f.index) >= n:
                raise ValueError(
                    f"grouping factor {f.name!r} has {len(f.index)} levels for {n} observations; "
                    "a random effect per observation is not identifiable with a residual. Use "
                    "a coarser grouping."
                )
        slopes = self._slopes_for(factors, list(frame.columns), names)
        terms = []
        for f in factors:
            cols = slopes[f.name]
            if not self.random_intercept and not cols:
                raise ValueError(
                    f"random_intercept=False leaves grouping factor {f.name!r} with no random "
                    "coefficient; give it random_slopes or set random_intercept=True."
                )
            parts = ([np.ones((n, 1))] if self.random_intercept else []) + [X[:, cols]]
            colnames = (["(Intercept)"] if self.random_intercept else []) + [names[c] for c in cols]
            terms.append(
                RandomTerm(
                    name=f.name, levels=f.index, codes=encode(f, frame), values=np.hstack(parts),
                    column_names=colnames, correlated=bool(self.correlated_slopes),
                    slope_columns=cols, intercept=bool(self.random_intercept),
                )
            )
        # lme4's order: decreasing number of levels (stable)
        order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
        return [terms[k] for k in order], [factors[k] for k in order]

    def fit(self, X, y, groups=None):
        """Fit the mixed model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fixed-effect features (and the source of random-slope columns).
        y : array-like of shape (n_samples,)
            Response.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels: one column per grouping factor (ints, strings or categoricals).
            Without groups only the fixed effects are fitted, with a warning.

        Returns
        -------
        self : MixedLinearRegressor
            The fitted estimator.
        """
        self._check_params()
        # an intercept-only model (X with no columns) is legitimate once there are groups
        X = _empty_frame_as_array(X)
        X, y = validate_data(
            self, X, y, y_numeric=True, dtype=np.float64, ensure_min_features=0 if groups is not None else 1
        )
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"n_samples = {n}: fitting a mixed model needs at least 2 observations.")
        if groups is None:
            warnings.warn(
                "fit was called without groups, so no random effects are fitted: this is an "
                "ordinary least-squares fit of the fixed effects. Pass groups=<labels> to fit "
                "random effects (in a Pipeline or cross-validation see the README's "
                "'groups and metadata routing' section).",
                NoGroupsWarning,
                stacklevel=2,
            )
            frame = None
            terms, factors = [], []
        else:
            frame = as_group_frame(groups, n)
            terms, factors = self._build_terms(X, frame)
        names = self._feature_names()
        Xf = np.hstack([np.ones((n, 1)), X]) if self.fit_intercept else X
        fe_names = (["(Intercept)"] if self.fit_intercept else []) + names
        cp = cross_products(terms, Xf, y)
        keep = _independent_columns(cp.xyxy[:-1, :-1])
        if len(keep) < Xf.shape[1]:
            dropped = [fe_names[j] for j in range(Xf.shape[1]) if j not in keep]
            warnings.warn(
                f"fixed-effect model matrix is rank deficient, so dropping {len(dropped)} "
                f"column(s): {dropped} (as lme4 does); their coefficients are reported as 0.",
                UserWarning,
                stacklevel=2,
            )
            cp = _keep_fixed(cp, keep)
        for t in terms:
            t.strip_data()
        self._fit_engine(cp, terms)
        self._set_fitted(cp, terms, factors, keep, fe_names, frame)
        return self

    def _fit_engine(self, cp, terms):
        factor = make_factor(cp, terms, self.solver)
        lower = np.concatenate([t.theta_lower() for t in terms]) if terms else np.zeros(0)
        start = np.concatenate([t.theta_start() for t in terms]) if terms else np.zeros(0)
        n, p, reml = cp.n, cp.p, bool(self.reml)
        if reml and n <= p:
            raise ValueError(
                f"REML needs more observations (n_samples = {n}) than fixed effects ({p}); use "
                "reml=False or fewer features."
            )

        def objective(theta):
            return profiled_criterion(factor.update(theta), n, p, reml, cp.sum_log_weights)

        summ = minimize_bobyqa(objective, start, lower, max_evals=self.max_iter)
        theta = summ.final
        fz = factor.update(theta)
        if fz is None or not np.isfinite(summ.fmin):
            raise ValueError(
                "the penalized least-squares system could not be factored at any theta: the "
                "response is fitted exactly by the fixed effects, or the data are degenerate."
            )
        self._factor, self._theta, self._fz, self.optimizer_ = factor, theta, fz, summ

    def _set_fitted(self, cp, terms, factors, keep, fe_names, frame):
        theta, fz, factor, summ = self._theta, self._fz, self._factor, self.optimizer_
        n, p, reml = cp.n, cp.p, bool(self.reml)
        beta_kept, u = factor.solve()
        beta = np.zeros(len(fe_names))
        beta[keep] = beta_kept
        sigma2 = fz.r2 / (n - p if reml else n)
        crit = profiled_criterion(fz, n, p, reml, cp.sum_log_weights)
        Ts = templates(terms, theta)
        _, z_off = theta_layout(terms)
        self.theta_ = theta.copy()
        self.theta_names_ = [nm for t in terms for nm in t.theta_names()]
        self.fixed_effects_names_ = fe_names
        self.intercept_ = float(beta[0]) if self.fit_intercept else 0.0
        self.coef_ = beta[1:] if self.fit_intercept else beta
        self.sigma_ = float(np.sqrt(sigma2))
        self.criterion_ = float(crit)
        self.loglik_ = -0.5 * self.criterion_
        n_params = p + len(theta) + 1
        self.aic_ = self.criterion_ + 2 * n_params
        self.bic_ = self.criterion_ + np.log(n) * n_params
        self.converged_ = bool(summ.converged)
        self.n_iter_ = int(summ.n_evals)
        self.solver_ = factor.name
        self.n_obs_ = n
        diag_theta = np.concatenate([t.theta_lower() for t in terms]) == 0 if terms else np.zeros(0, bool)
        self.is_singular_ = bool(np.any(theta[diag_theta] < SINGULAR_TOL))
        self._terms = terms
        self._factors = factors
        self._group_columns = list(frame.columns) if frame is not None else None
        self.random_effects_ = {}
        self._b = []
        for k, (t, T) in enumerate(zip(terms, Ts)):
            uk = u[z_off[k] : z_off[k + 1]].reshape(t.n_levels, t.n_coef)
            bk = uk @ T.T
            self._b.append(bk)
            self.random_effects_[t.name] = pd.DataFrame(bk, index=t.levels, columns=t.column_names)
        self.n_groups_ = {t.name: t.n_levels for t in terms}
        self.variance_components_ = self._variance_table(terms, Ts)
        if not self.converged_:
            warnings.warn(
                f"the optimizer stopped without converging ({summ.return_code} after "
                f"{summ.n_evals} evaluations); raise max_iter or check the model.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if self.is_singular_:
            warnings.warn(
                "boundary (singular) fit: a random-effect variance is estimated as (near) zero or "
                "a correlation as +-1; see variance_components_. This is a legitimate estimate, "
                "often a sign the random-effect structure is richer than the data support.",
                SingularFitWarning,
                stacklevel=3,
            )

    def _variance_table(self, terms, Ts):
        rows = []
        s2 = self.sigma_**2
        for t, T in zip(terms, Ts):
            cov = s2 * (T @ T.T)
            sd = np.sqrt(np.diag(cov))
            for a, nm in enumerate(t.column_names):
                rows.append((t.name, nm, None, cov[a, a], sd[a], np.nan))
            if t.correlated:
                for a in range(t.n_coef):
                    for b in range(a + 1, t.n_coef):
                        denom = sd[a] * sd[b]
                        corr = cov[a, b] / denom if denom > 0 else np.nan
                        rows.append((t.name, t.column_names[a], t.column_names[b], cov[a, b], np.nan, corr))
        rows.append(("Residual", None, None, s2, self.sigma_, np.nan))
        return pd.DataFrame(rows, columns=["factor", "term", "term2", "variance", "std_dev", "correlation"])

    # ------------------------------------------------------------------ predict / score

    def _random_part(self, X, groups):
        frame = as_group_frame(groups, X.shape[0])
        if frame.shape[1] != len(self._group_columns):
            raise ValueError(
                f"groups has {frame.shape[1]} column(s) but the model was fitted with "
                f"{len(self._group_columns)} ({self._group_columns}); pass the same grouping columns."
            )
        out = np.zeros(X.shape[0])
        for f, t, b in zip(self._factors, self._terms, self._b):
            codes = encode(f, frame)
            unseen = codes < 0
            if unseen.any() and self.unseen_groups == "error":
                levels = pd.unique(
                    frame.iloc[unseen, list(f.columns)].astype(str).agg(":".join, axis=1).to_numpy()
                )
                raise ValueError(
                    f"groups has {len(levels)} level(s) of {f.name!r} not seen in fit: "
                    f"{list(levels[:10])}{' ...' if len(levels) > 10 else ''}. Set "
                    "unseen_groups='population' to predict them at the population level."
                )
            seen = ~unseen
            vals = np.ones((int(seen.sum()), 0))
            if t.intercept:
                vals = np.ones((int(seen.sum()), 1))
            vals = np.hstack([vals, X[seen][:, t.slope_columns]])
            out[seen] += np.einsum("ij,ij->i", vals, b[codes[seen]])
        return out

    def predict(self, X, groups=None):
        """Predict the response.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Group labels. With groups, the prediction is conditional: fixed effects plus each
            group's conditional mode (levels not seen in fit get 0, or an error, per
            ``unseen_groups``). Without groups, the population-level prediction (fixed effects
            only, lme4 ``predict(fit, re.form = NA)``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(
            self, _empty_frame_as_array(X), reset=False, dtype=np.float64,
            ensure_min_features=0 if self.n_features_in_ == 0 else 1,
        )
        pred = X @ self.coef_ + self.intercept_
        if groups is not None and self._terms:
            pred = pred + self._random_part(X, groups)
        return pred

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of ``predict(X, groups)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like, default=None
            Group labels, as in :meth:`predict`. Without them the score is of the
            population-level prediction.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        return r2_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    # ------------------------------------------------------------------ summary

    def summary(self):
        """An lme4-like text summary: criterion, variance components, fixed effects.

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
        lines.append("")
        lines.append("Random effects:")
        vc = self.variance_components_
        lines.append(f" {'Groups':<12}{'Name':<14}{'Variance':>12}{'Std.Dev.':>11}  Corr")
        for _, r in vc[vc["term2"].isna()].iterrows():
            corr = vc[(vc["factor"] == r["factor"]) & (vc["term2"] == r["term"])]["correlation"]
            ctext = " ".join(f"{c:6.3f}" for c in corr)
            name = "" if pd.isna(r["term"]) else r["term"]
            lines.append(f" {r['factor']:<12}{name:<14}{r['variance']:12.4f}{r['std_dev']:11.4f}  {ctext}")
        grp = ", ".join(f"{k}, {v}" for k, v in self.n_groups_.items())
        lines.append(f"Number of obs: {self.n_obs_}" + (f", groups:  {grp}" if grp else ""))
        lines.append("")
        lines.append("Fixed effects:")
        beta = ([self.intercept_] if self.fit_intercept else []) + list(self.coef_)
        for nm, b in zip(self.fixed_effects_names_, beta):
            lines.append(f" {nm:<14}{b:12.4f}")
        status = "converged" if self.converged_ else "NOT converged"
        lines.append("")
        lines.append(f"Optimizer: BOBYQA (nlopt), {self.n_iter_} evaluations, {status}"
                     + ("; boundary (singular) fit" if self.is_singular_ else ""))
        return "\n".join(lines)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        return tags


def _empty_frame_as_array(X):
    """A DataFrame without columns as an (n, 0) float array (pandas gives it no dtype)."""
    if isinstance(X, pd.DataFrame) and X.shape[1] == 0:
        return np.empty((X.shape[0], 0))
    return X


def _keep_fixed(cp, keep):
    """Cross-products restricted to the kept fixed-effect columns (y stays last)."""
    idx = list(keep) + [cp.p]
    cp.xyxy = cp.xyxy[np.ix_(idx, idx)]
    cp.zxy = [z[:, :, idx] for z in cp.zxy]
    cp.p = len(keep)
    return cp
