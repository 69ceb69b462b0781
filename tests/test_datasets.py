"""The GLMM data sets (cbpp, grouseticks, VerbAgg, Contraception) against the R data.

The numbers in these tests come from R 4.2 with lme4 1.1-31 and mlmRev 1.0-8; the comment next
to each gives the R command (``C`` is ``mlmRev::Contraception``, the others are lme4's data).
"""

import numpy as np
import pandas as pd
import pytest

import sklmm.datasets as ds
from sklmm.datasets import (
    load_cbpp,
    load_contraception,
    load_grouseticks,
    load_sleepstudy,
    load_verbagg,
)


def numbered(n):
    return [str(i) for i in range(1, n + 1)]


# levels(<data>$<factor>) in R, for every factor of each data set
R_LEVELS = {
    "load_cbpp": {"herd": numbered(15), "period": ["1", "2", "3", "4"]},
    "load_grouseticks": {
        "INDEX": numbered(403),
        "BROOD": None,  # 118 labels, checked in test_brood_and_district_levels
        "YEAR": ["95", "96", "97"],
        "LOCATION": numbered(63),
    },
    "load_verbagg": {
        "Gender": ["F", "M"],
        "item": ["S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse", "S2WantScold",
                 "S2WantShout", "S3WantCurse", "S3WantScold", "S3WantShout", "S4wantCurse",
                 "S4WantScold", "S4WantShout", "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse",
                 "S2DoScold", "S2DoShout", "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse",
                 "S4DoScold", "S4DoShout"],
        "resp": ["no", "perhaps", "yes"],
        "id": numbered(316),
        "btype": ["curse", "scold", "shout"],
        "situ": ["other", "self"],
        "mode": ["want", "do"],
        "r2": ["N", "Y"],
    },
    "load_contraception": {
        "woman": numbered(1934),
        "district": None,  # 1..61 without 54, checked in test_brood_and_district_levels
        "use": ["N", "Y"],
        "livch": ["0", "1", "2", "3+"],
        "urban": ["N", "Y"],
    },
}

# dim(<data>) and names(<data>) in R (grouseticks without cHEIGHT)
COLUMNS = {
    "load_cbpp": ["herd", "incidence", "size", "period"],
    "load_grouseticks": ["INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION"],
    "load_verbagg": ["Anger", "Gender", "item", "resp", "id", "btype", "situ", "mode", "r2"],
    "load_contraception": ["woman", "district", "use", "livch", "age", "urban"],
}
ROWS = {"load_cbpp": 56, "load_grouseticks": 403, "load_verbagg": 7584, "load_contraception": 1934}

# colnames(model.matrix(~ <fixed effects>, <data>))[-1], the columns of X for return_X_y=True;
# the fixed effects: cbpp ~ period, grouseticks ~ HEIGHT + YEAR,
# VerbAgg ~ Anger + Gender + btype + situ + mode, C ~ age + I(age^2) + livch + urban
X_COLUMNS = {
    "load_cbpp": ["period2", "period3", "period4"],
    "load_grouseticks": ["HEIGHT", "YEAR96", "YEAR97"],
    "load_verbagg": ["Anger", "GenderM", "btypescold", "btypeshout", "situself", "modedo"],
    "load_contraception": ["age", "age2", "livch1", "livch2", "livch3+", "urbanY"],
}
Y_NAME = {"load_cbpp": "proportion", "load_grouseticks": "TICKS", "load_verbagg": "r2",
          "load_contraception": "use"}
GROUPS = {"load_cbpp": ["herd"], "load_grouseticks": ["BROOD", "INDEX", "LOCATION"],
          "load_verbagg": ["id", "item"], "load_contraception": ["district"]}
LOADERS = list(ROWS)


def test_the_loaders_are_public():
    assert set(LOADERS) <= set(ds.__all__)


