"""Convergence checks at the optimizer's answer, and the restarts they trigger.

lme4's ``checkConv`` (gradient and Hessian by finite differences, :func:`optimum_problem`),
and two probes where theta is a poor chart of the covariance (singular and nearly singular
fits): :func:`mirrored_descent` and :func:`covariance_probe`. :func:`_verified` runs them and
restarts the optimizer from a better point when one fails.
"""

from __future__ import annotations

import numpy as np

from . import optimize
from .terms import theta_layout

__all__ = ["optimum_problem", "column_mirrors", "mirrored_descent", "covariance_terms", "covariance_probe",
           "boundary_faces", "face_descent", "interior_probe"]


#: lme4's ``checkConv``: tolerance on the (scaled) gradient and finite-difference step on theta
GRAD_TOL = 2e-3


#: relative rounding of the criterion assumed by the convergence check: a gradient below
#: ``CRITERION_RESOLUTION * |criterion| / step`` cannot be told from rounding noise (it matters
#: from about 10^7 rows, where the deviance is ~10^7 and lme4's absolute 2e-3 is below the noise)
CRITERION_RESOLUTION = 1e-14


#: relative decrease of the criterion below which the scaled-gradient test passes (the
#: optimizer's own relative tolerance is 1e-12; a factor 10 of slack)
SCALED_RESOLUTION = 1e-11


GRAD_DELTA = 1e-4


#: a diagonal entry of T below this (in its unit) is probed as on its bound by mirrored_descent
NEAR_SINGULAR = 1e-2


#: covariance_probe examines a term only when the smallest singular value of its T_k (in its
#: coefficients' units) is below this: elsewhere theta maps smoothly onto the covariance, and
#: the Hessian-scaled gradient check is the sharper test
PROBE_BELOW = 0.01


#: a passing check still tries a Newton step when it predicts a decrease above this
POLISH_GAIN = 1e-9


#: after the last restart, a probe must lower the criterion by more than this to be reported
REPORT_GAIN = 1e-4


#: restarts of the optimizer when a check or a probe fails
RESTARTS = 2


def optimum_problem(objective, x, lower, fx, tol=GRAD_TOL, delta=GRAD_DELTA, scale=None, polish=None,
                    gradient=None):
    """lme4's ``checkConv`` at the optimizer's answer ``x``: None if it passes, else why not.

    Central differences of the criterion with step ``delta``. A parameter within ``delta`` of
    its lower bound is checked one-sided: it passes when stepping into the interior does not
    lower the criterion faster than ``tol`` (lme4 instead skips the whole check for singular
    fits). The others pass as in lme4 when ``min(|g|, |R^{-1} g|) <= tol``, with ``H = R'R``
    the finite-difference Hessian, which is computed only when the raw gradient fails (its
    off-diagonal entries by one forward difference per pair, where lme4 takes four).
    ``scale`` (see :func:`theta_scale`) runs the check in each parameter's natural unit.
    ``tol`` is raised to the gradient the differences can resolve, ``CRITERION_RESOLUTION *
    |fx| / delta``, so that very large data sets are not flagged for rounding noise.

    A check that passes with the Hessian while it still predicts a decrease above
    :data:`POLISH_GAIN` (BOBYQA can stop on a small step short of the optimum) appends the
    Newton step from ``x`` to the list ``polish``, for the caller to try.

    With ``gradient`` (the analytic gradient, :mod:`~sklmm._engine.gradient`) the check costs one
    gradient where it passes at once, and the Hessian, when needed, is the forward differences
    of the gradient (one gradient per parameter) instead of those of the criterion.
    """
    x = np.asarray(x, dtype=float)
    tol = max(tol, CRITERION_RESOLUTION * abs(fx) / delta)
    if scale is not None:
        unscaled = objective

        def objective(z):
            return unscaled(z * scale)

        x, lower = x / scale, lower / scale
    k = x.size
    at_bound = x - lower < delta
    if gradient is not None:
        return _gradient_problem(objective, gradient, x, lower, fx, tol, delta, scale, polish, at_bound)
    fp, fm = np.empty(k), np.full(k, np.nan)
    for j in range(k):
        e = np.zeros(k)
        e[j] = delta
        fp[j] = objective(x + e)
        if not at_bound[j]:
            fm[j] = objective(x - e)
    if not (np.all(np.isfinite(fp)) and np.all(np.isfinite(fm[~at_bound]))):
        return "the criterion is not finite next to the optimum"
    grad = np.where(at_bound, (fp - fx) / delta, (fp - np.where(at_bound, 0.0, fm)) / (2 * delta))
    problem = _off_bound(grad, at_bound, tol)
    if problem is not None:
        return problem
    idx = np.flatnonzero(~at_bound)
    if np.all(np.abs(grad[idx]) <= tol):
        return None
    # off the diagonal, one forward difference per pair reusing f(x + delta e_i): the Hessian
    # only scales the gradient (lme4 takes four central differences per pair)
    H = np.empty((idx.size, idx.size))
    for a, i in enumerate(idx):
        H[a, a] = (fp[i] - 2 * fx + fm[i]) / delta**2
        for c, j in enumerate(idx[:a]):
            z = x.copy()
            z[[i, j]] += delta
            H[a, c] = H[c, a] = (objective(z) - fp[i] - fp[j] + fx) / delta**2
    return _scaled_problem(H, grad, idx, x, lower, fx, tol, scale, polish)


