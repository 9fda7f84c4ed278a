"""lowdim.geometry.inpca and lowdim.geometry.geodesic against their definitions, at the edges
`make mutants` found untested: landmark embeddings, blockwise reads of D within ``block_bytes``,
the options that reach the solvers, float32 inputs (computed in float64), the bounds of every
check; progress and the geodesic against their closed forms (docs/study.md A3, A4-A6, A15;
docs/performance.md, "Mutation testing")."""

from __future__ import annotations

import math
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from lowdim.geometry import eigen
from lowdim.geometry import geodesic as geo
from lowdim.geometry import inpca as inpca_module
from lowdim.geometry.distances import BC_FLOOR, bhattacharyya_reference
from lowdim.geometry.geodesic import (
    INDEX_EPS,
    THETA_EPS,
    average_trajectories,
    check_distance_tensor,
    chord_angles,
    geodesic,
    progress,
    progress_closed_form,
    reindex,
    reindex_brackets,
    riemann_length,
    trajectory_distance_tensor,
    unit_roots,
)
from lowdim.geometry.inpca import (
    double_centre,
    explained_stress,
    inpca,
    landmark_rows,
    memory_estimate,
    minkowski_sq_distances,
    project,
)
from lowdim.store.records import Embedding


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def signed_sq_dists(x: np.ndarray, signs) -> np.ndarray:
    """(M, k), (k,) -> (M, M) sum_k s_k (x_ik - x_jk)^2, computed directly (no Gram trick)."""
    return ((x[:, None, :] - x[None, :, :]) ** 2 * np.asarray(signs, dtype=np.float64)).sum(-1)


