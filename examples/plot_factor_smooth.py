"""
A curve per subject: the factor-smooth interaction ``s(x, subject, bs="fs")``
=============================================================================

Repeated measurements on 20 subjects: each follows the population's curve in age, shifted,
tilted and bent in its own way. A random intercept per subject (gamm4's ``random = ~ (1 |
subject)``) catches the shifts but not the tilts or the bends. mgcv's factor-smooth
interaction ``s(age, subject, bs = "fs", xt = "cr")`` gives every subject its own smooth curve,
all sharing smoothing parameters: one for the wiggly part and one for each direction of the
penalty's null space (here a random intercept and a random slope on centred age). It is a
random-effect term for the engine, so it is fitted by REML like any other.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineRegressor

rng = np.random.default_rng(7)
n_subjects, n_visits = 20, 14
subject = np.repeat([f"s{i:02d}" for i in range(n_subjects)], n_visits)
age = rng.uniform(0, 10, n_subjects * n_visits)
shift, tilt = rng.normal(0, 1.0, n_subjects), rng.normal(0, 0.15, n_subjects)
bend, phase = rng.uniform(0.3, 0.8, n_subjects), rng.uniform(0, 2 * np.pi, n_subjects)
code = np.repeat(np.arange(n_subjects), n_visits)


def truth(age, i):
    population = 2.0 * np.log1p(age) - 0.02 * age**2
    return population + shift[i] + tilt[i] * (age - 5) + bend[i] * np.sin(age / 1.5 + phase[i])


d = pd.DataFrame({"age": age, "subject": pd.Categorical(subject),
                  "y": truth(age, code) + rng.normal(0, 0.25, len(age))})

# %%
# Two GAMMs
# ---------
# A population smooth with random intercepts, and the same smooth with a curve per subject.
intercepts = PenalizedSplineRegressor.from_formula("y ~ s(age, bs='cr') + (1 | subject)", d)
curves = PenalizedSplineRegressor.from_formula(
    "y ~ s(age, bs='cr') + s(age, subject, bs='fs', xt='cr', k=6)", d)
print(curves.summary())

# %%
# The per-subject curves are closer to the truth: the root mean squared error of the fitted
# curves against each subject's true curve, on a grid of ages.
grid = np.linspace(0, 10, 101)
new = pd.DataFrame({"age": np.tile(grid, n_subjects),
                    "subject": pd.Categorical(np.repeat(d["subject"].cat.categories, len(grid)),
                                              categories=d["subject"].cat.categories)})
true = truth(new["age"].to_numpy(), new["subject"].cat.codes.to_numpy())
for name, est in [("(1 | subject)", intercepts), ("s(age, subject, bs='fs')", curves)]:
    rmse = np.sqrt(np.mean((est.predict(new) - true) ** 2))
    print(f"{name:<26} RMSE against the true curves: {rmse:.3f}")

# %%
# The curves
# ----------
# ``plot_partial_dependence`` draws the population smooth with its band, and for the ``fs``
# term one deviation curve per subject (not centred: it holds the subject's shift too; drawn as
# mgcv draws them, without bands); the data
# and fitted curves of four subjects on the right.
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
curves.plot_partial_dependence(ax=axes[:2])
for name, color in zip(d["subject"].cat.categories[:4], ["C0", "C1", "C2", "C3"]):
    rows = d["subject"] == name
    at = pd.DataFrame({"age": grid, "subject": pd.Categorical([name] * len(grid),
                                                              categories=d["subject"].cat.categories)})
    axes[2].scatter(d.loc[rows, "age"], d.loc[rows, "y"], s=10, color=color)
    axes[2].plot(grid, curves.predict(at), color=color, lw=2, label=name)
    axes[2].plot(grid, truth(grid, list(d["subject"].cat.categories).index(name)), color=color, lw=1, ls="--")
axes[2].set(xlabel="age", ylabel="y", title="fitted (solid) and true (dashed)")
axes[2].legend(fontsize="small")
# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("factor_smooth.png", dpi=110)
    print("saved factor_smooth.png")
