"""Which factorization of the PLS system a fit uses, chosen from the sizes of its terms.

Three factorizations (:mod:`~sklmm._engine.factor_dense`, :mod:`~sklmm._engine.factor_blocked`,
:mod:`~sklmm._engine.factor_cholmod`) share one interface: ``update(theta)`` returns a
:class:`~sklmm._engine.system.Factorization` (or None where the system is not positive
definite), ``solve()`` the conditional beta and spherical modes u, ``fixed_part()`` the
fixed-effect block of the factor and ``whitened_norms(Az, Ax)`` the norms ``|L^{-1} a|^2``;
``name`` is what the estimators report as ``solver_``.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import factor_cholmod
from .factor_blocked import BlockedFactor, schur_costs
from .factor_cholmod import CholmodFactor
from .factor_dense import DenseFactor
from .threads import blas_limit

__all__ = ["make_factor", "choose_solver", "check_cost", "evaluation_costs", "DENSE_SYSTEM_LIMIT", "DENSE_REST_LIMIT",
           "DENSE_COST_LIMIT", "blas_threads"]


#: Above this many columns in the terms after the first, ``solver="auto"`` uses CHOLMOD
#: (when installed) rather than a dense Schur complement.
DENSE_REST_LIMIT = 3000


#: ``"auto"`` uses :class:`DenseFactor` when the augmented system has at most this many columns
DENSE_SYSTEM_LIMIT = 120


#: up to this many columns (32 MB a copy) ``"auto"`` also weighs the dense factorization's cost
#: against the blocked one's (:func:`evaluation_costs`)
DENSE_COST_LIMIT = 2000
def evaluation_costs(cp, terms):
    """Estimated flops of one evaluation by the dense and by the blocked factorization.

    Dense: the Cholesky of the whole system, ``m^3 / 3``, and the term-by-term scaling of its
    level blocks, ``2 m^2 p_k``. Blocked: the cheaper of its two Schur updates
    (:func:`~sklmm._engine.factor_blocked.schur_costs`) and the Cholesky of the block of the
    other terms. A maximal crossed model (kb07: 56 subjects and 32 items with four coefficients
    each, 357 columns) is cheapest blocked with dense Schur products; a model with many levels
    of one factor, blocked with the sparse ones."""
    m = sum(t.q for t in terms) + cp.p + 1
    dense = m**3 / 3.0 + 2.0 * m * m * max((t.n_coef for t in terms), default=1)
    if not terms:
        return dense, dense
    rest = sum(t.q for t in terms[1:]) + cp.p + 1
    return dense, min(schur_costs(cp, terms)) + rest**3 / 3.0


def choose_solver(cp, terms, solver="auto"):
    """The factorization ``"auto"`` takes: the dense Cholesky for small systems (at most
    :data:`DENSE_SYSTEM_LIMIT` columns) and for systems of at most :data:`DENSE_COST_LIMIT`
    columns where it is estimated cheaper than the blocked one (:func:`evaluation_costs`),
    the blocked Cholesky when the terms after the first have at most :data:`DENSE_REST_LIMIT`
    columns (or CHOLMOD is not installed), CHOLMOD otherwise. Any other value is returned as
    it is."""
    if solver != "auto":
        return solver
    rest = sum(t.q for t in terms[1:])
    m = sum(t.q for t in terms) + cp.p + 1
    if m <= DENSE_SYSTEM_LIMIT:
        return "dense"
    if m <= DENSE_COST_LIMIT:
        dense, blocked = evaluation_costs(cp, terms)
        if dense < blocked:
            return "dense"
    if factor_cholmod.HAS_CHOLMOD and rest > DENSE_REST_LIMIT:
        return "cholmod"
    return "blocked"


#: dense matrices of the block's size that a factorization keeps (the blocked factor: the
#: unscaled block, the working copy, and up to two for its Schur kernel: a second thread's
#: output and the update mirrored to the lower triangle; the dense factor: the system, Lambda,
#: two products)
DENSE_COPIES = {"blocked": 4, "dense": 4}
#: a fit asks for at most this share of the memory the machine has available
MEMORY_SHARE = 0.8
#: an evaluation estimated to take longer than this (seconds) is warned about
SLOW_EVALUATION = 1.0
_FLOP_RATE = []
#: below this many bytes a dense block is not checked against the available memory
SMALL_BLOCK_BYTES = 2**24


def _available_memory():
    """Bytes of memory available (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _flop_rate():
    """Floating-point operations per second of a dense Cholesky here, measured once."""
    if not _FLOP_RATE:
        import time

        A = np.eye(600) * 600.0 + 1.0
        t0 = time.perf_counter()
        for _ in range(3):
            np.linalg.cholesky(A)
        _FLOP_RATE.append(3 * 600**3 / 3.0 / max(time.perf_counter() - t0, 1e-6))
    return _FLOP_RATE[0]


def check_cost(cp, terms, solver):
    """Refuse a factorization whose dense block cannot fit in memory, with the estimate and the
    fix, before anything is allocated; warn when each evaluation will be slow.

    Returns the estimated seconds per evaluation (0 when the dense block is small)."""
    solver = choose_solver(cp, terms, solver)
    if solver not in DENSE_COPIES or not terms:
        return 0.0
    m = (sum(t.q for t in terms) if solver == "dense" else sum(t.q for t in terms[1:])) + cp.p + 1
    need = DENSE_COPIES[solver] * 8.0 * m * m
    fix = ("install scikit-sparse (CHOLMOD: pip install scikit-sparse, with apt-get install "
           "libsuitesparse-dev), which solver='auto' then uses for such designs, or use fewer levels"
           if not factor_cholmod.HAS_CHOLMOD else
           "use solver='cholmod' (or 'auto', which takes it for such designs), or fewer levels")
    avail = _available_memory() if need >= SMALL_BLOCK_BYTES else None  # (no file read for small)
    if avail is not None and need > MEMORY_SHARE * avail:
        raise MemoryError(
            f"the {solver} factorization needs a dense {m} x {m} block: about {need / 2**30:.1f} GiB, "
            f"and {avail / 2**30:.1f} GiB are available. The grouping factors after the first have "
            f"{m - cp.p - 1} random-effect columns in all; {fix}."
        )
    if m < 1500:
        return 0.0
    seconds = m**3 / 3.0 / _flop_rate()
    if seconds > SLOW_EVALUATION:
        warnings.warn(
            f"each evaluation of the criterion factors a dense {m} x {m} block, about {seconds:.0f} s "
            f"on this machine, and a fit takes some 20 to 100 evaluations; {fix}. verbose=1 shows "
            "the progress.",
            UserWarning,
            stacklevel=4,
        )
    return seconds


def blas_threads(terms, p):
    """The BLAS threading for a GLMM fit (penalized IRLS) on these terms and ``p`` fixed
    columns: a context."""
    return blas_limit(sum(t.q for t in terms[1:]) + p + 1)


def make_factor(cp, terms, solver="auto"):
    """Choose (:func:`choose_solver`) and build the factorization for these terms."""
    solver = choose_solver(cp, terms, solver)
    if solver == "blocked":
        return BlockedFactor(cp, terms)
    if solver == "cholmod":
        return CholmodFactor(cp, terms)
    if solver == "dense":
        return DenseFactor(cp, terms)
    raise ValueError(f"solver must be 'auto', 'blocked', 'cholmod' or 'dense'; got {solver!r}.")
