"""Tests for the smooth terms of a penalized spline model: significance and basis dimension.

Significance (mgcv's ``summary.gam`` table of smooth terms)
    A smooth ``f = B c`` with posterior (Bayesian) covariance ``V_c`` of its coefficients is
    tested for ``f = 0`` by Wood (2013, Biometrika 100:221-228). With ``R`` a square root of the
    smooth's data information (``R'R = B'WB``), the statistic is ``T = (R c)' (R V_c R')^-_r
    (R c)``, where ``(.)^-_r`` is a pseudo-inverse truncated to rank ``r``, the smooth's
    effective degrees of freedom. ``r`` need not be an integer: with ``r = k + nu`` the first
    ``k - 1`` eigen-directions of ``R V_c R'`` enter in full, and the last two (``k``, ``k +
    1``) through a 2 x 2 matrix ``[[1, b], [b, nu]]`` (``b = sqrt(nu (1 - nu) / 2)``) that
    interpolates between ranks ``k`` and ``k + 1``. Under ``f = 0`` the statistic is then
    approximately a weighted sum of chi-squares with the weights ``1`` (``k - 1`` times) and the
    two eigenvalues of that matrix. With the residual variance estimated (the Gaussian model)
    the sum is compared with an independent ``chi^2_m / m`` times the statistic (``m`` the
    residual df rounded), an F-type reference; with a known scale, with the statistic itself.
    The sign of the eigenvectors changes the off-diagonal's sign, so the p-value is the mean
    over both signs; the statistic reported is the one with the eigenvectors' first elements
    positive, in the smooth's original (constrained) basis, as mgcv reports it. An integer rank
    gives ``F = T / r`` with an F(r, residual df) reference.

    A smooth without unpenalized (null-space) coefficients can be shrunk to exactly zero, and
    its test is Wood's (2013, Biometrika 100:1005-1010) test for a random effect:
    ``T = c' V_c^{-1} c`` against the weighted sum of chi-squares whose weights are the
    eigenvalues of ``V_e V_c^{-1}`` (``V_e`` the frequentist covariance of ``c``), with the same
    references. At variance 0 it is evaluated in its limit (a score-type test), which mgcv's
    approaches as its smoothing parameter grows.

    The tail probabilities of these sums are computed by inverting their moment generating
    function along a vertical contour through its saddle point (:func:`chisq_sum_sf`),
    accurate in relative terms far into the tail (mgcv uses Davies' algorithm, whose error is
    bounded by 2e-5 in absolute terms, so that it reports 0 for the smallest p-values).

Basis dimension (mgcv's ``k.check``, printed by ``gam.check``)
    The residuals ordered by a smooth's covariate: if the basis is too small to follow the
    signal, neighbours' residuals resemble each other. The k-index is ``mean(diff(r)^2) / 2``
    over the ordered residuals divided by ``mean(r^2)``: near 1 (or above) when nothing is
    left, below 1 when a pattern remains. Its p-value is the share of random orderings of the
    residuals (permutations) with a smaller mean squared difference: a Monte Carlo estimate.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats
from scipy.linalg import block_diag, eigh
from sklearn.utils import check_random_state

from .._engine.terms import theta_layout
from .posterior import Posterior

__all__ = ["chisq_sum_sf", "fractional_rank_test", "random_effect_test", "significance_table",
           "neighbour_differences", "basis_check_rows", "basis_dimension_state", "basis_dimension_table"]

EPS = np.finfo(float).eps
#: rows kept for the basis-dimension check (mgcv's ``k.check(subsample = 5000)``)
BASIS_CHECK_ROWS = 5000


# ----------------------------------------------------------------------------- reference sums


#: a p-value whose integral's estimated error is below this is reported without comment
#: (QUADPACK's 1e-11 relative target is often out of reach when a residual df of 10^6 gives
#: the reference sum a term of 10^6 degrees of freedom, while the p-value is right to 1e-9)
P_VALUE_TOL = 1e-6


def chisq_sum_sf(weights, df, x=0.0):
    """``P(sum_j weights_j X_j > x)`` for independent ``X_j ~ chi^2(df_j)`` and ``x >= 0``.

    With ``K(s) = -sum_j df_j / 2 log(1 - 2 w_j s)`` the cumulant generating function of the
    sum ``L``, ``P(L > x) = (1 / 2 pi i) int exp(K(s) - s x) / s ds`` along any vertical line
    ``Re s = c`` with ``0 < c < s_max = 1 / (2 max w)``, and ``P(L <= x)`` is minus the same
    integral along a line with ``c < 0`` (the pole at 0 crossed). Taking ``c`` at the saddle
    point of ``K(s) - s x - log |s|`` on the side of the smaller tail, the integrand varies
    slowly and stays positive near its peak, so the integral keeps its relative accuracy however
    small that tail (no ``1 - (1 - p)``). For ``c > 0`` the saddle point is sought as ``c =
    s_max (1 - eps)`` in ``log eps``, which keeps ``1 - 2 w_j c`` exact when a large statistic
    pushes ``c`` against ``s_max``.
    """
    w = np.asarray(weights, dtype=float)
    h = np.asarray(df, dtype=float)
    h, w = h[w != 0], w[w != 0]
    if not np.any(w > 0):
        return 0.0
    if x <= 0 and not np.any(w < 0):
        return 1.0
    lower = not np.any(w < 0) and np.sum(h * w) > x  # the lower tail is the smaller one

    def real_part(v):  # (1 - 2 w_j c, c) for c = -exp(v), or c = s_max (1 - exp(v))
        if lower:
            return 1.0 + 2.0 * w * np.exp(v), -np.exp(v)
        eps, r = np.exp(v), w / w.max()
        return (1.0 - r) + r * eps, 0.5 / w.max() * (1.0 - eps)

    def slope(v):  # d/ds (K(s) - s x - log |s|) at c, decreasing in v
        g, c = real_part(v)
        return np.sum(h * w / g) - x - 1.0 / c

    bracket = (-690.0, 690.0) if lower else (np.log(1e-300), np.log1p(-1e-15))
    g, c = real_part(optimize.brentq(slope, *bracket, xtol=1e-15, rtol=4 * EPS, maxiter=500))
    width = 1.0 / np.sqrt(np.sum(2.0 * h * w**2 / g**2) + 1.0 / c**2)
    log_g = np.log(g)
    psi0 = -0.5 * np.sum(h * log_g) - c * x - np.log(abs(c))
    if psi0 < -760.0:  # the saddle-point bound exp(psi0) underflows: so does the tail
        return 1.0 if lower else 0.0

    def amplitude(tau):  # exp(psi(c + i t) - psi(c)) but for its factor exp(-i t x), t = width * tau
        t = width * tau
        return np.exp(-0.5 * np.sum(h * (np.log(g - 2j * w * t) - log_g)) - np.log(1 + 1j * t / c))

    if x == 0:
        with warnings.catch_warnings():  # (QUADPACK asks 1e-11 and may stop short: see below)
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            value, error = integrate.quad(lambda tau: amplitude(tau).real, 0.0, np.inf, epsabs=0.0,
                                          epsrel=1e-11, limit=400)
        lost = np.exp(psi0) * width * error / np.pi  # the estimated error of the tail
        if lost > P_VALUE_TOL:
            warnings.warn(f"a smooth test's p-value is accurate to about {lost:.1e} only (numerical "
                          "integration of its reference distribution)", RuntimeWarning, stacklevel=3)
    else:  # Re(A exp(-i omega tau)) = Re A cos(omega tau) + Im A sin(omega tau): Fourier integrals
        with warnings.catch_warnings():  # (QAWF reports cycles short of epsabs; the sum is fine)
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            value = sum(integrate.quad(lambda tau, part=part: getattr(amplitude(tau), part), 0.0, np.inf,
                                       weight=weight, wvar=width * x, epsabs=1e-12, limlst=200)[0]
                        for part, weight in (("real", "cos"), ("imag", "sin")))
    tail = float(np.clip(np.exp(psi0) * width * value / np.pi, 0.0, 1.0))
    return 1.0 - tail if lower else tail


def _reference_p(weights, statistic, residual_df):
    """``P(sum_j weights_j chi^2_1 > statistic * chi^2_m / m)``, ``m`` the rounded residual df
    (an estimated scale), or ``P(sum_j weights_j chi^2_1 > statistic)`` when ``residual_df`` is
    None (a known scale)."""
    weights = np.asarray(weights, dtype=float)
    if residual_df is None:
        return chisq_sum_sf(weights, np.ones(len(weights)), statistic)
    m = max(1, int(np.round(residual_df)))
    return chisq_sum_sf(np.r_[weights, -statistic / m], np.r_[np.ones(len(weights)), m])


# ----------------------------------------------------------------------------- the tests


def fractional_rank_test(coef, cov, root, rank, residual_df, first=None):
    """Wood's (2013) test of ``f = 0`` for one smooth: ``(statistic, reference df, p-value)``.

    The statistic is mgcv's F (the Wald statistic over the reference df) when the scale is
    estimated, its Chi.sq (the Wald statistic) when the scale is known.

    Parameters
    ----------
    coef : ndarray of shape (p,)
        The smooth's coefficients.
    cov : ndarray of shape (p, p)
        Their posterior (Bayesian) covariance.
    root : ndarray of shape (p, p)
        Upper-triangular ``R`` with ``R'R`` the smooth's data information (its columns of the
        weighted model matrix, crossed).
    rank : float
        The truncation rank, at most ``p``: the smooth's effective degrees of freedom.
    residual_df : float or None
        Residual degrees of freedom of the F-type reference distribution (an estimated scale,
        as the Gaussian model's); None for a chi-square reference (a known scale).
    first : ndarray of shape (p,), default=None
        The first column of mgcv's model matrix of the smooth, as coefficients of these
        columns; None when the columns are mgcv's. With a fractional rank the statistic (not
        the p-value, which averages both signs) depends on the relative sign of two
        eigenvectors, which mgcv fixes by their first elements in the QR coordinates of its
        columns: here by the sign of each one's product with that column.
    """
    Vr = root @ cov @ root.T
    ev, vec = np.linalg.eigh(0.5 * (Vr + Vr.T))
    ev, vec = ev[::-1], vec[:, ::-1]
    # mgcv's sign: the eigenvectors' first elements positive in the QR coordinates of its
    # columns, i.e. each eigen-direction's product with its first column
    ref = vec[0] if first is None else (root @ first) @ vec
    vec = vec * np.where(ref < 0, -1.0, 1.0)
    k = max(0, int(np.floor(rank)))
    nu = abs(rank - k)
    k1 = k + 1 if nu > 0 else k
    numerical_rank = int(np.sum(ev > ev[0] * EPS**0.9)) if ev[0] > 0 else 0
    if numerical_rank < k1:
        k = k1 = numerical_rank
        nu, rank = 0.0, float(numerical_rank)
    if k1 == 0:
        return 0.0, 0.0, 1.0
    z = vec[:, :k1].T @ (root @ coef)
    if nu > 0 and k > 0:
        # the first k - 1 directions in full, directions k and k + 1 (k - 1 and k from 0)
        # through [[1, b], [b, nu]] scaled by their eigenvalues
        b = np.sqrt(max(0.0, 0.5 * nu * (1 - nu)))
        head = np.sum(z[: k - 1] ** 2 / ev[: k - 1]) + z[k - 1] ** 2 / ev[k - 1] + nu * z[k] ** 2 / ev[k]
        cross = 2.0 * b * z[k - 1] * z[k] / np.sqrt(ev[k - 1] * ev[k])
        stat, stat_flipped = head + cross, head - cross
        weights = np.r_[np.ones(k - 1), np.linalg.eigvalsh([[1.0, b], [b, nu]])]
        p = 0.5 * (_reference_p(weights, stat, residual_df) + _reference_p(weights, stat_flipped, residual_df))
    elif nu > 0:  # rank below 1: one direction, a chi^2_1 (over the residual chi^2)
        stat = z[0] ** 2 / ev[0]
        p = stats.chi2.sf(stat, 1) if residual_df is None else stats.f.sf(stat, 1, max(1, round(residual_df)))
    else:
        stat = float(np.sum(z**2 / ev[:k]))
        p = stats.chi2.sf(stat, rank) if residual_df is None else stats.f.sf(stat / rank, rank, residual_df)
    return float(stat / (1 if residual_df is None else rank)), float(rank), float(min(1.0, p))


def random_effect_test(coef, cov, cov_freq, residual_df):
    """Wood's (2013b) test of ``f = 0`` for a smooth without null space: ``(statistic, rank,
    p-value)``, the statistic and ``residual_df`` as in :func:`fractional_rank_test`.

    ``cov`` is the posterior covariance of the coefficients, ``cov_freq`` their frequentist
    covariance (``cov X'WX cov / sigma^2``).
    """
    stat = float(coef @ np.linalg.solve(cov, coef))
    ev = np.clip(eigh(0.5 * (cov_freq + cov_freq.T), 0.5 * (cov + cov.T), eigvals_only=True), 0, None)
    rank = int(np.sum(ev > ev.max() * EPS**0.8)) if ev.max() > 0 else 0
    if rank == 0 or stat <= 0:
        return 0.0, float(rank), 1.0
    return stat / (1 if residual_df is None else rank), float(rank), _reference_p(ev, stat, residual_df)


def _frequentist_covariance(fit, theta, post, term_index):
    """``Ve = Vp X'V^-1X Vp / sigma^2`` of the coordinates after the grouping factors' (the
    smooths' u and the kept beta), ``V`` the covariance of y given them (the grouping factors
    integrated out). The data information ``X'V^-1X`` is the posterior precision minus the
    prior (1 on each smooth's u), but the smooths' blocks are taken from the cross-products
    (``Lambda Z'WZ Lambda``): ``M - I`` there would lose the digits of a heavily penalized smooth."""
    slices, z_off = theta_layout(fit.terms)
    zg = post.zg
    info = post.Mrr.copy()
    for k in term_index:
        u = slice(z_off[k] - zg, z_off[k + 1] - zg)
        d = np.diagonal(fit.terms[k].template(theta[slices[k]]))
        info[u, u] = block_diag(*(d[:, None] * fit.cp.diag[k] * d[None, :]))  # (one block per level)
    if zg:
        info -= post.Mrg @ post.G
    Ms = post.rest_inv
    return fit.sigma**2 * Ms @ info @ Ms


def _near_zero_variance(fit, position, k, n_group_terms):
    """``(theta, posterior)`` with term k's theta moved from 0 to where its data part is 1e-10
    of its prior: the first-order limit of the random-effect test as its variance vanishes."""
    theta = fit.theta.copy()
    theta[position] = np.sqrt(1e-10 / np.mean(np.diagonal(fit.cp.diag[k], axis1=1, axis2=2)))
    return theta, Posterior(fit, n_group_terms, theta)


def _upper_root(G):
    """Upper-triangular ``R`` with ``R'R = G`` (Cholesky; through a QR of the symmetric square
    root when G is singular)."""
    try:
        return np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        d, U = np.linalg.eigh(0.5 * (G + G.T))
        return np.linalg.qr(np.sqrt(np.clip(d, 0, None))[:, None] * U.T, mode="r")


def significance_table(fit, post, smooths, term_index, fixed_columns, n_group_terms, known_scale=False):
    """mgcv's table of smooth terms for a fitted penalized spline model.

    Parameters
    ----------
    fit : MixedFit
    post : Posterior
        The blocks of the posterior precision of ``(u, kept beta)`` and of its inverse
        (:class:`~sklmm._inference.posterior.Posterior`).
    smooths : list of SmoothTerm
    term_index : list of int
        Each smooth's position in ``fit.terms``.
    fixed_columns : list of list of int
        Each smooth's null-space columns among the fixed effects (all columns, kept or not).
    n_group_terms : int
        Number of grouping-factor terms (the first terms of ``fit.terms``).
    known_scale : bool, default=False
        A family of known scale (binomial, Poisson): chi-squared reference distributions
        (mgcv's ``Chi.sq``) instead of F on the residual df.

    Returns
    -------
    table : DataFrame
        Indexed by smooth name: ``edf``, ``ref_df``, ``statistic`` (F), ``p_value``.

    Notes
    -----
    The residual df is ``n`` minus the edf of the fixed and smooth coefficients. Without
    grouping factors that is ``n`` minus the total edf, and the truncation rank is the smooth's
    alternative edf ``tr(2F - F^2)`` (mgcv's ``edf1``, ``F`` the map from the data to the
    coefficients); with grouping factors the smooths' data information is marginal over the
    random effects (their variances held at the estimates) and the rank is the edf, as gamm4's
    ``$gam`` reports them.
    """
    cp, sigma2 = fit.cp, fit.sigma**2
    slices, z_off = theta_layout(fit.terms)
    q = int(z_off[-1])
    kept_pos = {j: i for i, j in enumerate(fit.keep)}
    diag = post.diag
    Minv = post.cov  # (the rest's block, indexed by full coordinates)
    smooth_u = np.arange(z_off[n_group_terms], q)
    residual_df = None if known_scale else fit.n - len(fit.keep) - float(np.sum(1.0 - diag[smooth_u]))
    zg = int(z_off[n_group_terms])  # the grouping factors' u come first
    rows, Ve = {}, None
    for sm, k, fcols in zip(smooths, term_index, fixed_columns):
        u = np.arange(z_off[k], z_off[k + 1])
        lam = np.diagonal(fit.terms[k].template(fit.theta[slices[k]]))
        fpos = [kept_pos[j] for j in fcols if j in kept_pos]
        idx = np.r_[q + np.asarray(fpos, dtype=np.intp), u]
        edf = len(fpos) + float(np.sum(1.0 - diag[u]))
        scale = np.r_[np.ones(len(fpos)), lam]  # (beta, u) -> (beta, b)
        coef = np.r_[fit.beta[[j for j in fcols if j in kept_pos]], fit.b[k].ravel()]
        if len(fpos) == 0:  # no null space: the random-effect test, in the coordinates u
            if not np.any(lam > 0):  # its limit as the variance goes to 0 (mgcv stops at a large sp)
                th, post_ = _near_zero_variance(fit, slices[k], k, n_group_terms)
                Minv_, u_hat = post_.cov, post_.mean
                Ve_ = _frequentist_covariance(fit, th, post_, term_index)
            else:
                if Ve is None:
                    Ve = _frequentist_covariance(fit, fit.theta, post, term_index)
                Minv_, Ve_, u_hat = Minv, Ve, fit.u
            stat, ref_df, p = random_effect_test(u_hat[u], sigma2 * Minv_[np.ix_(u, u)],
                                                 Ve_[np.ix_(u - zg, u - zg)], residual_df)
            rows[sm.name] = (edf, ref_df, stat, p)
            continue
        V = sigma2 * Minv[np.ix_(idx, idx)] * np.outer(scale, scale)
        # the smooth's data information B'WB, in the coordinates (beta, b)
        ZX = cp.zxy[k][0][:, fpos]
        G = np.block([[cp.xyxy[np.ix_(fpos, fpos)], ZX.T], [ZX, cp.diag[k][0]]])
        if zg:  # minus what the grouping factors' random effects explain
            B = post.Mrg[idx - zg].T / np.where(scale > 0, scale, np.inf)  # Lambda_g' Z_g' W [F, Z]
            G = G - B.T @ post.solve_groups(B)
            rank = edf
        else:  # mgcv's edf1: tr(2F - F^2) over the smooth, F = I - Minv D (D: 1 on u)
            rank = len(fpos) + float(np.sum(1.0 - np.sum(Minv[np.ix_(u, smooth_u)] ** 2, axis=1)))
        first = None
        if len(fpos) == sm.n_fixed and hasattr(sm, "Uplus_"):  # the smooth's original basis (mgcv's)
            T = np.hstack([sm.U0_, sm.Uplus_])
            Tinv = np.linalg.inv(T)
            coef, V, G = T @ coef, T @ V @ T.T, Tinv.T @ G @ Tinv
        elif len(fpos) == sm.n_fixed:  # a tensor product: its coordinates, mgcv's first column
            first = getattr(sm, "mgcv_first_", None)
        stat, ref_df, p = fractional_rank_test(coef, V, _upper_root(0.5 * (G + G.T)),
                                               min(len(coef), rank), residual_df, first=first)
        rows[sm.name] = (edf, ref_df, stat, p)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["edf", "ref_df", "statistic", "p_value"])


# ----------------------------------------------------------------------------- basis dimension


def neighbour_differences(residuals):
    """``mean(diff(r)^2) / 2`` of residuals in some order, for each row of a 2-d array."""
    r = np.atleast_2d(residuals)
    return np.mean(np.diff(r, axis=1) ** 2, axis=1) / 2.0


def basis_check_rows(n):
    """The rows the basis-dimension check uses: all (None) up to :data:`BASIS_CHECK_ROWS`,
    else a subsample of that many drawn with a fixed seed. As mgcv's ``k.check``, the subsample
    is drawn first and everything the check needs (a tensor product's slopes included) is
    computed on it."""
    if n <= BASIS_CHECK_ROWS:
        return None
    return np.random.default_rng(0).choice(n, BASIS_CHECK_ROWS, replace=False)


def basis_dimension_state(residuals, covariates):
    """What the basis-dimension check keeps from the fit: the residuals (of the rows of
    :func:`basis_check_rows`) and, for each smooth's covariate, the residuals' mean squared
    neighbour difference: in the covariate's order for one variable (ties in the order of the
    rows, as R's ``order``), and for several (an (n, d) array, already scaled) against each
    point's 3 nearest neighbours, as mgcv's ``k.check``; the neighbours are kept for the
    permutations."""
    from scipy.spatial import cKDTree

    r = np.asarray(residuals, dtype=float)
    covariates = [np.asarray(x, dtype=float) for x in covariates]
    observed, neighbours = [], []
    for x in covariates:
        if x.ndim == 1:
            observed.append(float(neighbour_differences(r[np.argsort(x, kind="stable")])[0]))
            neighbours.append(None)
            continue
        _, ni = cKDTree(x).query(x, k=NEAREST + 1)
        ni = ni[:, 1:]  # (each point's own row first: dropped)
        neighbours.append(ni)
        observed.append(float(np.mean((r[:, None] - r[ni]) ** 2) / 2.0))
    return r, np.asarray(observed), neighbours


#: neighbours of each point in the basis check of a smooth of several variables (mgcv's 3)
NEAREST = 3


def basis_dimension_table(state, names, k_prime, edf, n_permutations=400, random_state=None):
    """mgcv's ``k.check`` table from :func:`basis_dimension_state`: ``k_prime``, ``edf``,
    ``k_index``, ``p_value`` (the share of ``n_permutations`` random orders of the residuals
    with a smaller mean squared neighbour difference), indexed by smooth name."""
    r, observed, neighbours = state
    rng = check_random_state(random_state)
    p_values = []
    for v, ni in zip(observed, neighbours):
        below, done = 0, 0
        while done < n_permutations:  # in blocks of at most 100 orders
            m = min(100, n_permutations - done)
            order = np.argsort(rng.random_sample((m, len(r))), axis=1)
            if ni is None:
                below += int(np.sum(neighbour_differences(r[order]) < v))
            else:
                for rp in r[order]:
                    below += int(np.mean((rp[:, None] - rp[ni]) ** 2) / 2.0 < v)
            done += m
        p_values.append(below / n_permutations)
    return pd.DataFrame({"k_prime": np.asarray(k_prime, dtype=int), "edf": np.asarray(edf, dtype=float),
                         "k_index": observed / np.mean(r**2), "p_value": p_values},
                        index=pd.Index(names))
