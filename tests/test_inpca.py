"""InPCA (docs/study.md A4, A5): classical MDS limit, signed spectra, stress, projection, bad
input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.load import ConfigError, from_dict
from lowdim.geometry import eigen
from lowdim.geometry import inpca as inpca_module
from lowdim.geometry.distances import bhattacharyya_reference
from lowdim.geometry.inpca import (
    double_centre,
    explained_stress,
    inpca,
    minkowski_sq_distances,
    project,
)
from lowdim.store.distance_matrices import load_distance_matrix
from lowdim.store.records import Embedding


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2)


def sq_dists(x: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """(M, k) -> (M, M) signed squared differences, computed directly (no Gram trick)."""
    s = np.ones(x.shape[1]) if signs is None else signs
    return ((x[:, None, :] - x[None, :, :]) ** 2 * s).sum(-1)


def test_double_centre_matches_matrix_form(rng):
    d = sq_dists(rng.normal(size=(9, 3)))
    centring = np.eye(9) - np.ones((9, 9)) / 9
    np.testing.assert_allclose(double_centre(d), -0.5 * centring @ d @ centring, atol=1e-12)
    w = double_centre(d)
    np.testing.assert_allclose(w.sum(0), 0.0, atol=1e-12)


def test_euclidean_matrix_gives_pca(rng):
    m = 30
    x = rng.normal(size=(m, 4)) * np.array([5.0, 3.0, 1.5, 0.5]) + 7.0
    emb = inpca(sq_dists(x), n_components=4)
    xc = x - x.mean(0)
    _, sing, vt = np.linalg.svd(xc, full_matrices=False)
    scores = xc @ vt.T
    # eigenvalues of W = squared singular values of the centred data = M x (biased) PCA variances
    np.testing.assert_allclose(emb.eigenvalues[:4], sing**2, rtol=1e-10)
    np.testing.assert_allclose(emb.eigenvalues[:4], m * scores.var(0), rtol=1e-10)
    assert np.abs(emb.eigenvalues[4:]).max() < 1e-9 * emb.eigenvalues[0]
    for k in range(4):  # coordinates = PCA scores up to one sign per axis
        sign = np.sign(emb.coords[:, k] @ scores[:, k])
        np.testing.assert_allclose(emb.coords[:, k], sign * scores[:, k], atol=1e-9)
    np.testing.assert_array_equal(emb.signs, 1.0)


def test_non_euclidean_keeps_negative_eigenvalues_ordered_by_magnitude(rng):
    m = 25
    x = rng.normal(size=(m, 3)) * np.array([4.0, 2.0, 1.0])
    signs = np.array([1.0, -1.0, 1.0])  # the second axis is time-like
    d = sq_dists(x, signs)
    emb = inpca(d, n_components=3)
    lam = emb.eigenvalues
    assert np.all(np.diff(np.abs(lam)) <= 1e-12)
    assert lam[0] > 0 and lam[1] < 0 and lam[2] > 0
    np.testing.assert_array_equal(emb.signs, signs)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d, atol=1e-9)
    # out-of-sample projection is signed: time-like axes come back with the right sign
    np.testing.assert_allclose(project(d, emb), emb.coords, atol=1e-9)


def test_bhattacharyya_matrix_has_negative_eigenvalues(rng):
    # confident (peaked) predictions on few samples: distances near the floor break Euclideanity
    p = rng.dirichlet(np.full(5, 0.05), size=(20, 3))
    d = bhattacharyya_reference(p)
    np.fill_diagonal(d, 0.0)
    emb = inpca(d, n_components=5)
    lam = emb.eigenvalues
    assert lam.shape == (20,)
    assert lam.min() < -1e-6 * np.abs(lam).max()  # d_B is not a squared Euclidean distance
    assert np.all(np.diff(np.abs(lam)) <= 1e-15)
    np.testing.assert_array_equal(emb.signs, np.sign(lam[:5]))
    assert (emb.signs == -1).any()  # a time-like axis among the top five


def test_ignorance_and_truth_at_1000_classes_closed_form(rng):
    """Two points at d = ½ ln C (P0 and P* of ImageNet, C = 1000): W = (d / 2) J, so one
    eigenvalue d / 2 = ¼ ln 1000, coordinates ±√d / 2, and χ1 = 1."""
    from lowdim.geometry.distances import bhattacharyya, ignorance_point, truth_point

    labels = rng.integers(0, 1000, size=64)
    p = np.stack([ignorance_point(64, 1000), truth_point(labels, 1000)])
    d = bhattacharyya(p)
    half_log_c = 0.5 * np.log(1000)
    assert d[0, 1] == pytest.approx(half_log_c, abs=1e-6)
    emb = inpca(d, n_components=2)
    assert emb.eigenvalues[0] == pytest.approx(d[0, 1] / 2, rel=1e-12)
    assert emb.eigenvalues[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.sort(emb.coords[:, 0]), [-np.sqrt(d[0, 1]) / 2,
                                                          np.sqrt(d[0, 1]) / 2], rtol=1e-12)
    assert emb.explained_stress[0] == pytest.approx(1.0, abs=1e-12)


def test_geodesic_at_1000_classes_embeds_in_order(rng):
    """The reference points of an ImageNet analysis set (P0, P*, the geodesic, C = 1000): with
    every component the embedding gives back d_B exactly, its first axis orders the points by
    their place on the geodesic, and d_B = -ln cos(Δt θ) is not Euclidean: time-like axes."""
    from lowdim.analysis.analysis_set import reference_points
    from lowdim.geometry.distances import bhattacharyya

    rows, probs = reference_points({"train": rng.integers(0, 1000, size=40)}, 1000, 8)
    d = bhattacharyya(probs["train"])
    t = rows["t"].to_numpy()
    emb = inpca(d, n_components=len(d))
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, np.sign(emb.eigenvalues)), d,
                               atol=1e-10)
    first = emb.coords[np.argsort(t, kind="stable"), 0] * np.sign(emb.coords[1, 0])
    assert np.all(np.diff(first) >= -1e-12)  # P0 first, P* (t = 1, twice) last
    assert emb.eigenvalues[0] > 0 and (emb.signs == -1).any()
    assert emb.explained_stress[0] > 0.6


def test_stress_frobenius_and_full_reconstruction(rng):
    m = 20
    p = rng.dirichlet(np.full(4, 0.5), size=(m, 15))
    d = bhattacharyya_reference(p)
    np.fill_diagonal(d, 0.0)
    emb = inpca(d, n_components=m + 10)  # clamped to M
    assert emb.coords.shape == (m, m) and emb.eigenvectors.shape == (m, m)
    assert emb.eigenvalues.shape == (m,) and emb.explained_stress.shape == (m,)
    w = double_centre(d)
    assert emb.frobenius_sq == pytest.approx(float((w**2).sum()), rel=1e-12)
    assert emb.frobenius_sq == pytest.approx(float((emb.eigenvalues**2).sum()), rel=1e-10)
    assert np.all(np.diff(emb.explained_stress) >= -1e-12)
    assert emb.explained_stress[-1] == pytest.approx(1.0, abs=1e-6)
    signs = np.sign(emb.eigenvalues)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, signs), d, atol=1e-10)
    np.testing.assert_allclose(emb.column_means, d.mean(0))
    assert emb.grand_mean == pytest.approx(d.mean())


def test_explained_stress_of_exact_low_rank(rng):
    x = rng.normal(size=(15, 2)) * np.array([3.0, 1.0])
    emb = inpca(sq_dists(x), n_components=3)
    chi = emb.explained_stress
    assert chi[0] < 0.99
    assert chi[1] == pytest.approx(1.0, abs=1e-7)
    # definition: chi_k = 1 - ||W - W_k||_F / ||W||_F
    w = double_centre(sq_dists(x))
    u = emb.eigenvectors
    w1 = emb.eigenvalues[0] * np.outer(u[:, 0], u[:, 0])
    expected = 1 - np.linalg.norm(w - w1) / np.linalg.norm(w)
    assert chi[0] == pytest.approx(expected, abs=1e-10)


def test_explained_stress_formula():
    lam = np.array([3.0, -2.0, 1.0])
    chi = explained_stress(lam, 14.0)
    np.testing.assert_allclose(chi, 1 - np.sqrt(1 - np.array([9, 13, 14]) / 14.0))
    np.testing.assert_allclose(explained_stress(lam, 28.0)[-1], 1 - np.sqrt(0.5))
    np.testing.assert_array_equal(explained_stress(np.zeros(3), 0.0), 1.0)


def test_projection_of_in_sample_points_returns_coordinates(rng):
    m = 18
    p = rng.dirichlet(np.full(6, 0.4), size=(m, 25))
    d = bhattacharyya_reference(p)
    np.fill_diagonal(d, 0.0)
    emb = inpca(d, n_components=5)
    np.testing.assert_allclose(project(d, emb), emb.coords, atol=1e-9)
    np.testing.assert_allclose(project(d[3], emb), emb.coords[3], atol=1e-9)


def test_projection_of_new_euclidean_point(rng):
    x = rng.normal(size=(12, 2)) * np.array([2.0, 1.0])
    emb = inpca(sq_dists(x), n_components=3)  # third axis is null (rank 2)
    new = rng.normal(size=(4, 2))
    d_new = ((new[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    got = project(d_new, emb)
    xc_mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - xc_mean, full_matrices=False)
    expected = (new - xc_mean) @ vt.T
    sign = np.sign((emb.coords[:, :2] * ((x - xc_mean) @ vt.T)).sum(0))
    np.testing.assert_allclose(got[:, :2], expected * sign, atol=1e-9)
    np.testing.assert_array_equal(got[:, 2], 0.0)  # null component is reported as 0
    assert emb.signs[2] == 0.0


def test_embedding_is_deterministic(rng):
    d = sq_dists(rng.normal(size=(10, 3)))
    a, b = inpca(d, 3), inpca(d.copy(), 3)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert isinstance(a, Embedding)
    for k in range(3):
        col = a.eigenvectors[:, k]
        assert col[np.abs(col).argmax()] > 0


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input_messages(rng):
    d = sq_dists(rng.normal(size=(6, 2)))
    with pytest.raises(ValueError, match=r"must be a square \(M, M\) matrix"):
        inpca(d[:, :5])
    bad = d.copy()
    bad[0, 1] += 1.0
    with pytest.raises(ValueError, match=r"must be symmetric: max \|d - d.T\|"):
        inpca(bad)
    with pytest.raises(ValueError, match=r"must be symmetric"):
        double_centre(bad)
    bad = d.copy()
    bad[2, 3] = bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN or infinite values"):
        inpca(bad)
    with pytest.raises(ValueError, match=r"n_components must be an integer >= 1"):
        inpca(d, n_components=0)
    emb = inpca(d, 2)
    with pytest.raises(ValueError, match=r"d_rows must have shape \(R, 6\) or \(6,\)"):
        project(d[:, :4], emb)
    with pytest.raises(ValueError, match=r"signs must contain only -1, 0 or \+1"):
        minkowski_sq_distances(emb.coords, np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match=r"signs must have shape \(2,\)"):
        minkowski_sq_distances(emb.coords, np.ones(3))
    with pytest.raises(ValueError, match=r"exceeds frobenius_sq .* not its square root"):
        explained_stress(np.array([3.0, 2.0]), np.sqrt(13.0))
    with pytest.raises(ValueError, match=r"frobenius_sq must be a finite number >= 0"):
        explained_stress(np.array([1.0]), -1.0)


# ---- iterative solvers (lowdim.geometry.eigen): matrix-free W, streaming ||W||_F^2
# ---------------------

SMALL_BLOCKS = 8 * 8 * 6 * 8  # tiles of 8 x 8 and slabs of a few rows: many ragged blocks


def minkowski_plus_noise(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, m) signed squared distances (two time-like axes) plus symmetric noise: full rank,
    distinct eigenvalues, both signs among the leading ones."""
    x = rng.normal(size=(m, 5)) * np.array([6.0, 5.0, 4.0, 3.0, 2.0])
    noise = rng.normal(scale=0.5, size=(m, m))
    d = sq_dists(x, np.array([1.0, -1.0, 1.0, -1.0, 1.0])) + noise + noise.T
    np.fill_diagonal(d, 0.0)
    return d