def _off_bound(grad, at_bound, tol):
    """Why the check fails on a bound (moving into the interior lowers the criterion), or None."""
    off_bound = np.flatnonzero(at_bound & (grad < -tol))
    if off_bound.size:
        j = int(off_bound[0])
        return f"moving theta[{j}] off its bound lowers the criterion (slope {grad[j]:.3g})"
    return None


def _gradient_problem(objective, gradient, x, lower, fx, tol, delta, scale, polish, at_bound):
    """:func:`optimum_problem` from the analytic gradient (x, lower in the scaled units)."""
    unit = np.ones_like(x) if scale is None else scale

    def grad_at(z):
        return np.asarray(gradient(z * unit), dtype=float) * unit

    grad = grad_at(x)
    if not np.all(np.isfinite(grad)):
        return "the criterion is not finite next to the optimum"
    # on a bound the one-sided slope into the interior: the criterion is even in a smooth's
    # theta (and in a diagonal entry of T along its mirror), so its gradient there is 0 and
    # says nothing of whether the interior is lower
    for j in np.flatnonzero(at_bound):
        z = x.copy()
        z[j] = lower[j] + delta
        grad[j] = (objective(z) - fx) / delta  # (objective takes the scaled units)
    problem = _off_bound(grad, at_bound, tol)
    if problem is not None:
        if polish is not None:  # restart inside: the gradient there leads away from the bound
            z = x.copy()
            off = at_bound & (grad < -tol)
            z[off] = lower[off] + delta
            polish.append(z * unit)
        return problem
    idx = np.flatnonzero(~at_bound)
    if np.all(np.abs(grad[idx]) <= tol):
        return None
    H = np.empty((idx.size, idx.size))
    for a, i in enumerate(idx):
        z = x.copy()
        z[i] += delta
        H[:, a] = (grad_at(z)[idx] - grad[idx]) / delta
    if not np.all(np.isfinite(H)):
        return "the criterion is not finite next to the optimum"
    return _scaled_problem(0.5 * (H + H.T), grad, idx, x, lower, fx, tol, scale, polish)


