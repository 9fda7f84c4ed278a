"""Tangent bases (docs/study.md A14): kernel averages, the four-point embedding, explained
distance."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry.distances import bhattacharyya, ignorance_point, truth_point
from lowdim.geometry.geodesic import geodesic
from lowdim.geometry.inpca import inpca, minkowski_sq_distances
from lowdim.geometry.tangent_basis import (
    direction_cosine,
    explained_distance_l1,
    kernel_average,
    kernel_weights,
    project_onto_basis,
    tangent_basis,
    tangent_embedding,
)

N, C = 40, 5


def reference_points() -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(N) % C
    return ignorance_point(N, C), truth_point(labels, C)


def noisy(p: np.ndarray, seed: int, scale: float = 0.3) -> np.ndarray:
    """A model near p, off the geodesic."""
    rng = np.random.default_rng(seed)
    q = p * np.exp(scale * rng.standard_normal(p.shape)) + 1e-3
    return q / q.sum(-1, keepdims=True)


def basis_points() -> np.ndarray:
    p0, p1 = reference_points()
    start = noisy(geodesic(p0, p1, 0.2), 1)
    end = noisy(geodesic(p0, p1, 0.8), 2)
    return tangent_basis(p0, p1, start, end)


def test_kernel_weights_are_the_gaussian_of_the_progress_gap():
    w = kernel_weights(np.array([0.2, 0.25, 0.3]), centre=0.2, width=0.05)
    expected = np.exp(-np.array([0.0, 0.5, 2.0]))  # gaps of 0, 1 and 2 widths
    np.testing.assert_allclose(w, expected / expected.sum())


def test_kernel_average_weights_the_models():
    p0, p1 = reference_points()
    models = np.stack([p0, p1])
    avg = kernel_average(models, np.array([0.2, 0.25]), centre=0.2, width=0.05)
    w1 = np.exp(-0.5) / (1 + np.exp(-0.5))
    np.testing.assert_allclose(avg, (1 - w1) * p0 + w1 * p1, atol=1e-7)


def test_kernel_average_refuses_a_centre_far_from_every_checkpoint():
    p0, p1 = reference_points()
    with pytest.raises(ValueError, match="no checkpoint has progress within 5 widths"):
        kernel_average(np.stack([p0, p1]), np.array([0.0, 0.1]), centre=0.8)


def test_basis_embedding_reproduces_the_four_pairwise_distances():
    basis = basis_points()
    emb = tangent_embedding(basis)
    assert emb.coords.shape == (4, 3)
    d = bhattacharyya(basis)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d, atol=1e-10)


def test_basis_point_projected_out_of_sample_returns_its_coordinates():
    basis = basis_points()
    emb = tangent_embedding(basis)
    again = project_onto_basis(basis.copy(), basis, emb)  # a copy: the non-symmetric kernel path
    np.testing.assert_allclose(again, emb.coords, atol=1e-6)


def test_basis_embedding_with_a_sample_subset_uses_that_subset():
    basis = basis_points()
    emb = tangent_embedding(basis, sample_step=2)
    d = bhattacharyya(basis, sample_step=2)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d, atol=1e-10)


def test_explained_distance_of_an_exact_embedding_is_one():
    basis = basis_points()
    emb = tangent_embedding(basis)
    d = bhattacharyya(basis)
    assert explained_distance_l1(d, emb.coords, emb.signs, 3) == pytest.approx(1.0, abs=1e-9)
    # a Euclidean configuration too, through the true InPCA of its squared distances
    x = np.random.default_rng(0).standard_normal((30, 4))
    d_eucl = ((x[:, None] - x[None]) ** 2).sum(-1)
    full = inpca(d_eucl, n_components=4)
    assert explained_distance_l1(d_eucl, full.coords, full.signs, 4) == pytest.approx(1.0)


def test_explained_distance_counts_the_missing_distance():
    # No axes' worth of information (all coordinates equal) explains nothing: 1 - sum D / sum D.
    d = bhattacharyya(basis_points())
    assert explained_distance_l1(d, np.zeros((4, 2)), np.ones(2), 2) == pytest.approx(0.0)
    # Fewer axes of a 3-D configuration explain less than all of them.
    emb = tangent_embedding(basis_points())
    assert explained_distance_l1(d, emb.coords, emb.signs, 1) < 0.999


def test_explained_distance_uses_blocks_without_changing_the_answer():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    s = np.array([1.0, 1.0, -1.0])
    d = np.abs(minkowski_sq_distances(x, s)) + 0.1
    np.fill_diagonal(d, 0.0)
    iu = np.triu_indices(300, 1)
    direct = 1 - np.abs(minkowski_sq_distances(x[:, :2], s[:2]) - d)[iu].sum() / d[iu].sum()
    assert explained_distance_l1(d, x, s, 2) == pytest.approx(direct, rel=1e-12)


def test_direction_cosine_of_averages_on_the_straight_segment_is_one():
    # Both averages on the chord P0 -> P*: the initial and final directions are parallel.
    p0, p1 = reference_points()
    start, end = 0.7 * p0 + 0.3 * p1, 0.2 * p0 + 0.8 * p1
    assert direction_cosine(p0, p1, start, end) == pytest.approx(1.0)


def test_direction_cosine_of_orthogonal_moves_is_zero():
    p0 = np.full((1, 4), 0.25)
    start = p0 + np.array([[0.1, -0.1, 0.0, 0.0]])
    p_star = np.array([[0.25, 0.25, 0.5, 0.0]])
    end = p_star - np.array([[0.0, 0.0, 0.1, -0.1]])  # P* - end = (0, 0, 0.1, -0.1)
    assert direction_cosine(p0, p_star, start, end) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_say_what_is_wrong():
    p0, p1 = reference_points()
    with pytest.raises(ValueError, match="the four basis points must share one shape"):
        tangent_basis(p0, p1, p0[:10], p1)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.3"):
        emb = tangent_embedding(basis_points())
        explained_distance_l1(bhattacharyya(basis_points()), emb.coords, emb.signs, 4)
    with pytest.raises(ValueError, match="a direction has zero length"):
        direction_cosine(p0, p1, p0, p1 * 0.5 + p0 * 0.5)
