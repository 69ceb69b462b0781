"""The posterior of a penalized spline model and mgcv's ``summary.gam`` numbers.

A smooth is a random-effect term (``sklmm._engine.smooth``), so the posterior covariance of all
coefficients is ``sigma^2 M^{-1}`` with ``M`` the penalized least-squares matrix at the estimated
variances (mgcv's ``Vp``). From it: each smooth's effective degrees of freedom, the parametric
terms' standard errors and t tests, the standard error of a fitted curve, and the text of
``summary()``. The tests of the smooth terms are in :mod:`.smooth_tests`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from .._engine.terms import theta_layout
from .gam_family import known_scale
from .posterior import Posterior

__all__ = ["smooth_posterior", "parametric_table", "posterior_se", "format_p_value", "smooth_lines",
           "curves", "plot_curves", "summary_lines", "lambda_diagonal", "variance_rows", "term_contributions",
           "coefficient_table", "check_covariates"]


#: rows per block in :func:`posterior_se`
SE_BLOCK_ROWS = 4096


def smooth_posterior(fit, smooths, term_index):
    """``(posterior, edf, lambda, total edf)`` of a fit: the blocks of the posterior precision
    ``M`` of ``(u, kept beta)`` and of ``M^{-1}`` (:class:`~.posterior.Posterior`; their
    covariance is ``sigma^2 M^{-1}``), each smooth's edf and smoothing parameter (in the units
    of the user's weights) and the trace of the hat matrix."""
    post = Posterior(fit, min(term_index) if term_index else len(fit.terms))
    slices, z_off = theta_layout(fit.terms)
    per_u = 1.0 - post.diag[: z_off[-1]]
    edf, lam = {}, {}
    for sm, k in zip(smooths, term_index):
        edf[sm.name] = sm.n_fixed + float(per_u[z_off[k] : z_off[k + 1]].sum())
        # in the units of the user's weights (the fit divided them by their geometric mean)
        for nm, value in zip(sm.lambda_names(), sm.lambdas(fit.theta[slices[k]])):
            lam[nm] = value * fit.sigma_scale**2
    return post, pd.Series(edf, dtype=float), pd.Series(lam, dtype=float), float(len(fit.keep) + per_u.sum())


def parametric_table(fit, Vp, names, y, fitted, sample_weight, edf_total):
    """mgcv's ``summary.gam`` numbers: the parametric terms (the first ``len(names)`` fixed
    columns) with posterior standard errors and t tests on the residual df ``n - total edf``,
    the adjusted R^2 and the deviance explained (prior weights as mgcv weighs them).

    Returns ``(table, residual_df, r2_adj, deviance_explained)``.
    """
    n = len(y)
    w = np.ones(n) if sample_weight is None else sample_weight
    mean_y = np.sum(w * y) / np.sum(w)
    residual_df = float(n - edf_total)
    sw = np.sqrt(w)
    r2_adj = float(1.0 - np.var(sw * (y - fitted), ddof=1) * (n - 1)
                   / (np.var(sw * (y - mean_y), ddof=1) * residual_df))
    deviance_explained = float(1.0 - np.sum(w * (y - fitted) ** 2) / np.sum(w * (y - mean_y) ** 2))
    k = len(names)
    q = int(theta_layout(fit.terms)[1][-1])
    kept_pos = {j: i for i, j in enumerate(fit.keep)}
    var = np.array([Vp[q + kept_pos[j], q + kept_pos[j]] if j in kept_pos else np.nan for j in range(k)])
    est = np.where(np.isfinite(var), fit.beta[:k], np.nan)
    se = np.sqrt(var)
    t = est / se
    table = pd.DataFrame({"estimate": est, "std_error": se, "t_value": t,
                          "p_value": 2.0 * stats.t.sf(np.abs(t), residual_df)},
                         index=pd.Index(names, name="term"))
    return table, residual_df, r2_adj, deviance_explained


