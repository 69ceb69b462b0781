"""Inference after a fit: one concept a module.

``covariance``   the covariance of the fixed effects, Satterthwaite df, the coefficient table
``parameters``   the variance parameters as standard deviations and correlations
``profile``      profile-likelihood intervals
``conditional``  conditional variances of random effects and predictions
``bootstrap``    simulation and the parametric bootstrap
``lrt``          likelihood-ratio tests
``smooth_summary``  a penalized spline model's posterior, edf and mgcv's ``summary.gam`` numbers
``smooth_tests``    significance of smooth terms (Wood 2013) and the basis-dimension check
``mixin``        the estimator methods and attributes that call them

Everything works from a fitted :class:`~sklmm._engine.fit.MixedFit` (its cross-products and
factorization); conventions are lme4's and lmerTest's (``docs/inference.md``), mgcv's for the
smooths. It imports from the engine and the input layer only.
"""