def _scaled_problem(H, grad, idx, x, lower, fx, tol, scale, polish):
    """The Hessian-scaled part of :func:`optimum_problem`: lme4's ``solve(chol(H), g)``."""
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(H).T, grad[idx])  # lme4: solve(chol(H), g)
    except np.linalg.LinAlgError:
        return ("the criterion's Hessian is not positive definite there (a flat or "
                f"non-identifiable direction), with max|gradient| = {np.abs(grad[idx]).max():.3g}")
    worst = np.minimum(np.abs(scaled), np.abs(grad[idx]))
    # the scaled gradient is in units of sqrt(criterion): |s| predicts a possible decrease of
    # about s^2 / 2, so below sqrt(2 * SCALED_RESOLUTION * |fx|) it is within the optimizer's
    # relative accuracy (lme4's fixed 2e-3 flags fits at the optimum from about 10^6 rows)
    tol_scaled = max(tol, np.sqrt(2.0 * SCALED_RESOLUTION * abs(fx)))
    if np.all(worst <= tol_scaled):
        if polish is not None and 0.5 * scaled @ scaled > max(POLISH_GAIN, SCALED_RESOLUTION * abs(fx)):
            z = x.copy()
            z[idx] -= np.linalg.solve(H, grad[idx])  # one Newton step on the differences
            z = np.maximum(z, lower)
            polish.append(z * scale if scale is not None else z)
        return None
    a = int(np.argmax(worst))
    return f"max|scaled gradient| = {worst[a]:.3g} > {tol_scaled:.3g} (theta[{int(idx[a])}])"


def column_mirrors(terms, free):
    """For each free diagonal entry ``T_jj`` of theta, ``(below, rest)``: the free positions of
    the entries below it in its column of ``T_k`` and, when a single row ``i`` lies below, of
    the rest of that row (``T_i,j+1..i``). While ``T_jj = 0`` the model (``T_k T_k'``) does not
    change when ``below`` is negated, nor when row ``i``'s part from column j on is rotated."""
    slices, _ = theta_layout(terms)
    pos = {int(i): a for a, i in enumerate(free)}
    out = {}
    for t, sl in zip(terms, slices):
        if t.scalar:
            continue
        for d in np.flatnonzero(t.tri_rows == t.tri_cols):
            j = t.tri_cols[d]
            below = np.flatnonzero((t.tri_cols == j) & (t.tri_rows > j))
            idx = [sl.start + int(b) for b in below]
            if not idx or sl.start + int(d) not in pos or not all(i in pos for i in idx):
                continue
            rest = []
            if len(below) == 1:
                i = t.tri_rows[below[0]]
                rest = [sl.start + int(r) for r in np.flatnonzero((t.tri_rows == i) & (t.tri_cols > j))]
            out[pos[sl.start + int(d)]] = ([pos[i] for i in idx], [pos[r] for r in rest if r in pos])
    return out


def mirrored_descent(objective, x, fx, mirrors, scale, tol=GRAD_TOL, delta=GRAD_DELTA, min_gain=0.0):
    """A point with the same criterion as ``x`` from which the optimizer can still descend.

    A diagonal entry of ``T_k`` at its bound 0 leaves free the sign of the entries below it
    and, with one row below, how that row's length is split between column j and the later
    columns (the correlation the variance would have if it grew): the model depends on
    ``T_k T_k'`` only. The criterion may rise into the interior for the split the optimizer
    happened to end with and fall for another: a boundary point that is a local optimum of
    theta only. lme4 stops there; here the other sign and the fully correlated splits are
    probed and, when one descends faster than ``tol`` (and by more than ``min_gain``), returned.
    """
    for j, (below, rest) in mirrors.items():
        if x[j] >= NEAR_SINGULAR * scale[j]:  # at or near the bound: the split barely matters
            continue
        candidates = []
        flipped = x.copy()
        flipped[below] = -flipped[below]
        candidates.append(flipped)
        if rest:
            r = np.sqrt(np.sum(x[below] ** 2) + np.sum(x[rest] ** 2))
            for sign in (1.0, -1.0):
                z = x.copy()
                z[below], z[rest] = sign * r, 0.0
                candidates.append(z)
        for z in candidates:
            step = z.copy()
            step[j] += delta * scale[j]
            if objective(step) < fx - max(tol * delta, min_gain):
                return z
    return None


