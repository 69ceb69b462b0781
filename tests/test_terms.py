"""Random-effect terms (sklmm._engine.terms): centred coordinates and their maps back to the
user's, checked against closed forms."""

import numpy as np
import pytest

from sklmm._engine.terms import RandomTerm, _lower_factor, internal_theta, user_theta


def _term(values, correlated=True, intercept=True):
    n = values.shape[0]
    return RandomTerm(name="g", levels=np.arange(3), codes=np.arange(n) % 3, values=values,
                      column_names=["(Intercept)"] + [f"x{j}" for j in range(values.shape[1] - 1)],
                      correlated=correlated, slope_columns=list(range(values.shape[1] - 1)),
                      intercept=intercept)


@pytest.mark.parametrize("rank", [3, 2, 1, 0])
def test_lower_factor_is_a_cholesky_factor_of_any_gram(rank):
    rng = np.random.default_rng(rank)
    A = rng.normal(size=(3, rank)) @ rng.normal(size=(rank, 3))
    L = _lower_factor(A)
    np.testing.assert_array_equal(L, np.tril(L))
    assert np.all(np.diag(L) >= 0)
    np.testing.assert_allclose(L @ L.T, A @ A.T, atol=1e-12 * max(1.0, np.abs(A).max() ** 2))
    if rank == 3:  # the Cholesky factor, unique
        np.testing.assert_allclose(L, np.linalg.cholesky(A @ A.T), rtol=1e-12)


def test_slopes_far_from_centred_are_shifted_and_the_maps_invert_each_other():
    rng = np.random.default_rng(0)
    n = 60
    x1 = 2000.0 + rng.normal(size=n)  # |mean| / sd about 2000: shifted
    x2 = rng.normal(size=n)  # centred already: not shifted
    V = np.column_stack([np.ones(n), x1, x2])
    t = _term(V.copy())
    shift = t.centre_slopes()
    assert shift[0] == 0 and shift[1] == pytest.approx(x1.mean()) and shift[2] == 0
    np.testing.assert_allclose(t.values, V - shift)
    M = np.array([[1.0, -shift[1], 0.0], [0, 1, 0], [0, 0, 1]])  # z_centred = z M
    np.testing.assert_allclose(V @ M, t.values, atol=1e-9)
    # templates: the user's covariance is M S M' for the term's S, and back
    theta = rng.normal(size=t.n_theta)
    theta[t.tri_rows == t.tri_cols] = np.abs(theta[t.tri_rows == t.tri_cols])
    T = t.template(theta)
    Tu = t.user_template(theta)
    np.testing.assert_array_equal(Tu, np.tril(Tu))
    np.testing.assert_allclose(Tu @ Tu.T, M @ T @ T.T @ M.T, rtol=1e-10)
    np.testing.assert_allclose(internal_theta([t], user_theta([t], theta)), theta, rtol=1e-9, atol=1e-9)
    # conditional modes: the same linear predictor z b in both coordinates
    b = rng.normal(size=(3, 3))
    np.testing.assert_allclose(np.einsum("ij,ij->i", V[:3], t.user_coefficients(b)),
                               np.einsum("ij,ij->i", t.rows(V[:3, 1:]), b), rtol=1e-12)
    Vc = np.stack([np.eye(3) * (j + 1) for j in range(3)])
    np.testing.assert_allclose(t.user_covariances(Vc)[1], M @ Vc[1] @ M.T)


@pytest.mark.parametrize("kind", ["uncorrelated", "no intercept", "centred", "one coefficient"])
def test_only_correlated_terms_with_an_intercept_and_far_slopes_are_shifted(kind):
    rng = np.random.default_rng(1)
    x = 500.0 + rng.normal(size=30)
    if kind == "uncorrelated":  # (x || g): shifting x changes the model
        t = _term(np.column_stack([np.ones(30), x]), correlated=False)
    elif kind == "no intercept":
        t = _term(x[:, None], intercept=False)
    elif kind == "centred":
        t = _term(np.column_stack([np.ones(30), x - x.mean()]))
    else:
        t = _term(np.ones((30, 1)))
    before = t.values.copy()
    assert t.centre_slopes() is None and t.shift is None
    np.testing.assert_array_equal(t.values, before)
    theta = np.abs(rng.normal(size=t.n_theta))
    np.testing.assert_array_equal(user_theta([t], theta), theta)