def peaked_bhattacharyya(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, m) d_B of confident predictions on a few samples (not a Euclidean matrix)."""
    p = rng.dirichlet(np.full(5, 0.05), size=(m, 4))
    d = bhattacharyya_reference(p)
    np.fill_diagonal(d, 0.0)
    return d


def test_centred_product_equals_dense_w_times_x(rng):
    d = peaked_bhattacharyya(rng, 45) + 3.0
    stats = eigen.streaming_stats(d, SMALL_BLOCKS)
    assert stats.symmetric
    w = double_centre(d)
    x = rng.normal(size=(45, 3))
    np.testing.assert_allclose(eigen.centred_product(d, x, stats, SMALL_BLOCKS), w @ x,
                               rtol=1e-12, atol=1e-12 * np.abs(w @ x).max())
    np.testing.assert_allclose(eigen.centred_product(d, x[:, 0], stats), w @ x[:, 0],
                               atol=1e-12 * np.abs(w @ x).max())
    # slightly asymmetric (within tolerance): the product is with (D + D^T)/2, as double_centre
    skew = d + 1e-8 * np.triu(rng.normal(size=d.shape), 1)
    stats = eigen.streaming_stats(skew, SMALL_BLOCKS)
    assert not stats.symmetric
    np.testing.assert_allclose(eigen.centred_product(skew, x, stats, SMALL_BLOCKS),
                               double_centre(skew) @ x, atol=1e-12 * np.abs(w @ x).max())


def test_streaming_frobenius_equals_dense(rng):
    # a large offset makes the terms of the identity cancel: the shift keeps it exact
    for offset in (0.0, 1e4):
        d = peaked_bhattacharyya(rng, 37) + offset
        stats = eigen.streaming_stats(d, SMALL_BLOCKS)
        w = double_centre(d)
        assert stats.frobenius_sq == pytest.approx(float((w**2).sum()), rel=1e-10)
        np.testing.assert_allclose(stats.row_means, d.mean(axis=1), rtol=1e-13)
        assert stats.grand_mean == pytest.approx(d.mean(), rel=1e-13)
        assert stats.d_frobenius == pytest.approx(np.linalg.norm(d), rel=1e-10)


@pytest.mark.parametrize("solver", ["randomized", "lanczos"])
def test_iterative_solvers_equal_dense_eigh(rng, solver):
    d = minkowski_plus_noise(rng, 150)
    dense = inpca(d, 6, solver="dense")
    emb = inpca(d, 6, solver=solver, n_eigenvalues=12, block_bytes=SMALL_BLOCKS * 40)
    lam = emb.eigenvalues
    assert lam.shape == (12,) and emb.coords.shape == (150, 6)
    assert (lam < 0).any() and (lam > 0).any()  # both signs among the top 12
    np.testing.assert_allclose(lam, dense.eigenvalues[:12], rtol=1e-10)
    assert emb.frobenius_sq == pytest.approx(dense.frobenius_sq, rel=1e-12)
    np.testing.assert_allclose(emb.explained_stress, dense.explained_stress[:12], atol=1e-12)
    sign = np.sign((emb.coords * dense.coords).sum(axis=0))
    np.testing.assert_allclose(emb.coords, dense.coords * sign, atol=1e-8)
    np.testing.assert_allclose(emb.column_means, dense.column_means, rtol=1e-13)
    np.testing.assert_array_equal(emb.signs, np.sign(lam[:6]))
    np.testing.assert_allclose(project(d, emb), emb.coords, atol=1e-8)


def test_randomized_solver_restarts_and_finds_null_directions(rng):
    # rank 3 W asked for 5 eigenpairs: two are null, accepted at the rounding level
    x = rng.normal(size=(80, 3)) * np.array([4.0, 2.0, 1.0])
    d = sq_dists(x)
    dense = inpca(d, 5, solver="dense")
    emb = inpca(d, 5, solver="randomized")
    np.testing.assert_allclose(emb.eigenvalues[:3], dense.eigenvalues[:3], rtol=1e-10)
    assert np.abs(emb.eigenvalues[3:]).max() < 1e-9 * emb.eigenvalues[0]
    np.testing.assert_array_equal(emb.signs, [1.0, 1.0, 1.0, 0.0, 0.0])
    # a basis capped at 16 columns forces thick restarts
    d = peaked_bhattacharyya(rng, 120)
    w = double_centre(d)
    lam, u = eigen.block_krylov_eigenpairs(lambda v: w @ v, 120, 6, block_size=4, max_basis=16)
    expected = inpca(d, 6, solver="dense").eigenvalues[:6]
    np.testing.assert_allclose(lam, expected, rtol=1e-10)
    np.testing.assert_allclose(w @ u, u * lam, atol=1e-9 * abs(lam[0]))


def test_memory_mapped_input_gives_same_result(rng, tmp_path):
    d = peaked_bhattacharyya(rng, 90)
    np.save(tmp_path / "train.npy", d)
    mapped = load_distance_matrix(tmp_path, "train", mmap=True)
    assert isinstance(mapped, np.memmap)
    for solver in ("randomized", "dense"):
        a = inpca(d, 4, solver=solver, block_bytes=SMALL_BLOCKS)
        b = inpca(mapped, 4, solver=solver, block_bytes=SMALL_BLOCKS)
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-13)
        np.testing.assert_allclose(b.coords, a.coords, atol=1e-12)
        assert b.frobenius_sq == pytest.approx(a.frobenius_sq, rel=1e-13)


def test_auto_solver_is_dense_for_small_matrices_only(rng, monkeypatch):
    d = peaked_bhattacharyya(rng, 60)
    assert inpca(d, 3).eigenvalues.shape == (60,)  # dense: every eigenvalue
    monkeypatch.setattr(inpca_module, "AUTO_DENSE_MAX", 50)
    assert inpca(d, 3, n_eigenvalues=5).eigenvalues.shape == (5,)  # iterative: the top 5
    assert inpca(d, 3, n_eigenvalues=15).eigenvalues.shape == (60,)  # a quarter: dense again


def test_solver_bad_input_messages(rng):
    d = peaked_bhattacharyya(rng, 30)
    with pytest.raises(ValueError, match=r"solver = 'fast' is not known: use one of auto, dense"):
        inpca(d, 3, solver="fast")
    with pytest.raises(ValueError, match=r"n_eigenvalues must be an integer >= 1, got 0"):
        inpca(d, 3, n_eigenvalues=0)
    with pytest.raises(ValueError, match=r"computes fewer than M = 30 eigenpairs, got .* = 30"):
        inpca(d, 40, solver="lanczos")
    bad = d.copy()
    bad[4, 7] = bad[7, 4] = np.inf
    with pytest.raises(ValueError, match=r"d contains NaN or infinite values"):
        inpca(bad, 3, solver="randomized", block_bytes=SMALL_BLOCKS)
    bad = d.copy()
    bad[20, 3] += 1.0
    with pytest.raises(ValueError, match=r"d must be symmetric: max \|d - d.T\| = 1 exceeds"):
        inpca(bad, 3, solver="randomized", block_bytes=SMALL_BLOCKS)
    with pytest.raises(ValueError, match=r"must be a square \(M, M\) matrix, got shape \(30, 29\)"):
        inpca(d[:, 1:], 3, solver="randomized")
    with pytest.raises(ValueError, match=r"unknown solver 'arpack': use one of randomized"):
        eigen.top_eigenpairs(d, 3, eigen.streaming_stats(d), solver="arpack")
    w = double_centre(d)
    with pytest.raises(RuntimeError, match=r"did not converge after 8 vector products"):
        eigen.block_krylov_eigenpairs(lambda v: w @ v, 30, 5, block_size=8, max_products=8)
    with pytest.raises(ConfigError, match=r"embedding.solver = 'eigsh': must be one of auto"):
        from_dict({**yaml.safe_load(Path("profiles/tiny.yaml").read_text()),
                   "embedding": {"solver": "eigsh"}}, EmbeddingConfig)
