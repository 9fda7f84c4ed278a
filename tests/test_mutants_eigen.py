"""lowdim.geometry.eigen against its definitions, at the edges `make mutants` found untested: the
solvers' bounds on k, their seeds, the per-pair convergence rule, restarts near a full basis,
the product budget, the orthonormal extension of the Krylov basis, the finiteness messages and
the DeviceMatrix products on the CPU (docs/performance.md, "Mutation testing").

Each operator W here is built from a chosen spectrum, W = U diag(lambda) U^T with U orthonormal,
so the eigenpairs a solver must return are known independently of any solver."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry import eigen


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def spectrum_matrix(rng, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m,) eigenvalues -> W = U diag(lam) U^T (symmetric) and its orthonormal eigenvectors U."""
    lam = np.asarray(lam, dtype=np.float64)
    u, _ = np.linalg.qr(rng.normal(size=(lam.size, lam.size)))
    return (u * lam) @ u.T, u


def spread_spectrum(rng, m: int, top: list[float]) -> np.ndarray:
    """The given leading eigenvalues (by |lambda|) followed by m - len(top) values in [-1, 1]."""
    return np.concatenate([top, rng.uniform(-1.0, 1.0, size=m - len(top))])


class Products:
    """X -> W X that records each product's width, as a solver's reads of D.

    A product reads all of D (from disk at scale), so a solver must never ask for an empty one;
    ``cap`` bounds the columns multiplied in all, so that a solver that would loop forever fails
    at once instead."""

    def __init__(self, w: np.ndarray, cap: int = 100_000) -> None:
        self.w, self.cap, self.widths = w, cap, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        width = 1 if x.ndim == 1 else x.shape[1]
        assert width >= 1, "a product with no vectors"
        assert not np.all(x == 0), "a product with the zero vector"
        self.widths.append(width)
        assert sum(self.widths) <= self.cap, f"more than {self.cap} columns multiplied"
        return self.w @ x

    @property
    def columns(self) -> int:
        return sum(self.widths)


def assert_eigenpairs(lam, u, w, expected, rtol=1e-10):
    """(k,) lam, (m, k) u are the k leading eigenpairs of w, whose eigenvalues by |lambda| are
    expected: values, orthonormal vectors and residuals ||W u - lam u|| (the definition)."""
    order = np.argsort(-np.abs(expected), kind="stable")
    np.testing.assert_allclose(lam, np.asarray(expected)[order][: len(lam)], rtol=rtol)
    np.testing.assert_allclose(u.T @ u, np.eye(len(lam)), atol=1e-10)
    np.testing.assert_allclose(w @ u, u * lam, atol=1e-8 * np.abs(lam).max())


SOLVERS = {"randomized": eigen.block_krylov_eigenpairs, "lanczos": eigen.lanczos_eigenpairs}


# --- k bounds and seeds of both solvers ----------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_k_from_one_to_m_minus_one_is_accepted_and_nothing_else(rng, solver):
    m = 10
    lam = spread_spectrum(rng, m, [9.0, -7.0, 5.0])
    lam[3:] *= 0.5  # well separated from the top three
    w, _ = spectrum_matrix(rng, lam)
    solve = SOLVERS[solver]
    for k in (1, m - 1):
        values, vectors = solve(Products(w), m, k)
        assert_eigenpairs(values, vectors, w, lam, rtol=1e-9)
    for k in (0, m):
        with pytest.raises(ValueError, match=r"k must be in \[1, M - 1\] = \[1, 9\] .* got"):
            solve(Products(w), m, k)


@pytest.mark.parametrize("solver", SOLVERS)
def test_results_are_reproducible_and_the_default_seed_is_zero(rng, solver):
    m, k = 40, 3
    lam = spread_spectrum(rng, m, [10.0, -8.0, 6.0])
    w, _ = spectrum_matrix(rng, lam)
    solve = SOLVERS[solver]
    a = solve(Products(w), m, k)
    b = solve(Products(w), m, k)
    c = solve(Products(w), m, k, seed=0)
    d = solve(Products(w), m, k, seed=5)
    for x, y in ((a, b), (a, c)):  # bit for bit: the start vectors come from the seed alone
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    assert not np.array_equal(a[1], d[1])  # another seed starts elsewhere ...
    assert_eigenpairs(*d, w, lam)  # ... and finds the same pairs
    assert_eigenpairs(*a, w, lam)


# --- the randomized block Krylov solver -----------------------------------------------------


def test_default_block_fits_a_small_matrix(rng):
    # the default block (at least 8 vectors) is capped at M - k: M = 6 has no room for 8
    for m, k in ((6, 2), (5, 4)):
        lam = np.arange(m, 0, -1.0) * np.array([1, -1] * m)[:m]
        w, _ = spectrum_matrix(rng, lam)
        values, vectors = eigen.block_krylov_eigenpairs(Products(w), m, k)
        assert_eigenpairs(values, vectors, w, lam)


def test_tol_zero_grows_the_basis_to_the_whole_space(rng):
    """tol = 0 accepts no Ritz pair before the basis spans R^M, where they are exact: the
    solver then stops after M columns (the last block only as wide as the room left)."""
    m, k = 20, 2
    lam = spread_spectrum(rng, m, [5.0, -4.0])
    w, _ = spectrum_matrix(rng, lam)
    op = Products(w)
    values, vectors = eigen.block_krylov_eigenpairs(op, m, k, tol=0.0)
    assert_eigenpairs(values, vectors, w, lam, rtol=1e-12)
    assert op.columns == m


