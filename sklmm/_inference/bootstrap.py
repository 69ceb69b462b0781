"""Simulation from the fitted model (lme4 ``simulate``) and the parametric bootstrap (``bootMer``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._engine.crossprod import _by_level
from .._engine.fit import _refit
from .._engine.terms import templates
from .parameters import parameter_names, sdcor_of_fit

__all__ = ["TrainingDesign", "simulate_responses", "bootstrap_replicates", "percentile_intervals"]


@dataclass
class TrainingDesign:
    """The rows a fit came from, kept for simulation (lme4 keeps its model frame likewise).

    ``Xf`` holds every fixed-effect column (dropped, aliased ones included), ``codes`` the level
    index of each row per random-effect term (in the fit's term order), ``values`` the term's
    model-matrix rows (None for an intercept-only term: a column of ones).
    """

    Xf: np.ndarray
    codes: list
    values: list
    sample_weight: np.ndarray | None = None

    @classmethod
    def from_terms(cls, Xf, terms, sample_weight=None):
        values = [None if (t.values.shape[1] == 1 and t.intercept) else t.values for t in terms]
        return cls(Xf=Xf, codes=[t.codes for t in terms], values=values, sample_weight=sample_weight)

    def term_values(self, k):
        v = self.values[k]
        return np.ones((self.Xf.shape[0], 1)) if v is None else v

    def random_part(self, b):
        """``Z b`` for per-term coefficient arrays ``b[k]`` of shape (n_levels_k, p_k)."""
        out = np.zeros(self.Xf.shape[0])
        for k, bk in enumerate(b):
            out += np.einsum("ij,ij->i", self.term_values(k), bk[self.codes[k]])
        return out


def _draw_random_effects(fit, rng):
    """New random effects ``b_k = (u_k T_k')``, ``u ~ N(0, sigma^2 I)``, per term."""
    return [
        fit.sigma * rng.standard_normal((t.n_levels, t.n_coef)) @ T.T
        for t, T in zip(fit.terms, templates(fit.terms, fit.theta))
    ]


def simulate_responses(fit, design, n_draws, rng):
    """lme4's ``simulate``: responses with new random effects and residuals, (n, n_draws)."""
    n = design.Xf.shape[0]
    mean = design.Xf @ fit.beta
    out = np.empty((n, n_draws))
    sigma = fit.user_sigma()  # per unit of the user's weights
    sd = sigma / np.sqrt(design.sample_weight) if design.sample_weight is not None else sigma
    for d in range(n_draws):
        out[:, d] = mean + design.random_part(_draw_random_effects(fit, rng)) + sd * rng.standard_normal(n)
    return out


def _with_response(fit, design, y):
    """The fit's cross-products with the response replaced by ``y`` (Z and X parts reused)."""
    cp = copy.copy(fit.cp)
    w = design.sample_weight  # in the fit's units: divided by their geometric mean, as fit.cp's
    yw = y if w is None else y * (w / fit.sigma_scale**2)
    X = design.Xf[:, fit.keep]
    xy = np.append(X.T @ yw, y @ yw)
    cp.xyxy = cp.xyxy.copy()
    cp.xyxy[-1, :] = xy
    cp.xyxy[:, -1] = xy
    cp.zxy = []
    for k, (t, zxy) in enumerate(zip(fit.terms, fit.cp.zxy)):
        z = zxy.copy()
        z[:, :, -1] = _by_level(design.codes[k], design.term_values(k), yw[:, None], t.n_levels)[:, :, 0]
        cp.zxy.append(z)
    return cp


def _bootstrap_chunk(fit, design, fe_names, solver, seeds):
    kept_names = [fe_names[j] for j in fit.keep]
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        y = simulate_responses(fit, design, 1, rng)[:, 0]
        try:
            f = _refit(fit, _with_response(fit, design, y), kept_names, solver)
            rows.append(np.concatenate([sdcor_of_fit(f), f.beta]))
        except (ValueError, np.linalg.LinAlgError):
            rows.append(np.full(len(fit.theta) + 1 + len(fit.keep), np.nan))
    return rows


def bootstrap_replicates(fit, design, fe_names, n_boot, random_state, n_jobs, progress):
    """Parametric bootstrap (lme4 ``bootMer``): refit to ``n_boot`` simulated responses.

    Each replicate reuses the fit's cross-products of Z and X (only the response's are
    recomputed) and starts the optimizer at the fitted theta. Replicates run in parallel with
    joblib in chunks; ``progress`` shows a tqdm bar over chunks.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from sklearn.utils import check_random_state
    from tqdm.auto import tqdm

    rng = check_random_state(random_state)
    seeds = rng.randint(0, 2**31 - 1, size=n_boot)  # one seed per replicate: same draws for any n_jobs
    n_chunks = min(n_boot, max(4 * effective_n_jobs(n_jobs), n_boot // 25))
    chunks = [c for c in np.array_split(seeds, n_chunks) if len(c)]
    gen = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_bootstrap_chunk)(fit, design, fe_names, fit.factor.name, c) for c in chunks
    )
    rows = []
    with tqdm(total=n_boot, disable=not progress, desc="bootstrap", unit="fit") as bar:
        for res, c in zip(gen, chunks):
            rows.extend(res)
            bar.update(len(c))
    cols = parameter_names(fit.terms) + [fe_names[j] for j in fit.keep]
    return pd.DataFrame(np.asarray(rows), columns=cols)


def percentile_intervals(replicates, estimates, level):
    """Percentile intervals of bootstrap replicates (lme4 ``confint(method="boot", boot.type="perc")``)."""
    a = (1.0 - level) / 2.0
    ok = replicates.dropna()
    lo = ok.quantile(a)
    hi = ok.quantile(1.0 - a)
    return pd.DataFrame({"estimate": estimates, "lower": lo, "upper": hi}).rename_axis("parameter")
