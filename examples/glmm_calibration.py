"""
A mixed logistic regression on new groups: population, marginal and conditional probabilities
=============================================================================================

VerbAgg (lme4's ``VerbAgg``): 316 subjects answer 24 questionnaire items on verbal aggression;
``r2`` is 1 when the answer is "perhaps" or "yes". lme4's model,
``glmer(r2 ~ Anger + Gender + btype + situ + mode + (1 | id) + (1 | item), family = binomial)``,
gives every subject and every item a random intercept on the log-odds scale.

A mixed logistic regression predicts three kinds of probability:

* **conditional**: for a subject seen in ``fit``, the fixed effects plus the subject's
  conditional mode (``predict_proba(X, groups=g)``);
* **population** (``unseen_groups="population"``, the default): for a new subject, the random
  effect set to 0, its mean. This is the probability of a *typical* subject, the one whose
  effect is exactly average;
* **marginal** (``unseen_groups="marginal"``): for a new subject, the probability averaged over
  the random effects' fitted normal distribution. This is the probability of a subject *drawn
  at random*, which is what the observed frequencies over many new subjects estimate.

The logistic curve is not linear, so the average of the probabilities is not the probability at
the average effect: the marginal probabilities are pulled toward 1/2. Here whole subjects are
held out (``GroupShuffleSplit``), and a calibration plot shows which prediction the new
subjects' answers agree with.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import GroupShuffleSplit

from sklmm import MixedLogisticRegression
from sklmm.datasets import load_verbagg

X, y, groups = load_verbagg(return_X_y=True)  # groups: the columns "id" (subject) and "item"
print(X.columns.tolist(), groups.columns.tolist())

# %%
# Five random splits. In each, 30% of the subjects are held out whole (they are new to the
# fit), and of the other subjects' rows a random 20% is held out too (their subjects are seen,
# so their conditional modes are known). Every item occurs in the training rows, so for the new
# subjects the item effects are as fitted and only the subject effect is unknown. The
# predictions of the five splits are pooled (a subject can be new in several of them).
#
# In each split, two fits that differ only in ``unseen_groups``: the parameter is used by
# prediction alone, so their estimates are identical. For the new subjects ``groups`` carries
# their ids (unseen levels, which follow ``unseen_groups``) and the items (seen levels); for the
# seen subjects both models give the same conditional probabilities.
names = ["population, new subjects", "marginal, new subjects", "conditional, seen subjects"]
pooled = {name: ([], []) for name in names}
rng = np.random.default_rng(0)
outer = GroupShuffleSplit(n_splits=5, test_size=0.3, random_state=0)
for train, unseen in outer.split(X, y, groups=groups["id"]):
    held = rng.random(len(train)) < 0.2
    seen, train = train[held], train[~held]
    marginal = MixedLogisticRegression(unseen_groups="marginal")
    population = clone(marginal).set_params(unseen_groups="population")
    marginal.fit(X.iloc[train], y.iloc[train], groups=groups.iloc[train])
    population.fit(X.iloc[train], y.iloc[train], groups=groups.iloc[train])
    assert np.array_equal(marginal.theta_, population.theta_)
    assert np.array_equal(marginal.coef_, population.coef_)
    for name, model, rows in zip(names, (population, marginal, marginal), (unseen, unseen, seen)):
        proba = model.predict_proba(X.iloc[rows], groups=groups.iloc[rows])[:, 1]
        pooled[name][0].append(proba)
        pooled[name][1].append(y.iloc[rows].to_numpy())
predictions = {name: (np.concatenate(p), np.concatenate(t)) for name, (p, t) in pooled.items()}

# the last split's estimates
print(marginal.variance_components_[["factor", "term", "variance", "std_dev"]])

# %%
# Scores, and the calibration slope: the coefficient of a logistic regression of the outcome on
# the predicted log-odds, 1 for calibrated predictions, below 1 for predictions that are too
# extreme.


def calibration_slope(t, p):
    logodds = np.log(p / (1 - p))[:, None]
    return LogisticRegression(C=np.inf, tol=1e-10).fit(logodds, t).coef_[0, 0]


scores = pd.DataFrame(
    {name: {"rows": len(t), "log loss": log_loss(t, p), "Brier": brier_score_loss(t, p),
            "calibration slope": calibration_slope(t, p)}
     for name, (p, t) in predictions.items()}).T
scores["rows"] = scores["rows"].astype(int)
print(scores.round(4))

# %%
# Left: the calibration plot (ten bins of equal size by predicted probability: the observed
# frequency of "yes" against the mean prediction in each bin). The population probabilities of
# new subjects are too extreme at both ends (a calibration slope well below 1): a typical
# subject answers more predictably than one drawn at random. The marginal probabilities follow
# the diagonal, up to the noise of the bins, and so do the conditional probabilities of seen
# subjects, whose own effects are known. Right: the same new-subject rows, marginal against
# population probability: the average over the subject effect pulls every probability toward
# 1/2, the more the further it is from 1/2.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.6))
ax0.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
styles = {"population, new subjects": ("C3", "o"), "marginal, new subjects": ("C0", "s"),
          "conditional, seen subjects": ("C2", "^")}
for name, (p, t) in predictions.items():
    frac, mean_pred = calibration_curve(t, p, n_bins=10, strategy="quantile")
    color, marker = styles[name]
    ax0.plot(mean_pred, frac, marker=marker, color=color, label=name)
ax0.set_xlabel("mean predicted probability (bin)")
ax0.set_ylabel("observed frequency of r2 = Y (bin)")
ax0.set_title("calibration")
ax0.legend(fontsize=8, loc="upper left")

p_pop, p_marg = predictions["population, new subjects"][0], predictions["marginal, new subjects"][0]
ax1.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
ax1.scatter(p_pop, p_marg, s=6, color="C0", alpha=0.5)
ax1.set_xlabel('population probability ("population": subject effect 0)')
ax1.set_ylabel('marginal probability ("marginal")')
ax1.set_title("new subjects: the marginal average pulls toward 1/2")
for ax in (ax0, ax1):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
fig.tight_layout()

# %%
# On the log-odds scale the pull is nearly a constant factor: the marginal log-odds are the
# population ones times about ``1 / sqrt(1 + 0.346 sd^2)`` (Zeger, Liang and Albert 1988), sd
# the standard deviation of the subject effects. Below, the least-squares slope of the one on
# the other (pooled over the splits) and that factor (the last split's sd); both are close to
# the calibration slope of the population probabilities in the table above.
sd = marginal.variance_components_.set_index("factor").loc["id", "std_dev"]
slope = np.polyfit(np.log(p_pop / (1 - p_pop)), np.log(p_marg / (1 - p_marg)), 1)[0]
print(f"slope {slope:.3f}; 1 / sqrt(1 + 0.346 sd^2) = {1 / np.sqrt(1 + 0.346 * sd**2):.3f}")

# %%
# Which to use: the marginal probability for a new group when the probabilities are read as
# frequencies (risk scores, expected counts, anything checked by calibration); the population
# probability when the question is about a typical group, or to compare with lme4's
# ``predict(fit, re.form = NA, type = "response")``, which is that probability. For groups seen
# in ``fit`` both are the conditional probability. ``decision_function`` returns the log-odds
# with the unseen effects at 0, whatever ``unseen_groups`` is.

# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("glmm_calibration.png", dpi=110)
    print("saved glmm_calibration.png")
