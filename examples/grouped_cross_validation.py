"""
Cross-validation and grid search with groups: when do random effects help prediction?
=====================================================================================

A mixed model predicts in two ways. ``predict(X, groups=g)`` adds each group's conditional
mode (BLUP) to the fixed effects; ``predict(X)`` gives the population-level prediction, the
fixed effects alone. Random effects can only help for groups seen in ``fit``: a subject never
seen has a random effect of 0, its prior mean.

So the cross-validation splitter decides what is measured:

* ``KFold`` over rows puts days of every subject in both training and test folds: the
  subjects' BLUPs are known and improve the prediction a lot;
* a *forecast* split (train on days 0-6, test on days 7-9) asks for the future of known
  subjects, where the BLUPs help too;
* ``GroupKFold`` holds out whole subjects: every test subject is new, only the population part
  can predict, and the mixed model scores like an ordinary regression.

Metadata routing carries ``groups`` to the splitter, to ``fit`` and to ``score``; it is switched
on here inside ``sklearn.config_context`` (see the "Groups, pipelines and model selection" page
for the recipes with routing off).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_sleepstudy

df = load_sleepstudy()
X, y, g = df[["Days"]], df["Reaction"], df["Subject"]

# %%
# Three ways to split, computed once so that every model sees the same folds.
splits = {
    "KFold (rows)": list(KFold(5, shuffle=True, random_state=0).split(X)),
    "forecast (days 7-9)": [(np.flatnonzero(df["Days"] <= 6), np.flatnonzero(df["Days"] > 6))],
    "GroupKFold (subjects)": list(GroupKFold(6).split(X, y, groups=g)),
}

# %%
# Three models: ordinary least squares; the mixed model scored at the population level (its
# ``score`` request for ``groups`` switched off); the mixed model scored conditionally (the
# default: ``score`` receives ``groups``). The score is R^2.
results = []
with sklearn.config_context(enable_metadata_routing=True):
    models = {
        "LinearRegression": (LinearRegression(), {}),
        "mixed, population": (
            MixedLinearRegressor(random_slopes=["Days"]).set_score_request(groups=False), {"groups": g}),
        "mixed, conditional": (MixedLinearRegressor(random_slopes=["Days"]), {"groups": g}),
    }
    for split_name, cv in splits.items():
        for model_name, (model, params) in models.items():
            scores = cross_validate(model, X, y, cv=cv, params=params)["test_score"]
            results.append((split_name, model_name, scores.mean(), scores))
table = pd.DataFrame(results, columns=["split", "model", "R2", "folds"])
print(table.pivot(index="model", columns="split", values="R2").round(3))

# %%
# Under ``KFold`` and the forecast the conditional predictions are far better; under
# ``GroupKFold`` the three models coincide: for a new subject there is nothing but the
# population line. (On balanced data like these the mixed model's fixed effects equal the
# least-squares ones exactly; on unbalanced data they differ a little, being weighted by the
# estimated covariance.)
fig, ax = plt.subplots(figsize=(8, 4))
width = 0.26
for k, model_name in enumerate(models):
    rows = table[table["model"] == model_name]
    pos = np.arange(len(splits)) + (k - 1) * width
    ax.bar(pos, rows["R2"], width, label=model_name, alpha=0.85)
    for p, folds in zip(pos, rows["folds"]):
        ax.scatter(np.full(len(folds), p), folds, s=10, color="k", zorder=3)
ax.set_xticks(np.arange(len(splits)), list(splits))
ax.axhline(0, color="k", lw=0.8)
ax.set_ylabel("test R$^2$ (bars: mean; dots: folds)")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# Grid search
# -----------
# The same logic applies to choosing a model. Under ``KFold`` a grid search over the
# random-effect structure sees the gain of the random slopes; under ``GroupKFold`` every
# candidate predicts new subjects from the same fixed effects, so the scores tie and the
# "best" is arbitrary: compare such structures by their likelihood (AIC, or a likelihood-ratio
# test) instead.
grid = [{"random_slopes": [None]}, {"random_slopes": [["Days"]], "correlated_slopes": [True, False]}]
with sklearn.config_context(enable_metadata_routing=True):
    for split_name in ("KFold (rows)", "GroupKFold (subjects)"):
        search = GridSearchCV(MixedLinearRegressor(), grid, cv=splits[split_name])
        search.fit(X, y, groups=g)
        res = pd.DataFrame(search.cv_results_)[["params", "mean_test_score", "rank_test_score"]]
        print(f"\n{split_name}: best {search.best_params_}")
        print(res.to_string(index=False, float_format="%.6f"))

# %%
# The chosen model is refitted on all the data; its ``predict`` takes ``groups`` as usual. A
# subject not seen in ``fit`` is predicted at the population level (``unseen_groups=
# "population"``, lme4's ``allow.new.levels = TRUE``).
best = search.best_estimator_
new = pd.DataFrame({"Days": [0.0, 9.0]})
print(best.predict(new, groups=["308", "308"]), best.predict(new, groups=["new", "new"]), best.predict(new))

# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("grouped_cross_validation.png", dpi=110)
    print("saved grouped_cross_validation.png")
