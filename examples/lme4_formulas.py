"""
lme4 code, line for line
========================

``MixedLinearRegressor.from_formula(formula, data)`` reads lme4's formulas: the fixed part
through formulaic, the random-effect terms onto the estimator's own parameters. It returns a
fitted estimator, so lme4 sessions port one line at a time. Each block below shows the lme4
call in a comment and its sklmm equivalent; the figure at the end is lme4's
``dotplot(ranef(fit))``, the conditional modes sorted by size.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_pastes, load_penicillin, load_sleepstudy

sleepstudy = load_sleepstudy()

# %%
# ``fm1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)``; ``summary(fm1)``
fm1 = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", sleepstudy)
print(fm1.summary())

# %%
# The formula became constructor parameters (``get_params()``), so the same model can be
# built by hand, cloned and cross-validated like any scikit-learn estimator.
params = fm1.get_params()
print({k: params[k] for k in ("random_slopes", "correlated_slopes", "random_intercept", "reml")})

# %%
# ``fixef(fm1)``, ``VarCorr(fm1)``, ``ranef(fm1)$Subject``, ``sigma(fm1)``, ``getME(fm1, "theta")``
print(pd.Series([fm1.intercept_, *fm1.coef_], index=fm1.fixed_effects_names_))
print(fm1.variance_components_)
print(fm1.random_effects_["Subject"].head())
print("sigma:", round(fm1.sigma_, 4))
print(pd.Series(fm1.theta_, index=fm1.theta_names_))

# %%
# ``fm2 <- lmer(Reaction ~ Days + (Days || Subject), sleepstudy, REML = FALSE)``, and the
# correlated model by ML for comparison: ``AIC(fm1ML, fm2)``.
fm2 = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days || Subject)", sleepstudy, REML=False)
fm1_ml = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", sleepstudy, REML=False)
print(f"AIC: correlated {fm1_ml.aic_:.2f}, uncorrelated {fm2.aic_:.2f}")

# %%
# Predictions. ``predict(fm1, newdata)`` includes the random effects; ``re.form = NA`` leaves
# them out; ``allow.new.levels = TRUE`` (sklmm's default ``unseen_groups="population"``)
# predicts unknown subjects at the population level. With a formula fit, ``predict`` takes the
# data frame itself; the grouping columns are read from ``groups``.
newdata = pd.DataFrame({"Days": [0.0, 9.0, 9.0], "Subject": ["308", "308", "a new subject"]})
print(fm1.predict(newdata, groups=newdata))  # predict(fm1, newdata, allow.new.levels = TRUE)
print(fm1.predict(newdata))  # predict(fm1, newdata, re.form = NA)

# %%
# Crossed random effects: ``lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)``.
penicillin = load_penicillin()
fm3 = MixedLinearRegressor.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin)
print(fm3.summary())

# %%
# Nested random effects: ``lmer(strength ~ 1 + (1 | batch/cask), Pastes)``. The formula maps
# onto ``nested=True`` with the grouping columns outer to inner; the inner factor is named as
# lme4 names it, ``cask:batch``.
pastes = load_pastes()
fm4 = MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch/cask)", pastes)
print(fm4.summary())
print(fm4.random_effects_["cask:batch"].head(3))

# %%
# ``dotplot(ranef(fit))``: the conditional modes of each factor, sorted.
panels = [
    ("sleepstudy: Subject", fm1.random_effects_["Subject"]["(Intercept)"]),
    ("sleepstudy: Subject, Days", fm1.random_effects_["Subject"]["Days"]),
    ("Penicillin: plate", fm3.random_effects_["plate"]["(Intercept)"]),
    ("Pastes: batch", fm4.random_effects_["batch"]["(Intercept)"]),
]
fig, axes = plt.subplots(1, len(panels), figsize=(12, 5))
for ax, (title, modes) in zip(axes, panels):
    modes = modes.sort_values()
    ax.scatter(modes.to_numpy(), range(len(modes)), s=14, color="C0")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_yticks(range(len(modes)), [str(v) for v in modes.index], fontsize=6)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("conditional mode", fontsize=8)
fig.tight_layout()

# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("lme4_dotplot.png", dpi=110)
    print("saved lme4_dotplot.png")