def posterior_se(fit, Vp, fixed, smooths):
    """Posterior standard error of ``sum(fixed columns) + sum(smooth terms)`` at some rows.

    ``fixed`` maps fixed-effect column index to its values at the rows, ``smooths`` lists
    ``(term index, Z at the rows)``. Only the covariance of the columns involved is used, so
    grouping factors with many levels cost nothing here.
    """
    slices, z_off = theta_layout(fit.terms)
    kept_pos = {j: i for i, j in enumerate(fit.keep)}
    cols, parts = [], []
    for k, Z in smooths:
        cols.append(np.arange(z_off[k], z_off[k + 1]))
        parts.append(Z @ sp.diags_array(lambda_diagonal(fit, k)) if sp.issparse(Z) else Z * lambda_diagonal(fit, k))
    for col, values in fixed.items():
        if col in kept_pos:  # aliased columns were dropped from the fit
            cols.append([z_off[-1] + kept_pos[col]])
            parts.append(np.asarray(values)[:, None])
    idx = np.concatenate(cols)
    V = Vp[np.ix_(idx, idx)]
    n = parts[0].shape[0]
    var = np.empty(n)
    for a0 in range(0, n, SE_BLOCK_ROWS):  # (an 'fs' smooth's design is sparse and wide)
        rows = slice(a0, min(n, a0 + SE_BLOCK_ROWS))
        a = np.hstack([p[rows].toarray() if sp.issparse(p) else p[rows] for p in parts])
        var[rows] = np.einsum("ij,ij->i", a @ V, a)
    return np.sqrt(np.clip(var, 0, None))


def format_p_value(p):
    """A p-value as R prints it: ``<2e-16`` below the double precision's epsilon."""
    return "<2e-16" if p < np.finfo(float).eps else f"{p:.3g}"


def smooth_lines(smooths, edf, smoothing_params, tests, statistic="F"):
    """The smooth-term table of ``summary()``: basis, k, lambda and mgcv's approximate
    significance (edf, Ref.df, the statistic (F, or Chi.sq for a known scale), p-value)."""
    lams = {sm.name: ",".join(f"{smoothing_params[nm]:.4g}" for nm in sm.lambda_names()) for sm in smooths}
    wt = max([15] + [len(nm) for nm in lams]) + 1  # (columns as wide as the longest entry)
    wl = max([11] + [len(v) for v in lams.values()])
    lines = [f" {'term':<{wt}}{'basis':>6}{'k':>5} {'lambda':>{wl}}{'edf':>9}{'Ref.df':>9}{statistic:>10}{'p-value':>10}"]
    for sm in smooths:
        t = tests.loc[sm.name]
        lines.append(f" {sm.name:<{wt}}{sm.basis:>6}{sm.n_basis!s:>5} {lams[sm.name]:>{wl}}"
                     f"{edf[sm.name]:9.3f}{t['ref_df']:9.3f}{t['statistic']:10.3f}"
                     f"{format_p_value(t['p_value']):>10}")
    return lines


def _matches(sm, feature):
    return feature is None or feature in (sm.name, sm.name[2:-1], sm.name.split(":")[0][2:-1]) or \
        (len(sm.columns) == 1 and feature == sm.column)


def _grid_rows(est, sm, values):
    """Rows of X at which a smooth is evaluated: its variables at ``values`` (one column per
    variable), its ``by`` at 1 (a numeric by: the curve f) or at its level; the rest 0."""
    X = np.zeros((len(values), est.n_features_in_))
    X[:, sm.columns] = values
    if sm.by_column is not None:
        X[:, sm.by_column] = 1.0 if sm.by_level is None else sm.by_level
    return X


def _evaluate(est, sm, k, fixed_start, X):
    fit = est._fit
    F, Z = sm.design(X)
    fixed_cols = list(range(fixed_start, fixed_start + sm.n_fixed))
    mean = F @ fit.beta[fixed_cols] + Z @ fit.b[k].ravel()
    return mean, posterior_se(fit, est._Vp, dict(zip(fixed_cols, F.T)), [(k, Z)])