@pytest.mark.parametrize("loader", LOADERS)
def test_shape_columns_and_dtypes(loader):
    df = getattr(ds, loader)()
    assert df.shape == (ROWS[loader], len(COLUMNS[loader]))
    assert df.columns.tolist() == COLUMNS[loader]
    for name in df.columns:
        if name in R_LEVELS[loader]:
            assert isinstance(df[name].dtype, pd.CategoricalDtype) and not df[name].cat.ordered, name
            assert not df[name].isna().any(), name
        else:
            assert df[name].dtype == np.float64, name
    assert not df.select_dtypes("number").isna().any().any()


@pytest.mark.parametrize("loader", LOADERS)
def test_categories_are_in_rs_level_order(loader):
    df = getattr(ds, loader)()
    for name, levels in R_LEVELS[loader].items():
        if levels is not None:
            assert df[name].cat.categories.tolist() == levels, name
        assert set(df[name]) == set(df[name].cat.categories), name  # every level is used, as in R


def test_brood_and_district_levels():
    brood = load_grouseticks()["BROOD"].cat.categories.tolist()
    # nlevels(grouseticks$BROOD); range(as.integer(levels(grouseticks$BROOD)))
    assert len(brood) == 118 and (brood[0], brood[-1]) == ("501", "743")
    assert brood == sorted(brood, key=int)
    # levels(C$district): "1" .. "53", "55" .. "61"
    district = load_contraception()["district"].cat.categories.tolist()
    assert district == [str(i) for i in range(1, 62) if i != 54]


