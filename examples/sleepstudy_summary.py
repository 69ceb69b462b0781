"""
Sleep deprivation: random intercepts and slopes
===============================================

Fit lme4's ``Reaction ~ Days + (Days | Subject)`` on the sleepstudy data by REML and print
the lme4-style summary.
"""

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_sleepstudy

df = load_sleepstudy()
X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
model = MixedLinearRegressor(random_slopes=["Days"], reml=True).fit(X, y, groups=g)
print(model.summary())
print()
print("Conditional modes (first 5 subjects):")
print(model.random_effects_["Subject"].head())
