"""Geodesics and progress (PAPER.md A3, A6): closed forms, sanity checks, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowdim.distances import bhattacharyya_reference, ignorance_point, truth_point
from lowdim.geometry import GEODESIC_T, geodesic, progress, progress_closed_form

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
