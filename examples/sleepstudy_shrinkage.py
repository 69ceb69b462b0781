"""
Sleepstudy: subject lines, the population line, and shrinkage
=============================================================

Eighteen subjects, ten days of sleep restriction each. Three ways to draw a line per subject:

* **no pooling**: a separate least-squares line per subject (10 points each);
* **complete pooling**: one line for everybody, the fixed effects (the population line);
* **partial pooling**: the mixed model's conditional line per subject, fixed effects plus the
  subject's conditional modes (BLUPs). Each is pulled from the subject's own line toward the
  population line, the more so the less the subject's data say: that is *shrinkage*.

The first part follows the seed walkthrough (Wood 2006, section 6.2): it computes the random
intercepts of ``Reaction ~ Days + (1 | Subject)`` by hand, as ``tau^2 Z' V^-1 (y - X beta)``,
and finds sklmm's ``random_effects_``.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_sleepstudy

df = load_sleepstudy()
X, y, g = df[["Days"]], df["Reaction"], df["Subject"]

# %%
# The seed's random-intercept model, by maximum likelihood
# ---------------------------------------------------------
# lme4: ``lmer(Reaction ~ Days + (1 | Subject), sleepstudy, REML = FALSE)``. The seed reports
# a subject standard deviation of 36.01, a residual one of 30.90 and fixed effects 251.41 and
# 10.47.
ri = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
vc = ri.variance_components_
print(vc[["factor", "term", "variance", "std_dev"]].round(2).to_string(index=False))
print("fixed effects:", round(ri.intercept_, 2), round(float(ri.coef_[0]), 2))

# %%
# The conditional modes by hand: with ``V = tau^2 Z Z' + sigma^2 I`` the BLUP of the random
# intercepts is ``tau^2 Z' V^-1 (y - X beta)`` (Wood 2006, section 6.2.4). The engine never
# forms ``V`` (it solves a penalized least-squares problem instead), but the numbers agree.
tau2 = vc.loc[vc["factor"] == "Subject", "variance"].item()
sigma2 = ri.sigma_**2
Z = pd.get_dummies(g).to_numpy(dtype=float)
V = tau2 * Z @ Z.T + sigma2 * np.eye(len(y))
resid = y.to_numpy() - ri.predict(X)  # y - X beta
by_hand = tau2 * Z.T @ np.linalg.solve(V, resid)
modes = pd.DataFrame({"by hand": by_hand, "random_effects_": ri.random_effects_["Subject"]["(Intercept)"]})
print(modes.head().round(2))

# %%
# For a random intercept the shrinkage has a closed form: a subject's mode is its mean
# residual times ``tau^2 / (tau^2 + sigma^2 / n_j)`` (here 10 days per subject), a factor below 1.
mean_resid = pd.Series(resid).groupby(g.to_numpy()).mean()
factor = tau2 / (tau2 + sigma2 / 10)
print(f"shrinkage factor tau^2 / (tau^2 + sigma^2 / 10) = {factor:.3f}")
print("largest difference from the modes:",
      float(np.abs(factor * mean_resid.to_numpy() - by_hand).max()))

# %%
# Random intercepts and slopes, by REML
# -------------------------------------
# ``Reaction ~ Days + (Days | Subject)``: each subject gets its own intercept and slope,
# drawn from a bivariate normal around the population line. The panels show each subject's
# data, its own least-squares line (dashed), its conditional line from the mixed model
# (solid) and the population line (grey).
m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
print(m.summary())

subjects = list(g.cat.categories)
own = {s: np.polyfit(df.loc[g == s, "Days"], df.loc[g == s, "Reaction"], 1)[::-1] for s in subjects}
blup = m.random_effects_["Subject"]
days = np.array([0.0, 9.0])
grid = pd.DataFrame({"Days": days})

fig, axes = plt.subplots(3, 6, figsize=(12, 6.5), sharex=True, sharey=True)
for ax, s in zip(axes.ravel(), subjects):
    rows = g == s
    ax.scatter(df.loc[rows, "Days"], df.loc[rows, "Reaction"], s=10, color="0.35")
    ax.plot(days, m.predict(grid), color="0.7", lw=2)
    ax.plot(days, own[s][0] + own[s][1] * days, "--", color="C1", lw=1.2)
    ax.plot(days, m.predict(grid, groups=[s, s]), color="C0", lw=1.6)
    ax.set_title(f"subject {s}", fontsize=8)
    ax.tick_params(labelsize=7)
for ax in axes[-1]:
    ax.set_xlabel("days", fontsize=8)
for ax in axes[:, 0]:
    ax.set_ylabel("reaction (ms)", fontsize=8)
handles = [plt.Line2D([], [], color="0.7", lw=2), plt.Line2D([], [], color="C1", ls="--"),
           plt.Line2D([], [], color="C0", lw=1.6)]
fig.legend(handles, ["population (fixed effects)", "subject's own least squares",
                     "mixed model (fixed + BLUP)"], loc="lower center", ncol=3, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.04, 1, 1))

# %%
# Shrinkage in the plane of intercepts and slopes
# -----------------------------------------------
# Each arrow starts at a subject's own least-squares (intercept, slope) and ends at its
# mixed-model estimate; the cross is the population. Subjects far from the population, or
# whose own line is uncertain, move the most. The ellipse is where 95% of subjects' lines lie
# according to the fitted random-effect covariance.
coef_own = np.array([own[s] for s in subjects])
coef_mixed = np.column_stack([m.intercept_ + blup["(Intercept)"], m.coef_[0] + blup["Days"]])

rows = m.variance_components_
sd0, sd1 = rows.loc[rows["term2"].isna() & (rows["factor"] == "Subject"), "std_dev"]
rho = rows["correlation"].dropna().item()
cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
angle = np.linspace(0, 2 * np.pi, 200)
ellipse = np.linalg.cholesky(cov) @ np.vstack([np.cos(angle), np.sin(angle)]) * np.sqrt(5.991)

fig2, ax = plt.subplots(figsize=(6, 5))
ax.plot(m.intercept_ + ellipse[0], m.coef_[0] + ellipse[1], color="0.75", lw=1)
for (a0, a1), (b0, b1) in zip(coef_own, coef_mixed):
    ax.annotate("", xy=(b0, b1), xytext=(a0, a1),
                arrowprops=dict(arrowstyle="->", color="C0", lw=1))
ax.scatter(*coef_own.T, s=18, color="C1", label="subject's own least squares", zorder=3)
ax.scatter(*coef_mixed.T, s=18, color="C0", label="mixed model (fixed + BLUP)", zorder=3)
ax.scatter([m.intercept_], [m.coef_[0]], marker="x", s=80, color="k", label="population", zorder=4)
ax.set_xlabel("intercept (ms)")
ax.set_ylabel("slope (ms per day)")
ax.legend(fontsize=8)
fig2.tight_layout()

# Run as a script this saves the figures; the documentation gallery shows them instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("sleepstudy_lines.png", dpi=110)
    fig2.savefig("sleepstudy_shrinkage.png", dpi=110)
    print("saved sleepstudy_lines.png and sleepstudy_shrinkage.png")
