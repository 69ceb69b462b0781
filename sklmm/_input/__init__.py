"""User data to arrays and terms: X and y checks, group labels, formulas, Dask collections.

Between the estimators (above) and the engine (below): everything here knows pandas and
scikit-learn's validation, and hands the engine plain arrays and
:class:`~sklmm._engine.terms.RandomTerm` objects. It imports from the engine only.
"""