def test_zero_residuals_are_accepted_at_once():
    """W = 0 (D constant): every Ritz pair has residual 0 = tol |theta| = floor, which
    the rule ||W u - theta u|| <= max(tol |theta|, floor) accepts after the first block."""
    m, k = 12, 2
    op = Products(np.zeros((m, m)))
    values, vectors = eigen.block_krylov_eigenpairs(op, m, k, block_size=3)
    np.testing.assert_array_equal(values, 0.0)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-12)
    assert op.widths == [3]


def test_each_pair_is_accepted_on_its_own_residual(rng):
    """A pair converges when ITS residual is <= tol |theta|: with tol just above the largest
    relative residual of the first Ritz pairs, the solver returns them after one block."""
    m, k, b = 60, 4, 4
    lam = spread_spectrum(rng, m, [10.0, -9.0, 8.0, 7.0])
    w, _ = spectrum_matrix(rng, lam)
    first = eigen.block_krylov_eigenpairs(Products(w), m, k, block_size=b, tol=1e3,
                                          max_products=b)
    theta, u = first
    relative = np.linalg.norm(w @ u - u * theta, axis=0) / np.abs(theta)
    assert relative.max() > 1e-3  # one block is far from converged ...
    tol = relative.max() * (1 + 1e-6)
    op = Products(w, cap=b)
    again = eigen.block_krylov_eigenpairs(op, m, k, block_size=b, tol=tol, max_products=b)
    np.testing.assert_array_equal(again[0], theta)  # ... but each pair meets this tol
    np.testing.assert_array_equal(again[1], u)
    with pytest.raises(RuntimeError, match=f"did not converge after {b} vector products"):
        eigen.block_krylov_eigenpairs(Products(w), m, k, block_size=b, tol=tol / 1.01,
                                      max_products=b)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_result_scales_with_w(rng, scale):
    """The tolerance is relative (tol |theta|): c W gives c times the eigenvalues of W, to the
    same relative accuracy, whatever the units of c."""
    m, k = 50, 3
    lam = spread_spectrum(rng, m, [6.0, -5.0, 4.0]) * scale
    w, _ = spectrum_matrix(rng, lam)
    values, vectors = eigen.block_krylov_eigenpairs(Products(w), m, k, block_size=2)
    assert_eigenpairs(values, vectors, w, lam)


def test_thick_restarts_with_odd_k_and_a_basis_near_the_whole_space(rng):
    # k = 5 with blocks of 2 keeps k + k // 2 = 7 Ritz vectors on restart, in a basis of 9
    m = 40
    lam = spread_spectrum(rng, m, [10.0, -9.0, 8.0, 7.0, -6.0])
    w, _ = spectrum_matrix(rng, lam)
    op = Products(w)
    values, vectors = eigen.block_krylov_eigenpairs(op, m, 5, block_size=2, max_basis=9)
    assert_eigenpairs(values, vectors, w, lam)
    assert op.columns > 9  # it did restart
    # M = 11, blocks of 4, basis of 9: the restart at 8 columns has only 3 directions left
    m = 11
    lam = spread_spectrum(rng, m, [8.0])
    w, _ = spectrum_matrix(rng, lam)
    values, vectors = eigen.block_krylov_eigenpairs(Products(w), m, 1, block_size=4, max_basis=9)
    assert_eigenpairs(values, vectors, w, lam)


def test_a_basis_smaller_than_its_minimum_is_enlarged(rng):
    # max_basis = 1 cannot hold the k + max(b, k // 2) kept vectors plus a new block: it grows
    m, k = 40, 4
    lam = spread_spectrum(rng, m, [10.0, -9.0, 8.0, 7.0])
    w, _ = spectrum_matrix(rng, lam)
    values, vectors = eigen.block_krylov_eigenpairs(Products(w), m, k, block_size=2, max_basis=1)
    assert_eigenpairs(values, vectors, w, lam)


def test_product_budget_stops_a_run_that_cannot_converge():
    """A rank-2 W asked for 3 pairs at tol 0 on a restarted basis never converges (the null
    pair's residual is not 0): it raises after max_products columns, having multiplied no more.
    Its restarts must extend the basis with random directions: once the basis holds e_1 and
    e_2, W Q = diag(3, -2, 0, ...) Q lies in it."""
    m = 20
    w = np.diag(np.r_[3.0, -2.0, np.zeros(m - 2)])
    op = Products(w, cap=40)
    with pytest.raises(RuntimeError, match=r"did not converge after 40 vector products"):
        eigen.block_krylov_eigenpairs(op, m, 3, tol=0.0, block_size=2, max_basis=7,
                                      max_products=40)
    assert op.columns == 40 and min(op.widths) >= 1


# --- ARPACK (lanczos) --------------------------------------------------------------------------


