"""
A tensor product smooth and its ANOVA decomposition
===================================================

A surface ``f(x, z)`` of two variables measured in different units (here x in [0, 10], z in
[0, 1]) is a tensor product smooth, mgcv's ``te(x, z)``: each variable gets its own marginal
basis (a cubic regression spline with ``k = 5`` by default) and its own smoothing parameter, so
the surface may be wiggly along one variable and smooth along the other, and rescaling a
variable does not change the fit. sklmm fits it as one random-effect term with a diagonal
covariance, one variance parameter per margin, by REML.

``ti(x) + ti(z) + ti(x, z)`` splits the same kind of surface into two main effects and a pure
interaction (mgcv's ``ti``, an ANOVA decomposition): its test says whether the interaction is
needed beyond the additive model.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineRegressor, likelihood_ratio_test, te

rng = np.random.default_rng(1)
n = 400
x = rng.uniform(0, 10, n)
z = rng.uniform(0, 1, n)
# two main effects and an interaction: the bump in x moves with z
f = np.sin(x / 2) + 2 * (z - 0.5) ** 2 + 0.8 * np.exp(-((x - 3 - 4 * z) ** 2) / 2)
d = pd.DataFrame({"x": x, "z": z, "y": f + rng.normal(scale=0.3, size=n)})

# %%
# The tensor product
# ------------------
# ``smooths=[te("x", "z")]`` is the estimator's way to write mgcv's ``gam(y ~ te(x, z),
# method = "REML")`` (a formula, ``"y ~ te(x, z)"``, makes the same term). There are two
# smoothing parameters, one per margin, named ``te(x,z)1`` (x) and ``te(x,z)2`` (z).
gam = PenalizedSplineRegressor(smooths=[te("x", "z")]).fit(d[["x", "z"]], d["y"])
# Its basis has 5 x 5 = 25 functions, 24 after the constant is left to the intercept.
print(f"te(x,z): edf {gam.edf_['te(x,z)']:.2f}, sigma {gam.sigma_:.3f}")
print(gam.smoothing_params_.round(3))

# %%
# The ANOVA decomposition
# -----------------------
# ``ti(x)`` and ``ti(z)`` are the main effects (one-variable smooths), ``ti(x, z)`` the
# interaction without them: a product of the two margins after each has absorbed its own
# sum-to-zero constraint. Its approximate test (Wood 2013, mgcv's ``summary.gam``) is the test
# of the additive model ``ti(x) + ti(z)`` against the surface.
anova = PenalizedSplineRegressor.from_formula("y ~ ti(x) + ti(z) + ti(x, z)", d)
print(anova.smooth_tests_.to_string(float_format=lambda v: f"{v:.4g}"))
print(f"sum of the ti edf {anova.edf_.sum():.2f} (te: {gam.edf_.iloc[0]:.2f})")

# %%
# The same question as a comparison of two models, as mgcv's ``anova(additive, surface, test =
# "F")`` asks it: each model's residual df counts the uncertainty of its smoothing parameters
# (``edf2_total_``), and mgcv's ``AIC()`` is ``corrected_aic_``.
additive = PenalizedSplineRegressor.from_formula("y ~ ti(x) + ti(z)", d)
print(likelihood_ratio_test(additive, anova, test="F"))
print(f"AIC: additive {additive.corrected_aic_:.1f}, with ti(x, z) {anova.corrected_aic_:.1f}")

# %%
# The pictures
# ------------
# ``plot_partial_dependence`` draws a smooth of two variables as a contour map of its
# estimate with the contours of estimate +- one standard error dashed (as mgcv's ``plot.gam``)
# and the data as dots; one-variable smooths as curves with a 95% band.
fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), layout="constrained")
gam.plot_partial_dependence(ax=axes[0, 0])
# (the ti model's three smooths, in the order of the formula: ti(x), ti(z), ti(x, z))
anova.plot_partial_dependence(ax=[axes[1, 0], axes[1, 1], axes[0, 1]])
for a, title in zip(axes.ravel(), ["te(x, z)", "ti(x, z): the interaction alone", "ti(x)", "ti(z)"]):
    a.set_title(title)
# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("tensor_product.png", dpi=110)
    print("saved tensor_product.png")

# %%
# A surface per group
# -------------------
# ``te(x, z, by=g)`` fits one surface per level of a factor ``g``, each with its own smoothing
# parameters (mgcv's ``y ~ g + te(x, z, by = g)``: the factor's main effect is a parametric
# term). Here the second group's surface lacks the moving bump: its edf is lower.
g = np.where(np.arange(n) % 2 == 0, "a", "b")
yg = np.where(g == "a", f, np.sin(x / 2) + 2 * (z - 0.5) ** 2) + rng.normal(scale=0.3, size=n)
dg = d.assign(g=pd.Categorical(g), y=yg)
by_group = PenalizedSplineRegressor.from_formula("y ~ g + te(x, z, by=g)", dg)
print(by_group.smooth_tests_.round(3))
