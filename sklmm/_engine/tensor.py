"""Tensor product smooths (mgcv's ``te`` and ``ti``) as exact mixed-model terms.

A tensor product smooth of variables ``x_1, ..., x_m`` multiplies 1-D margin bases: with
margin bases ``B_l(x_l)`` (n x k_l), the model matrix is their row-wise Kronecker product
(the first margin's index varies slowest) and there is one smoothing parameter per margin,
penalty ``sum_l lambda_l S~_l``, where ``S~_l`` is margin l's penalty ``S_l`` in the Kronecker
product with a matrix ``M_j`` for every other margin j (Wood 2006, JCGS 15(2); Wood 2017,
section 5.6). ``M_j`` is the metric that plays "identity" for margin j, as mgcv 1.8-41 chooses
it (``te(..., np = TRUE)``, its default):

* a margin whose coefficients are already its values at the knots (``cr``; ``cc``, whose
  ``k - 1`` coefficients are its values at the first ``k - 1`` knots) keeps them: ``M = I``;
* another margin (``ps``, ``tp``) is first reparameterized so that its coefficients are its
  values at ``k`` evenly spaced points spanning the data (``P`` the basis there): ``M = P'P``.

Each margin penalty is then scaled so that its largest generalized eigenvalue (of ``S v = d M
v``) is 1, which is mgcv's normalization, so that ``lambda`` here is mgcv's ``sp / S.scale``.

The penalty is made diagonal exactly: with ``V_l`` solving ``S_l V_l = M_l V_l diag(d_l)``,
``V_l' M_l V_l = I``, in the coordinates ``beta = (V_1 (x) ... (x) V_m) gamma`` every ``S~_l``
is diagonal and the precision of ``gamma_i`` (``i`` a multi-index) is
``sum_l lambda_l d_l[i_l] / sigma^2``. The coefficients with every ``d_l[i_l] = 0`` (the joint
null space: products of the margins' null spaces) are unpenalized fixed effects; the others
form one random-effect term with a diagonal relative covariance factor
``Lambda_ii = (sum_l a_li / theta_l^2)^(-1/2)``, ``theta_l = (c / lambda_l)^(1/2)``
(:class:`~sklmm._engine.terms.RandomTerm` with ``penalties``), ``c`` a constant that makes
``theta = 1`` a reasonable start (:attr:`TensorSmooth.penalty_scale_`).

``te``: the identifiability constraint. mgcv absorbs ``sum_i f(x_i) = 0`` by a QR decomposition
of the whole basis, which breaks the Kronecker structure. It need not be absorbed so: every
margin represents constants and the constant lies in every margin penalty's null space, so
the constant function lies in the joint null space. ``{alpha + B beta : 1'B beta = 0}`` and
``{alpha + B beta}`` are the same set of functions, with the same penalty (which does not change
along the constant, ``S~_l c = 0`` for ``B c = 1``); dropping the constant from the null-space
columns (sum-to-zero within that block only) keeps one representation of each function. The
penalized fit is then mgcv's, and so is the term's edf (the two parameterizations differ by
moving multiples of the constant between the term and the intercept, and the influence matrix's
column of the unpenalized intercept is a unit vector); the REML criterion differs from mgcv's by
a constant (the parameterizations differ by a linear map that does not depend on lambda, and the
penalty's pseudo-determinants by a constant factor). ML, unlike REML, depends on which functions
are called random: mgcv's random part lies in the constrained space, orthogonal to the null
space in its coefficients (where every margin's metric is I, as it is for ``gamma``). Each
random column ``R_i`` is moved there along the null space, ``R_i - (c_Ri / |c_N|^2) N c_N`` with
``c`` the columns' sums: a change by fixed-effect columns that leaves the fit and REML as they
were and makes the ML criterion mgcv's up to a constant too.

``ti`` (an interaction only, mgcv's ANOVA decomposition): each margin absorbs its own
sum-to-zero constraint before the product (by a QR decomposition of ``B_l' 1``; its metric is
then ``I`` in those orthonormal coordinates for ``cr``/``cc``, or ``P'P`` with ``P`` the
constrained basis at ``k_l - 1`` evenly spaced points), and the product has no further
constraint, as in mgcv: for two ``cr`` margins its null space is the ``x z`` direction only.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.linalg import eigh, qr

from .smooth import SmoothTerm, _checked_knots
from .terms import RandomTerm

__all__ = ["TensorSmooth", "MARGIN_BASES", "row_kronecker"]

#: the 1-D bases a margin may have
MARGIN_BASES = ("cr", "ps", "cc", "tp")

#: bases whose coefficients are their values at the knots: mgcv does not reparameterize them
_INTERPRETABLE = ("cr", "cc")

#: each basis's smallest k, and the dimension of its penalty's null space
_MIN_K = {"cr": 3, "ps": 4, "cc": 4, "tp": 3}
_NULL_DIM = {"cr": 2, "ps": 2, "cc": 1, "tp": 2}

#: mgcv's threshold on the reparameterization's condition (smallest over largest singular value
#: of the margin basis at the evenly spaced points): below it the margin is left as it is
_REPARAM_TOL = np.finfo(float).eps ** 0.66


def row_kronecker(mats):
    """Row-wise Kronecker product of (n, k_l) matrices, the first one's index varying slowest."""
    out = mats[0]
    for M in mats[1:]:
        out = (out[:, :, None] * M[:, None, :]).reshape(len(out), -1)
    return out