def covariance_terms(terms, free, scale):
    """``(term, free positions of its theta, unit of each coefficient)`` for the grouping terms
    whose theta is entirely free (those :func:`covariance_probe` examines)."""
    slices, _ = theta_layout(terms)
    pos = {int(i): a for a, i in enumerate(free)}
    out = []
    for t, sl in zip(terms, slices):
        idx = list(range(sl.start, sl.stop))
        if t.scalar or not all(i in pos for i in idx):
            continue
        at = np.array([pos[i] for i in idx])
        diag = t.tri_rows == t.tri_cols
        unit = np.empty(t.n_coef)
        unit[t.tri_rows[diag]] = scale[at[diag]]
        out.append((t, at, unit))
    return out


def covariance_probe(objective, x, fx, candidates, min_gain=1e-6, eps=1e-6, tol=1e-3):
    """A point better than ``x`` found in covariance space, or None.

    The model depends on each term's relative covariance ``S = T T'`` (here in each
    coefficient's unit); at its optimum the derivative ``G = dcriterion/dS`` must be positive
    semi-definite (and vanish on the range of ``S``): the first-order condition on the cone of
    covariance matrices. Near a singular fit theta is a poor coordinate system for it: the
    covariance grows quadratically in theta along the null space of ``S``, and a correlation
    barely moves the criterion through theta when a variance is near 0, so neither BOBYQA's
    stopping rule nor lme4's gradient check can tell such a point from the optimum. ``G`` is
    found from directional derivatives along ``v v'`` (basis vectors and their pairwise sums:
    ``p(p+1)/2`` evaluations per term); if it has an eigenvalue below ``-tol``, the covariance is
    grown along that eigenvector at a few sizes and the best point returned when it lowers the
    criterion by more than ``min_gain``.
    """
    best, best_f = None, fx - min_gain

    def at(t, at_, unit, S):
        if t.correlated:
            T = np.linalg.cholesky(S + 1e-13 * max(1.0, np.trace(S)) * np.eye(t.n_coef))
        else:
            T = np.diag(np.sqrt(np.clip(np.diag(S), 0, None)))
        z = x.copy()
        z[at_] = (unit[:, None] * T)[t.tri_rows, t.tri_cols]
        return z

    for t, at_, unit, in candidates:
        Tn = t.template(x[at_]) / unit[:, None]
        if np.linalg.svd(Tn, compute_uv=False).min() >= PROBE_BELOW:
            continue  # theta is a good chart here: the gradient check has covered the term
        S = Tn @ Tn.T
        p = t.n_coef
        E = np.eye(p)

        def q(v):
            return (objective(at(t, at_, unit, S + eps * np.outer(v, v))) - fx) / eps

        G = np.diag([q(E[i]) for i in range(p)])
        if t.correlated:  # a diagonal covariance has no off-diagonal directions
            for i in range(p):
                for j in range(i):
                    G[i, j] = G[j, i] = q(E[i] + E[j]) - (G[i, i] + G[j, j]) / 2
        lam, U = np.linalg.eigh(G)
        if lam[0] >= -tol:
            continue
        v = U[:, 0] if t.correlated else E[int(np.argmin(np.diag(G)))]
        for size in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            z = at(t, at_, unit, S + size * max(1.0, np.trace(S)) * np.outer(v, v))
            f = objective(z)
            if f < best_f:
                best, best_f = z, f
    return best


