"""Example data sets for generalized linear mixed models (binomial and Poisson responses).

Their factors keep R's level order (hard-coded below; ``tools/make_glmm_datasets.R`` stops if
R's ``levels()`` ever differ), so the first category is R's baseline level and
``pd.get_dummies(df[cols], drop_first=True)`` gives lme4's treatment-contrast columns.
``int`` stands for integer labels in increasing numeric order (``"1"``, ``"2"``, ...,
``"10"``), which is R's order for them.
"""

import numpy as np
import pandas as pd

from ._io import _load, _split

_CBPP_LEVELS = {"herd": int, "period": ["1", "2", "3", "4"]}
_GROUSETICKS_LEVELS = {"INDEX": int, "BROOD": int, "YEAR": ["95", "96", "97"], "LOCATION": int}
_VERBAGG_LEVELS = {
    "Gender": ["F", "M"],
    # design order of the questionnaire; "S4wantCurse" (lower-case w) as in lme4
    "item": ["S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse", "S2WantScold",
             "S2WantShout", "S3WantCurse", "S3WantScold", "S3WantShout", "S4wantCurse",
             "S4WantScold", "S4WantShout", "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse",
             "S2DoScold", "S2DoShout", "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse",
             "S4DoScold", "S4DoShout"],
    "resp": ["no", "perhaps", "yes"],
    "id": int,
    "btype": ["curse", "scold", "shout"],
    "situ": ["other", "self"],
    "mode": ["want", "do"],
    "r2": ["N", "Y"],
}
_CONTRACEPTION_LEVELS = {"woman": int, "district": int, "use": ["N", "Y"],
                         "livch": ["0", "1", "2", "3+"], "urban": ["N", "Y"]}


def _treatment(df, factors):
    """lme4's treatment-contrast columns of ``factors``: 0/1 floats, ``f`` + level, no baseline."""
    factors = list(factors)
    return pd.get_dummies(df[factors], prefix=factors, prefix_sep="", drop_first=True,
                          dtype=np.float64)


def _xy(df, X, y, groups, as_frame):
    """``(X, y, groups)`` for ``X`` and ``y`` derived from ``df``, as ``_split`` gives them."""
    frame = pd.concat([X, y, df[list(groups)]], axis=1)
    return _split(frame, y.name, list(X.columns), list(groups), True, as_frame)


def load_cbpp(*, return_X_y=False, as_frame=True):
    """Contagious bovine pleuropneumonia: new cases per herd and period.

    Serological incidence of contagious bovine pleuropneumonia (CBPP) in zebu
    cattle of 15 commercial herds in the Boji district of Ethiopia, sampled
    quarterly over four periods; 56 rows (some herd-periods are missing).  The
    standard binomial GLMM example, lme4's
    ``glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial)``.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the treatment-contrast
        columns ``period2``, ``period3``, ``period4`` (float64 0/1; period 1 is the baseline),
        ``y`` ``proportion`` = ``incidence / size`` with ``groups`` the column ``herd``.
        ``size`` is the number of binomial trials. :class:`~sklmm.MixedLogisticRegression`
        takes 0/1 outcomes with case weights, so the ``cbind(incidence, size - incidence)``
        fit is two rows per herd and period (y = 1 with weight ``incidence``, y = 0 with
        weight ``size - incidence``), which ``MixedLogisticRegression.from_formula`` builds
        from the ``cbind`` formula (in lme4, ``glmer(incidence / size ~ period + (1 | herd),
        weights = size, family = binomial)`` gives the same estimates).
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (56, 4)
        Columns:

        - ``herd`` (category): herd, 15 levels ``"1"``, ``"2"``, ..., ``"15"`` (numeric
          order, as in R).
        - ``incidence`` (float64): number of new serological cases in the herd during the
          period.
        - ``size`` (float64): herd size at the beginning of the period.
        - ``period`` (category): period, levels ``"1"`` to ``"4"``.

    References
    ----------
    Lesnoff, M., Laval, G., Bonnet, P., Abdicho, S., Workalemahu, A., Kifle, D.,
    Peyraud, A., Lancelot, R. and Thiaucourt, F. (2004). Within-herd spread of
    contagious bovine pleuropneumonia in Ethiopian highlands. *Preventive
    Veterinary Medicine* 64, 27-40.  Data as distributed in the R package lme4
    (``lme4::cbpp``).

    Examples
    --------
    >>> from sklmm.datasets import load_cbpp
    >>> df = load_cbpp()
    >>> df.shape
    (56, 4)
    >>> X, y, groups = load_cbpp(return_X_y=True)
    >>> X.columns.tolist()
    ['period2', 'period3', 'period4']
    """
    df = _load("cbpp.csv", categorical=_CBPP_LEVELS)
    if not return_X_y:
        return _split(df, None, (), (), False, as_frame)
    y = (df["incidence"] / df["size"]).rename("proportion")
    return _xy(df, _treatment(df, ["period"]), y, ["herd"], as_frame)


