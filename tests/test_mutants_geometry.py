"""Checks that `make mutants` (mutmut on lowdim.geometry) found missing: each test kills mutants
that survived the rest of the suite (docs/performance.md, "Mutation testing")."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry import centroids as ct
from lowdim.geometry.inpca import (
    AUTO_DENSE_MAX,
    DEFAULT_BLOCK_BYTES,
    inpca,
    memory_estimate,
    stress_metrics,
)


def _probs(rng, s=3, n=4, c=3):
    p = rng.dirichlet(np.ones(c), size=(s, n))
    return p


# --- centroids ----------------------------------------------------------------------------

@pytest.mark.parametrize("floor", [0.0, 1.0, 1.5, -0.1])
def test_floor_outside_the_open_unit_interval_is_refused(floor):
    with pytest.raises(ValueError, match="open interval"):
        ct.geometric_mean(np.full((2, 1, 2), 0.5), floor=floor)


def test_a_sample_without_mass_is_refused():
    with pytest.raises(ValueError, match="no probability mass"):
        ct._renormalize(np.array([[0.5, 0.5], [0.0, 0.0]]))


def test_bhattacharyya_max_iter_bounds_and_callback_order():
    p = _probs(np.random.default_rng(0))
    seen = []
    # max_iter = 0 is allowed: the start (the arithmetic mean) is returned, callback(0, AM)
    q0 = ct.bhattacharyya_centroid(p, max_iter=0, callback=lambda i, q: seen.append(i))
    assert seen == [0]
    np.testing.assert_allclose(q0, ct.arithmetic_mean(p))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_iter must be an integer >= 0"):
            ct.bhattacharyya_centroid(p, max_iter=bad)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        ct.bhattacharyya_centroid(p, tol=-1.0)
    seen.clear()
    ct.bhattacharyya_centroid(p, max_iter=3, tol=0.0, callback=lambda i, q: seen.append(i))
    assert seen == [0, 1, 2, 3]


def test_options_reach_the_method():
    """centroid, average_trajectory and jeffreys_centroid pass their options on."""
    p = np.array([[[0.0, 1.0]], [[0.5, 0.5]]])  # one exact zero: the floor matters
    a = ct.centroid(p, "geometric", floor=1e-3)
    b = ct.centroid(p, "geometric", floor=1e-1)
    assert not np.allclose(a, b)
    traj = np.stack([p, p], axis=1)  # (S=2, K=2, N=1, C=2)
    np.testing.assert_allclose(ct.average_trajectory(traj, "geometric", floor=1e-1), [b, b])
    ja = ct.jeffreys_centroid(p, floor=1e-3)
    jb = ct.jeffreys_centroid(p, floor=1e-1)
    assert not np.allclose(ja, jb)
    with pytest.raises(ValueError, match="arithmetic, geometric"):
        ct.centroid(p, "median")
    with pytest.raises(ValueError, match="arithmetic, geometric"):
        ct.average_trajectory(traj, "median")


def test_exact_jeffreys_solves_the_normalisation_in_few_steps():
    """The Newton solve for the multiplier meets sum q = 1 to 1e-12 within its 100 steps, from
    its start 1 - log sum g: a wrong start or step leaves it unnormalised."""
    p = _probs(np.random.default_rng(3), s=5, n=6, c=4)
    a, g = ct._jeffreys_terms(p, ct.PROB_FLOOR)
    q = ct._exact_jeffreys(a, g)
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-12)
    # quadratic convergence from the right start: 1e-15 after 6 steps here
    q6 = ct._exact_jeffreys(a, g, max_iter=6)
    np.testing.assert_allclose(q6.sum(axis=-1), 1.0, atol=1e-12)


# --- inpca: memory estimate and metrics ----------------------------------------------------

def test_memory_estimate_dense_is_three_matrices_one_slab_and_the_output():
    m, k = 500, 3
    assert memory_estimate(m, k) == 3 * 8 * m * m + DEFAULT_BLOCK_BYTES + 8 * m * (k + 4)
    assert memory_estimate(m, k, solver="dense", block_bytes=0) == 3 * 8 * m * m + 8 * m * 7
    # 4 * eigenvalues >= points: auto takes dense even above AUTO_DENSE_MAX
    big = AUTO_DENSE_MAX + 1000
    assert memory_estimate(big, 3, n_eigenvalues=big // 4 + 1, block_bytes=0) >= 24 * big * big


def test_memory_estimate_iterative_and_landmarks():
    m, k = 10 * AUTO_DENSE_MAX, 3
    it = memory_estimate(m, k, block_bytes=0)
    b = 8  # min(max(8, 3 // 3), 32)
    basis = max(3 * k + 6 * b, k + max(b, k // 2) + b)
    assert it == 8 * m * (2 * basis + 4 * k) + 8 * basis * basis + 8 * m * (k + 4)
    assert memory_estimate(m, k, solver="lanczos", block_bytes=0) == it
    assert it < memory_estimate(m, k, solver="dense", block_bytes=0)
    more = memory_estimate(m, k, n_eigenvalues=60, block_bytes=0)
    b = min(max(8, 60 // 3), 32)
    basis = max(3 * 60 + 6 * b, 60 + max(b, 30) + b)
    assert more == 8 * m * (2 * basis + 240) + 8 * basis * basis + 8 * m * (k + 4)
    # landmarks: dense on the L landmarks, plus every point's coordinates
    lm = memory_estimate(m, k, landmarks=300, block_bytes=0)
    assert lm == 3 * 8 * 300 * 300 + 8 * m * (k + 4)
    lm_it = memory_estimate(m, k, landmarks=AUTO_DENSE_MAX + 1, solver="randomized",
                            block_bytes=0)
    p = AUTO_DENSE_MAX + 1
    basis = max(3 * k + 48, k + 8 + 8)
    assert lm_it == (8 * p * (2 * basis + 4 * k) + 8 * basis * basis + 8 * p * p
                     + 8 * m * (k + 4))
    assert memory_estimate(100, 3, landmarks=1000) == memory_estimate(100, 3)


def test_stress_metrics_keeps_the_dimensions_that_exist():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 4))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    emb = inpca(d, 3, n_eigenvalues=5)
    got = stress_metrics(emb, [1, 3, 5, 40])
    assert list(got) == ["explained_stress_1", "explained_stress_3", "explained_stress_5"]
    assert got["explained_stress_1"] == round(float(emb.explained_stress[0]), 6)
    assert got["explained_stress_5"] == round(float(emb.explained_stress[4]), 6)


def test_memory_estimate_boundaries_of_the_auto_choice():
    m = AUTO_DENSE_MAX
    assert memory_estimate(m, 3, block_bytes=0) == 24 * m * m + 8 * m * 7  # dense at the limit
    m = AUTO_DENSE_MAX + 400
    count = m // 4  # 4 * count == points: still dense
    assert memory_estimate(m, 3, n_eigenvalues=count, block_bytes=0) == 24 * m * m + 8 * m * 7
    # block width count // 3 (integer), capped at 32
    m, count = 10 * AUTO_DENSE_MAX, 50
    b = 16
    basis = 3 * count + 6 * b
    expected = 8 * m * (2 * basis + 4 * count) + 8 * basis * basis + 8 * m * 7
    assert memory_estimate(m, 3, n_eigenvalues=count, block_bytes=0) == expected
    count = 99  # count // 3 = 33 -> 32
    basis = 3 * count + 6 * 32
    expected = 8 * m * (2 * basis + 4 * count) + 8 * basis * basis + 8 * m * 7
    assert memory_estimate(m, 3, n_eigenvalues=count, block_bytes=0) == expected


def test_stress_metrics_includes_the_last_dimension():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 3))
    emb = inpca(((x[:, None] - x[None]) ** 2).sum(-1), 2)
    last = len(emb.explained_stress)
    assert f"explained_stress_{last}" in stress_metrics(emb, [last])


def test_centroids_name_their_input_in_errors():
    with pytest.raises(ValueError, match=r"^probs must be a 3-D array of shape \(M, N, C\)"):
        ct.arithmetic_mean(np.full((2, 2), 0.5))


def test_average_trajectory_is_silent_unless_asked_and_then_names_its_method(capsys):
    trajs = np.random.default_rng(3).dirichlet(np.ones(3), size=(2, 3, 4))  # (S=2, K=3, N=4, C=3)
    quiet = ct.average_trajectory(trajs, "arithmetic")
    assert capsys.readouterr().err == ""
    loud = ct.average_trajectory(trajs, "arithmetic", progress=True)
    err = capsys.readouterr().err
    assert "arithmetic average" in err and "3/3" in err
    np.testing.assert_array_equal(quiet, loud)
    np.testing.assert_allclose(quiet, trajs.mean(axis=0), rtol=1e-12)
