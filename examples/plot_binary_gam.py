"""
A binary GAMM: contraceptive use in Bangladesh
==============================================

The Contraception data (mlmRev; 1,934 women in 60 districts of Bangladesh, 1988): whether a
woman uses contraception (``use``, "N"/"Y") by her age (centred), her number of living
children (``livch``: 0, 1, 2, 3+) and whether she lives in a town (``urban``), with a random
intercept per district. The effect of age is not linear, so it gets a smooth on the logit
scale: mgcv's

.. code-block:: r

    gam(use ~ s(age, bs = "cr", k = 10) + livch + urban + s(district, bs = "re"),
        family = binomial, data = Contraception, method = "REML")

or gamm4's ``gamm4(use ~ s(age, bs = "cr", k = 10) + livch + urban, random = ~ (1 | district),
family = binomial)``. :class:`~sklmm.PenalizedSplineClassifier` fits both from one formula:
``reml=True`` (the default) maximizes the Laplace approximate REML of Wood (2011), as mgcv's
``method = "REML"``; ``reml=False`` the Laplace likelihood, as gamm4 (through glmer).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineClassifier
from sklmm.datasets import load_contraception

d = load_contraception()
formula = "use ~ s(age, bs='cr', k=10) + livch + urban + (1 | district)"
gam = PenalizedSplineClassifier.from_formula(formula, d)  # mgcv's Laplace REML
print(gam.summary())

# %%
# The labels ``"N"``/``"Y"`` come from the formula's response: ``classes_`` holds them, the
# second is the positive class, and ``predict`` returns labels. ``score`` is the accuracy, as
# for every scikit-learn classifier; ``deviance_explained_`` and ``r2_adj_`` are mgcv's.
print("classes:", gam.classes_, f" accuracy {gam.score(d):.3f}",
      f" deviance explained {gam.deviance_explained_:.3f}")

# %%
# REML or the likelihood
# ----------------------
# With ``reml=False`` the smoothing parameter and the district variance maximize the Laplace
# likelihood, gamm4's fit. ``criterion_`` is then ``-2 log L`` (glmer's scale); with
# ``reml=True`` it is twice the negative Laplace REML: the two are not comparable with each
# other. The estimates are close; REML, which accounts for the fixed effects estimated, gives a
# slightly larger district variance.
ml = PenalizedSplineClassifier.from_formula(formula, d, reml=False)
rows = {}
for name, m in [("reml=True (mgcv)", gam), ("reml=False (gamm4)", ml)]:
    vc = m.variance_components_.set_index("factor")
    rows[name] = {"criterion_": m.criterion_, "edf s(age)": m.edf_["s(age)"],
                  "lambda s(age)": m.smoothing_params_["s(age)"], "district sd": vc.loc["district", "std_dev"],
                  "urban[T.Y]": m.fixed_effects_.loc["urban[T.Y]", "estimate"]}
print(pd.DataFrame(rows).round(4))

# %%
# The pictures
# ------------
# Left: the smooth of age on the logit scale with its 95% posterior band, centred (as mgcv's
# ``plot.gam``), from both fits. Right: predicted probabilities of use for a town and a rural
# woman with no children and with three or more, at the population level (no ``district``
# column: the district effect at 0). ``linear_predictor(X, return_std=True)`` gives the logit
# and its standard error; the band's ends are transformed to probabilities.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
gam.plot_partial_dependence(ax=axes[0])
axes[0].get_lines()[0].set_label("reml=True, 95% band")
curve = ml.partial_dependence()
axes[0].plot(curve["x"], curve["estimate"], color="k", ls="--", lw=1.2, label="reml=False")
axes[0].set(xlabel="age (centred, years)", ylabel="s(age), logit scale", title="the smooth of age")
axes[0].legend(loc="lower center", bbox_to_anchor=(0.5, 0.08))
age = np.linspace(d["age"].min(), d["age"].max(), 100)
for (livch, urban), color in zip([("0", "Y"), ("3+", "Y"), ("0", "N"), ("3+", "N")], ["C0", "C1", "C2", "C3"]):
    new = pd.DataFrame({"age": age, "livch": livch, "urban": urban})
    eta, se = gam.linear_predictor(new, return_std=True)
    axes[1].fill_between(age, 1 / (1 + np.exp(-(eta - 1.96 * se))), 1 / (1 + np.exp(-(eta + 1.96 * se))),
                         color=color, alpha=0.2, lw=0)
    axes[1].plot(age, gam.predict_proba(new)[:, 1], color=color, lw=2,
                 label=f"livch {livch}, {'urban' if urban == 'Y' else 'rural'}")
axes[1].set(xlabel="age (centred, years)", ylabel="P(use = Y)", title="predicted probability (population)")
axes[1].legend()
# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("binary_gam.png", dpi=110)
    print("saved binary_gam.png")
