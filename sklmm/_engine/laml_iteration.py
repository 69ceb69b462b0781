"""The Laplace approximate REML of a non-Gaussian GAM, by an outer iteration with one pass
over the rows per step.

At a linear predictor ``eta0`` with working weights ``W0`` and working response ``z0`` (one
pass: the cross-products of :meth:`~sklmm._engine.pirls.GlmmProblem.form`), the penalized
deviance is, to second order in eta (canonical links, or Newton's weights as Gamma's: the
working weights are the Hessian),

    D(eta) + |u|^2 ~ D(eta0) - sum W0 r0^2 + |W0^{1/2} (z0 - eta)|^2 + |u|^2,

whose minimum over (u, beta) at theta is the working linear model's penalized residual sum of
squares ``r^2(theta)``, at its PLS solution ``eta~(theta)``. The criterion's log-determinant
``log|H|`` (H the PLS matrix of the fixed and random columns) moves with eta through W: to
first order by ``c'(eta - eta0)``, ``c_i = dW_i/deta_i h_i`` with ``h_i = a_i' H^{-1} a_i`` the
leverage of row i (:func:`~sklmm._engine.leverage.whitened_row_norms`). The surrogate

    S(theta) = D(eta0) - sum W0 r0^2 + r^2(theta) + log|L_theta|^2 + log|R_X|^2 + c' eta~(theta)

costs a factorization of the small system and nothing per row. (With a dispersion, Gamma's,
its first three parts, the penalized deviance P to second order, enter as the criterion's
profiled ``min_phi P / phi + ls(phi) - p log phi``, :meth:`~sklmm._engine.pirls.GlmmProblem.profiled`,
O(1) per evaluation.) Where eta0 is the mode at
theta0, S and the Laplace criterion agree at theta0 in value and in gradient: the first part by
the envelope theorem, the log-determinant because ``d eta~ / d theta`` equals the mode's
derivative there (same gradient and Hessian of the penalized deviance). So a fixed point of
"minimize S over theta; move eta to eta~ at the minimizer; expand again" is a stationary
point of the Laplace REML criterion (mgcv's optimum: mgcv takes Newton steps on the log
smoothing parameters with exact derivatives, Wood 2011). Without the ``c`` term the loop is
penalized quasi-likelihood (bam's performance iteration), whose fixed point is another one.

Each step costs two passes over the rows (the cross-products at eta, then the leverages at
the factor of that step), where a derivative-free search of the criterion costs a converged
PIRLS per evaluation. The first step, far from the mode, is PQL's (``c = 0``). For a GAM
without grouping factors and the dense factor, a step is one pass (:func:`_fused_pass`): the
leverages come from the factor of the step before, at the new theta and the last weights,
which at the fixed point are the current ones, so the fixed point is the same. The loop ends
when theta, eta and the surrogate's minimum stop moving, and PIRLS then converges the mode at
the final theta; :func:`laml_iteration` returns None when the loop does not settle (the caller
then searches the criterion directly). At the fixed point a heavily penalized smooth is probed
inside on the surrogate (:func:`~sklmm._engine.checks.interior_probe`): a lower point there is
returned as ``summary.restart_from``, for the caller to iterate again from it.
"""

from __future__ import annotations

import numpy as np

from . import optimize
from .checks import interior_probe
from .crossprod import GRAM_BLOCK_ROWS, _by_level
from .factor_dense import DenseFactor
from .leverage import dense_whitener, whitened_row_norms
from .pirls import PirlsState
from .terms import templates, theta_layout

__all__ = ["laml_iteration", "MAX_STEPS"]

#: at most this many steps (each one or two passes over the rows)
MAX_STEPS = 40
#: the iteration has converged when the surrogate's minimum changes by no more than this,
#: relative to max(|minimum|, 1), from one step to the next (at the fixed point that minimum
#: is the criterion's value), ...
FTOL = 1e-12
#: ... no entry of theta moves by more than this, relative to max(|theta|, 1) (the inner
#: search resolves theta to about 1e-6 of its scale: a tighter test waits on its noise) ...
THETA_TOL = 1e-4
#: ... and no linear predictor by more than this, relative to 1 + |eta|
ETA_TOL = 1e-6


def applies(problem, reml):
    """Whether the iteration serves this fit: the restricted criterion of a family whose
    working weights have a derivative (and, with a dispersion, whose criterion profiles it)."""
    fam = problem.family
    scale_ok = not getattr(fam, "scale_estimated", False) or hasattr(fam, "scale_function")
    return bool(reml and scale_ok and hasattr(fam, "weight_derivative"))


