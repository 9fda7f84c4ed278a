"""Mean per-sample Euclidean distance of probability vectors (docs/study.md D20)."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry.distances import ignorance_point, truth_point
from lowdim.geometry.euclidean import euclidean_distances
from lowdim.geometry.inpca import inpca


def random_models(seed: int, m: int, n: int = 50, c: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=(m, n)).astype(np.float32)


def brute_force(p: np.ndarray, q: np.ndarray, squared: bool = False) -> np.ndarray:
    diff = p[:, None].astype(np.float64) - q[None].astype(np.float64)  # (M1, M2, N, C)
    sq = (diff**2).sum(-1)
    return (sq if squared else np.sqrt(sq)).mean(-1)


@pytest.mark.parametrize("c", [2, 3, 10])
def test_ignorance_to_truth_closed_form(c):
    # per sample ||u - e_y||^2 = (1 - 1/C)^2 + (C - 1)/C^2, the same for every sample
    labels = np.arange(60) % c
    pts = np.stack([ignorance_point(60, c), truth_point(labels, c)])
    d = euclidean_distances(pts)
    expected = np.sqrt((1 - 1 / c) ** 2 + (c - 1) / c**2)
    assert d[0, 1] == pytest.approx(expected, rel=1e-12)
    assert euclidean_distances(pts, squared=True)[0, 1] == pytest.approx(expected**2, rel=1e-12)


def test_distance_of_a_point_to_itself_is_zero():
    p = random_models(0, 5)
    d = euclidean_distances(p)
    assert np.all(np.diag(d) == 0.0) and np.array_equal(d, d.T)
    cross = euclidean_distances(p, p.copy())  # the non-symmetric path: Gram rounding only
    np.testing.assert_allclose(np.diag(cross), 0.0, atol=1e-7)


def test_blocks_and_sample_subset_match_the_brute_force():
    p, q = random_models(1, 37), random_models(2, 11)
    tiny = 8 * (4 * 4 + 2 * 4 * 4) * 3  # forces row blocks of 4 and sample chunks of 3
    np.testing.assert_allclose(euclidean_distances(p, q, sample_step=3, max_block_bytes=tiny),
                               brute_force(p[:, ::3], q[:, ::3]), atol=1e-7)
    np.testing.assert_allclose(euclidean_distances(p, max_block_bytes=tiny), brute_force(p, p),
                               atol=1e-7)
    np.testing.assert_allclose(euclidean_distances(p, q, squared=True), brute_force(p, q, True),
                               atol=1e-12)


def test_squared_matrix_is_a_euclidean_embedding():
    # mean per-sample squared distance is a squared distance between flattened predictions / N:
    # InPCA finds no negative eigenvalue.
    d = euclidean_distances(random_models(3, 20), squared=True)
    lam = inpca(d).eigenvalues
    assert lam.min() > -1e-12 * np.abs(lam).max()


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="must share the number of samples N and classes C"):
        euclidean_distances(random_models(4, 2), random_models(4, 2, n=10))
    with pytest.raises(ValueError, match="sample_step must be an integer >= 1"):
        euclidean_distances(random_models(4, 2), sample_step=0)
