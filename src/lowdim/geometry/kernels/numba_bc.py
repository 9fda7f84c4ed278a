"""The fused Bhattacharyya kernel on the CPU, compiled by numba (see the package docstring).

Layout: roots are packed into tiles of 64 rows, ``(tiles, samples, C, 64)`` float32, so that
the rows of a tile are contiguous for each (sample, class). A tile pair (16 rows i x 64 rows j)
walks the samples in chunks that stay in the L2 cache; for 4 rows i at a time the 4 x 64
coefficients of one sample are accumulated in vector registers over the C classes (float32
multiply then add, in class order), clipped, and multiplied into a float64 running product.
Rescaling (every ``group`` samples) is exact and the log is taken once per pair, so results
differ from the float64 oracle only by the float32 rounding of the roots and coefficients, as
the reference method's do: at most about (C + 2) * 2**-24 relative per coefficient, hence in
distance; ~1e-8 on random rows, up to 3e-7 measured on rows whose samples all round alike
(geodesic points).

Each pair's value depends only on its two rows: ``BC(i, j)`` and ``BC(j, i)`` are the same float
operations, so the result is bitwise symmetric and independent of tiling, chunking and threads.

``fastmath=False``: no reassociation and no fused multiply-add, so every vector lane and the
scalar code round identically. ``cache=True``: the compiled kernel is written next to this file
in ``__pycache__`` (git- and DVC-ignored); on a read-only tree numba falls back to its user-wide
cache directory, and ``NUMBA_CACHE_DIR`` overrides both.
"""

from __future__ import annotations

import contextlib
import math

import numba
import numpy as np
from numba import njit, prange

TILE_I = 16   # rows i per tile
TILE_J = 64   # rows j per tile (and rows per packed tile): four AVX-512 float32 vectors
UNROLL_I = 4  # rows i sharing each load of a row-j vector
CHUNK = 64    # samples per pass over a tile: a 64 x 10 x 64 float32 j-chunk is 160 KiB
_MANTISSA = np.int64((1 << 52) - 1)
_ONE_BITS = np.int64(1023 << 52)
# The float64 product starts in [1, 2) and may fall by bc_floor per sample before a rescale.
_LOG_TINY = math.log(np.finfo(np.float64).tiny)
MIN_FLOOR = 1e-300  # below this even one factor could leave the normal range
# Below this many multiply-adds per call, one thread: waking the others costs more, and on a
# shared, oversubscribed CPU a parallel region can wait a whole scheduler time slice.
_PARALLEL_WORK = 1 << 24


def rescale_group(bc_floor: float) -> int:
    """Samples between two rescales such that bc_floor ** group stays a normal float64."""
    if not MIN_FLOOR <= bc_floor < 1.0:
        raise ValueError(
            f"bc_floor={bc_floor} is outside [{MIN_FLOOR:g}, 1), the range the CPU fused kernel "
            "supports; use method='reference' for smaller floors"
        )
    return max(1, min(32, int(_LOG_TINY / math.log(bc_floor))))


@njit(fastmath=False, cache=True)  # serial: it is memory-bound and O(M), the kernel O(M^2)
def pack_roots(x):  # pragma: no cover - compiled
    """(rows, S, C) float32 probabilities -> (ceil(rows/TILE_J), S, C, TILE_J) float32 roots.

    Rows of a tile are contiguous for each (sample, class); padding rows are zero.
    """
    rows, s, c = x.shape
    n_tiles = (rows + TILE_J - 1) // TILE_J
    out = np.zeros((n_tiles, s, c, TILE_J), dtype=np.float32)
    for t in range(n_tiles):
        valid = min(TILE_J, rows - t * TILE_J)
        for n in range(s):
            for k in range(c):
                for r in range(valid):
                    out[t, n, k, r] = np.sqrt(x[t * TILE_J + r, n, k])
    return out