def load_grouseticks(*, return_X_y=False, as_frame=True):
    """Numbers of ticks on the heads of red grouse chicks.

    Sheep ticks counted on the heads of 403 red grouse chicks (``INDEX``, one
    row each) from 118 broods at 63 locations in Scotland, sampled in 1995,
    1996 and 1997, with the altitude of the location.  The standard Poisson
    GLMM example with an observation-level random effect, lme4's
    ``glmer(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
    family = poisson)``.  lme4's copy also has ``cHEIGHT``, the centred height
    ``HEIGHT - mean(HEIGHT)``; it is left out here.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the columns ``HEIGHT``
        and the treatment-contrast columns ``YEAR96``, ``YEAR97`` (float64 0/1; 1995 is the
        baseline), ``y`` ``TICKS`` with ``groups`` the columns ``BROOD``, ``INDEX``,
        ``LOCATION``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (403, 6)
        Columns:

        - ``INDEX`` (category): chick (the observation level), 403 levels ``"1"``, ``"2"``,
          ..., ``"403"`` (numeric order, as in R).
        - ``TICKS`` (float64): number of ticks counted.
        - ``BROOD`` (category): brood, 118 levels ``"501"``, ``"502"``, ..., ``"743"``.
        - ``HEIGHT`` (float64): altitude of the location (metres above sea level).
        - ``YEAR`` (category): year minus 1900, levels ``"95"``, ``"96"``, ``"97"``.
        - ``LOCATION`` (category): location code, 63 levels ``"1"``, ``"2"``, ..., ``"63"``
          (numeric order, as in R).

    References
    ----------
    Elston, D. A., Moss, R., Boulinier, T., Arrowsmith, C. and Lambin, X.
    (2001). Analysis of aggregation, a worked example: numbers of ticks on red
    grouse chicks. *Parasitology* 122, 563-569.  Data as distributed in the R
    package lme4 (``lme4::grouseticks``).

    Examples
    --------
    >>> from sklmm.datasets import load_grouseticks
    >>> df = load_grouseticks()
    >>> df.shape
    (403, 6)
    >>> df["YEAR"].cat.categories.tolist()
    ['95', '96', '97']
    """
    df = _load("grouseticks.csv", categorical=_GROUSETICKS_LEVELS)
    if not return_X_y:
        return _split(df, None, (), (), False, as_frame)
    X = pd.concat([df[["HEIGHT"]], _treatment(df, ["YEAR"])], axis=1)
    return _xy(df, X, df["TICKS"], ["BROOD", "INDEX", "LOCATION"], as_frame)


def load_verbagg(*, return_X_y=False, as_frame=True):
    """Verbal aggression: item responses to a questionnaire.

    Answers of 316 subjects (``id``) to the 24 items of a questionnaire on
    verbal aggression, 7584 rows (316 x 24).  Each item pairs one of four
    frustrating situations (``S1`` to ``S4``; in two someone else is to blame,
    in two oneself) with a behaviour type (curse, scold, shout) and a mode (want
    to, or would do); the answer is no, perhaps or yes.  The standard example of
    crossed random effects in a binomial GLMM (an explanatory item response
    model): ``glmer(r2 ~ Anger + Gender + btype + situ + mode + (1 | id) + (1 | item),
    family = binomial)`` in lme4.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the columns ``Anger``
        and the treatment-contrast columns ``GenderM``, ``btypescold``, ``btypeshout``,
        ``situself``, ``modedo`` (float64 0/1; baselines ``F``, ``curse``, ``other``,
        ``want``), ``y`` ``r2`` as float64 (1 for ``"Y"``, 0 for ``"N"``) with ``groups``
        the columns ``id``, ``item``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (7584, 9)
        Columns:

        - ``Anger`` (float64): the subject's Trait Anger score (STAXI); an integer
          column in R.
        - ``Gender`` (category): the subject's gender, levels ``"F"``, ``"M"``.
        - ``item`` (category): questionnaire item, 24 levels in the design order of
          the questionnaire, ``"S1WantCurse"``, ``"S1WantScold"``, ...,
          ``"S4WantShout"``, ``"S1DoCurse"``, ..., ``"S4DoShout"`` (not sorted; the
          label ``"S4wantCurse"``, with a lower-case w, is as in lme4).
        - ``resp`` (category): the answer, levels ``"no"``, ``"perhaps"``, ``"yes"``
          (an ordered factor in R; unordered here).
        - ``id`` (category): subject, 316 levels ``"1"``, ``"2"``, ..., ``"316"``
          (numeric order, as in R).
        - ``btype`` (category): behaviour type, levels ``"curse"``, ``"scold"``,
          ``"shout"``.
        - ``situ`` (category): situation type, levels ``"other"`` (other to blame),
          ``"self"`` (self to blame).
        - ``mode`` (category): behaviour mode, levels ``"want"``, ``"do"`` (R's order,
          not sorted).
        - ``r2`` (category): the answer in two classes, levels ``"N"`` (no), ``"Y"``
          (perhaps or yes).

    References
    ----------
    De Boeck, P. and Wilson, M. (eds) (2004). *Explanatory Item Response
    Models: A Generalized Linear and Nonlinear Approach*. Springer, New York.
    Data as distributed in the R package lme4 (``lme4::VerbAgg``).

    Examples
    --------
    >>> from sklmm.datasets import load_verbagg
    >>> df = load_verbagg()
    >>> df.shape
    (7584, 9)
    >>> df["mode"].cat.categories.tolist()
    ['want', 'do']
    """
    df = _load("verbagg.csv", categorical=_VERBAGG_LEVELS)
    if not return_X_y:
        return _split(df, None, (), (), False, as_frame)
    X = pd.concat([df[["Anger"]], _treatment(df, ["Gender", "btype", "situ", "mode"])], axis=1)
    y = (df["r2"] == "Y").astype(np.float64).rename("r2")
    return _xy(df, X, y, ["id", "item"], as_frame)