def curves(est, feature, grid_resolution, z):
    """Each smooth's centred curve (link scale) on a grid over its training range, with
    posterior standard errors and the pointwise band ``estimate +- z se``: the frame of
    ``partial_dependence``. A smooth of two variables gives a surface on a
    ``grid_resolution x grid_resolution`` grid (columns ``x`` and ``x2``); of more, nothing. A
    factor-smooth interaction (``bs="fs"``) of one variable gives a curve per level of its
    factor (column ``level``)."""
    frames = []
    fixed_start = 1 + len(est._linear)
    for sm, k in zip(est.smooths_, est._smooth_term_index):
        start, fixed_start = fixed_start, fixed_start + sm.n_fixed
        if not _matches(sm, feature) or len(sm.columns) > 2:
            continue
        if hasattr(sm, "factor_column"):  # an 'fs' smooth: a curve per level (mgcv plots them so)
            if len(sm.columns) > 1:
                continue
            grid = np.linspace(*est._train_range[sm.column], grid_resolution)[:, None]
            for label, level in zip(sm.labels, sm.level_names):
                rows = _grid_rows(est, sm, grid)
                rows[:, sm.factor_column] = label
                mean, se = _evaluate(est, sm, k, start, rows)
                frames.append(pd.DataFrame({"smooth": sm.name, "x": grid[:, 0], "level": level, "estimate": mean,
                                            "std_error": se, "lower": mean - z * se, "upper": mean + z * se}))
            continue
        axes = [np.linspace(*est._train_range[j], grid_resolution) for j in sm.columns]
        grid = np.column_stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")])
        mean, se = _evaluate(est, sm, k, start, _grid_rows(est, sm, grid))
        frame = {"smooth": sm.name, "x": grid[:, 0]}
        if grid.shape[1] == 2:
            frame["x2"] = grid[:, 1]
        frames.append(pd.DataFrame({**frame, "estimate": mean, "std_error": se,
                                    "lower": mean - z * se, "upper": mean + z * se}))
    if not frames:
        raise ValueError(f"{feature!r} is not a smooth of one or two features; smooths: "
                         f"{[s.name for s in est.smooths_]}.")
    return pd.concat(frames, ignore_index=True)


def summary_lines(est):
    """The lines of a penalized spline model's summary before its variance components: the
    criterion, the smooth terms with mgcv's tests, the parametric terms (t tests, or z tests
    for a family of known scale), the adjusted R^2 and the deviance explained."""
    how = "REML" if est.reml else "ML"
    family = getattr(est, "_family", None)
    crit = ("REML criterion" if est.reml else "deviance") if family is None else \
        ("Laplace REML criterion" if est.reml else "-2 log-likelihood (Laplace)")
    scale = f"sigma: {est.sigma_:.4f}   " if family is None else f"family: {family.name} ({family.link} link)   "
    if family is not None and not known_scale(family):
        scale += f"scale: {est.sigma_**2:.4g} (in the REML criterion: {est._fit.scale:.4g})   "
    lines = [f"Penalized spline model fit by {how} (sklmm, solver={est.solver_})",
             f"{crit}: {est.criterion_:.4f}   {scale}total edf: {est.edf_total_:.3f}", "",
             "Smooth terms (approximate significance: Wood 2013, as mgcv's summary.gam):"]
    lines += smooth_lines(est.smooths_, est.edf_, est.smoothing_params_, est.smooth_tests_,
                          "Chi.sq" if known_scale(family) else "F")
    stat = "t_value" if "t_value" in est.fixed_effects_ else "z_value"
    head = "t value" if stat == "t_value" else "z value"
    lines += ["", "Parametric terms:",
              f" {'':<16}{'Estimate':>12}{'Std. Error':>12}{head:>10}{'Pr(>|' + head[0] + '|)':>11}"]
    for nm, r in est.fixed_effects_.iterrows():
        lines.append(f" {nm:<16}{r['estimate']:12.4f}{r['std_error']:12.4f}{r[stat]:10.3f}{r['p_value']:11.3g}")
    lines.append(f"R-sq.(adj) = {est.r2_adj_:.4f}   Deviance explained = {100 * est.deviance_explained_:.1f}%")
    return lines