class _Margin(SmoothTerm):
    """A margin: a 1-D basis from :class:`SmoothTerm` (its knots, raw basis and penalty), with
    the tensor product's own smallest basis dimensions."""

    def __init__(self, name, basis, n_basis, knots=None):
        self.name, self.column, self.basis, self.n_basis = name, None, basis, int(n_basis)
        self.user_knots = None
        if knots is not None:
            self.user_knots = _checked_knots(knots, name)


def _per_margin(value, m, what, name):
    """A per-margin setting: one value for every margin, or a sequence of m values."""
    if isinstance(value, (str, numbers.Number)) or value is None:
        return [value] * m
    values = list(value)
    if len(values) != m:
        raise ValueError(f"{name}: {what} must give one value per margin ({m}); got {len(values)}: {value!r}.")
    return values


class TensorSmooth:
    """A tensor product smooth of m >= 1 variables: mgcv's ``te`` (``interaction=False``) or ``ti``.

    Parameters
    ----------
    name : str
        Display name, ``"te(x,z)"``.
    columns : sequence of int
        Columns of X the smooth is a function of, one per margin (the estimators' business:
        :meth:`fit_design` and :meth:`design` take the margins' variables as the columns of x).
    bases : str or sequence of str, default=("cr", "cr")
        Each margin's basis, one of :data:`MARGIN_BASES` (one string for every margin).
    n_basis : int or sequence of int, default=(5, 5)
        Each margin's basis dimension k (mgcv's ``k``; ``te``'s default is 5 per margin).
    interaction : bool, default=False
        ``ti``: each margin absorbs its own sum-to-zero constraint (the smooth excludes the main
        effects) and the product none; ``te``: the product is constrained (see the module
        docstring).
    knots : sequence of (array-like or None), default=None
        Each margin's knots, as :class:`~sklmm._engine.smooth.SmoothTerm` takes them.
    labels : sequence of str, default=None
        The margins' names in theta's names and error messages (default: 1, 2, ...).

    Attributes
    ----------
    margins_ : list
        The fitted margins (knots in ``knots_``).
    penalties_ : ndarray (m, n_random)
        The random part's penalties ``a_li``: ``Lambda_ii = (sum_l a_li / theta_l^2)^(-1/2)``;
        each column sums to 1 (the columns of Z are scaled to make it so).
    penalty_scale_ : ndarray (m,)
        ``lambda_l = 1 / (theta_l^2 penalty_scale_[l])`` (mgcv's ``sp / S.scale``).
    margin_max_eigen_ : ndarray (m,)
        The largest generalized eigenvalue of each margin's penalty against its metric (what
        mgcv divides the penalty by): lambda in the units of the margin's own penalty (``int
        f''^2`` for cr) is ``lambda_l / margin_max_eigen_[l]``.
    """

    def __init__(self, name, columns, bases=("cr", "cr"), n_basis=(5, 5), interaction=False,
                 knots=None, labels=None):
        columns = [columns] if isinstance(columns, numbers.Integral) else list(columns)
        m = len(columns)
        if m < 1:
            raise ValueError(f"{name}: a tensor product smooth needs at least one variable.")
        self.name, self.columns, self.interaction = name, columns, bool(interaction)
        self.bases = _per_margin(bases, m, "bases", name)
        self.n_basis = _per_margin(n_basis, m, "n_basis (k)", name)
        self.labels = [str(i + 1) for i in range(m)] if labels is None else [str(s) for s in labels]
        if len(self.labels) != m:
            raise ValueError(f"{name}: labels must name the {m} margin(s); got {labels!r}.")
        knots = [None] * m if knots is None else _per_margin(knots, m, "knots", name)
        self._margins = []
        for b, k, kn, lab in zip(self.bases, self.n_basis, knots, self.labels):
            if b not in MARGIN_BASES:
                raise ValueError(f"{name}: a margin's basis must be one of {MARGIN_BASES}; got {b!r}.")
            if not isinstance(k, numbers.Integral) or isinstance(k, bool):
                raise ValueError(f"{name}: n_basis must be an int per margin; got {k!r} for margin {lab}.")
            if k < _MIN_K[b]:
                raise ValueError(f"{name}: margin {lab} (basis {b!r}) needs n_basis >= {_MIN_K[b]}; got {k}.")
            self._margins.append(_Margin(f"{name}[{lab}]", b, k, kn))

    @property
    def n_margins(self):
        return len(self._margins)

    @property
    def margins_(self):
        return self._margins

    # -- fitting ---------------------------------------------------------------------------
    def _as_columns(self, x):
        x = np.asarray(x, dtype=float)
        if x.ndim == 1 and self.n_margins == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_margins:
            raise ValueError(f"{self.name}: x must have one column per margin ({self.n_margins}); "
                             f"got shape {x.shape}.")
        return x

    def _margin_basis(self, j, xj):
        """Margin j's basis at xj in its constrained coordinates (``ti``), before ``V_j``."""
        B = self._margins[j].raw_basis(xj)
        return B if self._Qc[j] is None else B @ self._Qc[j]

    def _fit_margin(self, j, xj):
        """Margin j's basis at the data and its generalized eigen-decomposition."""
        mg = self._margins[j]
        n_unique = len(np.unique(xj))
        if n_unique < 3:
            raise ValueError(f"{self.name}: margin {self.labels[j]} has {n_unique} distinct value(s); "
                             "a smooth needs at least 3.")
        if mg.basis in ("cr", "cc") and n_unique < mg.n_basis:
            raise ValueError(
                f"{self.name}: margin {self.labels[j]} (basis {mg.basis!r}, n_basis={mg.n_basis}) needs "
                f"at least {mg.n_basis} distinct values of its variable; it has {n_unique}. Lower its n_basis.")
        B = mg._setup(xj)
        if B is None:
            B = mg.raw_basis(xj)
        S = mg.S_raw_
        n_null = _NULL_DIM[mg.basis]
        Qc = None
        if self.interaction:  # the margin's own sum-to-zero constraint
            Q, _ = qr(B.sum(axis=0)[:, None])
            Qc = Q[:, 1:]
            B, S = B @ Qc, Qc.T @ S @ Qc
            n_null -= 1
        self._Qc.append(Qc)
        k = B.shape[1]
        M, P = np.eye(k), None
        if mg.basis not in _INTERPRETABLE:  # coefficients -> values at k evenly spaced points
            P = self._margin_basis(j, np.linspace(xj.min(), xj.max(), k))
            sv = np.linalg.svd(P, compute_uv=False)
            if sv[-1] / sv[0] < _REPARAM_TOL:
                warnings.warn(f"{self.name}: margin {self.labels[j]}'s reparameterization is unstable; "
                              "not done (as mgcv).", UserWarning, stacklevel=3)
                P = None
            else:
                M = P.T @ P
        d, V = eigh(0.5 * (S + S.T), 0.5 * (M + M.T))  # ascending; V'MV = I
        d[:n_null] = 0.0
        top = float(d[-1]) if k > n_null else 1.0
        # mgcv's coefficients of this margin (its values at the points when reparameterized)
        # from the eigen-coordinates gamma: B V gamma = (B P^-1) (P V gamma)
        self._to_mgcv.append(V if P is None else P @ V)
        return B, V, np.clip(d, 0.0, None) / top, top

    def fit(self, x):
        """Place knots, build the margins and the mixed-model split; returns self."""
        self.fit_design(x)
        return self

    def fit_design(self, x, by=None, constrain=True):
        """:meth:`fit`, returning :meth:`design` at the training values: ``(F, Z)``, the
        null-space columns (fixed effects) and the random part's columns.

        ``by`` multiplies the term (mgcv's ``te(x, z, by = w)``; for a factor's level, its 0/1
        indicator): the constraint of a ``te`` is taken before the product, from all the rows,
        as mgcv's ``smoothCon``; ``constrain=False`` (a numeric ``by``) keeps the constant in the
        null space, unconstrained."""
        x = self._as_columns(x)
        self._constrained = bool(constrain) and not self.interaction
        self._Qc, self._V, self._to_mgcv, G, ds, tops = [], [], [], [], [], []
        for j in range(self.n_margins):
            B, V, d, top = self._fit_margin(j, x[:, j])
            self._V.append(V)
            G.append(B @ V)
            ds.append(d)
            tops.append(top)
        self.margin_max_eigen_ = np.asarray(tops)
        # the penalty of each product coefficient (multi-index, first margin slowest)
        grids = np.meshgrid(*[np.arange(len(d)) for d in ds], indexing="ij")
        pen = np.array([d[g.ravel()] for d, g in zip(ds, grids)])  # (m, prod k)
        null = np.all(pen == 0.0, axis=0)
        self._null, self._rand = np.flatnonzero(null), np.flatnonzero(~null)
        T = row_kronecker(G)
        N = T[:, self._null]
        self._Qn = np.eye(N.shape[1])
        if self._constrained and N.shape[1]:
            # the constant lies in the joint null space: drop it there (sum-to-zero in that block)
            one = np.ones(len(T))
            coef, *_ = np.linalg.lstsq(N, one, rcond=None)
            if np.linalg.norm(N @ coef - one) > 1e-6 * np.sqrt(len(T)):
                raise ValueError(f"{self.name}: the margins' null spaces do not contain the constant.")
            Q, _ = qr(N.sum(axis=0)[:, None])
            self._Qn = Q[:, 1:]
        F = N @ self._Qn
        R = T[:, self._rand]
        # (te) the random columns moved along the null space into the constrained space, each
        # orthogonal to its null part in mgcv's coefficients: the same model, and ML becomes mgcv's
        self._centre = None
        if self._constrained and N.shape[1]:
            cN, cR = N.sum(axis=0), R.sum(axis=0)
            self._centre = (cN, cR / (cN @ cN))
            R = R - np.outer(N @ cN, self._centre[1])
        if by is not None:  # (the constraint above is the unmultiplied basis's, as mgcv's)
            b = np.asarray(by, dtype=float)[:, None]
            F, R = F * b, R * b
        a = pen[:, self._rand]
        # scale each random column so that its penalties sum to 1, then all of them so that the
        # mean diagonal of Z'Z is 1: Lambda = theta I at theta_l = theta, and theta = 1 is a
        # start from which the optimizer finds the optimum (as SmoothTerm's penalty_scale_)
        s = 1.0 / np.sqrt(a.sum(axis=0))
        self.penalties_ = a * s**2
        Zs = R * s
        c = float(np.mean(np.sum(Zs**2, axis=0))) if Zs.size else 1.0
        self._col_scale = s / np.sqrt(c)
        self.penalty_scale_ = np.full(self.n_margins, 1.0 / c)
        self.mgcv_first_ = self._mgcv_first_column(T.sum(axis=0))
        return F, Zs / np.sqrt(c)

    def _mgcv_first_column(self, sums):
        """The first column of mgcv's model matrix of this term (its margins' bases in mgcv's
        coefficients, their row-wise Kronecker product, and for ``te`` the sum-to-zero constraint
        absorbed by a Householder QR of the column sums, as ``smoothCon``), as coefficients of
        this term's columns ``[F, Z]``: Wood's test fixes the signs of its eigenvectors by their
        first elements in mgcv's basis (:func:`~sklmm._inference.smooth_tests.fractional_rank_test`).
        ``sums`` are the column sums of the training rows in the eigen-coordinates gamma."""
        inv = [np.linalg.inv(A) for A in self._to_mgcv]  # mgcv's coefficients -> gamma, per margin
        K = inv[0]
        for A in inv[1:]:
            K = np.kron(K, A)
        z = np.zeros(K.shape[0])
        if not self._constrained:  # no constraint on the product (ti, a numeric by): its first column
            z[0] = 1.0
        else:  # the second column of the Householder reflection of the constraint (R's qr)
            C = sums @ K  # the column sums of mgcv's basis
            Q, _ = qr(C[:, None])
            z = Q[:, 1]
        g = K @ z  # in gamma
        g_null, g_rand = g[self._null], g[self._rand]
        h = g_null if self._centre is None else g_null + self._centre[0] * (self._centre[1] @ g_rand)
        return np.r_[self._Qn.T @ h, g_rand / self._col_scale]

    @property
    def n_fixed(self):
        return self._Qn.shape[1]

    @property
    def n_random(self):
        return len(self._rand)

    def design(self, x, by=None):
        """Fixed (null-space) and random columns of the smooth at x, shape (n, n_margins), times
        ``by`` when given."""
        x = self._as_columns(x)
        T = row_kronecker([self._margin_basis(j, x[:, j]) @ self._V[j] for j in range(self.n_margins)])
        N, R = T[:, self._null], T[:, self._rand]
        if self._centre is not None:
            R = R - np.outer(N @ self._centre[0], self._centre[1])
        F, Z = N @ self._Qn, R * self._col_scale
        if by is not None:
            b = np.asarray(by, dtype=float)[:, None]
            F, Z = F * b, Z * b
        return F, Z

    # -- the random-effect term and the smoothing parameters --------------------------------
    def random_term(self, Z, levels=None):
        """The engine's term for the random columns Z (from :meth:`fit_design`)."""
        n, r = Z.shape
        return RandomTerm(
            name=self.name, levels=np.array([self.name]) if levels is None else levels,
            codes=np.zeros(n, dtype=np.intp), values=Z,
            column_names=[f"{self.name}.{i}" for i in range(r)], correlated=False, scalar=True,
            penalties=self.penalties_, penalty_names=list(self.labels),
        )

    def lambda_from_theta(self, theta):
        """One smoothing parameter per margin (mgcv's ``sp / S.scale``), inf where theta is 0."""
        theta = np.asarray(theta, dtype=float).reshape(-1)
        with np.errstate(divide="ignore"):
            return 1.0 / (theta**2 * self.penalty_scale_)

    def theta_from_lambda(self, lam):
        """theta for given smoothing parameters (one per margin; inf gives 0)."""
        lam = np.asarray(lam, dtype=float).reshape(-1)
        return 1.0 / np.sqrt(lam * self.penalty_scale_)