def boundary_faces(terms, free, grams=None):
    """The nested models on the boundary: ``(positions, optimize)`` with the free positions of
    theta to set to 0, for each term and coefficient the row of ``T_k`` that carries it (the
    model without that random coefficient: a variance, its covariances; a smooth's variance,
    the straight line), and all of theta (no random effects).

    ``optimize`` marks the faces of terms with a slope column off centre (|mean| / sd above
    :data:`FACE_RATIO`; ``grams[k]``, the term's Gram matrix, says), uncorrelated ones and
    correlated ones with few levels (:data:`FACE_LEVELS`): there the criterion has interior
    local optima far above the boundary's, and the face's own optimum is sought, not only its
    point. (A correlated term far from centred, above ``UNCENTRED_SLOPE_RATIO``, is moreover
    fitted centred: :meth:`~sklmm._engine.terms.RandomTerm.centre_slopes`.)
    """
    slices, _ = theta_layout(terms)
    pos = {int(i): a for a, i in enumerate(free)}
    faces = []
    for k, (t, sl) in enumerate(zip(terms, slices)):
        hard = grams is not None and (not t.correlated or t.n_levels <= FACE_LEVELS) \
            and _far_from_centred(t, grams[k])
        for i in range(t.n_coef if not t.scalar else t.n_theta):  # (a smooth: each penalty)
            row = [sl.start + int(d) for d in np.flatnonzero(t.tri_rows == i)]
            if row and all(r in pos for r in row):
                faces.append((np.array([pos[r] for r in row]), hard))
    if faces:  # every free variance at 0 (fixed ones, such as given smoothing parameters, stay)
        faces.append((np.arange(len(free)), False))
    return faces


#: from this |mean| / sd of a slope column on, an uncorrelated term's faces are optimized (the
#: false optima appear from a ratio of about 3 in random small designs) ...
FACE_RATIO = 1.0
#: ... and a correlated term's when it has at most this many levels (its false optima, rarer,
#: came with 3 to 8 levels; with more, the optimum on a face costs more than it finds)
FACE_LEVELS = 12


def _far_from_centred(t, G, ratio=FACE_RATIO):
    """Whether a term with an intercept has a slope column whose |mean| / sd exceeds ratio."""
    moments = t.slope_moments(G)
    return moments is not None and bool(np.any(np.abs(moments[0]) > ratio * moments[1]))


#: evaluations allowed for the optimum on one face of a hard term (see :func:`boundary_faces`)
FACE_EVALS = 300


def face_descent(objective, x, fx, faces, lower_bounds, unit, min_gain=0.0):
    """A boundary point better than ``x``, or None: on each face (one random coefficient set
    to 0, or all of them) the point ``x`` projects to, and for the faces marked by
    :func:`boundary_faces` the optimum on the face from there (at most :data:`FACE_EVALS`
    evaluations); the best of them when its criterion is lower than ``fx`` by more than
    ``min_gain``.

    A fit must not end worse than a model nested in it. An interior local optimum can be far
    worse than the boundary (an uncorrelated slope on a column off centre: 24 units of REML
    criterion above the random intercept's singular optimum, reported as converged), and
    neither the gradient check nor BOBYQA can see it from there. ``lower_bounds`` and ``unit``
    are the bounds and natural units of ``x``.
    """
    best, best_f = None, fx - min_gain
    for face, optimize_it in faces:
        z = x.copy()
        z[face] = 0.0
        f = objective(z)
        rest = np.setdiff1d(np.arange(len(x)), face) if optimize_it else ()
        if len(rest):  # the face's own optimum, from its point (marked faces only)
            def on_face(v, z=z, rest=rest):
                w = z.copy()
                w[rest] = v
                return objective(w)

            res = optimize.minimize_bobyqa(on_face, z[rest], lower_bounds[rest], max_evals=FACE_EVALS,
                                           initial_step=np.maximum(0.2 * np.abs(z[rest]), 0.05 * unit[rest]))
            if res.fmin < f:
                z = z.copy()
                z[rest], f = res.final, res.fmin
        if f < best_f:
            best, best_f = z, f
    return best


#: a smooth's theta below this multiple of its unit (a lambda 100 times its start's or more, up
#: to the straight line or a margin's null space at 0) is probed by :func:`interior_probe` at the
#: multiples :data:`INTERIOR_PROBE` of its unit above it ...
INTERIOR_BELOW = 0.1
INTERIOR_PROBE = 10.0 ** np.arange(-2.0, 2.01, 0.5)
#: ... and a probe counts when it lowers the criterion by more than this (relative)
INTERIOR_GAIN = 1e-9