def minkowski_case(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, m) exact signed squared distances of a 3-D configuration with one time-like axis."""
    x = rng.normal(size=(m, 3)) * np.array([3.0, 2.0, 1.0])
    return signed_sq_dists(x, [1.0, -1.0, 1.0])


class RowReader:
    """A blockwise (M, M) matrix like ``lowdim.store.arrays.NpyFile`` that records every read:
    the bytes of each block returned and, for reads of index arrays, the rows asked for."""

    blockwise = True

    def __init__(self, d: np.ndarray) -> None:
        self.d = d
        self.shape = d.shape
        self.dtype = d.dtype
        self.ndim = d.ndim
        self.read_bytes: list[int] = []
        self.index_reads: list[np.ndarray] = []  # d[row indices]
        self.slice_reads: list[slice] = []  # d[row slice]
        self.tile_reads: list[tuple] = []  # d[rows, cols]

    def __getitem__(self, key):
        out = np.array(self.d[key])
        self.read_bytes.append(out.nbytes)
        if isinstance(key, tuple):
            self.tile_reads.append(key)
        elif isinstance(key, slice):
            self.slice_reads.append(key)
        else:
            self.index_reads.append(np.asarray(key))
        return out

    def __array__(self, dtype=None, copy=None):  # a whole read: what blockwise input avoids
        self.read_bytes.append(self.d.nbytes)
        return self.d if dtype is None else self.d.astype(dtype)


# --- inpca: landmarks ----------------------------------------------------------------------

def test_landmark_rows_of_a_count_are_evenly_spaced_with_both_ends():
    for m, count in ((10, 2), (10, 4), (101, 7), (23, 5)):
        rows = landmark_rows(m, count)
        expected = [round(j * (m - 1) / (count - 1)) for j in range(count)]
        np.testing.assert_array_equal(rows, expected)
        assert rows.dtype == np.int64
    np.testing.assert_array_equal(landmark_rows(5, np.int64(7)), np.arange(5))  # L >= M: all
    np.testing.assert_array_equal(landmark_rows(5, 5), np.arange(5))


@pytest.mark.parametrize("rows", [[0, 9], [0, 1, 2], [3, 4, 9], [0, 5]])
def test_landmark_rows_accepts_sorted_unique_indices_in_range(rows):
    got = landmark_rows(10, np.array(rows, dtype=np.int32))
    np.testing.assert_array_equal(got, rows)
    assert got.dtype == np.int64


@pytest.mark.parametrize("rows", [
    [3], [[0, 1], [2, 3]], [0.0, 3.0], [-1, 3], [0, 10], [0, 3, 10], [0, 12, 11], [3, 1],
    [2, 2, 5], True,
])
def test_landmark_rows_refuses_anything_else(rows):
    with pytest.raises(ValueError, match=r"landmarks must be a count >= 2 or sorted, unique row "
                                         r"indices in \[0, 9\], got"):
        landmark_rows(10, np.array(rows) if isinstance(rows, list) else rows)


def test_landmark_count_below_two_is_refused_and_two_is_enough():
    with pytest.raises(ValueError, match=r"^landmarks must be at least 2 points, got 1$"):
        landmark_rows(10, 1)
    np.testing.assert_array_equal(landmark_rows(10, 2), [0, 9])


def test_landmark_embedding_recovers_every_distance_and_is_the_landmark_matrixs(rng):
    m, count, k = 30, 8, 3
    d = minkowski_case(rng, m)
    emb = inpca(d, k, landmarks=count)
    rows = landmark_rows(m, count)
    np.testing.assert_array_equal(emb.landmarks, rows)
    # the landmark matrix's own embedding, field by field and exactly
    base = inpca(d[np.ix_(rows, rows)], k)
    np.testing.assert_array_equal(emb.coords[rows], base.coords)
    for field in ("eigenvalues", "explained_stress", "column_means", "eigenvectors"):
        np.testing.assert_array_equal(getattr(emb, field), getattr(base, field))
    assert emb.frobenius_sq == base.frobenius_sq and emb.grand_mean == base.grand_mean
    # every other point is placed by the out-of-sample formula: all distances recovered (A4)
    assert emb.coords.shape == (m, k)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d,
                               atol=1e-9 * np.abs(d).max())
    # project takes distances to the landmarks or to every point (the landmark columns)
    others = np.setdiff1d(np.arange(m), rows)
    np.testing.assert_allclose(project(d[others][:, rows], emb), emb.coords[others], atol=1e-9)
    np.testing.assert_allclose(project(d[others], emb), emb.coords[others], atol=1e-9)
    np.testing.assert_allclose(project(d[others[0]], emb), emb.coords[others[0]], atol=1e-9)
    # as many landmarks as points: the ordinary embedding, no landmarks recorded
    whole = inpca(d, k, landmarks=m)
    assert whole.landmarks.size == 0
    np.testing.assert_array_equal(whole.coords, inpca(d, k).coords)


@pytest.mark.parametrize("rows_per_read", [1, 3])
def test_landmark_embedding_reads_d_in_row_slabs_within_block_bytes(rng, rows_per_read):
    """'Reads D twice in row slabs of block_bytes': the landmark rows once each, in slabs of
    block_bytes // (8 M) rows (at least one), then every row; D is never read whole."""
    m, count = 30, 8
    d = minkowski_case(rng, m)
    block = 8 * m * rows_per_read
    reader = RowReader(d)
    emb = inpca(reader, 3, landmarks=count, block_bytes=block)
    assert max(reader.read_bytes) <= block
    rows = landmark_rows(m, count)
    # first pass: the landmark rows, in order, each once, as few reads as the budget allows
    np.testing.assert_array_equal(np.concatenate(reader.index_reads), rows)
    assert len(reader.index_reads) == math.ceil(count / rows_per_read)
    # second pass: every row once
    covered = np.concatenate([np.arange(m)[s] for s in reader.slice_reads])
    np.testing.assert_array_equal(covered, np.arange(m))
    np.testing.assert_allclose(emb.coords, inpca(d, 3, landmarks=count).coords, atol=1e-12)


def test_iterative_solver_reads_blockwise_d_within_block_bytes(rng):
    m = 40
    d = minkowski_case(rng, m) + 0.01 * rng.normal(size=(m, m))
    d = 0.5 * (d + d.T)
    block = 8 * m * 2
    reader = RowReader(d)
    emb = inpca(reader, 3, solver="randomized", block_bytes=block)
    assert reader.tile_reads and reader.slice_reads  # the statistics pass, then the products
    assert max(reader.read_bytes) <= block
    dense = inpca(d, 3, solver="dense")
    np.testing.assert_allclose(emb.eigenvalues, dense.eigenvalues[:3], rtol=1e-9)


def test_nested_lists_are_accepted(rng):
    d = minkowski_case(rng, 12)
    np.testing.assert_array_equal(inpca(d.tolist(), 3).coords, inpca(d, 3).coords)


