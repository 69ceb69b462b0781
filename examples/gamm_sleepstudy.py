"""
A GAMM: a smooth effect of days plus a random intercept per subject
===================================================================

gamm4's ``Reaction ~ s(Days, bs = "cr", k = 5), random = ~ (1 | Subject)``: the smooth's
variance and the subjects' variance are estimated together by REML. On sleepstudy REML puts the
smooth's variance at zero: the effect of days is a straight line.
"""

from sklmm import PenalizedSplineRegressor
from sklmm.datasets import load_sleepstudy

s = load_sleepstudy()
gamm = PenalizedSplineRegressor(smooth_features=["Days"], n_basis=5)
gamm.fit(s[["Days"]], s["Reaction"], groups=s["Subject"])
print(gamm.summary())
print(gamm.partial_dependence(grid_resolution=5))
