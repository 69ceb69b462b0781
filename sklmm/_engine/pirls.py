"""Penalized iteratively reweighted least squares and the Laplace approximation (lme4's glmer).

For a GLMM with linear predictor ``eta = X beta + Z Lambda_theta u`` and ``u ~ N(0, I)``, the
conditional modes of u at a theta (and beta) minimize the penalized deviance

    pdev(u, beta) = sum_i -2 log p(y_i | eta_i) + |u|^2.

Each PIRLS step is the linear engine's penalized least-squares problem with the working
weights ``W = w var(mu)`` and the working response ``z = eta + (y - mu) / var(mu)`` (canonical
links; a family with a ``working`` method gives its own): the same cross-products (:class:`~sklmm._engine.crossprod.CrossProductPlan`, one pass
over the rows) and the same factorization of ``Lambda' Z'WZ Lambda + I``
(:mod:`~sklmm._engine.factor`), refilled with the new weights. Steps that raise the penalized
deviance are halved. At the mode the Laplace approximation to ``-2 log L(theta, beta)`` is

    sum_i -2 log p(y_i | eta_i) + |u|^2 + log |L_theta|^2,

``L_theta`` the Cholesky factor at the mode's weights (the seed's profiled deviance with the
residual sum of squares replaced by the penalized deviance).

A family with a dispersion ``phi`` (Gamma) has ``u ~ N(0, phi I)`` and ``-2 log p = D / phi +``
terms of phi alone, so the mode does not depend on phi, and the restricted criterion

    D / phi + |u|^2 / phi + ls(phi) + log |L_theta|^2 + log |R_X|^2 - p log phi

(``ls`` minus twice the saturated log-likelihood; Wood 2011's Laplace REML, twice mgcv's score
up to a constant) is minimized over phi at the mode (:meth:`GlmmProblem.restricted`). PIRLS
then works with the family's Newton weights, so ``L_theta`` and ``R_X`` hold the observed
information there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crossprod import CrossProductPlan
from .factor import make_factor
from .terms import templates, theta_layout

__all__ = ["GlmmProblem", "PirlsState", "PIRLS_MAX_ITER"]

#: at most this many PIRLS steps per evaluation
PIRLS_MAX_ITER = 60
#: a step that moves no linear predictor by more than this (relative to 1 + |eta|) ends PIRLS:
#: the convergence is quadratic, so the mode is then exact to rounding and so is the criterion
PIRLS_ETA_TOL = 1e-10
#: at most this many halvings of a step that raised the penalized deviance
MAX_HALVINGS = 12


@dataclass
class PirlsState:
    """The conditional modes at one theta (and beta), with what the criterion and inference need."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    minus2ll: float  # sum_i -2 log p(y_i | eta_i)
    logdet: float  # log |L_theta|^2 at the mode's weights
    n_steps: int
    converged: bool
    logdet_RX2: float = np.nan  # log |R_X|^2 there (beta found with u; else nan)

    @property
    def laplace(self):
        return self.minus2ll + float(self.u @ self.u) + self.logdet

    @property
    def laml(self):
        """The Laplace approximate restricted criterion (Wood 2011): the Laplace approximation
        integrating beta as well as u (flat prior on beta), ``laplace + log|R_X|^2``, at the
        joint mode of u and beta."""
        return self.laplace + self.logdet_RX2