@pytest.fixture
def solver_calls(monkeypatch):
    """Record the options inpca passes to eigen.top_eigenpairs (then solve on the host)."""
    calls = []
    real = eigen.top_eigenpairs

    def spy(d, k, stats, **options):
        calls.append({"k": k, "m": d.shape[0], **options})
        return real(d, k, stats, **{**options, "device": None})

    monkeypatch.setattr(inpca_module, "top_eigenpairs", spy)
    return calls


@pytest.mark.parametrize("landmarks", [None, 24])
def test_options_reach_the_iterative_solver(rng, solver_calls, landmarks):
    d = minkowski_case(rng, 40) + 1.0
    np.fill_diagonal(d, 0.0)
    options = {"solver": "lanczos", "tol": 1e-9, "block_bytes": 4096, "block_size": 3}
    emb = inpca(d, 2, n_eigenvalues=5, landmarks=landmarks, device="cuda", **options)
    assert solver_calls == [{"k": 5, "m": 24 if landmarks else 40, "device": "cuda", **options}]
    assert emb.eigenvalues.shape == (5,) and emb.coords.shape == (40, 2)


@pytest.mark.parametrize(("device", "cuda_available", "expected"), [
    (None, True, None), ("cpu", True, None), ("cuda", False, "cuda"), ("cuda:1", True, "cuda:1"),
    ("auto", True, "cuda"), ("auto", False, None),
])
def test_device_choice(rng, solver_calls, monkeypatch, device, cuda_available, expected):
    """None / "cpu": numpy on the host; "auto": CUDA when torch sees one; others passed on."""
    fake_torch = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: cuda_available))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    inpca(minkowski_case(rng, 20), 2, solver="randomized", device=device)
    assert solver_calls[0]["device"] == expected


def test_saved_stats_replace_the_pass_over_d(rng):
    m = 40
    d = minkowski_case(rng, m) + 0.01 * rng.normal(size=(m, m))
    d = 0.5 * (d + d.T)
    stats = eigen.streaming_stats(d)
    reader = RowReader(d)
    a = inpca(reader, 3, solver="lanczos", stats=stats)
    b = inpca(d, 3, solver="lanczos")
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-10)
    assert a.frobenius_sq == stats.frobenius_sq
    # no tile (rows, cols) was read for statistics: only row slabs for the products
    assert reader.slice_reads and not reader.tile_reads and not reader.index_reads
    with pytest.raises(ValueError, match=r"stats describe a matrix of 40 points, d has 39"):
        inpca(d[:39, :39], 3, solver="lanczos", stats=stats)


# --- inpca: options and the auto choice ----------------------------------------------------

def test_default_keeps_fifty_components_and_one_is_allowed(rng):
    d = minkowski_case(rng, 60) + rng.normal(scale=0.1, size=(60, 60))
    d = 0.5 * (d + d.T)
    assert inpca(d).coords.shape == (60, 50)
    one = inpca(d, 1, n_eigenvalues=1)
    assert one.coords.shape == (60, 1)


@pytest.mark.parametrize("bad", [{"n_components": True}, {"n_eigenvalues": True},
                                 {"n_components": 2.5}, {"n_eigenvalues": 0}])
def test_booleans_and_fractions_are_not_counts(rng, bad):
    options = {"n_components": 2, **bad}
    with pytest.raises(ValueError, match=r"must be an integer >= 1, got"):
        inpca(minkowski_case(rng, 8), **options)


def test_auto_solver_boundaries(rng, monkeypatch):
    """auto: dense up to AUTO_DENSE_MAX points inclusive, or when 4 x the eigenvalues asked
    for reach M; randomized otherwise (the same choice memory_estimate assumes)."""
    monkeypatch.setattr(inpca_module, "AUTO_DENSE_MAX", 60)
    d = minkowski_case(rng, 60) + rng.normal(scale=0.1, size=(60, 60))
    d = 0.5 * (d + d.T)
    assert inpca(d, 3, n_eigenvalues=5).eigenvalues.shape == (60,)  # M = AUTO_DENSE_MAX: dense
    monkeypatch.setattr(inpca_module, "AUTO_DENSE_MAX", 59)
    assert inpca(d, 3, n_eigenvalues=14).eigenvalues.shape == (14,)  # 4 x 14 < 60: iterative
    assert inpca(d, 3, n_eigenvalues=15).eigenvalues.shape == (60,)  # 4 x 15 = 60: dense