def lambda_diagonal(fit, k):
    """The diagonal of a smooth term's Lambda (``theta`` times ones for one penalty; per
    column for a tensor product's): its spherical coordinates u times it are its coefficients."""
    slices, _ = theta_layout(fit.terms)
    t = fit.terms[k]  # (an 'fs' smooth: one block per level of its factor)
    return np.tile(np.diagonal(t.template(fit.theta[slices[k]])), t.n_levels)


def variance_rows(vc, smooths, smoothing_params, sigma, residual):
    """The variance components table with each smooth's rows as its variances on the scale of
    its own (unscaled) penalties, ``sigma^2 / lambda`` (one row per smoothing parameter), and
    without the residual row for a family of known scale (``residual`` False)."""
    names = {sm.name for sm in smooths}
    keep = vc[~vc["factor"].isin(names) & (residual | (vc["factor"] != "Residual"))]
    rows = []
    for sm in smooths:
        for nm in sm.lambda_names():
            lam = smoothing_params[nm]
            var = 0.0 if np.isinf(lam) else sigma**2 / lam
            rows.append({"factor": sm.name, "term": nm, "variance": var, "std_dev": np.sqrt(var)})
    smooth_part = pd.DataFrame(rows, columns=vc.columns)
    resid = keep[keep["factor"] == "Residual"]
    others = keep[keep["factor"] != "Residual"]
    parts = [p for p in (others, smooth_part, resid) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else vc.iloc[:0]


def plot_curves(est, curves, ax=None, rug=True):
    """Draw the frame of :func:`curves`: bands for one-variable smooths, contour maps for
    two-variable ones. Returns the list of axes."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(curves["smooth"]))
    if ax is None:  # constrained layout: the labels stay inside the figure on a plain savefig
        _, ax = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False, layout="constrained")
    axes = list(np.ravel(ax))
    features = est._feature_names()
    for a, nm in zip(axes, names):
        c = curves[curves["smooth"] == nm]
        sm = next(s for s in est.smooths_ if s.name == nm)
        if "x2" in c and c["x2"].notna().all():
            n1, n2 = len(np.unique(c["x"])), len(np.unique(c["x2"]))
            grid = [c[col].to_numpy().reshape(n1, n2) for col in ("x", "x2", "estimate", "std_error")]
            filled = a.contourf(grid[0], grid[1], grid[2], levels=12, cmap="viridis")
            a.contour(grid[0], grid[1], grid[2], levels=8, colors="k", linewidths=0.8)
            for sign in (-1, 1):
                a.contour(grid[0], grid[1], grid[2] + sign * grid[3], levels=8, colors="w", linewidths=0.6,
                          linestyles="dashed")
            a.figure.colorbar(filled, ax=a, label=f"{nm}, edf {est.edf_[nm]:.2f}")
            if rug and getattr(est, "_data_points", {}).get(nm) is not None:
                pts = est._data_points[nm]
                a.plot(pts[:, 0], pts[:, 1], ".", color="k", ms=1.5, alpha=0.4)
            a.set_xlabel(features[sm.columns[0]])
            a.set_ylabel(features[sm.columns[1]])
            continue
        if "level" in c and c["level"].notna().all():  # an 'fs' smooth: the levels' curves, no bands
            for level, cl in c.groupby("level", sort=False):
                a.plot(cl["x"], cl["estimate"], lw=1.2, label=str(level))
            if c["level"].nunique() <= 12:
                a.legend(fontsize="small", title=features[sm.factor_column], ncols=2)
        else:
            a.fill_between(c["x"], c["lower"], c["upper"], alpha=0.25, lw=0)
            a.plot(c["x"], c["estimate"], lw=2)
        if rug:
            xs = est._rug[sm.column]
            a.plot(xs, np.full(len(xs), c["lower"].min()), "|", color="k", alpha=0.4)
        a.set_xlabel(features[sm.column])
        a.set_ylabel(f"{nm}, edf {est.edf_[nm]:.2f}")
    return axes


def term_contributions(est, X, return_std):
    """The frame(s) of ``predict_terms``: each linear feature's ``coef * x`` and each smooth's
    curve at the rows of X, with posterior standard errors when asked."""
    fit = est._fit
    names = est._feature_names()
    Xf, Zs = est._fixed_design(X)
    kept = set(fit.keep)
    out, se = {}, {}
    for i, j in enumerate(est._linear, start=1):
        out[names[j]] = X[:, j] * fit.beta[i]
        se[names[j]] = posterior_se(fit, est._Vp, {i: X[:, j]}, []) if i in kept else np.zeros(len(X))
    start = 1 + len(est._linear)
    for sm, k, Z in zip(est.smooths_, est._smooth_term_index, Zs):
        cols = list(range(start, start + sm.n_fixed))
        start += sm.n_fixed
        out[sm.name] = Xf[:, cols] @ fit.beta[cols] + Z @ fit.b[k].ravel()
        se[sm.name] = posterior_se(fit, est._Vp, dict(zip(cols, Xf[:, cols].T)), [(k, Z)])
    frame = pd.DataFrame(out)
    frame.attrs["constant"] = float(fit.beta[0])
    return (frame, pd.DataFrame(se)) if return_std else frame


def coefficient_table(est, fe_names):
    """``(coefficients, covariance)``: the fixed effects then each smooth's penalized
    coefficients (``Lambda u``), and their posterior covariance from ``Vp`` (aliased fixed
    columns: 0), in the order of ``lpmatrix``'s columns."""
    fit = est._fit
    _, z_off = theta_layout(fit.terms)
    q = int(z_off[-1])
    kept_pos = {j: i for i, j in enumerate(fit.keep)}
    names, values, idx, scale = [], [], [], []
    for j, nm in enumerate(fe_names):
        names.append(nm)
        values.append(fit.beta[j])
        idx.append(q + kept_pos.get(j, 0))  # (an aliased column: any index, scaled by 0)
        scale.append(1.0 if j in kept_pos else 0.0)
    for sm, k in zip(est.smooths_, est._smooth_term_index):
        d = lambda_diagonal(fit, k)
        names += [f"{sm.name}.{i}" for i in range(len(d))]
        values += list(fit.b[k].ravel())
        idx += list(range(z_off[k], z_off[k + 1]))
        scale += list(d)
    idx, scale = np.asarray(idx), np.asarray(scale)
    cov = est._Vp[np.ix_(idx, idx)] * np.outer(scale, scale)
    index = pd.Index(names, name="coefficient")
    return pd.Series(values, index=index, dtype=float), pd.DataFrame(cov, index=index, columns=index)


def check_covariates(est, X):
    """Each smooth's covariates for the basis-dimension check, as mgcv's ``k.check`` uses them:
    one variable as it is; several as an (n, d) array, a tensor product's each shifted to 0
    and scaled to the smooth's mean absolute slope along it (times its range, so that a step
    of the same size changes the smooth alike in every direction)."""
    fit = est._fit
    out = []
    start = 1 + len(est._linear)
    for sm, k in zip(est.smooths_, est._smooth_term_index):
        cols = list(range(start, start + sm.n_fixed))
        start += sm.n_fixed
        x = X[:, sm.columns]
        if x.shape[1] == 1:
            out.append(x[:, 0])
            continue
        if sm.tensor:
            def value(rows, cols=cols, sm=sm, k=k):
                F, Z = sm.engine.design(sm._x(rows))  # (without by, as k.check drops it)
                return F @ fit.beta[cols] + Z @ fit.b[k].ravel()

            f0 = value(X)
            x = x - x.min(axis=0)
            for i, j in enumerate(sm.columns):
                dx = np.ptp(X[:, j]) / 1000.0
                shifted = X.copy()
                shifted[:, j] += dx
                slope = np.mean(np.abs(value(shifted) - f0)) / dx
                x[:, i] = slope * x[:, i] / x[:, i].max()
        out.append(x)
    return out
