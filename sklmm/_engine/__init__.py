"""The engine: lme4's penalized least squares and the profiled criteria, on plain arrays.

Readable next to the seeds, and alone: it imports nothing from the rest of sklmm, no pandas and
no scikit-learn estimator code (numpy, scipy, nlopt, scikit-sparse; scikit-learn's warning
classes). Data flows through it in one direction:

``terms``          random-effect terms (a grouping factor's coefficients, or a penalized smooth):
                   their block of Z and the template of Lambda that theta fills
``smooth``         penalized spline bases (cr, ps, rk), their constraint and penalty, and the
                   split of a smooth into fixed and random parts
``crossprod``      the cross-products of [Z X y], formed once per fit (or summed over chunks)
``system``         the augmented PLS system and the block kernels its factors share
``factor_dense``, ``factor_blocked`` (with ``factor_schur``), ``factor_cholmod``
                   the three factorizations of the system at a theta; ``factor`` chooses one
``criteria``       the profiled deviance and REML criterion from a factorization
``start``          each theta's unit and the moment start
``optimize``       BOBYQA (nlopt) and its record
``checks``         the convergence checks at the optimum and the restarts they trigger
``fit``            one fit: cross-products -> optimum -> :class:`~sklmm._engine.fit.MixedFit`

A new model family (GLMMs: penalized IRLS, families, the Laplace approximation and quadrature;
``laml_iteration`` the outer iteration of a non-Gaussian GAM's Laplace REML, ``leverage`` the
rows' whitened norms it and prediction variances read) adds modules here that reuse the
factorizations with weighted cross-products; a new smooth basis
is a new case of :class:`~sklmm._engine.smooth.SmoothTerm`. See ``docs/architecture.md``.
"""