def test_lanczos_tol_trades_products_for_accuracy(rng):
    m, k = 80, 3
    lam = spread_spectrum(rng, m, [2.0, 1.9, -1.85])
    w, _ = spectrum_matrix(rng, lam)
    loose, tight = Products(w), Products(w)
    a = eigen.lanczos_eigenpairs(loose, m, k, tol=1e-2)
    b = eigen.lanczos_eigenpairs(tight, m, k, tol=1e-12)
    assert_eigenpairs(*b, w, lam)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-2)
    assert loose.columns < tight.columns
    # every product multiplies a start or Lanczos vector: none is spent probing the dtype
    assert min(loose.widths + tight.widths) == 1


# --- extending the Krylov basis --------------------------------------------------------------


def _is_extension(q, basis, width):
    assert q.shape == (basis.shape[0], width)
    np.testing.assert_allclose(q.T @ q, np.eye(width), atol=1e-12)
    np.testing.assert_allclose(basis.T @ q, 0.0, atol=1e-12)


def test_a_zero_column_is_replaced_by_a_direction_outside_the_basis():
    """W Q can have a zero column (W annihilates it): it must not bring a direction of the
    basis back in (here the QR of [v, 0] offers e_1, which is in the basis)."""
    m = 8
    basis = np.eye(m)[:, [1]]
    y = np.zeros((m, 2))
    y[[2, 3], 0] = 1.0
    q = eigen._orthonormal_block(y, basis, 2, np.random.default_rng(0))
    _is_extension(q, basis, 2)
    np.testing.assert_allclose(abs(q[:, 0] @ y[:, 0]) / np.linalg.norm(y[:, 0]), 1.0)


def test_a_small_independent_column_is_kept(rng):
    """Whether a column is (numerically) in the basis is judged against its own norm: a column
    1e-12 times smaller than the others but outside the basis is a direction to keep."""
    m = 30
    basis, _ = np.linalg.qr(rng.normal(size=(m, 4)))
    y = rng.normal(size=(m, 3))
    y[:, 2] *= 1e-12
    q = eigen._orthonormal_block(y, basis, 3, np.random.default_rng(0))
    _is_extension(q, basis, 3)
    outside = eigen._project_out(y, basis)
    outside /= np.linalg.norm(outside, axis=0)
    np.testing.assert_allclose(np.linalg.norm(q.T @ outside, axis=0), 1.0, atol=1e-9)


def test_the_weak_column_test_does_not_depend_on_units(rng):
    """A column inside the basis up to 1e-12 is replaced whatever the scale of y: 1e8 y gives the
    same extension as y."""
    m = 30
    basis, _ = np.linalg.qr(rng.normal(size=(m, 4)))
    y = rng.normal(size=(m, 3))
    y[:, 1] = basis @ rng.normal(size=4) + 1e-12 * rng.normal(size=m)
    a = eigen._orthonormal_block(y, basis, 3, np.random.default_rng(0))
    b = eigen._orthonormal_block(1e8 * y, basis, 3, np.random.default_rng(0))
    _is_extension(a, basis, 3)
    np.testing.assert_allclose(np.abs(a.T @ b), np.eye(3), atol=1e-5)


# --- finiteness messages ---------------------------------------------------------------------


def test_an_infinite_entry_below_the_diagonal_tile_is_reported_as_such(rng):
    # tiles of 4 x 4 (block_bytes 48 * 16): inf at (6, 1) lies only in the mirrored tile
    d = np.abs(rng.normal(size=(8, 8)))
    d = d + d.T
    for bad in (np.inf, np.nan):
        e = d.copy()
        e[6, 1] = bad
        with pytest.raises(ValueError, match=r"^d contains NaN or infinite values$"):
            eigen.streaming_stats(e, block_bytes=48 * 16)
        e = d.copy()
        e[1, 6] = bad
        with pytest.raises(ValueError, match=r"^d contains NaN or infinite values$"):
            eigen.streaming_stats(e, block_bytes=48 * 16)
    e = d.copy()
    e[6, 1] = e[1, 6] = 3e200  # finite, but its square is not
    with pytest.raises(ValueError, match=r"too large to square in float64 \(max \|d\| 3e\+200\)"):
        eigen.streaming_stats(e, block_bytes=48 * 16)
    e = d.copy()
    e[6, 1] = -3e200  # the largest |d| of either tile, whatever its sign
    with pytest.raises(ValueError, match=r"too large to square in float64 \(max \|d\| 3e\+200\)"):
        eigen.streaming_stats(e, block_bytes=48 * 16)


# --- DeviceMatrix on the CPU -----------------------------------------------------------------


class Rows:
    """A matrix that only knows its shape and how to return rows (no dtype), like a file reader."""

    def __init__(self, d: np.ndarray) -> None:
        self._d, self.shape = d, d.shape

    def __getitem__(self, rows):
        return self._d[rows]


@pytest.mark.parametrize("symmetric", [True, False])
def test_device_product_is_the_symmetric_part_times_x(rng, symmetric):
    pytest.importorskip("torch")
    m = 13
    d = rng.normal(size=(m, m)).astype(np.float32)
    if symmetric:
        d = d + d.T
    x = rng.normal(size=(m, 3)).astype(np.float32)  # computed in float64 all the same
    s = (d.astype(np.float64) + d.T.astype(np.float64)) / 2
    for matrix in (d, Rows(d)):
        dev = eigen.DeviceMatrix(matrix, "cpu", block_bytes=8 * m * 3)  # slabs of 3 rows
        y = dev.product(x, symmetric)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, s @ x.astype(np.float64), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(eigen.d_product(dev, x, symmetric), y, rtol=0, atol=0)
    assert eigen.DeviceMatrix(d, "cpu").dtype == np.float32  # the stored dtype is kept
    assert eigen.DeviceMatrix(Rows(d), "cpu").dtype == np.float64