# the factors among the fixed effects, and the names of their columns in model.matrix
FIXED_FACTORS = {
    "load_cbpp": (["period"], ["period2", "period3", "period4"]),
    "load_grouseticks": (["YEAR"], ["YEAR96", "YEAR97"]),
    "load_verbagg": (["Gender", "btype", "situ", "mode"],
                     ["GenderM", "btypescold", "btypeshout", "situself", "modedo"]),
    "load_contraception": (["livch", "urban"], ["livch1", "livch2", "livch3+", "urbanY"]),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_dummies_are_lme4s_treatment_contrast_columns(loader):
    """``get_dummies(drop_first=True)`` of the factors gives model.matrix's columns (in ``X``)."""
    df = getattr(ds, loader)()
    X, _, _ = getattr(ds, loader)(return_X_y=True)
    factors, names = FIXED_FACTORS[loader]
    dummies = pd.get_dummies(df[factors], drop_first=True, dtype=float)
    np.testing.assert_array_equal(dummies.to_numpy(), X[names].to_numpy())
    assert pd.get_dummies(df[factors], drop_first=True, prefix_sep="").columns.tolist() == names


@pytest.mark.parametrize("loader", LOADERS)
def test_return_X_y_and_as_frame(loader):
    load = getattr(ds, loader)
    df = load()
    X, y, g = load(return_X_y=True)
    n = ROWS[loader]
    assert X.shape == (n, len(X_COLUMNS[loader])) and X.columns.tolist() == X_COLUMNS[loader]
    assert (X.dtypes == np.float64).all() and y.dtype == np.float64 and y.name == Y_NAME[loader]
    if len(GROUPS[loader]) == 1:
        assert g.name == GROUPS[loader][0] and g.shape == (n,)
    else:
        assert g.columns.tolist() == GROUPS[loader] and g.shape == (n, len(GROUPS[loader]))
    pd.testing.assert_frame_equal(g.to_frame() if g.ndim == 1 else g, df[GROUPS[loader]])
    Xa, ya, ga = load(return_X_y=True, as_frame=False)
    np.testing.assert_array_equal(Xa, X.to_numpy(dtype=float))
    np.testing.assert_array_equal(ya, y.to_numpy(dtype=float))
    assert ga.dtype == object and ga.shape == g.shape
    whole = load(as_frame=False)
    assert isinstance(whole, np.ndarray) and whole.shape == df.shape


def test_values_against_r():
    cbpp, gt, va, c = load_cbpp(), load_grouseticks(), load_verbagg(), load_contraception()
    assert cbpp["incidence"].sum() == 99                      # sum(cbpp$incidence)
    assert cbpp["size"].sum() == 842                          # sum(cbpp$size)
    assert gt["TICKS"].sum() == 2567                          # sum(grouseticks$TICKS)
    assert gt["HEIGHT"].sum() == 186283                       # sum(grouseticks$HEIGHT)
    assert va["Anger"].sum() == 151704                        # sum(VerbAgg$Anger)
    assert va["Anger"].mean() == pytest.approx(20.003164556962027, rel=1e-15)  # mean(VerbAgg$Anger)
    assert (va["r2"] == "Y").sum() == 3611                    # sum(VerbAgg$r2 == "Y")
    assert va["resp"].value_counts(sort=False).tolist() == [3973, 2081, 1530]  # table(VerbAgg$resp)
    assert (c["use"] == "Y").sum() == 759                     # sum(C$use == "Y")
    assert c["livch"].value_counts(sort=False).tolist() == [530, 356, 305, 743]  # table(C$livch)
    assert c["age"].sum() == pytest.approx(4.2507000000001822, rel=1e-12)  # sum(C$age)
    # single rows; sprintf("%.17g", C$age[c(2, 1934)]) is -5.5598999999999998 10.44
    assert cbpp.iloc[55].tolist() == ["15", 0.0, 15.0, "4"]  # cbpp[56, ]
    assert gt.iloc[402].tolist() == ["403", 0.0, "743", 450.0, "97", "25"]  # grouseticks[403, 1:6]
    # VerbAgg[7584, ]
    assert va.iloc[7583].tolist() == [12.0, "F", "S4DoShout", "no", "316", "shout", "self", "do", "N"]
    assert c.iloc[1].tolist() == ["2", "1", "N", "0", -5.5598999999999998, "Y"]  # C[2, ]
    assert c.iloc[1933].tolist() == ["1934", "61", "N", "3+", 10.44, "N"]  # C[1934, ]


def test_return_X_y_values_against_r():
    # colSums(model.matrix(~ <fixed effects>, <data>))[-1] and the response, as in X_COLUMNS
    X, y, _ = load_cbpp(return_X_y=True)
    assert X.sum().tolist() == [14, 14, 13]
    assert y.sum() == pytest.approx(6.1201297212133126, rel=1e-14)  # sum(cbpp$incidence / cbpp$size)
    X, y, _ = load_grouseticks(return_X_y=True)
    assert X.sum().tolist() == [186283, 155, 131] and y.sum() == 2567
    X, y, _ = load_verbagg(return_X_y=True)
    assert X.sum().tolist() == [151704, 1752, 2528, 2528, 3792, 3792] and y.sum() == 3611
    X, y, _ = load_contraception(return_X_y=True)
    np.testing.assert_allclose(X.sum().to_numpy(),
                               [4.2507000000001822, 157034.16144313, 356, 305, 743, 562], rtol=1e-12)
    assert y.sum() == 759
    np.testing.assert_array_equal(X["age2"], X["age"] * X["age"])  # I(age^2) is age * age in R


def test_load_keeps_sorted_order_and_refuses_labels_outside_the_levels():
    from sklmm.datasets._io import _load

    # existing callers: a sequence of names gives the sorted labels
    assert load_sleepstudy()["Subject"].cat.categories.tolist()[:3] == ["308", "309", "310"]
    def first(categorical):
        return _load("cbpp.csv", categorical=categorical)["herd"].cat.categories.tolist()[:3]

    assert first(("herd",)) == first({"herd": None}) == ["1", "10", "11"]
    assert first({"herd": int}) == ["1", "2", "3"]  # R's order, levels(cbpp$herd)
    with pytest.raises(ValueError, match=r"'period' has labels \['3', '4'\]"):
        _load("cbpp.csv", categorical={"period": ["1", "2"]})