def tile_pairs(rows_i: int, rows_j: int, upper: bool) -> np.ndarray:
    """(K, 2) int64 (tile i, tile j) to compute; upper: only tiles touching j >= i."""
    ti, tj = np.meshgrid(np.arange(-(-rows_i // TILE_I)), np.arange(-(-rows_j // TILE_J)),
                         indexing="ij")
    keep = np.ones(ti.shape, dtype=bool)
    if upper:  # the tile's largest column index reaches its smallest row index
        keep = (tj + 1) * TILE_J - 1 >= ti * TILE_I
    return np.stack([ti[keep], tj[keep]], axis=1).astype(np.int64)


def new_state(rows_i: int, rows_j: int) -> tuple[np.ndarray, np.ndarray]:
    """Running state of (rows_i, rows_j) pairs: float64 product 1 and int64 exponent 0."""
    return np.ones((rows_i, rows_j)), np.zeros((rows_i, rows_j), dtype=np.int64)


def finish(prod: np.ndarray, expo: np.ndarray) -> np.ndarray:
    """(M1, M2) state -> (M1, M2) float64 sum over samples of log clip(BC)."""
    return expo * math.log(2.0) + np.log(prod)


def accumulate(a: np.ndarray, b: np.ndarray, tiles: np.ndarray, n_offset: int, floor: float,
               group: int, prod: np.ndarray, expo: np.ndarray) -> None:
    """Advance the state over one chunk of samples.

    a: (tiles_i, S, C, TILE_J) and b: (tiles_j, S, C, TILE_J) float32 roots (``pack_roots``);
    tiles: (K, 2) tile pairs (``tile_pairs``); n_offset: global index of the chunk's first
    sample; prod (M1, M2) float64 and expo (M1, M2) int64, updated in place.
    """
    with serial_below(len(tiles) * TILE_I * TILE_J * a.shape[1] * a.shape[2]):
        _accumulate(a, b, tiles, n_offset, floor, group, prod, expo)


@contextlib.contextmanager
def serial_below(work: int):
    """One numba thread for a call of fewer than ``_PARALLEL_WORK`` multiply-adds."""
    before = numba.get_num_threads()
    if work < _PARALLEL_WORK:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@njit(inline="always", cache=True)
def tile_place(tiles, k, m1, m2):  # pragma: no cover - compiled
    """Where the k-th tile pair lies: its packed j tile, first row i and column j, the packed
    tile and offset of row i in a, and its numbers of valid rows and columns."""
    jt = tiles[k, 1]
    i0 = tiles[k, 0] * TILE_I
    j0 = jt * TILE_J
    return jt, i0, j0, i0 // TILE_J, i0 % TILE_J, min(TILE_I, m1 - i0), min(TILE_J, m2 - j0)


@njit(parallel=True, fastmath=False, cache=True, nogil=True)
def _accumulate(a, b, tiles, n_offset, floor, group, prod, expo):  # pragma: no cover - compiled
    """The compiled body of ``accumulate``, parallel over tile pairs."""
    m1, m2 = prod.shape
    n_samples = a.shape[1]
    n_classes = a.shape[2]
    for k in prange(tiles.shape[0]):
        jt, i0, j0, at, ao, ni, nj = tile_place(tiles, k, m1, m2)
        p = np.ones((TILE_I, TILE_J), dtype=np.float64)
        e = np.zeros((TILE_I, TILE_J), dtype=np.int64)
        for ii in range(ni):
            for jj in range(nj):
                p[ii, jj] = prod[i0 + ii, j0 + jj]
                e[ii, jj] = expo[i0 + ii, j0 + jj]
        bits = p.view(np.int64)
        bc = np.empty((UNROLL_I, TILE_J), dtype=np.float32)
        for s0 in range(0, n_samples, CHUNK):
            s1 = min(n_samples, s0 + CHUNK)
            for ib in range(0, ni, UNROLL_I):
                for n in range(s0, s1):
                    for u in range(UNROLL_I):
                        for jj in range(TILE_J):
                            bc[u, jj] = 0.0
                    for c in range(n_classes):
                        a0 = a[at, n, c, ao + ib]
                        a1 = a[at, n, c, ao + ib + 1]
                        a2 = a[at, n, c, ao + ib + 2]
                        a3 = a[at, n, c, ao + ib + 3]
                        for jj in range(TILE_J):
                            x = b[jt, n, c, jj]
                            bc[0, jj] += a0 * x
                            bc[1, jj] += a1 * x
                            bc[2, jj] += a2 * x
                            bc[3, jj] += a3 * x
                    for u in range(UNROLL_I):
                        for jj in range(TILE_J):
                            p[ib + u, jj] *= min(max(np.float64(bc[u, jj]), floor), 1.0)
                    if (n_offset + n + 1) % group == 0:
                        for u in range(UNROLL_I):
                            for jj in range(TILE_J):
                                w = bits[ib + u, jj]
                                e[ib + u, jj] += (w >> 52) - 1023
                                bits[ib + u, jj] = (w & _MANTISSA) | _ONE_BITS
        for ii in range(ni):
            for jj in range(nj):
                prod[i0 + ii, j0 + jj] = p[ii, jj]
                expo[i0 + ii, j0 + jj] = e[ii, jj]