def test_top_eigenpairs_on_the_cpu_device_equal_the_host(rng):
    pytest.importorskip("torch")
    m = 30
    x = rng.normal(size=(m, 3))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    stats = eigen.streaming_stats(d)
    host = eigen.top_eigenpairs(d, 3, stats, block_bytes=8 * m * 4)
    dev = eigen.top_eigenpairs(d, 3, stats, block_bytes=8 * m * 4, device="cpu")
    np.testing.assert_allclose(dev[0], host[0], rtol=1e-12)
    np.testing.assert_allclose(np.abs(dev[1].T @ host[1]), np.eye(3), atol=1e-10)


def test_the_solver_gives_the_device_matrix_back_even_when_it_fails(rng, monkeypatch):
    # a resident D must leave the device before the next space's D measures the free memory
    pytest.importorskip("torch")
    closed = []
    monkeypatch.setattr(eigen.DeviceMatrix, "close", lambda self: closed.append(self.shape))
    m = 20
    x = rng.normal(size=(m, 2))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    stats = eigen.streaming_stats(d)
    eigen.top_eigenpairs(d, 2, stats, device="cpu")
    assert closed == [(m, m)]
    with pytest.raises(ValueError, match="unknown solver"):
        eigen.top_eigenpairs(d, 2, stats, solver="nope", device="cpu")
    assert closed == [(m, m)]  # refused before any DeviceMatrix was made
    monkeypatch.setattr(eigen, "block_krylov_eigenpairs",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        eigen.top_eigenpairs(d, 2, stats, device="cpu")
    assert closed == [(m, m), (m, m)]


def test_closing_drops_the_resident_copy():
    pytest.importorskip("torch")
    dev = eigen.DeviceMatrix(np.eye(3), "cpu")
    dev.resident = object()  # as if D had been kept on the device
    dev.close()
    assert dev.resident is None


def test_cuda_without_cuda_is_refused(rng):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    d = np.eye(4)
    with pytest.raises(ValueError, match=r"device 'cuda' was asked for .* CUDA is not available"):
        eigen.DeviceMatrix(d, "cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:0' was asked for"):
        eigen.DeviceMatrix(d, "cuda:0")
    assert eigen.DeviceMatrix(d, "cpu").resident is None  # the host streams D, holds no copy


def test_torch_dtype_is_torchs_own_for_numpy_floats():
    torch = pytest.importorskip("torch")
    for dtype in (np.float64, np.float32, np.float16):
        expected = torch.from_numpy(np.zeros(1, dtype=dtype)).dtype
        assert eigen._torch_dtype(torch, np.dtype(dtype)) == expected
        assert eigen._torch_dtype(torch, dtype) == expected


# --- the solvers behind top_eigenpairs ---------------------------------------------------------


def _signed_distances(rng, m: int) -> np.ndarray:
    """(m, m) squared Minkowski distances (one time-like axis): W has both signs."""
    x = rng.normal(size=(m, 3)) * np.array([3.0, 2.0, 1.0])
    diff = x[:, None] - x[None]
    return (diff * diff * np.array([1.0, -1.0, 1.0])).sum(-1)


@pytest.mark.parametrize("solver", SOLVERS)
def test_top_eigenpairs_is_the_solver_on_the_centred_product(rng, solver):
    """top_eigenpairs = the chosen solver on W x = centred_product(D, x) with the caller's tol,
    seed and block size (and, for the randomized solver, the rounding floor 1e3 eps ||D||_F)."""
    from threadpoolctl import threadpool_limits

    m, k, bb = 60, 3, 8 * 60 * 7
    # D = -2 W for a centred W with close leading eigenvalues: tol 1e-4 stops early
    a, _ = spectrum_matrix(rng, spread_spectrum(rng, m, [2.0, 1.9, -1.85]))
    d = -2.0 * (a - a.mean(0) - a.mean(1)[:, None] + a.mean())
    stats = eigen.streaming_stats(d)

    def apply_w(x):
        return eigen.centred_product(d, x, stats, bb)

    opts = dict(tol=1e-4, seed=3)
    got = eigen.top_eigenpairs(d, k, stats, solver=solver, block_bytes=bb, block_size=5, **opts)
    with threadpool_limits(limits=1, user_api="blas"):
        if solver == "lanczos":
            expected = eigen.lanczos_eigenpairs(apply_w, m, k, **opts)
        else:
            floor = eigen.ROUNDING_RESIDUAL * np.linalg.norm(d)
            expected = eigen.block_krylov_eigenpairs(apply_w, m, k, floor=floor, block_size=5,
                                                     **opts)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    tight = eigen.top_eigenpairs(d, k, stats, solver=solver, block_bytes=bb, block_size=5, seed=3)
    assert not np.array_equal(tight[0], got[0])  # tol reached the solver
    # the defaults: the randomized solver, seed 0
    default = eigen.top_eigenpairs(d, k, stats)
    np.testing.assert_array_equal(default[1], eigen.top_eigenpairs(
        d, k, stats, solver="randomized", seed=0)[1])
    lam = np.linalg.eigvalsh(_w(d))
    assert_eigenpairs(*default, _w(d), lam)


def test_a_wider_block_reads_d_fewer_times(rng):
    m = 60
    noise = rng.normal(size=(m, m))
    d = Reads(_signed_distances(rng, m) + noise + noise.T)  # full rank
    stats = eigen.streaming_stats(d._d)
    passes = {}
    for block in (1, 12):
        d.reads.clear()
        eigen.top_eigenpairs(d, 4, stats, block_size=block, block_bytes=8 * m * m)
        passes[block] = len(d.reads)  # one slab: one read a product
    assert passes[12] < passes[1] / 3


@pytest.mark.parametrize("solver", SOLVERS)
def test_products_run_on_the_callers_threads_only_when_large(rng, monkeypatch, solver):
    """The solver's small algebra runs on one BLAS thread; products with D keep the caller's
    threads when they have at least THREADED_PRODUCT_MIN multiply-adds."""
    from threadpoolctl import threadpool_info, threadpool_limits

    m, k = 30, 2
    d = _signed_distances(rng, m)
    stats = eigen.streaming_stats(d)
    seen = []
    product = eigen.centred_product

    def recording(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return product(*args, **kwargs)

    monkeypatch.setattr(eigen, "centred_product", recording)
    with threadpool_limits(limits=1, user_api="blas"):
        one = eigen.top_eigenpairs(d, k, stats, solver=solver)
    with threadpool_limits(limits=2, user_api="blas"):
        seen.clear()
        small = eigen.top_eigenpairs(d, k, stats, solver=solver)
        assert set(seen) == {1}
        monkeypatch.setattr(eigen, "THREADED_PRODUCT_MIN", m * m)  # a single column is large
        seen.clear()
        large = eigen.top_eigenpairs(d, k, stats, solver=solver)
        assert set(seen) == {2}
    for got in (small, large):
        np.testing.assert_allclose(got[0], one[0], rtol=1e-12)


def test_by_magnitude_is_stable_on_ties():
    values = np.tile([1.0, -1.0, 2.0, -2.0, 0.5, -0.0, 0.0], 9)
    expected = sorted(range(values.size), key=lambda i: -abs(values[i]))  # Python's sort is stable
    np.testing.assert_array_equal(eigen._by_magnitude(values), expected)
    lam, vec = eigen.dense_eigenpairs(np.diag([1.0, -3.0, 2.0]))
    np.testing.assert_array_equal(lam, [-3.0, 2.0, 1.0])
    np.testing.assert_allclose(np.abs(vec), np.eye(3)[:, [1, 2, 0]])


# --- reading D: bounds of block_bytes, one pass -------------------------------------------------


class Reads:
    """D read only through d[rows] or d[rows, cols] (as from a file), recording each read."""

    def __init__(self, d: np.ndarray) -> None:
        self._d, self.shape, self.dtype, self.reads = d, d.shape, d.dtype, []

    def __getitem__(self, key):
        block = np.asarray(self._d[key])
        self.reads.append(block.shape)
        return block

    def __array__(self, *args, **kwargs):
        raise AssertionError("D was read whole")


def test_reads_of_d_respect_block_bytes(rng):
    m = 23
    d = _signed_distances(rng, m)
    stats = eigen.streaming_stats(d)
    x = rng.normal(size=(m, 2))
    w = -0.5 * (d - d.mean(0) - d.mean(1)[:, None] + d.mean())
    for bb in (1, 8 * m * 3, 8 * m * 5 + 7):
        rows = max(1, bb // (8 * m))  # the largest slab within the budget, or one row
        r = Reads(d)
        np.testing.assert_allclose(eigen.centred_product(r, x, stats, bb), w @ x, rtol=1e-10,
                                   atol=1e-10 * np.abs(w @ x).max())
        assert max(s[0] for s in r.reads) == rows and sum(s[0] for s in r.reads) == m
        assert [(s.start, s.stop) for s in eigen.slabs(m, bb)] == [
            (i, min(i + rows, m)) for i in range(0, m, rows)]
    # top_eigenpairs passes its budget to every product, on the host and on a device
    for device in (None, "cpu"):
        if device is not None:
            pytest.importorskip("torch")
        r = Reads(d)
        eigen.top_eigenpairs(r, 2, stats, block_bytes=8 * m * 4, device=device)
        assert max(s[0] for s in r.reads) == 4


def test_streaming_stats_reads_each_entry_once_in_tiles(rng):
    m, bb = 21, 48 * 25  # tiles of 5 x 5: "a few" (six) float64 tiles fit in block_bytes
    d = _signed_distances(rng, m)
    r = Reads(d)
    stats = eigen.streaming_stats(r, bb)
    assert sum(a * b for a, b in r.reads) == m * m
    assert max(max(s) for s in r.reads) == 5 and max(a * b for a, b in r.reads) * 8 * 6 <= bb
    np.testing.assert_allclose(stats.row_means, d.mean(1), rtol=1e-12)
    assert stats.symmetric


# --- check_matrix and the streaming statistics --------------------------------------------------


def test_check_matrix_accepts_real_numbers_of_any_kind_and_reads_no_data(rng):
    for ok in ([[0.0, 1.0], [1.0, 0.0]], np.zeros((1, 1)), np.zeros((2, 2), dtype=np.int32),
               np.zeros((2, 2), dtype=np.float16), Reads(np.zeros((3, 3)))):
        eigen.check_matrix(ok)  # a 1 x 1 matrix, a nested list, ints, a reader: all fine
    for bad, message in (
        (np.zeros((2, 2), dtype=complex), r"^d must be a real numeric matrix, got dtype complex"),
        (np.full((2, 2), "a"), r"^d must be a real numeric matrix, got dtype <U1"),
        (np.zeros((2, 2), dtype=bool), r"^d must be a real numeric matrix, got dtype bool"),
        ([["a", "b"], ["c", "d"]], r"^d must be a real numeric matrix"),
        (np.zeros((0, 0)), r"^d is empty$"),
        (np.zeros((2, 3)), r"^d must be a square \(M, M\) matrix, got shape \(2, 3\)$"),
    ):
        with pytest.raises(ValueError, match=message):
            eigen.check_matrix(bad)
    with pytest.raises(ValueError, match=r"^train must be a square"):
        eigen.streaming_stats(np.zeros((2, 3)), name="train")
    with pytest.raises(ValueError, match=r"^train is empty"):
        eigen.check_matrix(np.zeros((0, 0)), "train")


def test_asymmetry_limit_is_inclusive():
    """max |d - d.T| <= SYM_RTOL max |d| is allowed: the limit itself passes, the next float not."""
    for scale in (4.0, 1e-3, 1e5):
        limit = eigen.SYM_RTOL * scale
        assert eigen.asymmetry_message("d", limit, scale) is None
        message = eigen.asymmetry_message("d", np.nextafter(limit, np.inf), scale)
        assert message.startswith("d must be symmetric: max |d - d.T| = ")
    assert eigen.asymmetry_message("d", 0.0, 0.0) is None


@pytest.mark.parametrize("where", [(1, 6), (6, 1)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_asymmetry_is_relative_to_the_largest_entry_of_either_tile(rng, where, sign):
    """The largest |d| can be the asymmetric entry itself, above or below the diagonal, of either
    sign: it sets the limit SYM_RTOL max |d| (tiles of 4 x 4: (1, 6) and (6, 1) are mirrors)."""
    d = rng.uniform(0.0, 0.5, size=(8, 8))
    d = d + d.T
    limit = 1e-6 * (1.0 + 1e-6)  # = SYM_RTOL (1 + delta) for delta = 1e-6 + 1e-12
    for delta, accepted in ((1e-6 + 0.5e-12, True), (1e-6 + 2e-12, False)):
        assert (delta <= limit) == accepted
        e = d.copy()
        e[where] = sign * (1.0 + delta)
        e[where[::-1]] = sign * 1.0
        if accepted:
            stats = eigen.streaming_stats(e, block_bytes=48 * 16)
            assert not stats.symmetric
        else:
            with pytest.raises(ValueError, match=r"d must be symmetric"):
                eigen.streaming_stats(e, block_bytes=48 * 16)


def test_asymmetry_above_the_diagonal_is_seen(rng):
    d = rng.uniform(0.0, 1.0, size=(8, 8))
    d = d + d.T
    for i, j in ((1, 6), (6, 1), (2, 3)):
        e = d.copy()
        e[i, j] += 1.0
        with pytest.raises(ValueError, match=r"max \|d - d.T\| = 1 exceeds"):
            eigen.streaming_stats(e, block_bytes=48 * 16)


def _w(d):
    s = (np.asarray(d, dtype=np.float64) + np.asarray(d, dtype=np.float64).T) / 2
    return -0.5 * (s - s.mean(0) - s.mean(1)[:, None] + s.mean())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_streaming_stats_in_float64_whatever_the_stored_dtype(rng, dtype, scale):
    """float32 D is summed in float64; ||W||_F^2 and ||D||_F below 1 are not clipped."""
    m = 13
    d = (np.abs(_signed_distances(rng, m)) * scale + 7.0 * scale).astype(dtype)
    stats = eigen.streaming_stats(d, block_bytes=48 * 16)
    exact = d.astype(np.float64)
    assert stats.frobenius_sq == pytest.approx(float((_w(exact) ** 2).sum()), rel=1e-11)
    assert stats.d_frobenius == pytest.approx(float(np.linalg.norm(exact)), rel=1e-12)
    np.testing.assert_allclose(stats.row_means, exact.mean(1), rtol=1e-13)
    assert stats.grand_mean == pytest.approx(exact.mean(), rel=1e-13)
    small = np.array([[0.0, 0.1], [0.1, 0.0]], dtype=dtype)
    stats = eigen.streaming_stats(small)
    assert stats.frobenius_sq == pytest.approx(float((_w(small) ** 2).sum()), rel=1e-6)
    assert stats.d_frobenius == pytest.approx(float(np.linalg.norm(small.astype(np.float64))))


def test_centred_product_and_d_product_compute_in_float64(rng):
    m = 31
    d = _signed_distances(rng, m).astype(np.float32)
    x = rng.normal(size=(m, 2)).astype(np.float32)
    stats = eigen.streaming_stats(d)
    w = _w(d)
    exact = w @ x.astype(np.float64)
    for got in (eigen.centred_product(d, x, stats, 8 * m * 5),
                eigen.centred_product(d, x.astype(np.float64), stats)):
        np.testing.assert_allclose(got, exact, rtol=1e-11, atol=1e-11 * np.abs(exact).max())
    s = (d.astype(np.float64) + d.T.astype(np.float64)) / 2
    got = eigen.d_product(d, x, True, 8 * m * 5)
    np.testing.assert_allclose(got, s @ x.astype(np.float64), rtol=1e-12, atol=1e-12)


def test_no_numpy_warnings_before_the_error(rng):
    """A non-finite or too large D raises its ValueError without numpy warnings first."""
    import warnings

    d = rng.uniform(0.0, 1.0, size=(8, 8))
    d = d + d.T
    cases = []
    for value in (np.inf, 1e308, 3e200):
        e = d.copy()
        e[0, 0] = value  # the first tile sets the shift: inf - inf, or overflow
        e[1, 6] = e[6, 1] = value
        cases.append(e)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for e in cases:
            with pytest.raises(ValueError, match=r"NaN or infinite|too large to square"):
                eigen.streaming_stats(e, block_bytes=48 * 16)
        for e in (cases[0], cases[2]):  # (the accumulator's shift can overflow on 1e308)
            acc = eigen.CentringAccumulator(8)
            with pytest.raises(ValueError, match=r"NaN or infinite|too large to square"):
                acc.add(slice(0, 8), slice(0, 8), e, mirrored=False)


# --- CentringAccumulator and the saved sums ----------------------------------------------------


def _accumulate(d: np.ndarray, side: int, name: str = "d", order=None, index=False):
    """Feed a symmetric d to a CentringAccumulator in tiles: diagonal tiles as they are, each
    off-diagonal pair once (mirrored)."""
    m = d.shape[0]
    acc = eigen.CentringAccumulator(m, name)
    tiles = [np.arange(i, min(i + side, m)) if index else slice(i, min(i + side, m))
             for i in range(0, m, side)]
    pairs = [(a, b) for a in range(len(tiles)) for b in range(a, len(tiles))]
    for a, b in (pairs if order is None else [pairs[i] for i in order]):
        ra, rb = tiles[a], tiles[b]
        block = d[np.ix_(ra, rb)] if index else d[ra, rb]
        acc.add(ra, rb, block, mirrored=a != b)
    return acc


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("index", [False, True])
def test_accumulated_sums_equal_the_definitions(rng, offset, index):
    m = 11
    d = np.abs(_signed_distances(rng, m)) + offset
    d = (d + d.T) / 2
    order = [5, 0, 3, 1, 4, 2]  # blocks in any order
    acc = _accumulate(d, 4, order=order, index=index)  # tiles 4, 4, 3: six pairs
    stats = acc.stats()
    assert stats.symmetric
    assert stats.frobenius_sq == pytest.approx(float((_w(d) ** 2).sum()), rel=1e-9)
    assert stats.d_frobenius == pytest.approx(float(np.linalg.norm(d)), rel=1e-13)
    np.testing.assert_allclose(stats.row_means, d.mean(1), rtol=1e-13)
    assert stats.grand_mean == pytest.approx(d.mean(), rel=1e-13)
    arrays = acc.arrays()
    first = d[8:11, 8:11]  # pair 5, the first block added: (2, 2)
    assert arrays["m"] == m and arrays["m"].dtype == np.int64
    assert arrays["shift"] == pytest.approx(first.mean(), rel=1e-15)
    np.testing.assert_allclose(arrays["row_sums"], d.sum(1), rtol=1e-13)
    np.testing.assert_allclose(arrays["shifted_row_sums"], (d - arrays["shift"]).sum(1),
                               rtol=1e-9, atol=1e-9 * m)
    assert arrays["total"] == pytest.approx(d.sum(), rel=1e-13)
    assert arrays["sum_sq"] == pytest.approx(float((d**2).sum()), rel=1e-13)
    assert arrays["shifted_sum_sq"] == pytest.approx(float(((d - arrays["shift"]) ** 2).sum()),
                                                     rel=1e-9)
    assert arrays["w_frobenius_sq"] == stats.frobenius_sq
    for key in ("shift", "shifted_sum_sq", "total", "sum_sq", "w_frobenius_sq"):
        assert arrays[key].dtype == np.float64, key
    # the saved sums rebuild the statistics to the last bit
    again = eigen.stats_from_arrays(arrays)
    for field in ("grand_mean", "frobenius_sq", "d_frobenius", "symmetric"):
        assert getattr(again, field) == getattr(stats, field), field
    np.testing.assert_array_equal(again.row_means, stats.row_means)
    # the streaming pass over the same matrix gives the same statistics
    streamed = eigen.streaming_stats(d, block_bytes=48 * 16)
    assert streamed.frobenius_sq == pytest.approx(stats.frobenius_sq, rel=1e-9)
    np.testing.assert_allclose(streamed.row_means, stats.row_means, rtol=1e-13)


def test_accumulator_sums_float32_blocks_in_float64(rng):
    m = 9
    d = np.abs(_signed_distances(rng, m)).astype(np.float32)
    d = np.maximum(d, d.T)
    stats = _accumulate(d, 4).stats()
    exact = d.astype(np.float64)
    assert stats.frobenius_sq == pytest.approx(float((_w(exact) ** 2).sum()), rel=1e-12)
    np.testing.assert_allclose(stats.row_means, exact.mean(1), rtol=1e-14)
    # float32 saved sums too are read in float64
    arrays = {key: (np.float32(v) if np.ndim(v) == 0 else v.astype(np.float32))
              for key, v in _accumulate(d, 4).arrays().items()}
    from32 = eigen.stats_from_arrays(arrays)
    exact32 = eigen.stats_from_sums(arrays["shifted_row_sums"].astype(np.float64),
                                    float(arrays["shifted_sum_sq"]), float(arrays["shift"]))
    assert from32.frobenius_sq == exact32.frobenius_sq
    np.testing.assert_array_equal(from32.row_means, exact32.row_means)


def test_accumulator_needs_every_entry_exactly_once(rng):
    m = 6
    d = np.abs(_signed_distances(rng, m))
    d = (d + d.T) / 2
    acc = eigen.CentringAccumulator(m, "train")
    assert acc.m == m and acc.entries == 0 and acc.shift is None and acc.sq_sum == 0.0
    np.testing.assert_array_equal(acc.row_sums, np.zeros(m))
    acc.add(slice(0, 3), slice(0, 3), d[:3, :3], mirrored=False)
    acc.add(slice(0, 3), slice(3, 6), np.empty((0, 3)), mirrored=True)  # nothing: ignored
    assert acc.entries == 9 and acc.shift == pytest.approx(d[:3, :3].mean(), rel=1e-15)
    with pytest.raises(RuntimeError, match=r"^train: 9 entries were accumulated for an \(6, 6\) "
                                           r"matrix: every entry must come exactly once$"):
        acc.stats()
    acc.add(slice(0, 3), slice(3, 6), d[:3, 3:], mirrored=True)
    assert acc.entries == 27
    acc.add(slice(3, 6), slice(3, 6), d[3:, 3:], mirrored=False)
    assert acc.entries == 36
    assert acc.stats().frobenius_sq == pytest.approx(float((_w(d) ** 2).sum()), rel=1e-10)
    acc.add(slice(3, 6), slice(3, 6), d[3:, 3:], mirrored=False)  # once too often
    with pytest.raises(RuntimeError, match=r"45 entries"):
        acc.stats()


def test_accumulator_with_a_zero_first_block(rng):
    """A zero diagonal block first (the shift c = 0): the sums are those of D itself."""
    m = 5
    d = np.abs(_signed_distances(rng, m)) + 1.0
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    acc = eigen.CentringAccumulator(m)
    for i in range(m):  # the diagonal, one entry at a time, then each row to its right
        acc.add(slice(i, i + 1), slice(i, i + 1), d[i:i + 1, i:i + 1], mirrored=False)
    for i in range(m - 1):
        acc.add(slice(i, i + 1), slice(i + 1, m), d[i:i + 1, i + 1:], mirrored=True)
    assert acc.shift == 0.0
    stats = acc.stats()
    np.testing.assert_allclose(stats.row_means, d.mean(1), rtol=1e-14)
    assert stats.grand_mean == pytest.approx(d.mean(), rel=1e-14)
    assert stats.frobenius_sq == pytest.approx(float((_w(d) ** 2).sum()), rel=1e-12)
    arrays = acc.arrays()
    np.testing.assert_allclose(arrays["row_sums"], d.sum(1), rtol=1e-14)
    assert arrays["shift"] == 0.0


def test_accumulator_refuses_non_finite_blocks_by_name():
    acc = eigen.CentringAccumulator(2, "train")
    acc.add(slice(0, 1), slice(0, 1), np.zeros((1, 1)), mirrored=False)
    with pytest.raises(ValueError, match=r"^train contains NaN or infinite values$"):
        acc.add(slice(0, 1), slice(1, 2), np.array([[np.nan]]), mirrored=True)
    with pytest.raises(ValueError, match=r"^train has entries too large to square in float64 "
                                         r"\(max \|d\| 2e\+200\)"):
        acc.add(slice(0, 1), slice(1, 2), np.array([[-2e200]]), mirrored=True)
    assert acc.entries == 1  # a refused block adds nothing
    acc = eigen.CentringAccumulator(2)  # named "d" by default
    with pytest.raises(ValueError, match=r"^d contains NaN or infinite values$"):
        acc.add(slice(0, 1), slice(0, 1), np.array([[np.inf]]), mirrored=False)


def test_accumulator_overflow_is_an_error_not_a_warning():
    """A block far from the shift overflows D - c: the error says so, without numpy warnings."""
    import warnings

    acc = eigen.CentringAccumulator(2)
    acc.add(slice(0, 1), slice(0, 1), np.array([[-1e308]]), mirrored=False)  # c = -1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"too large to square in float64"):
            acc.add(slice(1, 2), slice(1, 2), np.array([[1e308]]), mirrored=False)
