"""Reference fits from lme4 (tests/data/lme4_reference.json, made by tools/lme4_reference.R)
and how to fit the same models with sklmm."""

import json
from pathlib import Path

import pandas as pd

from sklmm.datasets import load_dyestuff, load_pastes, load_penicillin, load_schools, load_sleepstudy

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "lme4_reference.json").read_text())


def _csv(name, factors):
    df = pd.read_csv(DATA / name)
    for f in factors:
        df[f] = df[f].astype("category")
    return df


LOADERS = {
    "sleepstudy.csv": load_sleepstudy,
    "dyestuff.csv": load_dyestuff,
    "penicillin.csv": load_penicillin,
    "pastes.csv": load_pastes,
    "schools.csv": load_schools,
    "sim_crossed.csv": lambda: _csv("sim_crossed.csv", ["subj", "item"]),
    "sim_nested.csv": lambda: _csv("sim_nested.csv", ["outer", "inner"]),
}

# key -> (response, fixed features, group columns, estimator keyword arguments)
MODELS = {
    "sleep_ri_ml": ("Reaction", ["Days"], ["Subject"], dict(reml=False)),
    "sleep_ri_reml": ("Reaction", ["Days"], ["Subject"], dict(reml=True)),
    "sleep_slope_ml": ("Reaction", ["Days"], ["Subject"], dict(reml=False, random_slopes=["Days"])),
    "sleep_slope_reml": ("Reaction", ["Days"], ["Subject"], dict(random_slopes=["Days"])),
    "sleep_uncorr_reml": (
        "Reaction", ["Days"], ["Subject"], dict(random_slopes=["Days"], correlated_slopes=False)),
    "sleep_noint_slope_reml": (
        "Reaction", ["Days"], ["Subject"], dict(random_slopes=["Days"], random_intercept=False)),
    "dyestuff_reml": ("Yield", [], ["Batch"], dict()),
    "dyestuff_ml": ("Yield", [], ["Batch"], dict(reml=False)),
    "penicillin_reml": ("diameter", [], ["plate", "sample"], dict()),
    "penicillin_ml": ("diameter", [], ["plate", "sample"], dict(reml=False)),
    "pastes_reml": ("strength", [], ["batch", "cask"], dict(nested=True)),
    "pastes_ml": ("strength", [], ["batch", "cask"], dict(nested=True, reml=False)),
    "schools_reml": ("score", [], ["school"], dict()),
    "schools_ml": ("score", [], ["school"], dict(reml=False)),
    "crossed_ml": ("y", ["x"], ["subj", "item"], dict(reml=False, random_slopes={"subj": ["x"]})),
    "crossed_reml": ("y", ["x"], ["subj", "item"], dict(random_slopes={"subj": ["x"]})),
    "nested_reml": ("y", ["x"], ["outer", "inner"], dict(nested=True)),
}


def problem(key):
    """(X, y, groups, kwargs, reference) for one reference model."""
    ref = REFERENCE[key]
    df = LOADERS[ref["data"]]()
    yname, xcols, gcols, kwargs = MODELS[key]
    X = df[xcols] if xcols else pd.DataFrame(index=df.index)
    groups = df[gcols[0]] if len(gcols) == 1 else df[gcols]
    return X, df[yname], groups, dict(kwargs), ref
