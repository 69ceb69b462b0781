"""
One smooth per level of a factor: ``s(x, by=f)``
================================================

Three groups (a factor ``f`` with levels a, b, c) follow different curves in x. mgcv's
``y ~ f + s(x, by = f)`` gives each level its own smooth, each with its own smoothing
parameter, so one level's curve may be nearly straight while another's is wiggly. Each of
those smooths is centred (sums to zero over the level's rows), so the levels' different means
belong to the factor's main effect, the parametric term ``f``: as in mgcv, write it too.
Without it every level is forced through the overall mean.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineRegressor, s

rng = np.random.default_rng(2)
n = 450
f = rng.choice(["a", "b", "c"], n)
x = rng.uniform(0, 1, n)
curves = {
    "a": lambda x: np.sin(2 * np.pi * x),  # wiggly
    "b": lambda x: 1.0 + 0.5 * x,  # a straight line, higher
    "c": lambda x: -0.5 + 2.0 * np.exp(-20 * (x - 0.7) ** 2),  # a bump, lower
}
mean = np.select([f == lev for lev in curves], [c(x) for c in curves.values()])
d = pd.DataFrame({"x": x, "f": pd.Categorical(f), "y": mean + rng.normal(scale=0.3, size=n)})

# %%
# The model
# ---------
# In a formula, ``by=f`` names a column of the data; ``f`` also enters as a parametric term
# (two dummy columns, level a the baseline). The smooths are named ``s(x):fa``, ``s(x):fb``,
# ``s(x):fc`` as in mgcv, each with its edf and smoothing parameter: REML takes level b's
# smooth to a straight line (edf 1, lambda infinite), the truth there.
gam = PenalizedSplineRegressor.from_formula("y ~ f + s(x, by=f, bs='cr')", d)
print(pd.DataFrame({"edf": gam.edf_, "lambda": gam.smoothing_params_}).to_string(float_format=lambda v: f"{v:.4g}"))
print(gam.fixed_effects_.round(3))

# %%
# Without the main effect, each level's curve is still centred over its own rows, so the levels
# cannot sit at different heights: the fit is much worse.
no_main = PenalizedSplineRegressor.from_formula("y ~ s(x, by=f, bs='cr')", d)
print(f"R^2 with f: {gam.score(d):.3f}; without f: {no_main.score(d):.3f}")

# %%
# The same model as term objects
# ------------------------------
# ``smooths=[s("x", by="f", bs="cr")]`` with a categorical column ``f`` in X (category, string
# or bool dtype; a numeric ``by`` column would multiply the smooth instead, a varying
# coefficient). Columns of X that no smooth reads enter linearly: here the dummy columns of the
# main effect. The fits are the same.
X = pd.concat([d[["x", "f"]], pd.get_dummies(d["f"], prefix="f", drop_first=True, dtype=float)], axis=1)
terms = PenalizedSplineRegressor(smooths=[s("x", by="f", bs="cr")]).fit(X, d["y"])
print("linear features:", terms.linear_features_)
print(f"largest difference from the formula's fit: {np.abs(terms.predict(X) - gam.predict(d)).max():.1e}")

# %%
# The curves
# ----------
# ``predict`` on a grid for each level: intercept + main effect + the level's smooth, with its
# posterior (Bayesian) 95% band, over the data and the true curves (dashed).
grid = np.linspace(0, 1, 200)
fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
for lev, color in zip(curves, ["C0", "C1", "C2"]):
    new = pd.DataFrame({"x": grid, "f": pd.Categorical([lev] * len(grid), categories=list(curves))})
    fit, se = gam.predict(new, return_std=True)
    rows = d["f"] == lev
    ax.scatter(d.loc[rows, "x"], d.loc[rows, "y"], s=6, color=color, alpha=0.35)
    ax.fill_between(grid, fit - 1.96 * se, fit + 1.96 * se, color=color, alpha=0.25, lw=0)
    ax.plot(grid, fit, color=color, lw=2, label=f"f = {lev}: edf {gam.edf_[f's(x):f{lev}']:.2f}")
    ax.plot(grid, curves[lev](grid), color=color, lw=1, ls="--")
ax.set(xlabel="x", ylabel="y", title="y ~ f + s(x, by=f)")
ax.legend()
# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("by_factor_smooths.png", dpi=110)
    print("saved by_factor_smooths.png")
