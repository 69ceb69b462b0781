"""
Group labels as columns of X: a Pipeline that every scikit-learn tool can use
==============================================================================

``groups=`` is metadata, and scikit-learn passes metadata to ``fit`` but not always to
``predict`` and ``score``: ``cross_val_predict``, string scorers, ``permutation_importance`` and
``PartialDependenceDisplay`` would see population-level predictions only. Naming the label
columns of X with ``group_columns`` makes the labels travel inside X instead, so all of them
predict conditionally, with metadata routing off (scikit-learn's default).

The recipe for preprocessing: a ``ColumnTransformer`` transforms the features and passes the
label column through untouched (``remainder="passthrough"``), with pandas output so that the
columns keep their names.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.compose import ColumnTransformer
from sklearn.inspection import PartialDependenceDisplay, permutation_importance
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklmm import MixedLinearRegressor
from sklmm.datasets import load_sleepstudy

df = load_sleepstudy()
X, y = df[["Days", "Subject"]], df["Reaction"]  # the labels are a column of X

ct = ColumnTransformer([("scale", StandardScaler(), ["Days"])], remainder="passthrough",
                       verbose_feature_names_out=False).set_output(transform="pandas")
pipe = make_pipeline(ct, MixedLinearRegressor(random_slopes=["Days"], group_columns="Subject"))

# %%
# Out-of-fold predictions. With ``KFold`` over rows every test subject was seen in training,
# so its random intercept and slope improve the prediction; the same model given groups
# through ``groups=`` would have its out-of-fold predictions at the population level.
cv = KFold(5, shuffle=True, random_state=0)
conditional = cross_val_predict(pipe, X, y, cv=cv)
population = cross_val_predict(make_pipeline(StandardScaler(), MixedLinearRegressor()), X[["Days"]], y, cv=cv,
                               params={"mixedlinearregressor__groups": df["Subject"]})
print(f"out-of-fold R^2: conditional {r2_score(y, conditional):.3f}, population {r2_score(y, population):.3f}")

# %%
# A grid search scores each candidate conditionally, and any scorer works.
search = GridSearchCV(pipe, {"mixedlinearregressor__correlated_slopes": [True, False]}, cv=cv,
                      scoring="neg_mean_absolute_error").fit(X, y)
print("best:", search.best_params_, f"MAE {-search.best_score_:.2f} ms")

# %%
# Permutation importance: shuffling the subject labels costs what the subjects' random effects
# add to the prediction; shuffling the days costs the trend.
fitted = search.best_estimator_
imp = permutation_importance(fitted, X, y, n_repeats=5, random_state=0)
for name, mean, sd in zip(X.columns, imp.importances_mean, imp.importances_std):
    print(f"{name:8s} importance {mean:.3f} +- {sd:.3f}")

# %%
# Partial dependence on ``Days``: the average curve and each subject's own (ICE), which carries
# its random intercept and slope.
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
PartialDependenceDisplay.from_estimator(fitted, X, ["Days"], kind="both", ax=ax,
                                        ice_lines_kw={"alpha": 0.3}, pd_line_kw={"color": "k"})
ax.set_ylabel("predicted reaction time (ms)")

# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("label_columns_pipeline.png", dpi=110)
    print("saved label_columns_pipeline.png")