def laml_iteration(problem, theta, free, lower, max_steps=MAX_STEPS):
    """The outer iteration of the module's docstring from the full ``theta`` (only the ``free``
    positions move, bounded below by ``lower``). Returns ``(theta, state, summary)``, the
    state the converged PIRLS mode at theta; None when the iteration does not converge."""
    theta = np.array(theta, dtype=float)
    terms, X = problem.terms, problem.X
    z_off = problem.z_off
    every = np.arange(problem.n)
    rows = [(k, every, t.codes, t.values) for k, t in enumerate(terms)]
    eta = problem.start_eta() if problem.last is None else problem.last.eta
    fused = None  # the pass of :func:`_fused_pass` (a GAM without grouping factors, a dense factor)
    scaled = bool(getattr(problem.family, "scale_estimated", False))  # a dispersion, profiled
    last, move = np.inf, None
    summ = optimize.OptSummary(initial=theta[free].copy(), lower=lower[free].copy())
    slices, _ = theta_layout(terms)
    smooth = np.zeros(len(theta), dtype=bool)  # the smooths' theta (scalar terms)
    for t, sl in zip(terms, slices):
        smooth[sl] = t.scalar
    for step in range(1, max_steps + 1):
        if fused is not None:
            G, eta, const, c_eta, cx, cz = _fused_pass(problem, *fused)
            cp = problem.raise_last(problem.plan.from_gram(problem.n, G))
            const -= 0.5 * (cp.xyxy[-1, -1] + 1.0)  # what raise_last added (r^2 is read minus it)
            factor = problem.factor(cp, True)
            if factor.update(theta) is None:
                return None
        else:
            W, r = problem.working(eta)
            problem.n_passes += 1
            cp = problem.form(True, eta + r, W)
            const = problem.deviance_part(eta) - float(np.sum(W * r * r)) - 0.5 * (cp.xyxy[-1, -1] + 1.0)
            factor = problem.factor(cp, True)
            if factor.update(theta) is None:
                return None
            if step == 1:  # (far from the mode at the start: the first step is PQL's, c = 0)
                cx, cz, c_eta = np.zeros(X.shape[1]), [np.zeros((t.n_levels, t.n_coef)) for t in terms], 0.0
            else:
                cx, cz, c_eta = _correction(problem, factor, theta, eta, rows)

        def surrogate(x):
            th = theta.copy()
            th[free] = x
            fz = factor.update(th)
            if fz is None or not np.isfinite(fz.logdet_L2):
                return np.inf
            b, u = factor.solve()
            lin = float(cx @ b) - c_eta
            for k, (t, T) in enumerate(zip(terms, templates(terms, th))):
                uk = u[z_off[k] : z_off[k + 1]].reshape(t.n_levels, t.n_coef)
                lin += float(np.sum(cz[k] * (uk @ T.T)))
            pen = const + fz.r2  # the penalized deviance, to second order
            value = problem.profiled(pen)[1] if scaled else pen
            return value + fz.logdet_L2 + fz.logdet_RX2 + lin

        x0 = theta[free]
        # the first trust region: a fifth of theta at first, then twice the last move (the
        # steps shrink quadratically near the fixed point)
        wide = np.maximum(0.2 * np.abs(x0), 0.05)
        initial = wide if step == 1 else np.clip(2.0 * np.abs(move), 1e-4 * np.maximum(np.abs(x0), 1e-2), wide)
        inner = optimize.minimize_bobyqa(surrogate, x0, lower[free], initial_step=initial,
                                         ftol_rel=1e-15, ftol_abs=1e-12, xtol_abs=1e-10)
        optimize.snap_to_bounds(surrogate, inner, lower[free])
        summ.n_evals += inner.n_evals
        new = theta.copy()
        new[free] = inner.final
        move = inner.final - x0
        factor.update(new)
        b, u = factor.solve()
        moved = np.max(np.abs(new - theta) / np.maximum(np.abs(theta), 1.0)) if len(free) else 0.0
        small = abs(inner.fmin - last) <= FTOL * max(abs(inner.fmin), 1.0)
        last = inner.fmin
        theta = new
        if problem.plan.all_dense and isinstance(factor, DenseFactor):
            Ts = templates(terms, theta)
            coef = np.concatenate([(u[z_off[k] : z_off[k + 1]].reshape(1, -1) @ T.T)[0] for k, T in enumerate(Ts)] + [b])
            fused = (coef, dense_whitener(factor, terms, Ts, z_off, X.shape[1]))
            if not (small and moved < THETA_TOL):
                continue
        eta_new = X @ b + problem.random_eta(theta, u)
        change = np.max(np.abs(eta_new - eta) / (1.0 + np.abs(eta))) if problem.n else 0.0
        eta = eta_new
        if small and moved < THETA_TOL and change < ETA_TOL:
            problem.last = PirlsState(theta=theta.copy(), beta=b, u=u, eta=eta, minus2ll=np.nan,
                                      logdet=np.nan, n_steps=0, converged=False)
            st = problem.pirls(theta)
            if not (st.converged and np.isfinite(st.logdet)):
                return None
            summ.final, summ.fmin, summ.converged = theta[free].copy(), problem.restricted(st)[0], True
            summ.return_code = f"LAML_ITERATION: {step} steps"
            summ.n_steps = step
            # a heavily penalized smooth with a lower basin inside, on the surrogate (nothing per
            # row): the caller restarts the iteration from there (checks.interior_probe)
            better, n_probe = interior_probe(surrogate, theta[free], inner.fmin, smooth[free], np.ones(len(free)))
            summ.n_evals += n_probe
            summ.restart_from = None
            if better is not None:
                summ.restart_from = theta.copy()
                summ.restart_from[free] = better
            return theta, st, summ
    return None


