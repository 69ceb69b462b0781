"""
A cyclic smooth for a seasonal signal
=====================================

A daily temperature-like signal over the day of the year, smoothed with a cyclic cubic
regression spline (``basis="cc"``, mgcv's ``bs="cc"``) whose period is the year:
``knots={"doy": (0, 365)}`` gives its two ends, so that 31 December and 1 January meet with the
same value, slope and curvature. An ordinary cubic regression spline (``basis="cr"``) fitted to
the same data does not know that the ends meet; drawn over two consecutive years, it jumps at
the new year.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklmm import PenalizedSplineRegressor

rng = np.random.default_rng(0)
doy = rng.uniform(0, 365, 300)
season = 10 - 8 * np.cos(2 * np.pi * (doy - 5) / 365) + 1.5 * np.sin(4 * np.pi * doy / 365)
d = pd.DataFrame({"doy": doy, "temp": season + rng.normal(scale=2.0, size=doy.size)})

cc = PenalizedSplineRegressor(basis="cc", n_basis=12, knots={"doy": (0, 365)}).fit(d[["doy"]], d["temp"])
cr = PenalizedSplineRegressor(basis="cr", n_basis=12).fit(d[["doy"]], d["temp"])

# two years: the cyclic smooth's prediction wraps day 365 + t around to day t
days = np.linspace(0, 730, 731)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained", width_ratios=[2, 1])
for ax in axes:
    for shift in (0, 365):
        ax.scatter(d["doy"] + shift, d["temp"], s=6, color="grey", alpha=0.5)
for model, name in [(cc, 'basis="cc"'), (cr, 'basis="cr"')]:
    one_year = model.predict(pd.DataFrame({"doy": np.r_[0.0, 365.0]}))
    print(f"{name}: edf {model.edf_.iloc[0]:.2f}, f(365) - f(0) = {one_year[1] - one_year[0]:+.3f}")
    # the cr spline is drawn year by year from its one-year curve (beyond its knots it would
    # continue linearly); the cc spline's own prediction wraps around the period
    x = days if model is cc else np.mod(days, 365)
    for ax in axes:
        ax.plot(days, model.predict(pd.DataFrame({"doy": x})), lw=2, label=name)
for ax in axes:
    ax.axvline(365, color="k", lw=0.8, ls=":")
    ax.set_xlabel("day (two years)")
axes[0].set_ylabel("temperature")
axes[0].legend()
axes[1].set(xlim=(305, 425), ylim=(-1, 8), title="the new year, closer")
# Run as a script this saves the figure; the documentation gallery shows it instead.
if "sphinx_gallery" not in sys.modules:
    fig.savefig("cyclic_smooth.png", dpi=110)
    print("saved cyclic_smooth.png")
