"""Top eigenpairs of the double-centred W = -1/2 L D L without forming W (docs/study.md A4-A5).

Everything here reads D (M x M, in memory or memory-mapped with ``np.load(mmap_mode="r")``) in
blocks of at most ``block_bytes``, so apart from O(M x basis) vectors, memory does not grow with M:

- ``streaming_stats``: one pass over D in square tiles gives the row means, the grand mean,
  ||W||_F^2 (by the identity derived there) and the symmetry and finiteness checks.
- ``centred_product``: W X from one product D X plus O(M) work per column.
- ``block_krylov_eigenpairs`` (solver ``randomized``): a randomized block Krylov method (block
  Lanczos from a random start block, full reorthogonalization, thick restarts). Each step reads D
  once for a whole block of vectors (a matrix-matrix product), which is why it beats
  single-vector Lanczos on large D.
- ``lanczos_eigenpairs`` (solver ``lanczos``): ARPACK's implicitly restarted Lanczos
  (``scipy.sparse.linalg.eigsh``, which="LM") on the same product.
- ``CentringAccumulator``: the same statistics as ``streaming_stats``, accumulated while the
  distances stage writes D tile by tile, so the embedding needs no extra pass over D.
- ``DeviceMatrix``: the products on a torch device (a GPU) when one is asked for; the host
  (numpy) is the default.

At scale D lives on disk: ``lowdim.store.arrays.NpyFile`` maps one row slab of a ``.npy`` file at a
time (``row_slab``) and drops it after its product, instead of one long-lived memory map, so
pages of D do not pile up in the process's resident set (a map's pages count in it until
unmapped, even though the kernel may drop them); reading the slab in place rather than copying
it out of the page cache with ``pread`` halved a product's time on a cached D
(``benchmarks/slab_reads.py``).

Both find the k eigenvalues of largest |lambda|, of either sign. Convergence is by residual:
an eigenpair (theta, u) is accepted when ||W u - theta u|| <= tol |theta| (ARPACK's criterion too),
which bounds |theta - lambda| by tol |theta| and, with a gap g to the rest of the spectrum, by
(tol theta)^2 / g.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from math import isqrt

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from threadpoolctl import ThreadpoolController

from lowdim.store.arrays import row_slab

SYM_RTOL = 1e-6  # max |D - D^T| allowed, relative to max |D|
DEFAULT_BLOCK_BYTES = 64 * 2**20  # memory bound of one block of D read at a time
DEFAULT_TOL = 1e-10
# A residual this small (times ||D||_F) is at the rounding level of one product: accept it even
# when |theta| is tiny (null directions of a rank-deficient W never get below tol |theta|).
ROUNDING_RESIDUAL = 1e3 * np.finfo(np.float64).eps

THREADED_PRODUCT_MIN = 2**26  # products with D smaller than this stay on one BLAS thread

Operator = Callable[[np.ndarray], np.ndarray]


def check_matrix(d: np.ndarray, name: str = "d") -> None:
    """Raise ValueError unless d is a non-empty, real numeric, square (M, M) array."""
    # not getattr(d, "dtype", np.asarray(d).dtype): its default would read a file-backed d whole
    shape = np.shape(d)
    dtype = d.dtype if hasattr(d, "dtype") else np.asarray(d).dtype
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be a square (M, M) matrix, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric matrix, got dtype {dtype}")


def asymmetry_message(name: str, asym: float, scale: float) -> str | None:
    """The error message when max |d - d.T| = asym is too large against max |d| = scale."""
    if asym <= SYM_RTOL * scale:
        return None
    return (
        f"{name} must be symmetric: max |d - d.T| = {asym:.3g} exceeds {SYM_RTOL:g} x max |d| "
        f"= {SYM_RTOL * scale:.3g}"
    )


@dataclass(frozen=True)
class CentringStats:
    """What one streaming pass over D gives: enough for products with W and for ||W||_F^2."""

    row_means: np.ndarray  # (M,) row means of S = (D + D^T)/2 (= its column means)
    grand_mean: float  # mean of all entries of D
    frobenius_sq: float  # ||W||_F^2, W = -1/2 L S L
    d_frobenius: float  # ||S||_F: the scale of rounding errors in one product
    symmetric: bool  # D == D^T exactly, so products need D x only


def _tiles(m: int, block_bytes: int) -> list[slice]:
    """Split range(m) so that a few (t, t) float64 tiles fit in block_bytes."""
    # two tiles read, their mean, temporaries; the side is a performance parameter only:
    side = max(1, isqrt(block_bytes // (6 * 8)))  # pragma: no mutate - any side >= 1, same stats
    return [slice(i, min(i + side, m)) for i in range(0, m, side)]


def streaming_stats(d: np.ndarray, block_bytes: int = DEFAULT_BLOCK_BYTES,
                    name: str = "d") -> CentringStats:
    """(M, M) D, read in tiles -> CentringStats; checks finiteness and symmetry on the way.

    With S = (D + D^T)/2 (= D for symmetric input), row means r_i = (1/M) sum_j S_ij and grand mean
    g = (1/M^2) sum_ij S_ij, the centred matrix is L S L = S - r 1^T - 1 r^T + g 1 1^T, so

        ||L S L||_F^2 = sum_ij (S_ij - r_i - r_j + g)^2
                      = ||S||_F^2 - 2 sum_ij S_ij (r_i + r_j - g) + sum_ij (r_i + r_j - g)^2.

    Using sum_j S_ij = M r_i and sum_i r_i = M g:
        sum_ij S_ij (r_i + r_j - g) = 2 M sum_i r_i^2 - M^2 g^2,
        sum_ij (r_i + r_j - g)^2    = 2 M sum_i r_i^2 + 2 M^2 g^2 + M^2 g^2 - 4 M^2 g^2
                                    = 2 M sum_i r_i^2 - M^2 g^2,
    hence, with row sums s_i = M r_i and total T = M^2 g,

        ||W||_F^2 = 1/4 ||L S L||_F^2 = 1/4 (||S||_F^2 - 2 M sum_i r_i^2 + M^2 g^2)
                  = 1/4 (||S||_F^2 - (2/M) sum_i s_i^2 + T^2 / M^2).

    W does not change when a constant c is added to every entry of S (L 1 = 0), so the sums are
    taken over S - c with c the mean of the first tile: this keeps the three terms, which cancel,
    from growing with the mean distance. One pass over D; each tile pair (a, b), a <= b, is read
    once together with its mirror (b, a), which is what the symmetry check needs.
    """
    check_matrix(d, name)
    m = d.shape[0]
    tiles = _tiles(m, block_bytes)
    row_sums = np.zeros(m)
    sq_sum = 0.0
    asym = scale = 0.0
    shift = None
    for a, ra in enumerate(tiles):
        for rb in tiles[a:]:
            upper = np.asarray(d[ra, rb], dtype=np.float64)
            lower = upper.T if rb == ra else np.asarray(d[rb, ra], dtype=np.float64).T
            if shift is None:
                shift = float(upper.mean())
            with np.errstate(invalid="ignore", over="ignore"):  # checked just below
                diff = upper - lower
                tile = upper + lower
                tile *= 0.5
                tile -= shift
                tile_sq = float(np.einsum("ij,ij->", tile, tile))
            if not np.isfinite(tile_sq):  # NaN and inf propagate into the sum of squares
                _raise_not_finite(upper, lower, name)
            asym = max(asym, float(diff.max()), -float(diff.min()))
            scale = max(scale, float(upper.max()), -float(upper.min()),
                        float(lower.max()), -float(lower.min()))
            weight = 1.0 if rb == ra else 2.0  # an off-diagonal tile stands for its mirror too
            sq_sum += weight * tile_sq
            row_sums[ra] += tile.sum(axis=1)
            if rb != ra:
                row_sums[rb] += tile.sum(axis=0)
    message = asymmetry_message(name, asym, scale)
    if message:
        raise ValueError(message)
    return stats_from_sums(row_sums, sq_sum, shift, symmetric=asym == 0.0)


def stats_from_sums(shifted_row_sums: np.ndarray, shifted_sq_sum: float, shift: float,
                    symmetric: bool = True) -> CentringStats:
    """(M,) row sums of S - c, sum of (S - c)^2 and the shift c -> CentringStats.

    The identity of ``streaming_stats``: ||W||_F^2 = 1/4 (||S - c||_F^2 - (2/M) sum_i s_i^2
    + T^2 / M^2) with s_i the row sums and T the total of S - c, for any constant c.
    """
    row_sums = np.asarray(shifted_row_sums, dtype=np.float64)
    m = row_sums.shape[0]
    sq_sum, shift = float(shifted_sq_sum), float(shift)
    total = float(row_sums.sum())
    frob = 0.25 * (sq_sum - 2.0 / m * float(row_sums @ row_sums) + total**2 / m**2)
    # ||S||_F^2 from the shifted sums: ||S - c||^2 + 2 c sum(S - c) + c^2 M^2
    d_frob_sq = sq_sum + 2.0 * shift * total + shift**2 * m * m
    return CentringStats(
        row_means=row_sums / m + shift,
        grand_mean=total / m**2 + shift,
        frobenius_sq=max(frob, 0.0),  # rounding can leave -tiny for W = 0
        d_frobenius=float(np.sqrt(max(d_frob_sq, 0.0))),
        symmetric=symmetric,
    )


class CentringAccumulator:
    """The sums behind CentringStats, accumulated block by block while a symmetric D is written.

    Blocks come in any order, each entry of D exactly once: a block of rows i and columns j
    either lies on the diagonal (it holds its own mirror: ``mirrored=False``) or stands for
    itself and its transpose (``mirrored=True``). As in ``streaming_stats`` the sums are taken
    over D - c, with c the mean of the first block, so that they do not grow with the mean
    distance. Pass the values as stored (e.g. rounded to float32), so the statistics describe
    the stored matrix exactly. Memory: O(M).
    """

    def __init__(self, m: int, name: str = "d") -> None:
        self.m = int(m)
        self.name = name
        self.row_sums = np.zeros(self.m)
        self.sq_sum = 0.0
        self.shift: float | None = None
        self.entries = 0

    def add(self, rows_i: slice | np.ndarray, rows_j: slice | np.ndarray, block: np.ndarray,
            mirrored: bool) -> None:
        """Account for block = D[rows_i, rows_j] (and D[rows_j, rows_i] = block.T if mirrored)."""
        block = np.asarray(block, dtype=np.float64)
        if block.size == 0:
            return
        if self.shift is None:
            self.shift = float(block.mean())
        with np.errstate(invalid="ignore", over="ignore"):  # checked just below
            tile = block - self.shift
            tile_sq = float(np.einsum("ij,ij->", tile, tile))
        if not np.isfinite(tile_sq):
            _raise_not_finite(block, block, self.name)
        weight = 2 if mirrored else 1
        self.sq_sum += weight * tile_sq
        self.row_sums[rows_i] += tile.sum(axis=1)
        if mirrored:
            self.row_sums[rows_j] += tile.sum(axis=0)
        self.entries += weight * block.size

    def stats(self) -> CentringStats:
        """CentringStats of the whole matrix; raises if some entries were not accounted for."""
        if self.entries != self.m * self.m:
            raise RuntimeError(f"{self.name}: {self.entries} entries were accumulated for an "
                               f"({self.m}, {self.m}) matrix: every entry must come exactly once")
        return stats_from_sums(self.row_sums, self.sq_sum, self.shift or 0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The accumulated sums as arrays, to be saved beside the matrix (``stats_from_arrays``).

        ``row_sums``, ``total``, ``sum_sq`` are the plain sums of D; ``w_frobenius_sq`` is
        ||W||_F^2; the shifted sums and ``shift`` rebuild CentringStats to the last bit.
        """
        stats = self.stats()
        shift = self.shift or 0.0
        return {
            "m": np.int64(self.m),
            "shift": np.float64(shift),
            "shifted_row_sums": self.row_sums.copy(),
            "shifted_sum_sq": np.float64(self.sq_sum),
            "row_sums": self.row_sums + shift * self.m,
            "total": np.float64(stats.grand_mean * self.m * self.m),
            "sum_sq": np.float64(stats.d_frobenius**2),
            "w_frobenius_sq": np.float64(stats.frobenius_sq),
        }


