"""Where the optimizer starts: each theta's natural unit, and a start from moment estimates."""

from __future__ import annotations

import numpy as np

from .terms import theta_layout

__all__ = ["theta_scale", "theta_scale_of_rows", "moment_start"]


def theta_scale(terms, cp):
    """The natural unit of each entry of theta: 1 / (root mean square of its row's column).

    Intercepts and smooths get 1 (lme4's unit), and so do slope columns whose RMS ``s`` lies in
    ``[0.1, 10]``, so that ordinary data start exactly where lme4 starts. A slope column
    outside that range gets ``1 / s``: the optimizer's start (lme4's start times this unit), its
    first steps and the convergence check then follow a rescaling ``x -> c x`` (``theta``'s slope
    rows divided by ``c``) instead of starting orders of magnitude away from the optimum.
    """
    return _units(terms, [np.einsum("jaa->a", D) for D in cp.diag], cp.n)


def theta_scale_of_rows(terms, weights):
    """:func:`theta_scale` from the terms' own columns and the prior weights, for a fit that
    forms no unweighted cross-products (a GLMM: penalized IRLS weights each step's)."""
    w = np.asarray(weights, dtype=float)
    return _units(terms, [w @ np.square(t.values) for t in terms], len(w))


def _units(terms, squares, n):
    """:func:`theta_scale` from each term's weighted sums of squares of its columns."""
    out = []
    for t, ss in zip(terms, squares):
        unit = np.ones(t.n_coef)
        if not t.scalar:
            rms = np.sqrt(np.asarray(ss, dtype=float) / n)
            ok = (rms > 0) & np.isfinite(rms) & ((rms < 0.1) | (rms > 10.0))
            unit[ok] = 1.0 / rms[ok]
            if t.intercept:
                unit[0] = 1.0
        out.append(unit[t.tri_rows] if not t.scalar else np.ones(t.n_theta))
    return np.concatenate(out) if out else np.zeros(0)


#: the moment start's diagonal entries of T_k are kept within [MOMENT_FLOOR, MOMENT_CEILING]
#: (in each coefficient's unit, see :func:`theta_scale`)
MOMENT_FLOOR = 0.02


MOMENT_CEILING = 50.0


#: first steps from the moment start: at most this fraction of each coefficient's estimated
#: standard deviation (0.1 to 0.3 did about equally well on the lme4 reference models; 0.75,
#: MixedModels.jl's step from its start at 1, took up to twice as many steps) ...
MOMENT_STEP = 0.2


#: ... and at most this many standard errors of that estimate (see :func:`_moment_covariance`).
#: With many levels the criterion is much steeper than 0.2 sd: InstEval took 46 evaluations
#: with the first rule alone and 27 with both, the crossed 1M benchmark 51 and 26, the 10M
#: model 25 and 15; 0.5 to 2 standard errors all did about equally well.
MOMENT_STEP_SE = 1.0


def _regular_inverses(D):
    """Which symmetric blocks ``D_j`` (J, p, p) are regular (smallest eigenvalue above 1e-8 of
    the largest), and the inverses of those; 1 x 1 and 2 x 2 blocks in closed form (a batched
    LAPACK call costs more than the arithmetic at these sizes)."""
    pk = D.shape[1]
    if pk == 1:
        ok = D[:, 0, 0] > 0
        return ok, 1.0 / D[ok]
    if pk == 2:
        a, b, c = D[:, 0, 0], D[:, 0, 1], D[:, 1, 1]
        half = 0.5 * (a + c)
        top = half + np.hypot(0.5 * (a - c), b)
        det = a * c - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(top > 0, det / top, 0.0)  # the smaller eigenvalue, without cancellation
        ok = low > 1e-8 * np.maximum(top, np.finfo(float).tiny)
        a, b, c, det = a[ok], b[ok], c[ok], det[ok]
        inv = np.empty((len(a), 2, 2))
        inv[:, 0, 0], inv[:, 1, 1] = c / det, a / det
        inv[:, 0, 1] = inv[:, 1, 0] = -b / det
        return ok, inv
    ev = np.linalg.eigvalsh(D)
    ok = ev[:, 0] > 1e-8 * np.maximum(ev[:, -1], np.finfo(float).tiny)
    return ok, np.linalg.inv(D[ok])


def _moment_covariance(D, zr, rss, n, p, sigma2=None):
    """One-way method-of-moments estimate of a grouping term's relative covariance, or None.

    Each level's least-squares coefficients ``b_j = D_j^{-1} Z_j'r`` on the fixed-effect
    residuals ``r`` (``rss = r'r``) vary with covariance ``Sigma + sigma^2 E[D_j^{-1}]``;
    ``sigma^2`` comes from the residual sum of squares within levels. For a balanced one-way
    layout this is the classical ANOVA estimator ``(MSB - MSW) / (n_per_level MSW)``. Other
    terms are ignored, so in general it is a starting point only. Levels whose block ``D_j``
    is singular (a slope with one distinct value in the level) are left out. A ``sigma2`` given
    (from all factors at once, see :func:`moment_start`) replaces the within-level estimate.

    Returns
    -------
    S : ndarray of shape (pk, pk)
        The relative covariance ``Sigma / sigma^2``.
    se : ndarray of shape (pk,)
        Approximate standard errors of its diagonal: a sample variance of ``J`` level
        coefficients with variance ``v`` has standard error ``sqrt(2 / (J - 1)) v``.
    Or None when the estimate fails.
    """
    J, pk, _ = D.shape
    ok, Dinv = _regular_inverses(D)
    n_ok = int(np.sum(ok))
    # the term's columns are columns of X (an intercept, slopes), so [X, Z_j] has rank
    # p + pk (n_ok - 1): the classical within-groups degrees of freedom when X = the term
    df_within = n - pk * n_ok - max(p - pk, 0)
    if n_ok < 2 or df_within <= 0:
        return None
    b = np.einsum("jab,jb->ja", Dinv, zr[ok])
    if sigma2 is None:
        ss_within = rss - float(np.einsum("ja,ja->", zr[ok], b))
        if not ss_within > 0:
            return None
        sigma2 = ss_within / df_within
    bc = b - b.mean(axis=0)
    V = bc.T @ bc / (n_ok - 1) / sigma2
    S = V - Dinv.mean(axis=0)
    if not np.all(np.isfinite(S)):
        return None
    return 0.5 * (S + S.T), np.sqrt(2.0 / (n_ok - 1)) * np.diag(V)


