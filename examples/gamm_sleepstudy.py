"""
A GAMM: a smooth effect of days plus a random intercept per subject
===================================================================

gamm4's ``Reaction ~ s(Days, bs = "cr", k = 5), random = ~ (1 | Subject)``: the smooth's
variance and the subjects' variance are estimated together by REML. On sleepstudy REML puts the
smooth's variance at zero: the effect of days is a straight line.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineRegressor
from sklmm.datasets import load_sleepstudy

s = load_sleepstudy()
gamm = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5)
gamm.fit(s[["Days"]], s["Reaction"], groups=s["Subject"])
print(gamm.summary())
print(gamm.partial_dependence(grid_resolution=5))

# %%
# The smooth is one more variance component: ``variance_components_`` lists it beside the
# subjects' intercepts and the residual (a variance of 0 for ``s(Days)``: a straight line).
print(gamm.variance_components_[["factor", "term", "variance", "std_dev"]])

# %%
# Left: the population curve (the smooth plus the intercept) with its 95% band, over the
# data. Right: the conditional curves, one per subject, which add each subject's random
# intercept to the population curve: parallel copies of it.
grid = pd.DataFrame({"Days": np.linspace(0, 9, 50)})
mean, se = gamm.predict(grid, return_std=True)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
ax0.scatter(s["Days"], s["Reaction"], s=8, color="0.6")
ax0.fill_between(grid["Days"], mean - 1.96 * se, mean + 1.96 * se, alpha=0.3, color="C0", lw=0)
ax0.plot(grid["Days"], mean, color="C0", lw=2)
ax0.set_title("population: s(Days)")
ax0.set_xlabel("days")
ax0.set_ylabel("reaction (ms)")
for k, subject in enumerate(s["Subject"].cat.categories):
    ax1.plot(grid["Days"], gamm.predict(grid, groups=[subject] * len(grid)), color=f"C{k % 10}", lw=1)
ax1.plot(grid["Days"], mean, color="k", lw=2.5, label="population")
ax1.set_title("per subject: s(Days) + random intercept")
ax1.set_xlabel("days")
ax1.legend(fontsize=8)
fig.tight_layout()

# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("gamm_sleepstudy.png", dpi=110)
    print("saved gamm_sleepstudy.png")
