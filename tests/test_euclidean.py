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
    cross = euclidean_distances(p, p.copy())  # the non-symmetric path: differences, exactly 0
    assert np.all(np.diag(cross) == 0.0)
    gram = euclidean_distances(p, p.copy(), method="reference")  # Gram rounding only
    np.testing.assert_allclose(np.diag(gram), 0.0, atol=1e-7)


@pytest.mark.parametrize("squared", [False, True])
def test_fused_kernel_matches_the_numpy_form(squared):
    # 83 and 70 rows: partial tiles of 16 x 64 and of the unrolled 4 rows; 45 samples with step 2
    # leave 23, a partial chunk of the kernel's 32
    p, q = random_models(5, 83, n=45, c=10), random_models(6, 70, n=45, c=10)
    for a, b in [(p, None), (p, q)]:
        fused = euclidean_distances(a, b, sample_step=2, squared=squared)
        ref = euclidean_distances(a, b, sample_step=2, squared=squared, method="reference")
        np.testing.assert_allclose(fused, ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fused, brute_force(a[:, ::2], (a if b is None else b)[:, ::2],
                                                      squared), rtol=1e-12, atol=1e-13)


def test_fused_values_do_not_depend_on_blocks_or_threads():
    # each pair's sum is the same float operations whatever the row blocks, sample chunks,
    # tiles and threads, and the same for (i, j) and (j, i)
    p = random_models(7, 150, n=70, c=10)
    whole = euclidean_distances(p)
    assert np.array_equal(whole, whole.T)
    small = 8 * 2 * 40 * 40  # row blocks of 20 and chunks of 1 sample
    assert np.array_equal(euclidean_distances(p, max_block_bytes=small), whole)
    assert np.array_equal(euclidean_distances(p[:60], p[40:]), whole[:60, 40:])


def test_blocks_and_sample_subset_match_the_brute_force():
    p, q = random_models(1, 37), random_models(2, 11)
    tiny = 8 * (4 * 4 + 2 * 4 * 4) * 3  # forces row blocks of 4 and sample chunks of 3
    for method in ("fused", "reference"):
        np.testing.assert_allclose(
            euclidean_distances(p, q, sample_step=3, max_block_bytes=tiny, method=method),
            brute_force(p[:, ::3], q[:, ::3]), atol=1e-7)
        np.testing.assert_allclose(euclidean_distances(p, max_block_bytes=tiny, method=method),
                                   brute_force(p, p), atol=1e-7)
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
    with pytest.raises(ValueError, match="method must be one of"):
        euclidean_distances(random_models(4, 2), method="gram")