def _residual_variance_all_fixed(terms, cp, scale, factor):
    """sigma^2 with every grouping factor's coefficients as fixed effects, or None.

    One evaluation of the factorization at ``T_k = 1000 I`` (in each coefficient's unit): the
    penalty on the random effects is then negligible and ``r^2`` is the residual sum of squares
    of y on ``[X, Z]``, whose rank is ``p + sum_k (q_k - p_k)`` (each term's columns repeat
    columns of X, summed over its levels).
    """
    big = np.concatenate([t.theta_start() for t in terms]) * scale * 1e3
    df = cp.n - cp.p - sum(t.q - t.n_coef for t in terms)
    fz = factor.update(big)
    if fz is None or df <= 0 or not fz.r2 > 0:
        return None
    return fz.r2 / df


def moment_start(terms, cp, scale, factor=None):
    """A start for theta, and the optimizer's first steps, from one-way moment estimates.

    lme4 starts every term at ``T_k = I``. Here each grouping term starts at the Cholesky
    factor of its one-way method-of-moments covariance (:func:`_moment_covariance`), with
    diagonal entries kept within [:data:`MOMENT_FLOOR`, :data:`MOMENT_CEILING`] units, and the
    first steps are :data:`MOMENT_STEP` times each row's standard deviation, or
    :data:`MOMENT_STEP_SE` standard errors of it when that is smaller: the optimizer then works
    in units of the expected answer and of the criterion's curvature (BOBYQA rescales each
    coordinate by its first step), which saves evaluations when the variances differ by orders
    of magnitude (lme4's InstEval: 0.28, 0.44 and 0.07) and when many levels make the criterion
    steep, and its first trust region is small because the start is already close (BOBYQA's
    region still grows when it is not).
    Smooth terms, and terms whose estimate fails (a level count too small, singular blocks),
    keep lme4's start and MixedModels.jl's steps. With two or more grouping factors (and no
    smooths) and a ``factor`` given, the residual variance comes from all factors at once
    (:func:`_residual_variance_all_fixed`, one evaluation): each factor's own within-level
    variance would include the others' variances (crossed subjects and items, InstEval's
    students and lecturers) and start every factor too low.

    Returns
    -------
    start, step : ndarray
    """
    start = np.concatenate([t.theta_start() for t in terms]) * scale if terms else np.zeros(0)
    step = np.where(np.isfinite(np.concatenate([t.theta_lower() for t in terms])), 0.75, 1.0) * scale \
        if terms else np.zeros(0)
    XtX, Xty, yty = cp.xyxy[:-1, :-1], cp.xyxy[:-1, -1], cp.xyxy[-1, -1]
    try:  # the fixed columns are linearly independent (aliased ones were dropped)
        beta = np.linalg.solve(XtX, Xty) if cp.p else np.zeros(0)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
    rss = float(yty - beta @ Xty)
    if not rss > 0:
        return start, step
    sigma2 = None
    if factor is not None and len(terms) > 1 and not any(t.scalar for t in terms):
        sigma2 = _residual_variance_all_fixed(terms, cp, scale, factor)
    slices, _ = theta_layout(terms)
    for t, sl, D, zxy in zip(terms, slices, cp.diag, cp.zxy):
        if t.scalar:
            continue
        zr = zxy[..., -1] - zxy[..., :-1] @ beta
        est = _moment_covariance(D, zr, rss, cp.n, cp.p, sigma2)
        if est is None:
            continue
        S, se_var = est
        unit = np.empty(t.n_coef)
        unit[t.tri_rows[t.tri_rows == t.tri_cols]] = scale[sl][t.tri_rows == t.tri_cols]
        var = np.clip(np.diag(S), 0.0, None)
        sd = np.clip(np.sqrt(var) / unit, MOMENT_FLOOR, MOMENT_CEILING) * unit
        if t.correlated:
            corr = S / np.sqrt(np.outer(var, var) + np.finfo(float).tiny)
            corr = np.clip(corr, -0.9, 0.9)
            np.fill_diagonal(corr, 1.0)
            if t.n_coef > 2:  # (2 x 2: the clipped correlation's eigenvalues are 1 +- r >= 0.1)
                w, V = np.linalg.eigh(corr)
                corr = (V * np.clip(w, 0.05, None)) @ V.T
                d = np.sqrt(np.diag(corr))
                corr = corr / np.outer(d, d)
            T = np.linalg.cholesky(corr * np.outer(sd, sd))
        else:
            T = np.diag(sd)
        start[sl] = T[t.tri_rows, t.tri_cols]
        # standard error of sd = sqrt(var): se(var) / (2 sd) (the delta method)
        row_step = np.minimum(MOMENT_STEP * sd, MOMENT_STEP_SE * se_var / (2 * sd))
        row_step = np.maximum(row_step, 1e-3 * unit)  # se_var is 0 when every b_j is equal
        step[sl] = row_step[t.tri_rows]
    return start, step
