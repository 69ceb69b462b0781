"""Small example data sets for linear and generalized linear mixed models.

Each loader returns a fresh :class:`pandas.DataFrame`; with ``return_X_y=True`` it returns
``(X, y, groups)`` for the grouped data sets (``(X, y)`` for the others), the arguments of
``fit(X, y, groups=groups)``, and with ``as_frame=False`` numpy arrays, as scikit-learn's
loaders do.  Grouping columns are
``category`` columns; for the linear mixed model data sets their categories are
the sorted labels, which is the factor-level order R uses for these data.
Every numeric column is ``float64`` (as in R, where they are stored as
doubles, or as integers for ``VerbAgg``'s ``Anger``).

The generalized linear mixed model data sets (:func:`load_cbpp`,
:func:`load_grouseticks`, :func:`load_verbagg`, :func:`load_contraception`)
have factors whose R level order is not the sorted one (``mode``: ``"want"``,
``"do"``; integer labels ``"1"``, ``"2"``, ..., ``"10"``); every factor of theirs
is a ``category`` column with the categories in R's order, so the first
category is R's baseline level and
``pd.get_dummies(df[cols], drop_first=True)`` gives lme4's treatment-contrast
columns.  With ``return_X_y=True`` their ``X`` holds those columns, named as lme4
names them (``period2``, ``YEAR96``, ...).

The CSV files in ``sklmm/datasets/data`` are written by
``tools/make_datasets.R`` and ``tools/make_glmm_datasets.R``; see
``DATA_SOURCES.md`` next to this module for their provenance.
"""

from ._glmm import load_cbpp, load_contraception, load_grouseticks, load_verbagg
from ._io import _load, _split

__all__ = [
    "load_sleepstudy",
    "load_dyestuff",
    "load_penicillin",
    "load_pastes",
    "load_mcycle",
    "load_engine",
    "load_schools",
    "load_cbpp",
    "load_grouseticks",
    "load_verbagg",
    "load_contraception",
]


def load_sleepstudy(*, return_X_y=False, as_frame=True):
    """Reaction times in a sleep deprivation study.

    Average reaction time per day for 18 subjects in a sleep deprivation
    study.  On day 0 the subjects had their normal amount of sleep; from
    that night on they were restricted to 3 hours of sleep per night.
    Each subject has 10 observations (days 0 to 9), 180 rows in total.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the feature column(s)
        ``Days``, ``y`` ``Reaction`` with ``groups`` the column ``Subject``, ready for
        ``fit(X, y, groups=groups)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (180, 3)
        Columns:

        - ``Reaction`` (float64): average reaction time (ms).
        - ``Days`` (float64): number of days of sleep deprivation (0-9).
        - ``Subject`` (category): subject number, 18 levels
          ``"308"``, ``"309"``, ..., ``"372"``.

    References
    ----------
    Belenky, G., Wesensten, N. J., Thorne, D. R., Thomas, M. L., Sing, H. C.,
    Redmond, D. P., Russo, M. B. and Balkin, T. J. (2003). Patterns of
    performance degradation and restoration during sleep restriction and
    subsequent recovery: a sleep dose-response study. *Journal of Sleep
    Research* 12, 1-12.  Data as distributed in the R package lme4
    (``lme4::sleepstudy``).

    Examples
    --------
    >>> from sklmm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> df.shape
    (180, 3)
    >>> df["Subject"].cat.categories[:3].tolist()
    ['308', '309', '310']
    """
    df = _load("sleepstudy.csv", categorical=("Subject",))
    return _split(df, "Reaction", ["Days"], ["Subject"], return_X_y, as_frame)


def load_dyestuff(*, return_X_y=False, as_frame=True):
    """Yield of dyestuff by batch of an intermediate product.

    Yield of dyestuff (Naphthalene Black 12B) from 5 preparations from each
    of 6 batches of an intermediate product (H-acid); 30 rows.  The classic
    one-way random-effects example.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the feature column(s)
        (none: an (n, 0) frame), ``y`` ``Yield`` with ``groups`` the column ``Batch``, ready
        for ``fit(X, y, groups=groups)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (30, 2)
        Columns:

        - ``Batch`` (category): batch of intermediate product, levels
          ``"A"`` to ``"F"``.
        - ``Yield`` (float64): yield of dyestuff (grams of standard colour).

    References
    ----------
    Davies, O. L. and Goldsmith, P. L. (eds) (1972). *Statistical Methods in
    Research and Production*, 4th ed. Oliver and Boyd, Edinburgh.  Data as
    distributed in the R package lme4 (``lme4::Dyestuff``).

    Examples
    --------
    >>> from sklmm.datasets import load_dyestuff
    >>> df = load_dyestuff()
    >>> df.shape
    (30, 2)
    """
    df = _load("dyestuff.csv", categorical=("Batch",))
    return _split(df, "Yield", [], ["Batch"], return_X_y, as_frame)


def load_penicillin(*, return_X_y=False, as_frame=True):
    """Variation in penicillin potency: a fully crossed design.

    Diameter of the zone of growth inhibition for 6 samples of penicillin,
    each tested on each of 24 plates (144 rows).  ``plate`` and ``sample``
    are fully crossed grouping factors.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the feature column(s)
        (none: an (n, 0) frame), ``y`` ``diameter`` with ``groups`` the columns ``plate``,
        ``sample``, ready for ``fit(X, y, groups=groups)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (144, 3)
        Columns:

        - ``diameter`` (float64): diameter (mm) of the zone of inhibition.
        - ``plate`` (category): assay plate, levels ``"a"`` to ``"x"``.
        - ``sample`` (category): penicillin sample, levels ``"A"`` to ``"F"``.

    References
    ----------
    Davies, O. L. and Goldsmith, P. L. (eds) (1972). *Statistical Methods in
    Research and Production*, 4th ed. Oliver and Boyd, Edinburgh.  Data as
    distributed in the R package lme4 (``lme4::Penicillin``).

    Examples
    --------
    >>> from sklmm.datasets import load_penicillin
    >>> df = load_penicillin()
    >>> df.shape
    (144, 3)
    """
    df = _load("penicillin.csv", categorical=("plate", "sample"))
    return _split(df, "diameter", [], ["plate", "sample"], return_X_y, as_frame)