def stats_from_arrays(arrays: dict[str, np.ndarray]) -> CentringStats:
    """CentringStats from ``CentringAccumulator.arrays`` (as saved beside a matrix)."""
    return stats_from_sums(arrays["shifted_row_sums"], float(arrays["shifted_sum_sq"]),
                           float(arrays["shift"]))


def _raise_not_finite(upper: np.ndarray, lower: np.ndarray, name: str) -> None:
    """Raise the right message for a tile whose sum of squares is not finite."""
    if not (np.isfinite(upper).all() and np.isfinite(lower).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    raise ValueError(f"{name} has entries too large to square in float64 (max |d| "
                     f"{max(np.abs(upper).max(), np.abs(lower).max()):.3g}): rescale it")


def d_product(d: np.ndarray, x: np.ndarray, symmetric: bool = True,
              block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """(M, M) D, (M, b) X -> (M, b) S X with S = (D + D^T)/2, reading D in row slabs.

    D may be an ndarray, a memory map or any object whose ``d[rows]`` returns the rows of a
    slice (``lowdim.store.products.NpyFile``); a ``DeviceMatrix`` computes the product on its
    device, and an object with a ``product(x, symmetric, block_bytes)`` method (a
    ``lowdim.store.lazy.Submatrix``) computes its own.
    """
    if isinstance(d, DeviceMatrix):
        return d.product(x, symmetric)
    if hasattr(d, "product"):  # a store.lazy.Submatrix: whole rows of its source, no gathers
        return d.product(x, symmetric, block_bytes)
    m = d.shape[0]
    y = np.zeros((m, x.shape[1]))
    for rows in slabs(m, block_bytes):
        slab = row_slab(d, rows)  # an NpyFile's slab read in place: no copy out of the cache
        if symmetric:
            y[rows] = slab @ x
        else:  # S x = (D x + D^T x) / 2: the slab's rows and, transposed, its columns
            y[rows] += 0.5 * (slab @ x)
            y += 0.5 * (slab.T @ x[rows])
    return y


class DeviceMatrix:
    """D for products on a torch device (a GPU): each product ``S X`` runs there in float64.

    D stays resident on the device, in its stored dtype, when it takes at most
    ``resident_fraction`` of the device's free memory; otherwise every product streams it from
    the host in row slabs of ``block_bytes``. The host never holds more than one slab. Torch is
    imported only here, so the CPU path does not need it.
    """

    def __init__(self, d: np.ndarray, device: str, block_bytes: int = DEFAULT_BLOCK_BYTES,
                 resident_fraction: float = 0.7) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for the eigensolver's products, but "
                             "CUDA is not available: use device='cpu' (the default)")
        self.d = d
        self.shape = tuple(d.shape)
        self.dtype = np.dtype(getattr(d, "dtype", np.float64))
        self.block_bytes = block_bytes
        m = self.shape[0]
        self.resident = None
        if self.device.type == "cuda":  # pragma: no mutate block - runs on CUDA only
            free, _ = torch.cuda.mem_get_info(self.device)
            if m * m * self.dtype.itemsize <= resident_fraction * free:
                self.resident = torch.empty((m, m), dtype=_torch_dtype(torch, self.dtype),
                                            device=self.device)
                for rows in slabs(m, block_bytes):
                    self.resident[rows] = torch.from_numpy(np.ascontiguousarray(d[rows])).to(
                        self.device)

    def close(self) -> None:
        """Give the resident copy back to the device. torch's caching allocator keeps freed
        blocks, which `mem_get_info` counts as used: without emptying the cache the next space's
        D would find too little free memory and stream from the host."""
        self.resident = None
        if self.device.type == "cuda":  # pragma: no mutate block - runs on CUDA only
            self.torch.cuda.empty_cache()

    def product(self, x: np.ndarray, symmetric: bool = True) -> np.ndarray:
        """(M, b) X -> (M, b) S X, S = (D + D^T)/2, computed on the device in float64."""
        torch = self.torch
        m = self.shape[0]
        xd = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(self.device)
        y = torch.zeros((m, xd.shape[1]), dtype=torch.float64, device=self.device)
        # float64 slabs on the device: bound them by block_bytes, like the host's
        for rows in slabs(m, self.block_bytes):
            if self.resident is not None:
                slab = self.resident[rows].to(torch.float64)  # pragma: no mutate - CUDA only
            else:
                slab = torch.from_numpy(np.ascontiguousarray(self.d[rows])).to(
                    self.device).to(torch.float64)
            if symmetric:
                y[rows] = slab @ xd
            else:
                y[rows] += 0.5 * (slab @ xd)
                y += 0.5 * (slab.T @ xd[rows])
        return y.cpu().numpy()


def _torch_dtype(torch, dtype: np.dtype):
    """The torch dtype of a numpy float dtype."""
    return {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32,
            np.dtype(np.float16): torch.float16}[np.dtype(dtype)]


def centred_product(d: np.ndarray, x: np.ndarray, stats: CentringStats,
                    block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """(M, M) D, (M,) or (M, b) x, its stats -> W x of the same shape, W = -1/2 L S L.

    L S L = S - r 1^T - 1 r^T + g 1 1^T (r row means, g grand mean), so
    W x = -1/2 (S x - r (1^T x) - 1 (r^T x) + g 1 (1^T x)): one product with D, O(M) per column.
    """
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    xb = x[:, None] if single else x
    r, g = stats.row_means, stats.grand_mean
    col_sums = xb.sum(axis=0)
    sx = d_product(d, xb, stats.symmetric, block_bytes)
    wx = -0.5 * (sx - np.outer(r, col_sums) - (r @ xb)[None, :] + g * col_sums[None, :])
    return wx[:, 0] if single else wx


# --------------------------------------------------------------------------- solvers


def _by_magnitude(values: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) indices sorting by |value| descending (stable, so ties keep their order)."""
    return np.argsort(-np.abs(values), kind="stable")


def _project_out(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(M, b) x, (M, s) orthonormal basis -> x minus its component in the basis (twice, CGS2)."""
    for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
        x = x - basis @ (basis.T @ x)
    return x


def _orthonormal_block(y: np.ndarray, basis: np.ndarray, width: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(M, b) y, (M, s) orthonormal basis -> (M, width) orthonormal columns orthogonal to it.

    Columns of y that are (numerically) inside the basis, as when W has a smaller rank than the
    basis, are replaced by random directions, so the result always has `width` columns.
    """
    candidates = y[:, :width]
    good = np.empty((y.shape[0], 0))
    for _ in range(4):
        scale = np.linalg.norm(candidates, axis=0)
        q, r = np.linalg.qr(_project_out(candidates, np.hstack([basis, good])))
        strong = np.abs(np.diag(r)) > 1e-10 * scale
        good = np.hstack([good, q[:, strong]])
        if good.shape[1] == width:  # once more against the basis: QR mixes in weak columns
            return np.linalg.qr(_project_out(good, basis))[0]
        candidates = rng.standard_normal((y.shape[0], width - good.shape[1]))
    raise RuntimeError("could not extend the Krylov basis: fewer free directions than the block")


def block_krylov_eigenpairs(
    apply_w: Operator,
    m: int,
    k: int,
    *,
    tol: float = DEFAULT_TOL,
    floor: float = 0.0,
    block_size: int | None = None,
    max_basis: int | None = None,
    max_products: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric (m, m) operator X -> W X, k -> (k,) eigenvalues by |lambda|, (m, k) eigenvectors.

    Randomized block Krylov: from a random (m, b) block, grow an orthonormal basis V of
    span{Q, W Q, W^2 Q, ...} one block at a time (each step one product W Q_j, full
    reorthogonalization), keep W V alongside, and after each step take Ritz pairs of V^T W V.
    A pair is converged when ||W u - theta u|| <= max(tol |theta|, floor). When the basis reaches
    ``max_basis`` columns it is restarted from the leading Ritz vectors (thick restart), which
    keeps memory at O(m max_basis). Raises RuntimeError after ``max_products`` columns multiplied.
    """
    if not 1 <= k < m:
        raise ValueError(f"k must be in [1, M - 1] = [1, {m - 1}] for an iterative solver, got {k}")
    rng = np.random.default_rng(seed)
    b = block_size or min(max(8, k // 3), 32)  # pragma: no mutate - default width, speed only
    b = min(b, m - k)
    keep_count = min(k + max(b, k // 2), m)  # Ritz vectors kept on restart
    max_basis = min(m, max(max_basis or 3 * k + 6 * b, keep_count + b))
    max_products = max_products or max(100 * max_basis, 20 * m)
    basis = np.empty((m, max_basis))
    image = np.empty((m, max_basis))  # W @ basis
    gram = np.zeros((max_basis, max_basis))  # basis^T W basis
    s, products = 0, 0
    q = _orthonormal_block(rng.standard_normal((m, b)), basis[:, :0], b, rng)
    while True:
        w_q = apply_w(q)
        products += q.shape[1]
        new = slice(s, s + q.shape[1])
        basis[:, new], image[:, new] = q, w_q
        gram[: new.stop, new] = basis[:, : new.stop].T @ w_q
        gram[new, : s] = gram[: s, new].T
        s = new.stop
        theta, vecs = np.linalg.eigh(0.5 * (gram[:s, :s] + gram[:s, :s].T))
        order = _by_magnitude(theta)
        top = order[:k]
        u = basis[:, :s] @ vecs[:, top]
        residual = np.linalg.norm(image[:, :s] @ vecs[:, top] - u * theta[top], axis=0)
        if np.all(residual <= np.maximum(tol * np.abs(theta[top]), floor)) or s == m:
            return theta[top], u
        if products >= max_products:
            raise RuntimeError(
                f"randomized eigensolver did not converge after {products} vector products "
                f"(largest residual {residual.max():.3g}): raise tol, ask for fewer components, "
                "or use solver='lanczos' or 'dense'"
            )
        width = min(b, m - s) if s < m else 0
        if s + width > max_basis:  # thick restart: keep the leading Ritz vectors
            keep = order[:keep_count]
            q = _orthonormal_block(w_q, basis[:, :s], min(b, m - s), rng)  # before it shrinks
            basis[:, : len(keep)] = u_keep = basis[:, :s] @ vecs[:, keep]
            image[:, : len(keep)] = image[:, :s] @ vecs[:, keep]
            gram[:] = 0.0
            gram[np.arange(len(keep)), np.arange(len(keep))] = theta[keep]
            s = u_keep.shape[1]
            q = q[:, : min(b, m - s, max_basis - s)]
        else:
            q = _orthonormal_block(w_q, basis[:, :s], width, rng)


def lanczos_eigenpairs(
    apply_w: Operator, m: int, k: int, *, tol: float = DEFAULT_TOL, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric (m, m) operator X -> W X, k -> (k,) eigenvalues by |lambda|, (m, k) eigenvectors.

    ARPACK's implicitly restarted Lanczos (``eigsh``, which="LM": largest magnitude, both signs)
    with a seeded start vector, so the result is reproducible.
    """
    if not 1 <= k < m:
        raise ValueError(f"k must be in [1, M - 1] = [1, {m - 1}] for an iterative solver, got {k}")
    op = LinearOperator((m, m), matvec=lambda x: apply_w(x.reshape(m, 1))[:, 0],
                        matmat=apply_w, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(m)
    try:
        lam, vec = eigsh(op, k=k, which="LM", tol=tol, v0=v0)
    except ArpackNoConvergence as err:
        raise RuntimeError(
            f"Lanczos (ARPACK) did not converge for {k} eigenpairs ({err}): raise tol, ask for "
            "fewer components, or use solver='randomized' or 'dense'"
        ) from None
    order = _by_magnitude(lam)
    return lam[order], vec[:, order]


@cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded by numpy and scipy (found once: the lookup is slow)."""
    return ThreadpoolController()


@contextmanager
def _small_algebra_on_one_thread() -> Iterator[Callable[[Operator, int], Operator]]:
    """Run a solver's own small dense algebra on one BLAS thread; yield a wrapper for W products.

    The Ritz steps (QR, eigh of the small projected matrix, basis updates) gain nothing from
    threads, and on a shared machine a second BLAS thread that waits for a busy core makes them
    many times slower. Products with D keep the caller's thread count when they are large enough
    (``THREADED_PRODUCT_MIN`` multiply-adds) to gain from it.
    """
    blas = _blas().select(user_api="blas")
    threads = max([int(info["num_threads"]) for info in blas.info()] or [1])

    def threaded(apply_w: Operator, m: int) -> Operator:
        def run(x: np.ndarray) -> np.ndarray:
            width = 1 if x.ndim == 1 else x.shape[1]
            if threads == 1 or m * m * width < THREADED_PRODUCT_MIN:
                return apply_w(x)
            with blas.limit(limits=threads):
                return apply_w(x)
        return run

    with blas.limit(limits=1):
        yield threaded


ITERATIVE_SOLVERS = {"randomized": block_krylov_eigenpairs, "lanczos": lanczos_eigenpairs}


def top_eigenpairs(
    d: np.ndarray,
    k: int,
    stats: CentringStats,
    *,
    solver: str = "randomized",
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    device: str | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) D, k, its stats -> (k,) eigenvalues of W by |lambda| descending, (M, k) eigenvectors.

    W is never formed: each product reads D in row slabs (``centred_product``). ``device``: None
    (numpy on the host, the default) or a torch device such as "cuda", where the products with
    D run (``DeviceMatrix``); the solver's small algebra stays on the host. ``block_size``:
    vectors per product of the randomized solver (None: its default); a wider block reads D
    fewer times, which matters when D is read from disk.
    """
    if solver not in ITERATIVE_SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: use one of {', '.join(ITERATIVE_SOLVERS)}")
    m = d.shape[0]
    if device is not None:
        d = DeviceMatrix(d, device, block_bytes)

    def apply_w(x: np.ndarray) -> np.ndarray:
        return centred_product(d, x, stats, block_bytes)

    try:
        with _small_algebra_on_one_thread() as threaded:
            if solver == "lanczos":
                return lanczos_eigenpairs(threaded(apply_w, m), m, k, tol=tol, seed=seed)
            floor = ROUNDING_RESIDUAL * stats.d_frobenius
            return block_krylov_eigenpairs(threaded(apply_w, m), m, k, tol=tol, floor=floor,
                                           seed=seed, block_size=block_size)
    finally:  # the device's memory back before the next space's D asks for it
        if isinstance(d, DeviceMatrix):
            d.close()


def dense_eigenpairs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) symmetric W -> (M,) all eigenvalues by |lambda| descending, (M, M) eigenvectors."""
    lam, vec = scipy.linalg.eigh(w)
    order = _by_magnitude(lam)
    return lam[order], vec[:, order]


def slabs(m: int, block_bytes: int) -> list[slice]:
    """Split range(m) into row slabs of at most block_bytes of float64 each (at least one row)."""
    rows = max(1, block_bytes // (8 * m))  # pragma: no mutate - any slab >= 1 row, same product
    return [slice(i, min(i + rows, m)) for i in range(0, m, rows)]