class GlmmProblem:
    """The rows of one GLMM and penalized IRLS on them.

    ``X`` holds the kept fixed-effect columns, ``w`` the case weights (a weight w counts a row
    w times). The factorization is chosen once (:func:`~sklmm._engine.factor.make_factor`)
    for the system with the fixed columns (``beta`` found by PIRLS with u, glmer's
    ``nAGQ = 0`` stage) and once for the system without them (beta given).
    """

    def __init__(self, terms, X, y, w, family, solver="auto"):
        self.terms, self.X, self.y, self.w, self.family = terms, X, y, w, family
        self.solver = solver
        self.plan = CrossProductPlan(terms, repeated=True, fixed=X)
        self.slices, self.z_off = theta_layout(terms)
        self.q = int(self.z_off[-1])
        self.n, self.p = X.shape
        self._factors = {}
        self.n_passes = 0  # passes over the rows (one per PIRLS step)
        self.last = None  # the last state: the warm start of the next evaluation
        self._phi = None  # the last profiled dispersion (a family with one): the next one's start
        # [X z] and [z] as buffers: each PIRLS step writes its working response in the last column
        self._Xz = np.empty((self.n, self.p + 1))
        self._Xz[:, : self.p] = X
        self._z = np.empty((self.n, 1))

    def __getstate__(self):
        # the factorizations (a CHOLMOD factor does not pickle), the row-sized buffers and the
        # cross-product plan are rebuilt after unpickling
        state = dict(self.__dict__)
        for key in ("_factors", "_Xz", "_z", "plan", "_scale_terms"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._factors = {}
        self.plan = CrossProductPlan(self.terms, repeated=True, fixed=self.X)
        self._Xz = np.empty((self.n, self.p + 1))
        self._Xz[:, : self.p] = self.X
        self._z = np.empty((self.n, 1))

    # ------------------------------------------------------------------ pieces

    def random_eta(self, theta, u):
        """``Z Lambda_theta u`` at the rows."""
        out = np.zeros(self.n)
        for k, (t, T) in enumerate(zip(self.terms, templates(self.terms, theta))):
            b = u[self.z_off[k] : self.z_off[k + 1]].reshape(t.n_levels, t.n_coef) @ T.T
            if t.n_levels == 1:  # a smooth: one product (no gather of its one row of b)
                out += t.values @ b[0]
            else:
                out += np.einsum("ij,ij->i", t.values, b[t.codes]) if t.n_coef > 1 else t.values[:, 0] * b[t.codes, 0]
        return out

    def working(self, eta, observed=True, rows=slice(None)):
        """Working weights ``W = w var(mu)`` and the working residual ``(y - mu) / var(mu)``
        (canonical links); the family's own Newton (``observed``) or Fisher weights otherwise.
        ``rows``: a slice of the rows, whose linear predictor eta is."""
        y, w = self.y[rows], self.w[rows]
        if hasattr(self.family, "working"):
            return self.family.working(y, eta, w, observed)
        mu = self.family.mean(eta)
        var = self.family.variance(mu)
        return w * var, (y - mu) / var

    def minus2ll(self, eta, rows=slice(None)):
        return float(np.sum(self.family.minus2_loglik(self.y[rows], eta, self.w[rows])))

    def deviance_part(self, eta, rows=slice(None)):
        """What the restricted criterion adds ``|u|^2`` to before any dispersion: ``-2 log p``
        for a family of known scale, the deviance for one with a dispersion (divided by phi
        in :meth:`restricted`)."""
        if getattr(self.family, "scale_estimated", False):
            return self.family.deviance(self.y[rows], eta, self.w[rows])
        return self.minus2ll(eta, rows)

    def profiled(self, penalized_deviance):
        """The restricted criterion's part in the dispersion at its best phi, for a penalized
        deviance (a family with one: :meth:`restricted`); ``(phi, value)``."""
        if getattr(self, "_scale_terms", None) is None:
            self._scale_terms = self.family.scale_function(self.y, self.w)
        phi, value = self.family.profile_scale(self.y, self.w, penalized_deviance, self.p, self._phi,
                                                terms=self._scale_terms)
        self._phi = phi  # the next evaluation's start
        return phi, value

    def form(self, with_beta, z, W):
        """The weighted cross-products of ``[Z X z]``, with ``z'Wz`` raised so that the last pivot
        of the factor stays positive: PIRLS reads the solution from the factor's last row, which
        the (y, y) entry does not change, and never the residual sum of squares, which is 0 when
        the working response is fitted exactly (a saturated model) and then fails the factorization."""
        Xz = self._Xz if with_beta else self._z
        Xz[:, -1] = z
        return self.raise_last(self.plan.form(None, None, W, Xy=Xz))

    @staticmethod
    def raise_last(cp):
        """``z'Wz`` of the cross-products raised to ``2 z'Wz + 1`` (see :meth:`form`)."""
        cp.xyxy[-1, -1] = 2.0 * cp.xyxy[-1, -1] + 1.0
        return cp

    def factor(self, cp, with_beta):
        f = self._factors.get(with_beta)
        if f is None:
            f = self._factors[with_beta] = make_factor(cp, self.terms, self.solver)
        else:
            f.refill(cp)
        return f

    def _carried_modes(self, start, theta):
        """The start's modes carried to theta: its random effects ``b = Lambda u`` kept where a
        term is scalar (u rescaled by the ratio of the thetas), its u elsewhere. The modes of b
        move less with theta than those of u, so PIRLS from here takes fewer steps."""
        u = start.u.copy()
        for k, (t, sl) in enumerate(zip(self.terms, self.slices)):
            if t.n_coef == 1:
                old, new = float(start.theta[sl][0]), float(theta[sl][0])
                if old != 0.0 and new != 0.0:
                    u[self.z_off[k] : self.z_off[k + 1]] *= old / new
        return u

    def start_eta(self):
        return self.family.start_eta(self.y)

    # ------------------------------------------------------------------ PIRLS

    def pirls(self, theta, beta=None, start=None):
        """Conditional modes at theta: of u and beta together (``beta=None``) or of u at the
        given beta. ``start`` is a :class:`PirlsState` to start from (default: the last)."""
        with_beta = beta is None
        start = self.last if start is None else start
        if start is None:  # glm's start: eta from the response, nothing known of u or beta
            u, b0 = np.zeros(self.q), np.zeros(self.p)
            eta = self.start_eta()
            obj = np.inf
        else:
            u, b0 = self._carried_modes(start, theta), start.beta.copy()
        if not with_beta:
            b0 = np.asarray(beta, dtype=float)
        fixed = self.X @ b0
        if start is not None:
            eta = fixed + self.random_eta(theta, u)
            obj = self.minus2ll(eta) + u @ u
        converged = False
        logdet = logdet_RX2 = np.nan
        m2ll = obj - u @ u if np.isfinite(obj) else np.nan
        steps = 0
        for steps in range(1, PIRLS_MAX_ITER + 1):
            W, r = self.working(eta)
            self.n_passes += 1
            if with_beta:
                cp = self.form(True, eta + r, W)
            else:
                cp = self.form(False, eta - fixed + r, W)
            factor = self.factor(cp, with_beta)
            fz = factor.update(theta)
            if fz is None:
                break
            logdet = fz.logdet_L2
            logdet_RX2 = fz.logdet_RX2 if with_beta else np.nan
            b_new, u_new = factor.solve()
            if not with_beta:
                b_new = b0
            fixed_new = self.X @ b_new if with_beta else fixed
            eta_new = fixed_new + self.random_eta(theta, u_new)
            m2ll_new = self.minus2ll(eta_new)
            obj_new = m2ll_new + u_new @ u_new
            halvings = 0
            while not obj_new <= obj * (1 + 1e-13) and halvings < MAX_HALVINGS and np.isfinite(obj):
                halvings += 1
                u_new, b_new = 0.5 * (u + u_new), 0.5 * (b0 + b_new)
                fixed_new = 0.5 * (fixed + fixed_new)
                eta_new = 0.5 * (eta + eta_new)
                m2ll_new = self.minus2ll(eta_new)
                obj_new = m2ll_new + u_new @ u_new
            change = np.max(np.abs(eta_new - eta) / (1.0 + np.abs(eta))) if self.n else 0.0
            if not np.isfinite(obj_new):
                break
            small = obj - obj_new <= 1e-14 * abs(obj_new)
            u, b0, fixed, eta, obj, m2ll = u_new, b_new, fixed_new, eta_new, obj_new, m2ll_new
            if change < PIRLS_ETA_TOL or (small and halvings):
                converged = True
                break
        state = PirlsState(theta=np.array(theta, dtype=float), beta=b0, u=u, eta=eta,
                           minus2ll=m2ll if np.isfinite(m2ll) else self.minus2ll(eta), logdet=logdet,
                           n_steps=steps, converged=converged, logdet_RX2=logdet_RX2)
        if np.isfinite(logdet):
            self.last = state
        return state

    def laplace(self, theta, beta=None):
        """The Laplace approximation to ``-2 log L`` at theta (beta from PIRLS when None);
        inf where the system cannot be factored."""
        s = self.pirls(theta, beta)
        return s.laplace if np.isfinite(s.logdet) else np.inf

    def laml(self, theta):
        """The Laplace approximate restricted criterion at theta (:meth:`restricted`)."""
        s = self.pirls(theta)
        return self.restricted(s)[0] if np.isfinite(s.logdet) else np.inf

    def restricted(self, s):
        """The restricted criterion at a state and the dispersion in it: :attr:`PirlsState.laml`
        and 1 for a family of known scale; with a dispersion, the criterion of the module's
        docstring at the phi that minimizes it (the family's ``profile_scale``)."""
        if not getattr(self.family, "scale_estimated", False):
            return s.laml, 1.0
        phi, value = self.profiled(self.family.deviance(self.y, s.eta, self.w) + float(s.u @ s.u))
        return value + s.logdet + s.logdet_RX2, phi

    def solution(self, theta, beta, state=None):
        """The converged state at (theta, beta) and its cross-products with the fixed columns
        (the working weights and response at the mode; Fisher's where they differ from
        Newton's): what the fitted model keeps. ``state`` may give the converged joint mode
        at theta whose beta this is (no PIRLS then)."""
        s = state if state is not None and state.converged else self.pirls(theta, beta)
        W, r = self.working(s.eta, observed=False)  # (Fisher's weights, as mgcv's Vp and edf)
        return s, self.form(True, s.eta + r, W)