def _fused_pass(problem, coef, NT):
    """One pass over the rows of a GAM without grouping factors, in blocks of ``[Z X]``
    (:meth:`~sklmm._engine.crossprod.CrossProductPlan.dense_rows`), each used while it is in
    cache: the linear predictor ``eta = [Z X] coef`` of the last step's solution, its working
    weights and response, the Gram of ``sqrt(W) [Z X z]`` (one ``syrk`` per block), and the
    first-order term ``c`` with the leverages of the last factor (``N'`` of
    :func:`~sklmm._engine.leverage.dense_whitener`, at the new theta and the last weights:
    at the fixed point they are the current ones). Returns ``(G, eta, const, c'eta, X'c,
    [Z_k'c])``, const the penalized deviance's constant ``D(eta) - sum W r^2``."""
    from scipy.linalg import blas

    plan, fam, n = problem.plan, problem.family, problem.n
    m = plan._dense_m
    G = np.zeros((m + 1, m + 1), order="F")
    buf = np.empty((min(n, GRAM_BLOCK_ROWS), m + 1))
    eta = np.empty(n)
    v = np.zeros(m)
    const = c_eta = 0.0
    problem.n_passes += 1
    for a in range(0, n, GRAM_BLOCK_ROWS):
        b = min(n, a + GRAM_BLOCK_ROWS)
        sl = slice(a, b)
        g = plan.dense_rows(a, b, buf)
        e = eta[sl] = g @ coef
        W, r = problem.working(e, rows=sl)
        Y = g @ NT
        cb = fam.weight_derivative(problem.y[sl], e, problem.w[sl]) * np.einsum("ij,ij->i", Y, Y)
        v += cb @ g
        const += problem.deviance_part(e, rows=sl) - float(W @ (r * r))
        c_eta += float(cb @ e)
        sw = np.sqrt(W)
        B = buf[: b - a]
        B *= sw[:, None]
        np.multiply(e + r, sw, out=B[:, m])
        G = blas.dsyrk(1.0, B.T, trans=0, lower=0, beta=1.0, c=G, overwrite_c=1)
    G = np.triu(G) + np.triu(G, 1).T
    z_off = problem.z_off
    return G, eta, const, c_eta, v[z_off[-1]:], [v[None, z_off[k] : z_off[k + 1]] for k in range(len(problem.terms))]


def _correction(problem, factor, theta, eta, rows):
    """The surrogate's first-order term at eta: ``c = dW/deta * h`` (h the leverages at theta,
    :func:`~sklmm._engine.leverage.whitened_row_norms`) as ``X'c``, each term's ``Z_k'c`` by
    level, and ``c'eta``; one pass over the rows. (A GAM without grouping factors and the dense
    factor takes these from :func:`_fused_pass` instead.)"""
    terms, X = problem.terms, problem.X
    problem.n_passes += 1
    h = whitened_row_norms(factor, terms, templates(terms, theta), problem.z_off, X, rows)
    c = problem.family.weight_derivative(problem.y, eta, problem.w) * h
    cz = [_by_level(t.codes, t.values, c[:, None], t.n_levels)[:, :, 0] for t in terms]
    return X.T @ c, cz, float(c @ eta)