def test_memory_estimate_assumes_the_solver_auto_picks():
    m = inpca_module.AUTO_DENSE_MAX + 400
    for count in (m // 4 - 1, m // 5, m // 4, m // 4 + 1):
        auto = memory_estimate(m, 3, n_eigenvalues=count)
        picked = "dense" if 4 * count >= m else "randomized"
        assert auto == memory_estimate(m, 3, n_eigenvalues=count, solver=picked)


# --- inpca: float64 arithmetic, stress bounds, Minkowski distances, projection ---------------

def test_double_centre_computes_float32_input_in_float64(rng):
    d = minkowski_case(rng, 12).astype(np.float32)
    d64 = d.astype(np.float64)
    n = d64.shape[0]
    centring = np.eye(n) - np.ones((n, n)) / n
    w = double_centre(d)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, -0.5 * centring @ d64 @ centring, rtol=0,
                               atol=1e-12 * np.abs(d64).max())


def test_dense_path_names_d_in_its_errors():
    with pytest.raises(ValueError, match=r"^d must be a square \(M, M\) matrix"):
        double_centre(np.zeros((2, 3)))
    bad = np.ones((3, 3))
    bad[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"^d contains NaN or infinite values"):
        inpca(bad, 2, solver="dense")
    bad = np.ones((3, 3))
    bad[0, 2] = 5.0
    with pytest.raises(ValueError, match=r"^d must be symmetric"):
        inpca(bad, 2, solver="dense")


def test_explained_stress_computes_float32_eigenvalues_in_float64(rng):
    lam = rng.normal(size=6).astype(np.float32)
    lam64 = lam.astype(np.float64)
    frob = float((lam64**2).sum()) * 1.3
    chi = explained_stress(lam, frob)
    assert chi.dtype == np.float64
    expected = 1.0 - np.sqrt(1.0 - np.cumsum(lam64**2) / frob)
    np.testing.assert_allclose(chi, expected, rtol=1e-14)
    zero = explained_stress(np.array([2, 1]), 0.0)  # F = 0: nothing to explain, chi = 1
    assert zero.shape == (2,) and zero.dtype == np.float64
    np.testing.assert_array_equal(zero, 1.0)


def test_explained_stress_tolerates_rounding_only():
    """sum lambda^2 may exceed F by a factor 1 + 1e-6 (rounding), not more."""
    lam = np.array([1.0, 1e-3])
    assert np.cumsum(lam**2)[-1] == 1.0 * (1 + 1e-6)  # exactly at the tolerance: accepted
    np.testing.assert_allclose(explained_stress(lam, 1.0), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"exceeds frobenius_sq"):
        explained_stress(np.array([3.0, 2.0]), 12.9)  # 13 > 12.9: not rounding
    # only the total counts, wherever the excess comes from
    with pytest.raises(ValueError, match=r"sum of squared eigenvalues \(3\) exceeds"):
        explained_stress(np.array([1.0, 1.0, 1.0]), 2.5)


@pytest.mark.parametrize("lam", [np.ones((2, 2)), np.array([1.0, np.nan]),
                                 np.array([np.inf, 1.0])])
def test_explained_stress_needs_finite_1d_eigenvalues(lam):
    with pytest.raises(ValueError, match=r"eigenvalues must be a finite 1-D array"):
        explained_stress(lam, 10.0)


def test_minkowski_distances_with_a_null_axis_match_the_definition(rng):
    x = rng.normal(size=(7, 3))
    signs = np.array([1.0, 0.0, -1.0])
    np.testing.assert_allclose(minkowski_sq_distances(x, signs), signed_sq_dists(x, signs),
                               atol=1e-12)
    # the null axis contributes nothing, whatever its coordinates
    y = x.copy()
    y[:, 1] = 1e3 * rng.normal(size=7)
    np.testing.assert_allclose(minkowski_sq_distances(y, signs), minkowski_sq_distances(x, signs),
                               atol=1e-9)


