"""The variance parameters on lme4's ``sd`` / ``cor`` / ``sigma`` scale, and back to theta."""

from __future__ import annotations

import numpy as np

from .._engine.terms import theta_layout

__all__ = ["parameter_names", "sdcor_from_theta", "sdcor_of_fit", "theta_from_sdcor", "same_in_both_charts"]


def parameter_names(terms):
    """lme4's ``oldNames = FALSE`` names of the variance parameters: sd_, cor_, then sigma."""
    out = []
    for t in terms:
        for i, j in zip(t.tri_rows, t.tri_cols):
            ci, cj = t.column_names[i], t.column_names[j]
            out.append(f"sd_{ci}|{t.name}" if i == j else f"cor_{ci}.{cj}|{t.name}")
    return out + ["sigma"]


def sdcor_from_theta(terms, theta, sigma, user=True):
    """Standard deviations and correlations (in theta's order), then sigma, in the user's
    coordinates (``theta`` in the engine's; see :meth:`RandomTerm.centre_slopes`), or in the
    engine's with ``user=False``."""
    out = []
    slices, _ = theta_layout(terms)
    for t, s in zip(terms, slices):
        T = t.user_template(theta[s]) if user else t.template(theta[s])
        S = T @ T.T
        sd = np.sqrt(np.diag(S))
        for i, j in zip(t.tri_rows, t.tri_cols):
            if i == j:
                out.append(sigma * sd[i])
            else:
                d = sd[i] * sd[j]
                out.append(S[i, j] / d if d > 0 else 0.0)
    out.append(sigma)
    return np.asarray(out, dtype=float)


def _psd_cholesky(S):
    """Lower-triangular factor with non-negative diagonal of a positive semi-definite S, or None."""
    p = S.shape[0]
    L = np.zeros_like(S)
    scale = max(float(np.max(np.abs(np.diag(S)))), 1e-300)
    for j in range(p):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10 * scale:
            return None
        L[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, p):
            r = S[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 0:
                L[i, j] = r / L[j, j]
            elif abs(r) > 1e-8 * scale:
                return None
    return L


def theta_from_sdcor(terms, psi, user=True):
    """Inverse of :func:`sdcor_from_theta`: ``(theta, sigma)`` with theta in the engine's
    coordinates, or None outside the domain."""
    sigma = psi[-1]
    if not sigma > 0:
        return None
    theta, k = [], 0
    for t in terms:
        vals = psi[k : k + t.n_theta]
        k += t.n_theta
        p = t.n_coef
        sd, R = np.zeros(p), np.eye(p)
        for (i, j), v in zip(zip(t.tri_rows, t.tri_cols), vals):
            if i == j:
                sd[i] = v
            else:
                R[i, j] = R[j, i] = v
        if np.any(sd < 0) or np.any(np.abs(R) > 1 + 1e-12):
            return None
        T = _psd_cholesky(np.outer(sd, sd) * R / sigma**2)
        if T is None:
            return None
        theta.append(t.internal_theta(T) if user else T[t.tri_rows, t.tri_cols])
    return np.concatenate(theta) if theta else np.zeros(0), sigma


def same_in_both_charts(terms):
    """Per variance parameter (as :func:`parameter_names`), whether its value is the same in the
    user's and the engine's coordinates: all but a centred term's intercept sd and intercept
    correlations (centring moves only the intercept, to the slopes' means)."""
    out = []
    for t in terms:
        for i, j in zip(t.tri_rows, t.tri_cols):
            out.append(t.shift is None or (i != 0 and j != 0))
    return np.asarray(out + [True], dtype=bool)


def sdcor_of_fit(fit):
    """A fit's standard deviations, correlations and sigma as the user reads them: in the user's
    coordinates, and sigma in the units of the user's prior weights (the standard deviations
    of the random effects do not depend on the weights' units)."""
    psi = sdcor_from_theta(fit.terms, fit.theta, fit.sigma)
    psi[-1] *= getattr(fit, "sigma_scale", 1.0)
    return psi


def theta_units(fit):
    """Each theta's natural unit (:func:`~sklmm._engine.start.theta_scale`; 1 where not kept),
    in which derivatives and profile steps are taken."""
    return fit.theta_unit if fit.theta_unit is not None else np.ones(len(fit.theta))
