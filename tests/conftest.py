"""Fixtures shared by the test modules."""

import pytest

from sklmm.datasets import load_sleepstudy


@pytest.fixture(scope="module")
def sleep():
    """sleepstudy as (X with Days, Reaction, Subject)."""
    df = load_sleepstudy()
    return df[["Days"]], df["Reaction"], df["Subject"]
