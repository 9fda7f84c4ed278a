"""The six averages of a set of models (docs/study.md A9): defining properties, not
re-derivations."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry.centroids import (
    AVERAGING_METHODS,
    average_trajectory,
    bhattacharyya_centroid,
    centroid,
    geometric_mean,
    jeffreys_centroid,
    jeffreys_positive_centroid,
    square_root_mean,
)
from lowdim.geometry.geodesic import geodesic


def random_models(seed: int, s: int = 6, n: int = 30, c: int = 5, low: float = 1e-4):
    """(S, N, C) strictly positive probabilities (so no floor is involved)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(c, 0.7), size=(s, n)) + low
    return p / p.sum(-1, keepdims=True)


def summed_bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i d_B(p_i, q) in float64, straight from the definition (A2)."""
    return float(-np.log(np.sqrt(p * q).sum(-1)).mean(-1).sum())


def summed_jeffreys(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i sum_n J(p_i^n, q^n), J = KL(p||q) + KL(q||p) = sum (p - q)(log p - log q)."""
    return float(((p - q) * (np.log(p) - np.log(q))).sum())


@pytest.mark.parametrize("method", sorted(AVERAGING_METHODS))
def test_average_of_identical_models_is_that_model(method):
    p = random_models(0)[0]
    same = np.repeat(p[None], 4, axis=0)
    np.testing.assert_allclose(centroid(same, method), p, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", sorted(AVERAGING_METHODS))
def test_every_average_is_a_probability_model(method):
    q = centroid(random_models(1).astype(np.float32), method)
    assert q.shape == (30, 5) and q.dtype == np.float64
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["bhattacharyya", "square_root"])
def test_two_model_average_on_the_sphere_is_the_geodesic_midpoint(method):
    # Both minimize/average on the sphere of roots: for two models the result is the slerp
    # midpoint, computed independently by lowdim.geometry.geodesic.
    p = random_models(2, s=2)
    np.testing.assert_allclose(centroid(p, method, **({"tol": 1e-14, "max_iter": 2000}
                                                      if method == "bhattacharyya" else {})),
                               geodesic(p[0], p[1], 0.5), atol=1e-9)


def test_bhattacharyya_iteration_decreases_the_summed_distance_monotonically():
    p = random_models(3, s=8)
    objective = []
    bhattacharyya_centroid(p, max_iter=30, tol=0.0,
                           callback=lambda i, q: objective.append(summed_bhattacharyya(p, q)))
    assert len(objective) == 31  # the start (AM) and every iteration
    assert np.all(np.diff(objective) <= 1e-12)  # never increases, up to rounding
    assert objective[-1] < objective[0] - 1e-3  # and AM was not the minimum


def test_bhattacharyya_centroid_is_a_minimum():
    p = random_models(4)
    q = bhattacharyya_centroid(p, max_iter=2000, tol=1e-14)
    best = summed_bhattacharyya(p, q)
    rng = np.random.default_rng(0)
    for _ in range(20):  # small moves inside the simplex only increase the objective
        r = q * np.exp(1e-3 * rng.standard_normal(q.shape))
        assert summed_bhattacharyya(p, r / r.sum(-1, keepdims=True)) > best


def test_bhattacharyya_stops_when_iterates_stop_moving():
    p = random_models(5)
    calls = []
    bhattacharyya_centroid(p, max_iter=10_000, tol=1e-9, callback=lambda i, q: calls.append(i))
    assert calls[-1] < 10_000


def test_jeffreys_positive_centroid_solves_its_defining_equation():
    # For positive measures the gradient of sum_i J(p_i, q) vanishes in every class:
    # d/dq_c = log(q_c / g_c) + 1 - a_c / q_c = 0, with a = AM and g = GM of the inputs.
    p = random_models(6)
    q = jeffreys_positive_centroid(p)
    a, g = p.mean(0), np.exp(np.log(p).mean(0))
    np.testing.assert_allclose(np.log(q / g) + 1.0 - a / q, 0.0, atol=1e-12)


def test_exact_jeffreys_centroid_is_stationary_on_the_simplex():
    # On the simplex the Lagrange condition holds: the gradient is the same for every class
    # of a sample (the multiplier), not zero.
    p = random_models(7)
    q = jeffreys_centroid(p, exact=True)
    a, g = p.mean(0), np.exp(np.log(p).mean(0))
    grad = np.log(q / g) + 1.0 - a / q
    np.testing.assert_allclose(grad - grad.mean(-1, keepdims=True), 0.0, atol=1e-10)


def test_renormalized_jeffreys_is_close_to_but_not_below_the_exact_minimum():
    p = random_models(8)
    exact = summed_jeffreys(p, jeffreys_centroid(p, exact=True))
    approx = summed_jeffreys(p, jeffreys_centroid(p))
    assert exact <= approx <= exact * 1.05
    rng = np.random.default_rng(1)
    q = jeffreys_centroid(p, exact=True)
    for _ in range(10):
        r = q * np.exp(1e-3 * rng.standard_normal(q.shape))
        assert summed_jeffreys(p, r / r.sum(-1, keepdims=True)) > exact


def test_floor_keeps_one_zero_from_erasing_a_class():
    p = random_models(9, s=3)
    p[0, :, 0] = 0.0  # one model's float16 zero in class 0
    p[0] /= p[0].sum(-1, keepdims=True)
    assert np.all(geometric_mean(p)[:, 0] > 0)
    # the floor sets how much is left: a lower floor leaves less
    assert np.all(geometric_mean(p, floor=1e-20)[:, 0] < geometric_mean(p)[:, 0])


def test_square_root_mean_of_disjoint_corners_splits_evenly():
    # Two one-hot models on different classes: (mean sqrt p)^2 = 1/4 on each, renormalized 1/2.
    p = np.zeros((2, 3, 4))
    p[0, :, 0] = p[1, :, 1] = 1.0
    np.testing.assert_allclose(square_root_mean(p)[:, :2], 0.5)


def test_average_trajectory_applies_the_method_at_each_checkpoint_index():
    rng = np.random.default_rng(10)
    traj = rng.dirichlet(np.ones(4), size=(3, 5, 7))  # (S, K, N, C)
    out = average_trajectory(traj, "geometric")
    assert out.shape == (5, 7, 4)
    np.testing.assert_allclose(out[2], geometric_mean(traj[:, 2]))
    same = np.repeat(traj[:1], 3, axis=0)
    np.testing.assert_allclose(average_trajectory(same, "jeffreys"), traj[0], atol=1e-12)


def test_bad_inputs_say_what_is_wrong():
    p = random_models(11)
    with pytest.raises(ValueError, match="unknown averaging method 'median'"):
        centroid(p, "median")
    with pytest.raises(ValueError, match=r"4-D array \(S, K, N, C\)"):
        average_trajectory(p, "arithmetic")
    with pytest.raises(ValueError, match="must sum to 1"):
        centroid(p * 2, "arithmetic")
    with pytest.raises(ValueError, match="floor must lie in the open interval"):
        geometric_mean(p, floor=0.0)
