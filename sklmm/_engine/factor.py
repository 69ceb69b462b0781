"""Which factorization of the PLS system a fit uses, chosen from the sizes of its terms.

Three factorizations (:mod:`~sklmm._engine.factor_dense`, :mod:`~sklmm._engine.factor_blocked`,
:mod:`~sklmm._engine.factor_cholmod`) share one interface: ``update(theta)`` returns a
:class:`~sklmm._engine.system.Factorization` (or None where the system is not positive
definite), ``solve()`` the conditional beta and spherical modes u, ``fixed_part()`` the
fixed-effect block of the factor and ``whitened_norms(Az, Ax)`` the norms ``|L^{-1} a|^2``;
``name`` is what the estimators report as ``solver_``.
"""

from __future__ import annotations

from . import factor_cholmod
from .factor_blocked import BlockedFactor
from .factor_cholmod import CholmodFactor
from .factor_dense import DenseFactor

__all__ = ["make_factor", "DENSE_SYSTEM_LIMIT", "DENSE_REST_LIMIT"]


#: Above this many columns in the terms after the first, ``solver="auto"`` uses CHOLMOD
#: (when installed) rather than a dense Schur complement.
DENSE_REST_LIMIT = 3000


#: ``"auto"`` uses :class:`DenseFactor` when the augmented system has at most this many columns
DENSE_SYSTEM_LIMIT = 120


def make_factor(cp, terms, solver="auto"):
    """Choose and build the factorization for these terms.

    ``"auto"`` takes the dense Cholesky for small systems (at most :data:`DENSE_SYSTEM_LIMIT`
    columns), the blocked Cholesky when the terms after the first have at most
    :data:`DENSE_REST_LIMIT` columns (or CHOLMOD is not installed), CHOLMOD otherwise.
    """
    if solver == "auto":
        rest = sum(t.q for t in terms[1:])
        if sum(t.q for t in terms) + cp.p + 1 <= DENSE_SYSTEM_LIMIT:
            solver = "dense"
        elif factor_cholmod.HAS_CHOLMOD and rest > DENSE_REST_LIMIT:
            solver = "cholmod"
        else:
            solver = "blocked"
    if solver == "blocked":
        return BlockedFactor(cp, terms)
    if solver == "cholmod":
        return CholmodFactor(cp, terms)
    if solver == "dense":
        return DenseFactor(cp, terms)
    raise ValueError(f"solver must be 'auto', 'blocked', 'cholmod' or 'dense'; got {solver!r}.")