def interior_probe(objective, x, fx, smooth, scale, budget=None):
    """A point better than ``x`` with one heavily penalized smooth's theta moved inside:
    ``(point or None, evaluations)``; nothing is evaluated when there is no such smooth or when
    :data:`INTERIOR_PROBE`'s values for each would reach ``budget`` evaluations.

    A smooth's REML criterion can have a local minimum at a large lambda (up to lambda = inf:
    the straight line, or a tensor product margin's null space) beside a lower basin at a much
    smaller one, with a ridge between: from theta = 1 a local search can slide into the first,
    and neither it nor the checks above (which look at the slope there) see the other. Each
    theta flagged in ``smooth`` and below :data:`INTERIOR_BELOW` of its unit ``scale`` is tried
    at :data:`INTERIOR_PROBE` times its unit (those above it), the others held; the best point
    is returned when it lowers ``fx`` by more than :data:`INTERIOR_GAIN` (relative).
    """
    small = np.flatnonzero(smooth & (x < INTERIOR_BELOW * scale))
    if budget is not None and small.size * INTERIOR_PROBE.size >= budget:
        return None, 0
    best, best_f, n = None, fx - INTERIOR_GAIN * max(1.0, abs(fx)), 0
    for j in small:
        for v in INTERIOR_PROBE * scale[j]:
            if v <= x[j]:
                continue
            z = x.copy()
            z[j] = v
            f = objective(z)
            n += 1
            if f < best_f:
                best, best_f = z, f
    return best, n


def _verified(objective, summ, lower, max_iter, scale, mirrors=None, candidates=(), faces=(),
              fun_grad=None):
    """The optimizer's answer after lme4's convergence check and the probes in covariance space
    (:func:`mirrored_descent`, :func:`covariance_probe`) and on the boundary faces
    (:func:`face_descent`), with up to :data:`RESTARTS` restarts when any fails: from the better
    point a probe found, or from the answer itself. With ``fun_grad`` (criterion and analytic
    gradient) the check reads the gradient and the restarts are L-BFGS-B's, else BOBYQA's."""
    gradient = None if fun_grad is None else (lambda x: fun_grad(x)[1])
    boundary = ("it stopped where the criterion still decreases along a direction of a random-"
                "effect covariance (a singular or nearly singular point)")

    def check(x, fx, min_gain):
        polish = []
        problem = optimum_problem(objective, x, lower, fx, scale=scale, polish=polish, gradient=gradient)
        if problem is not None:
            return problem, polish[0] if polish else x
        if polish:
            f = objective(polish[0])
            if f < fx:
                summ.final, summ.fmin = polish[0], f
                x, fx = summ.final, summ.fmin
        better = mirrored_descent(objective, x, fx, mirrors or {}, scale, min_gain=min_gain)
        if better is None:
            better = covariance_probe(objective, x, fx, candidates, min_gain=max(min_gain, 1e-6))
        if better is None:
            better = face_descent(objective, x, fx, faces, lower, scale, min_gain=max(min_gain, 1e-6))
        return (None, None) if better is None else (boundary, better)

    # any gain is worth a restart; after the last one, only a gain above the optimizer's
    # accuracy where the criterion is flat (REPORT_GAIN) is reported as a failure to converge
    problem, restart = check(summ.final, summ.fmin, 0.0)
    n_evals = summ.n_evals
    for attempt in range(RESTARTS):
        if problem is None or n_evals >= max_iter:
            break
        if fun_grad is not None:
            again = optimize.minimize_lbfgsb(fun_grad, restart, lower, max_evals=max_iter - n_evals)
        else:
            again = optimize.minimize_bobyqa(objective, restart, lower, max_evals=max_iter - n_evals,
                                             xtol_abs=1e-10 * scale,
                                             initial_step=np.maximum(0.05 * np.abs(restart), 0.01 * scale))
        n_evals += again.n_evals
        if again.converged and again.fmin <= summ.fmin:
            summ = again
        problem, restart = check(summ.final, summ.fmin, REPORT_GAIN if attempt == RESTARTS - 1 else 0.0)
    summ.n_evals = n_evals
    if problem is not None:
        summ.converged = False
    return summ, problem