def load_pastes(*, return_X_y=False, as_frame=True):
    """Strength of a chemical paste product: a nested design.

    Strength of a paste from 10 delivery batches, 3 casks sampled from each
    batch and 2 assays per cask (60 rows).  Casks are nested in batches; the
    cask labels ``"a"``, ``"b"``, ``"c"`` are reused in every batch, so the
    cask grouping is ``batch:cask`` (given explicitly as ``sample``).

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the feature column(s)
        (none: an (n, 0) frame), ``y`` ``strength`` with ``groups`` the columns ``batch``,
        ``cask``, ready for ``fit(X, y, groups=groups)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (60, 4)
        Columns:

        - ``strength`` (float64): paste strength.
        - ``batch`` (category): delivery batch, levels ``"A"`` to ``"J"``.
        - ``cask`` (category): cask within batch, levels ``"a"``, ``"b"``,
          ``"c"``.
        - ``sample`` (category): batch and cask, 30 levels ``"A:a"`` to
          ``"J:c"``.

    References
    ----------
    Davies, O. L. and Goldsmith, P. L. (eds) (1972). *Statistical Methods in
    Research and Production*, 4th ed. Oliver and Boyd, Edinburgh.  Data as
    distributed in the R package lme4 (``lme4::Pastes``).

    Examples
    --------
    >>> from sklmm.datasets import load_pastes
    >>> df = load_pastes()
    >>> df.shape
    (60, 4)
    """
    df = _load("pastes.csv", categorical=("batch", "cask", "sample"))
    return _split(df, "strength", [], ["batch", "cask"], return_X_y, as_frame)


def load_mcycle(*, return_X_y=False, as_frame=True):
    """Simulated motorcycle accident: head acceleration over time.

    Head acceleration measured at a series of times after impact in a
    simulated motorcycle accident, used to test crash helmets (133 rows).
    A standard example for smoothing: the relation is strongly non-linear
    and the noise is heteroscedastic.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of the whole frame: ``X`` the feature column(s) ``times``,
        ``y`` ``accel``, ready for ``fit(X, y)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (133, 2)
        Columns:

        - ``times`` (float64): time after impact (ms).
        - ``accel`` (float64): head acceleration (g).

    References
    ----------
    Silverman, B. W. (1985). Some aspects of the spline smoothing approach
    to non-parametric curve fitting. *Journal of the Royal Statistical
    Society, Series B* 47, 1-52.  Data as distributed in the R package MASS
    (``MASS::mcycle``).

    Examples
    --------
    >>> from sklmm.datasets import load_mcycle
    >>> df = load_mcycle()
    >>> df.shape
    (133, 2)
    """
    df = _load("mcycle.csv")
    return _split(df, "accel", ["times"], [], return_X_y, as_frame)


def load_engine(*, return_X_y=False, as_frame=True):
    """Engine wear against engine size for 19 Volvo car engines.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of the whole frame: ``X`` the feature column(s) ``size``,
        ``y`` ``wear``, ready for ``fit(X, y)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (19, 2)
        Columns:

        - ``size`` (float64): engine capacity (litres).
        - ``wear`` (float64): wear index.

    References
    ----------
    Wood, S. N. (2006). *Generalized Additive Models: An Introduction with R*.
    Chapman and Hall/CRC, section 3.2.  Originally from Hand, D. J., Daly,
    F., Lunn, A. D., McConway, K. J. and Ostrowski, E. (1994). *A Handbook of
    Small Data Sets*. Chapman and Hall, London.

    Examples
    --------
    >>> from sklmm.datasets import load_engine
    >>> df = load_engine()
    >>> df.shape
    (19, 2)
    """
    df = _load("engine.csv")
    return _split(df, "wear", ["size"], [], return_X_y, as_frame)


def load_schools(*, return_X_y=False, as_frame=True):
    """Simulated test scores of students in schools.

    A tiny simulated one-way random-effects data set: 3 schools with 4
    students each (12 rows).  It was generated by ``tools/make_datasets.R``
    following the seed of the "REML from scratch" example::

        set.seed(123)
        school_effects <- rnorm(3, 0, 10)
        school_id <- rep(1:3, each = 4)
        score <- 50 + school_effects[school_id] + rnorm(12, 0, 15)

    with schools 1, 2, 3 labelled ``"A"``, ``"B"``, ``"C"``.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the feature column(s)
        (none: an (n, 0) frame), ``y`` ``score`` with ``groups`` the column ``school``,
        ready for ``fit(X, y, groups=groups)``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (12, 2)
        Columns:

        - ``school`` (category): school, levels ``"A"``, ``"B"``, ``"C"``.
        - ``score`` (float64): student's test score.

    Examples
    --------
    >>> from sklmm.datasets import load_schools
    >>> df = load_schools()
    >>> df.shape
    (12, 2)
    """
    df = _load("schools.csv", categorical=("school",))
    return _split(df, "score", [], ["school"], return_X_y, as_frame)
