"""Geodesics, progress and trajectories (docs/study.md A3, A6-A9, A15): closed forms, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowdim.geometry.distances import bhattacharyya_reference, ignorance_point, truth_point
from lowdim.geometry.geodesic import (
    GEODESIC_T,
    PROGRESS_GRID,
    average_trajectories,
    geodesic,
    progress,
    progress_closed_form,
    reindex,
    riemann_length,
    slerp,
    trajectory_distance_tensor,
    trajectory_distances,
)

N, C = 40, 10


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)


@pytest.fixture
def ends(rng) -> tuple[np.ndarray, np.ndarray]:
    """Ignorance and truth on N samples."""
    return ignorance_point(N, C), truth_point(rng.integers(0, C, size=N), C)


def random_probs(rng: np.random.Generator, m: int) -> np.ndarray:
    return rng.dirichlet(np.full(C, 0.5), size=(m, N))


def test_grid():
    assert GEODESIC_T.shape == (100,)
    assert GEODESIC_T[0] == pytest.approx(0.01) and GEODESIC_T[-1] == 1.0


def test_endpoints_and_simplex(ends, rng):
    p0, p1 = ends
    np.testing.assert_allclose(geodesic(p0, p1, 0.0), p0, atol=1e-12)
    np.testing.assert_allclose(geodesic(p0, p1, 1.0), p1, atol=1e-12)
    a, b = random_probs(rng, 2)
    path = geodesic(a, b, np.linspace(0, 1, 11))
    assert path.shape == (11, N, C)
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    assert path.min() >= 0.0
    np.testing.assert_allclose(path.sum(-1), 1.0, atol=1e-12)


def test_angle_ignorance_to_truth(ends):
    p0, p1 = ends
    theta = np.arccos(np.sqrt(p0 * p1).sum(-1))
    np.testing.assert_allclose(theta, math.acos(1 / math.sqrt(C)), atol=1e-7)
    assert theta[0] == pytest.approx(1.2490, abs=1e-4)
    # gamma(t) sits at angle t * theta from the start, for every sample.
    for t in (0.25, 0.5, 0.8):
        g = geodesic(p0, p1, t)
        ang = np.arccos(np.clip(np.sqrt(g * p0).sum(-1), 0, 1))
        np.testing.assert_allclose(ang, t * theta, atol=1e-7)


def test_distance_along_geodesic_is_monotone(ends, rng):
    for p0, p1 in (ends, tuple(random_probs(rng, 2))):
        path = geodesic(p0, p1, np.linspace(0, 1, 21))
        d_start = bhattacharyya_reference(p0[None], path)[0]
        d_end = bhattacharyya_reference(p1[None], path)[0]
        assert np.all(np.diff(d_start) > 0)
        assert np.all(np.diff(d_end) < 0)


def test_geodesic_from_a_point_to_itself_is_constant(rng):
    a = random_probs(rng, 1)[0]
    path = geodesic(a, a, GEODESIC_T)
    np.testing.assert_allclose(path, np.broadcast_to(a, path.shape), atol=1e-12)
    # partly degenerate: samples equal at both ends stay put, the others move
    b = a.copy()
    b[: N // 2] = random_probs(rng, 1)[0][: N // 2]
    mid = geodesic(a, b, 0.5)
    np.testing.assert_allclose(mid[N // 2 :], a[N // 2 :], rtol=0, atol=1e-15)
    assert not np.allclose(mid[: N // 2], a[: N // 2])


@pytest.mark.parametrize("mode", [progress, progress_closed_form])
def test_progress_endpoints_and_geodesic_points(ends, mode):
    p0, p1 = ends
    ts = np.array([0.1, 0.33, 0.5, 0.77, 0.95])
    lam = mode(geodesic(p0, p1, ts), p0, p1)
    np.testing.assert_allclose(lam, ts, atol=1e-5)
    ends_lam = mode(np.stack([p0, p1]).astype(np.float64), p0, p1)
    np.testing.assert_allclose(ends_lam, [0.0, 1.0], atol=1e-9)


@pytest.mark.parametrize("mode", [progress, progress_closed_form])
def test_progress_on_a_geodesic_between_random_models(rng, mode):
    p0, p1 = random_probs(rng, 2)
    ts = np.array([0.2, 0.6, 0.9])
    np.testing.assert_allclose(mode(geodesic(p0, p1, ts), p0, p1), ts, atol=1e-5)


def test_progress_of_perturbed_geodesic_points(ends, rng):
    p0, p1 = ends
    ts = np.array([0.3, 0.6, 0.85])
    p = 0.95 * geodesic(p0, p1, ts) + 0.05 * random_probs(rng, 3)
    for mode in (progress, progress_closed_form):
        lam = mode(p, p0, p1)
        assert np.all((lam >= 0) & (lam <= 1))
        np.testing.assert_allclose(lam, ts, atol=0.1)
        assert np.all(np.diff(lam) > 0)


def test_progress_degenerate_endpoints(rng):
    a = random_probs(rng, 1)[0]
    p = random_probs(rng, 3)
    np.testing.assert_array_equal(progress(p, a, a), 0.0)
    np.testing.assert_array_equal(progress_closed_form(p, a, a), 0.0)


def test_bad_input_messages(ends, rng):
    p0, p1 = ends
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        geodesic(p0, p1, 1.5)
    with pytest.raises(ValueError, match=r"t must be a scalar or a 1-D array"):
        geodesic(p0, p1, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"p0 and p1 must have the same shape"):
        geodesic(p0, p1[:-1], 0.5)
    with pytest.raises(ValueError, match=r"p must have shape \(M, N, C\) with \(N, C\)"):
        progress(random_probs(rng, 2)[:, :-1], p0, p1)
    with pytest.raises(ValueError, match=r"p must be a 3-D array"):
        progress_closed_form(p0, p0, p1)
    with pytest.raises(ValueError, match=r"p1: probability rows must sum to 1"):
        geodesic(p0, p1 * 2, 0.5)


# --- trajectories (A7-A9, A15) ---


def grid_value(s: float) -> int:
    """Position of the grid value s in PROGRESS_GRID."""
    j = int(np.argmin(np.abs(PROGRESS_GRID - s)))
    assert PROGRESS_GRID[j] == pytest.approx(s)
    return j


def test_progress_grid_is_a7s():
    np.testing.assert_allclose(PROGRESS_GRID, np.arange(1, 101) / 100, rtol=0, atol=1e-15)


def test_reindexing_the_geodesic_returns_its_grid_points(ends, rng):
    p0, p1 = ends
    t_k = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 1.0, 23)), [1.0]])
    trajectory = geodesic(p0, p1, t_k).astype(np.float32)
    out = reindex(trajectory, t_k)
    assert out.shape == (100, N, C) and out.dtype == np.float64
    np.testing.assert_allclose(out, geodesic(p0, p1, PROGRESS_GRID), rtol=0, atol=1e-6)


def test_reindex_below_the_first_index_gives_the_first_checkpoint(rng):
    p = random_probs(rng, 3)
    index = np.array([0.3, 0.6, 1.0])
    out = reindex(p, index)
    for s in (0.01, 0.15, 0.29, 0.3):  # s = a_0 is the start of the first bracket, fraction 0
        np.testing.assert_allclose(out[grid_value(s)], p[0], atol=1e-12)
    # inside a bracket: slerp between its ends at the linear fraction
    np.testing.assert_allclose(out[grid_value(0.4)], slerp(p[0], p[1], 1 / 3), atol=1e-12)
    np.testing.assert_allclose(out[grid_value(0.9)], slerp(p[1], p[2], 0.75), atol=1e-12)
    np.testing.assert_allclose(out[-1], p[2], atol=1e-12)


def test_reindex_stretches_the_tail_to_the_last_checkpoint(rng):
    p = random_probs(rng, 3)
    out = reindex(p, np.array([0.0, 0.4, 0.7]))  # the last checkpoint counts as index 1.0
    np.testing.assert_allclose(out[grid_value(0.7)], slerp(p[1], p[2], 0.5), atol=1e-12)
    np.testing.assert_allclose(out[grid_value(1.0)], p[2], atol=1e-12)
    # the last index is never read: a lower value stretches the same way
    np.testing.assert_allclose(reindex(p, np.array([0.0, 0.4, 0.1])), out, rtol=0, atol=0)


def test_reindex_zero_width_bracket_outputs_the_start(rng):
    # accuracy reaches 1.0 at the penultimate checkpoint: s = 1 brackets [1.0, 1.0 (stretched)]
    p = random_probs(rng, 4)
    out = reindex(p, np.array([0.0, 0.5, 1.0, 1.0]))
    np.testing.assert_allclose(out[-1], p[2], atol=1e-12)
    assert not np.allclose(out[-1], p[3], atol=1e-3)
    np.testing.assert_allclose(out[grid_value(0.75)], slerp(p[1], p[2], 0.5), atol=1e-12)


def test_reindex_pointer_moves_forward_only(rng):
    # a non-monotone index (accuracy dips at checkpoint 2)
    p = random_probs(rng, 5)
    out = reindex(p, np.array([0.1, 0.6, 0.3, 0.9, 1.0]))
    np.testing.assert_allclose(out[grid_value(0.5)], slerp(p[0], p[1], 0.8), atol=1e-12)
    # s = 0.7: the first k >= pointer with a_k > 0.7 is k = 3; its start is k - 1 = 2 (a = 0.3),
    # so the bracket spans the dip and the fraction is (0.7 - 0.3) / (0.9 - 0.3)
    np.testing.assert_allclose(out[grid_value(0.7)], slerp(p[2], p[3], 4 / 6), atol=1e-12)
    # once past checkpoint 2 the pointer never returns to the bracket [0, 1]
    assert not np.allclose(out[grid_value(0.61)], slerp(p[0], p[1], 1.0), atol=1e-3)
    np.testing.assert_allclose(out[grid_value(0.61)], slerp(p[2], p[3], 0.31 / 0.6), atol=1e-12)


def test_single_checkpoint_fills_the_grid(rng):
    p = random_probs(rng, 1)
    out = reindex(p, np.array([0.2]), grid=np.array([0.1, 0.5, 1.0]))
    np.testing.assert_allclose(out, np.broadcast_to(p[0], out.shape), atol=1e-12)


def test_average_trajectories(rng):
    traj = random_probs(rng, 5)
    same = np.stack([traj, traj, traj]).astype(np.float32)
    np.testing.assert_allclose(average_trajectories(same), traj, atol=1e-6)
    pair = np.stack([random_probs(rng, 5), random_probs(rng, 5)])
    avg = average_trajectories(pair)
    np.testing.assert_allclose(avg, 0.5 * (pair[0] + pair[1]), atol=1e-12)
    np.testing.assert_allclose(avg.sum(-1), 1.0, atol=1e-12)


def test_trajectory_distance_tensor(rng):
    a, b = random_probs(rng, 4), random_probs(rng, 4)
    trajs = np.stack([a, b, a]).astype(np.float32)  # (R=3, G=4, N, C); rows 0 and 2 identical
    tensor = trajectory_distance_tensor(trajs)
    assert tensor.shape == (4, 3, 3)
    np.testing.assert_array_equal(tensor[:, [0, 1, 2], [0, 1, 2]], 0.0)
    np.testing.assert_array_equal(tensor, tensor.transpose(0, 2, 1))
    np.testing.assert_allclose(tensor[:, 0, 2], 0.0, atol=1e-6)
    for t in range(4):
        expected = bhattacharyya_reference(a[t][None], b[t][None])[0, 0]
        assert tensor[t, 0, 1] == pytest.approx(expected, rel=1e-5)
    dist = trajectory_distances(tensor)
    np.testing.assert_allclose(dist, tensor.mean(0), rtol=0, atol=0)
    assert dist[0, 1] == pytest.approx(np.mean([bhattacharyya_reference(
        a[t][None], b[t][None])[0, 0] for t in range(4)]), rel=1e-5)


def test_riemann_length_of_the_ignorance_truth_geodesic(ends):
    p0, p1 = ends
    theta = math.acos(1 / math.sqrt(C))
    lengths = []
    for k in (4, 40, 400):
        # every sample's consecutive points are theta / k apart on the sphere: BC = cos(theta / k)
        path = geodesic(p0, p1, np.linspace(0.0, 1.0, k + 1))
        exact = k * 2.0 * math.sqrt(-math.log(math.cos(theta / k)))
        assert riemann_length(path) == pytest.approx(exact, rel=1e-9)
        lengths.append(riemann_length(path))
    # -log cos x = x^2/2 + x^4/12 + ...: the length decreases to sqrt(2) theta as O(1/k^2)
    errors = np.array(lengths) - math.sqrt(2.0) * theta
    assert np.all(errors > 0) and np.all(np.diff(errors) < 0)
    assert errors[-1] < 1e-5
    assert errors[1] / errors[2] == pytest.approx(100.0, rel=1e-2)


def test_riemann_length_of_a_geodesic_between_random_models(rng):
    a, b = random_probs(rng, 2)
    sa, sb = np.sqrt(a), np.sqrt(b)
    theta = np.arccos(np.clip((sa * sb).sum(-1), 0.0, 1.0))
    limit = math.sqrt(2.0) * math.sqrt(np.mean(theta**2))  # sqrt(2) x RMS per-sample angle
    fine = riemann_length(geodesic(a, b, np.linspace(0.0, 1.0, 501)))
    coarse = riemann_length(geodesic(a, b, np.linspace(0.0, 1.0, 6)))
    assert fine == pytest.approx(limit, rel=1e-5)
    assert abs(coarse - limit) > abs(fine - limit)
    # agrees with the library's d_B on an arbitrary path, and a constant path has length 0
    p = random_probs(rng, 3)
    steps = [bhattacharyya_reference(p[k][None], p[k + 1][None])[0, 0] for k in range(2)]
    assert riemann_length(p) == pytest.approx(sum(2 * math.sqrt(d) for d in steps), rel=1e-12)
    assert riemann_length(np.stack([a, a, a])) == 0.0
    assert riemann_length(a[None]) == 0.0


def test_trajectory_bad_input_messages(rng):
    p = random_probs(rng, 3)
    with pytest.raises(ValueError, match=r"index must have shape \(3,\), one value per checkpoint"):
        reindex(p, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 1\], got range"):
        reindex(p, np.array([0.0, 0.5, 1.5]))
    with pytest.raises(ValueError, match=r"index contains NaN or infinite values"):
        reindex(p, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"grid must be strictly increasing"):
        reindex(p, np.array([0.0, 0.5, 1.0]), grid=np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match=r"grid values must be finite and lie in \[0, 1\]"):
        reindex(p, np.array([0.0, 0.5, 1.0]), grid=np.array([0.5, 2.0]))
    with pytest.raises(ValueError, match=r"trajectory must be a 3-D array"):
        reindex(p[0], np.array([0.0]))
    with pytest.raises(ValueError, match=r"trajectories must be a 4-D array of shape \(S, G"):
        average_trajectories(p)
    with pytest.raises(ValueError, match=r"trajectories: probability rows must sum to 1"):
        trajectory_distance_tensor(np.stack([p, 2 * p]))
    with pytest.raises(ValueError, match=r"tensor must have shape \(G, R, R\)"):
        trajectory_distances(np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match=r"tensor contains NaN"):
        trajectory_distances(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"fraction must be a scalar"):
        slerp(p[0], p[1], np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval"):
        riemann_length(p, bc_floor=0.0)