def load_contraception(*, return_X_y=False, as_frame=True):
    """Contraceptive use of women in Bangladesh.

    Whether each of 1934 women of the Bangladesh Fertility Survey used
    contraception at the time of the survey, with her age, number of living
    children and urban or rural residence; the women live in 60 districts
    (labelled ``"1"`` to ``"61"``; there is no district ``"54"``).  A standard
    binomial GLMM example, ``glmer(use ~ age + I(age^2) + livch + urban +
    (1 | district), family = binomial)`` in lme4.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y, groups)`` instead of the whole frame: ``X`` the columns ``age``,
        ``age2`` (``age * age``, lme4's ``I(age^2)``) and the treatment-contrast columns
        ``livch1``, ``livch2``, ``livch3+``, ``urbanY`` (float64 0/1; baselines ``"0"`` and
        ``"N"``), ``y`` ``use`` as float64 (1 for ``"Y"``, 0 for ``"N"``) with ``groups`` the
        column ``district``.
    as_frame : bool, default=True
        pandas objects (True) or numpy arrays (False; labels as an object array).

    Returns
    -------
    df : pandas.DataFrame of shape (1934, 6)
        Columns:

        - ``woman`` (category): woman, 1934 levels ``"1"``, ``"2"``, ..., ``"1934"``
          (numeric order, as in R).
        - ``district`` (category): district, 60 levels ``"1"``, ``"2"``, ..., ``"61"``
          (numeric order, as in R; no ``"54"``).
        - ``use`` (category): contraceptive use at the time of the survey, levels
          ``"N"``, ``"Y"``.
        - ``livch`` (category): number of living children, levels ``"0"``, ``"1"``,
          ``"2"``, ``"3+"``.
        - ``age`` (float64): age (years) at the time of the survey, centred around the
          mean.
        - ``urban`` (category): urban residence, levels ``"N"`` (rural), ``"Y"`` (urban).

    References
    ----------
    Huq, N. M. and Cleland, J. (1990). *Bangladesh Fertility Survey 1989 (Main
    Report)*. National Institute of Population Research and Training, Dhaka.
    Data as distributed in the R package mlmRev (``mlmRev::Contraception``),
    from the Centre for Multilevel Modelling, University of Bristol; mlmRev's
    help page dates the survey 1988.

    Examples
    --------
    >>> from sklmm.datasets import load_contraception
    >>> df = load_contraception()
    >>> df.shape
    (1934, 6)
    >>> df["livch"].cat.categories.tolist()
    ['0', '1', '2', '3+']
    """
    df = _load("contraception.csv", categorical=_CONTRACEPTION_LEVELS)
    if not return_X_y:
        return _split(df, None, (), (), False, as_frame)
    age = df["age"]
    X = pd.concat([age, (age * age).rename("age2"), _treatment(df, ["livch", "urban"])], axis=1)
    y = (df["use"] == "Y").astype(np.float64).rename("use")
    return _xy(df, X, y, ["district"], as_frame)