def _hand_embedding() -> Embedding:
    """M = 4 base points, two axes: lambda = 4 (u1) and an exactly null lambda = 0 (u2)."""
    u = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) / math.sqrt(2.0)
    lam = np.array([4.0, 0.0])
    col_means = np.array([1.0, 2.0, 3.0, 4.0])
    return Embedding(eigenvalues=lam, coords=u * np.sqrt(lam), explained_stress=np.ones(2),
                     frobenius_sq=16.0, column_means=col_means, grand_mean=2.5, eigenvectors=u)


def test_projection_formula_and_null_axes_without_division_warnings():
    emb = _hand_embedding()
    rows = np.array([[0.5, 1.5, 4.0, 0.0], [2.0, 0.0, 1.0, 7.0]])
    c = -0.5 * (rows - rows.mean(axis=1, keepdims=True) - emb.column_means + emb.grand_mean)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a null axis is set to 0, never divided by ~0
        x = project(rows, emb)
    np.testing.assert_allclose(x[:, 0], c @ emb.eigenvectors[:, 0] / 2.0, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(x[:, 1], 0.0)


def test_projection_computes_float32_distances_in_float64(rng):
    d = minkowski_case(rng, 20) + 5.0
    np.fill_diagonal(d, 0.0)
    emb = inpca(d, 3)
    rows = (d[:5] * 1.01 + 0.37).astype(np.float32)
    np.testing.assert_allclose(project(rows, emb), project(rows.astype(np.float64), emb),
                               rtol=1e-12, atol=1e-12)


# --- geodesic: the great circle, progress --------------------------------------------------

def _slerp_by_formula(p0: np.ndarray, p1: np.ndarray, t: float) -> np.ndarray:
    """A3's gamma(t)^2 per sample, from arccos of the inner product (no special cases)."""
    a0, a1 = np.sqrt(p0), np.sqrt(p1)
    theta = np.arccos(np.clip((a0 * a1).sum(-1, keepdims=True), 0.0, 1.0))
    g = (np.sin((1 - t) * theta) * a0 + np.sin(t * theta) * a1) / np.sin(theta)
    return g**2


def _pair_at_theta_eps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p0 = [1, 0], p1 = [1 - e, e] with the chord angle exactly THETA_EPS (e ~ 1e-16, found by
    bisection and a scan of neighbouring floats), and p1' one float of e lower (angle below)."""
    def angle(e: float) -> float:
        return float(chord_angles(unit_roots(np.array([[1.0, 0.0]])),
                                  unit_roots(np.array([[1.0 - e, e]])))[0])
    lo, hi = 0.5e-16, 2e-16
    for _ in range(120):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if angle(mid) < THETA_EPS else (lo, mid)
    e = lo
    for _ in range(200):
        if angle(e) == THETA_EPS:
            break
        e = float(np.nextafter(e, 1.0))
    assert angle(e) == THETA_EPS
    below = e
    while angle(below) >= THETA_EPS:
        below = float(np.nextafter(below, 0.0))
    return (np.array([[1.0, 0.0]]), np.array([[1.0 - e, e]]), np.array([[1.0 - below, below]]))


def test_a_sample_at_exactly_theta_eps_moves_and_one_below_stays():
    p0, p1, p1_below = _pair_at_theta_eps()
    moved = geodesic(p0, p1, 1.0)
    assert moved[0, 1] > 0.0  # it reaches p1: theta_n >= THETA_EPS is a moving sample
    np.testing.assert_allclose(moved, p1, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(geodesic(p0, p1_below, 1.0), p0)  # below: at the start


def test_geodesic_matches_a3s_formula_and_uses_float32_parameters_exactly(rng):
    p0, p1 = rng.dirichlet(np.ones(4), size=(2, 5))
    ts32 = np.array([0.3, 0.7, 0.1], dtype=np.float32)
    got = geodesic(p0, p1, ts32)
    for j, t in enumerate(ts32.astype(np.float64)):
        np.testing.assert_allclose(got[j], _slerp_by_formula(p0, p1, t), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(geodesic(p0, p1, np.float32(0.3)),
                                  geodesic(p0, p1, float(np.float32(0.3))))


@pytest.mark.parametrize("t", [-0.1, np.nan, [0.5, -1e-9], [0.2, np.inf]])
def test_parameters_outside_the_unit_interval_are_refused(rng, t):
    p0, p1 = rng.dirichlet(np.ones(3), size=(2, 2))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        geodesic(p0, p1, np.asarray(t))


def test_endpoints_are_named_in_errors(rng):
    p0, p1 = rng.dirichlet(np.ones(3), size=(2, 2))
    with pytest.raises(ValueError, match=r"^p0: probability rows must sum to 1"):
        geodesic(2 * p0, p1, 0.5)
    with pytest.raises(ValueError, match=r"^p1: probability rows must sum to 1"):
        geodesic(p0, 2 * p1, 0.5)


def _closed_form_case():
    """N = 3 samples in C = 3 classes: samples 0 and 1 go e0 -> e1 (theta = pi/2), sample 2 has
    p0 == p1 (degenerate, no information)."""
    e = np.eye(3)
    p0 = np.stack([e[0], e[0], [0.2, 0.3, 0.5]])
    p1 = np.stack([e[1], e[1], [0.2, 0.3, 0.5]])
    return e, p0, p1


def test_closed_form_means_t_over_informative_samples_without_warnings():
    e, p0, p1 = _closed_form_case()
    g = geodesic(p0, p1, np.array([0.3, 0.6]))
    other = np.array([0.1, 0.1, 0.8])
    models = np.stack([
        np.stack([g[0][0], e[2], other]),   # one informative sample (t = 0.3), one orthogonal
        np.stack([e[1], g[1][1], other]),   # <a, a0> = 0 < <a, a1>: t_n = 1; and t_n = 0.6
        np.stack([e[2], e[2], other]),      # nothing informative: lambda = 0
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 0 / 0 and x / 0 cases are handled, not warned about
        lam = progress_closed_form(models, p0, p1)
    np.testing.assert_allclose(lam, [0.3, 0.8, 0.0], atol=1e-12)


def test_closed_form_is_the_mean_of_per_sample_geodesic_parameters(rng):
    """A model whose sample n sits at gamma_n(t_n) has lambda = mean t_n ('mean' mode, A6)."""
    p0, p1 = rng.dirichlet(np.ones(4), size=(2, 5))
    t_n = np.array([0.1, 0.25, 0.5, 0.8, 0.95])
    model = np.stack([geodesic(p0, p1, t)[n] for n, t in enumerate(t_n)])
    assert progress_closed_form(model[None], p0, p1)[0] == pytest.approx(t_n.mean(), abs=1e-12)


def test_models_beyond_one_block_are_all_projected(rng):
    """130 models (more than two blocks of 64): each gets its own lambda."""
    p0, p1 = rng.dirichlet(np.ones(3), size=(2, 3))
    ts = np.linspace(0.0, 1.0, 130)
    lam = progress_closed_form(geodesic(p0, p1, ts), p0, p1)
    np.testing.assert_allclose(lam, ts, atol=1e-9)


def test_progress_with_one_informative_sample_among_degenerate_ones():
    e, p0, p1 = _closed_form_case()
    p0, p1 = p0[[0, 2]], p1[[0, 2]]  # one sample e0 -> e1, one with p0 == p1
    models = geodesic(p0, p1, np.array([0.3, 0.7]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lam = progress(models, p0, p1)
    np.testing.assert_allclose(lam, [0.3, 0.7], atol=1e-5)


def test_progress_meets_its_tolerance(rng):
    """The angle sum is V-shaped at its minimum: the answer is as close as xatol asks."""
    p0, p1 = rng.dirichlet(np.ones(4), size=(2, 6))
    ts = np.array([0.137, 0.5, 0.8123])
    models = geodesic(p0, p1, ts)
    with warnings.catch_warnings():
        # near the minimum <a, gamma(t)> rounds above 1: clipped before the arccos, no NaN
        warnings.simplefilter("error")
        fine = progress(models, p0, p1, xatol=1e-9)
        default = progress(models, p0, p1)  # xatol 1e-6
    np.testing.assert_allclose(fine, ts, rtol=0, atol=2e-7)
    np.testing.assert_allclose(default, ts, rtol=0, atol=5e-7)


def test_progress_stays_in_the_unit_interval_beyond_the_endpoints(rng):
    """A model on the great circle past p1 (t = 1.3) projects to 1, not beyond."""
    p0 = rng.dirichlet(np.full(4, 30.0), size=5)
    p1 = 0.9 * p0 + 0.1 * rng.dirichlet(np.full(4, 30.0), size=5)
    past = _slerp_by_formula(p0, p1, 1.3)
    before = _slerp_by_formula(p0, p1, -0.3)
    assert past.min() > 0 and before.min() > 0  # still inside the orthant
    models = np.stack([past / past.sum(-1, keepdims=True), before / before.sum(-1, keepdims=True)])
    np.testing.assert_array_equal(progress(models, p0, p1), [1.0, 0.0])


def test_progress_of_truth_is_exactly_one_from_a_nearby_start():
    """Ties go to the endpoint: with the start close to a one-hot truth (theta ~ 0.008) the
    optimizer's own answer near 1 has the same (zero) angle sum as t = 1."""
    truth = np.eye(3)[[0, 2, 1]]
    start = 0.9999 * truth + 0.0001 / 3
    np.testing.assert_array_equal(progress(np.stack([start, truth]), start, truth), [0.0, 1.0])


# --- geodesic: trajectories ------------------------------------------------------------------

@pytest.mark.parametrize("grid", [[[0.1, 0.2]], [], [-0.1, 0.5], [np.nan], [0.2, 0.2, 0.5]])
def test_bad_grids_are_refused(rng, grid):
    with pytest.raises(ValueError, match=r"^grid "):
        reindex_brackets(np.array([0.0, 1.0]), np.array(grid))


def test_grid_edges_zero_and_a_single_point(rng):
    p = rng.dirichlet(np.ones(3), size=(3, 2))
    out = reindex(p, np.array([0.0, 0.5, 1.0]), grid=np.array([0.0, 0.25, 1.0]))
    np.testing.assert_allclose(out[0], p[0], atol=1e-15)
    np.testing.assert_allclose(out[1], geo.slerp(p[0], p[1], 0.5), atol=1e-15)
    np.testing.assert_allclose(out[2], p[2], atol=1e-15)
    one = reindex(p, np.array([0.0, 0.5, 1.0]), grid=np.array([0.75]))
    np.testing.assert_allclose(one, geo.slerp(p[1], p[2], 0.5)[None], atol=1e-15)


def test_brackets_follow_a7s_rule_at_its_edges():
    # the end is the first checkpoint with index > s (strictly): s = 0.5 = index[1] goes past it
    starts, ends, fractions = reindex_brackets(np.array([0.0, 0.5, 0.8, 1.0]), np.array([0.5]))
    assert (starts[0], ends[0], fractions[0]) == (1, 2, 0.0)
    # index values exactly INDEX_EPS apart are two points: a fraction between them
    starts, ends, fractions = reindex_brackets(np.array([0.0, INDEX_EPS, 1.0]),
                                               np.array([0.5 * INDEX_EPS]))
    assert (starts[0], ends[0]) == (0, 1) and fractions[0] == pytest.approx(0.5, rel=1e-12)
    # a single checkpoint: every s (below its index too) is that checkpoint, fraction 0
    starts, ends, fractions = reindex_brackets(np.array([0.5]), np.array([0.2, 0.9]))
    np.testing.assert_array_equal(starts, [0, 0])
    np.testing.assert_array_equal(ends, [0, 0])
    assert fractions[0] == 0.0 and 0.0 <= fractions[1] <= 1.0  # clipped to [0, 1]


def test_brackets_compute_float32_index_values_in_float64():
    # 0.1 and 0.35 in float32 have low bits: their differences would round in float32
    index = np.array([0.0, 0.1, 0.35, 0.9], dtype=np.float32)
    grid = np.linspace(0.05, 0.95, 7)
    got = reindex_brackets(index, grid)
    want = reindex_brackets(index.astype(np.float64), grid)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("index", [np.array([0, 1, 1]), np.array([0.0, 0.5, 1.0])])
def test_integer_index_values_are_numbers(rng, index):
    p = rng.dirichlet(np.ones(3), size=(3, 2))
    np.testing.assert_allclose(reindex(p, index), reindex(p, index.astype(np.float64)), atol=0)


@pytest.mark.parametrize("index", [np.array([0.0, 0.5 + 0j, 1.0]), np.array([False, True, True])])
def test_complex_or_boolean_index_values_are_refused(rng, index):
    p = rng.dirichlet(np.ones(3), size=(3, 2))
    with pytest.raises(ValueError, match=r"^index must be real numbers, got dtype"):
        reindex(p, index)


def test_average_is_float64_and_renormalized(rng):
    trajs = rng.dirichlet(np.ones(4), size=(3, 2, 5)) * 1.0005  # rows 5e-4 off: allowed
    got = average_trajectories(trajs.astype(np.float32))
    assert got.dtype == np.float64
    mean = trajs.astype(np.float32).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(got, mean / mean.sum(-1, keepdims=True), rtol=1e-15, atol=1e-17)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=0, atol=1e-15)


def test_distance_tensor_checks(rng):
    t64 = rng.uniform(size=(2, 3, 3))
    assert check_distance_tensor(t64) is t64  # float64 input is validated, not copied
    ints = np.ones((2, 3, 3), dtype=np.int32)
    np.testing.assert_array_equal(check_distance_tensor(ints), ints)
    assert check_distance_tensor(ints).dtype == np.float64
    for bad in (t64 + 0j, t64 > 0.5):
        with pytest.raises(ValueError, match=r"^tensor must hold real numbers, got dtype"):
            check_distance_tensor(bad)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Record the options trajectory_distance_tensor passes to distances.bhattacharyya, and
    answer with the numpy oracle (no kernel to compile)."""
    calls = []

    def spy(p, **options):
        calls.append(options)
        return bhattacharyya_reference(p, bc_floor=options["bc_floor"])

    monkeypatch.setattr(geo, "bhattacharyya", spy)
    return calls


def test_trajectory_distance_tensor_is_silent_unless_asked(rng, capsys, kernel_calls):
    trajs = rng.dirichlet(np.ones(3), size=(2, 3, 4))  # (R=2, G=3, N=4, C=3)
    quiet = trajectory_distance_tensor(trajs)
    assert capsys.readouterr().err == ""
    loud = trajectory_distance_tensor(trajs, progress_bar=True)
    err = capsys.readouterr().err
    assert "\rtrajectory distances: " in err and "3/3" in err
    np.testing.assert_array_equal(quiet, loud)
    for t in range(3):
        np.testing.assert_array_equal(quiet[t], bhattacharyya_reference(trajs[:, t]))
    with pytest.raises(ValueError, match=r"^trajectories must be a 4-D array of shape "
                                         r"\(R, G, N, C\)"):
        trajectory_distance_tensor(trajs[0])


def test_trajectory_distance_tensor_passes_its_options_on(rng, kernel_calls):
    trajs = rng.dirichlet(np.ones(3), size=(2, 2, 4))
    options = {"bc_floor": 1e-3, "device": "cuda:1", "method": "reference",
               "max_block_bytes": 10_000}
    trajectory_distance_tensor(trajs, **options)
    assert kernel_calls == [options, options]


@pytest.mark.parametrize("floor", [1e-3, BC_FLOOR])
def test_riemann_length_clamps_disjoint_steps_at_the_floor(floor):
    """Checkpoints with disjoint supports have BC = 0: the step is clamped at -log(bc_floor),
    as in lowdim.geometry.distances."""
    e = np.eye(3)
    path = np.stack([e[[0, 1]], e[[2, 0]]])  # (K=2, N=2, C=3): every sample jumps to a new class
    expected = 2.0 * math.sqrt(-math.log(floor))
    # (1 - bc_floor is rounded: relative error ~1e-16 / bc_floor)
    assert riemann_length(path, bc_floor=floor) == pytest.approx(expected, rel=1e-7)
    d = bhattacharyya_reference(path[:1], path[1:], bc_floor=floor)[0, 0]
    assert riemann_length(path, bc_floor=floor) == pytest.approx(2.0 * math.sqrt(d), rel=1e-6)


@pytest.mark.parametrize("floor", [1.0, 1.5, -1e-3])
def test_riemann_length_floor_must_be_inside_the_unit_interval(floor):
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval"):
        riemann_length(np.full((2, 1, 2), 0.5), bc_floor=floor)


def test_riemann_length_names_its_input():
    with pytest.raises(ValueError, match=r"^trajectory must be a 3-D array"):
        riemann_length(np.full((2, 2), 0.5))
