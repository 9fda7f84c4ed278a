"""Where the landmarks go (lowdim.geometry.landmarks): half evenly spaced, the rest where the
evenly spaced ones reach least, so a far point (a diverged run's checkpoint) becomes a landmark
instead of being extrapolated."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import check_stored_landmarks, landmark_rows
from lowdim.geometry.landmarks import farthest_landmarks, nearest_landmark_distance


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _paths(rng, runs=6, steps=20, n=40, c=5, outliers=()):
    """Runs moving from ignorance towards the truth, as (runs * steps, n, c) probabilities;
    `outliers` rows are confidently wrong (far from every other point)."""
    truth = rng.integers(0, c, size=n)
    onehot = np.eye(c)[truth]
    t = np.linspace(0, 1, steps)[:, None, None]
    p = np.concatenate([(1 - 0.9 * t) / c + 0.9 * t * onehot + 0.01 * rng.random((steps, n, c))
                        for _ in range(runs)])
    for shift, row in enumerate(outliers, start=1):  # each wrong in its own way
        p[row] = 0.001 / c + np.eye(c)[(truth + shift) % c]
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_nearest_landmark_distance_is_the_row_minimum_of_the_matrix(rng):
    p = _paths(rng)
    rows = np.array([0, 17, 55, 119])
    expected = bhattacharyya(p)[:, rows].min(axis=1)
    expected[rows] = 0.0
    np.testing.assert_allclose(nearest_landmark_distance(p, rows, engine=_engine()), expected,
                               rtol=1e-12, atol=1e-12)


def _engine():
    from lowdim.geometry.distances import resolve_engine

    return resolve_engine("auto", "cpu", 1e-8)


@pytest.mark.parametrize("count", [4, 12, 30])
def test_the_far_points_become_landmarks_and_the_count_is_the_even_choices(rng, count):
    outliers = (33, 78)
    p = _paths(rng, outliers=outliers)
    rows = farthest_landmarks(p, count, rounds=3, selection_step=1)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    assert len(rows) == len(landmark_rows(len(p), count))  # what embedding.landmarks expects
    check_stored_landmarks(rows, len(p), count)  # the embedding stage accepts them
    assert set(outliers) <= set(rows.tolist())  # the evenly spaced half does not reach them
    assert set(landmark_rows(len(p), len(rows) // 2).tolist()) <= set(rows.tolist())
    np.testing.assert_array_equal(rows, farthest_landmarks(p, count, rounds=3,
                                                           selection_step=1))  # deterministic


def test_every_row_is_a_landmark_when_l_reaches_m_even_among_duplicates(rng):
    p = np.repeat(_paths(rng, runs=1, steps=4), 3, axis=0)  # every point three times
    np.testing.assert_array_equal(farthest_landmarks(p, 50, rounds=2), np.arange(12))
    assert len(farthest_landmarks(p, 9, rounds=4)) == 9


def test_bad_rounds_are_refused(rng):
    with pytest.raises(ValueError, match="rounds = 0 and selection_step = 4 must be >= 1"):
        farthest_landmarks(_paths(rng), 6, rounds=0)


def test_an_unknown_choice_is_refused_by_name():
    from pathlib import Path

    from lowdim.config.load import ConfigError
    from lowdim.config.profile import load_profile

    quick = Path(__file__).resolve().parents[1] / "profiles" / "quick.yaml"
    assert load_profile(quick).distances.landmark_choice == "even"
    with pytest.raises(ConfigError, match=r"distances\.landmark_choice.*even.*farthest"):
        load_profile(quick, {"distances": {"landmark_choice": "random"}})
