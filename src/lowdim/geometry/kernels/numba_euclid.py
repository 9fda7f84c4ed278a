"""The fused per-sample Euclidean kernel on the CPU, compiled by numba (``geometry.euclidean``).

Per pair of rows (i, j) it adds, sample by sample in order, ``sqrt(sum_c (p_i[n,c] - p_j[n,c])^2)``
(or the squared norm) into a float64 running sum: the (rows, rows, samples) cube of the numpy
form is never stored, and the difference form leaves exactly 0 between identical rows.

Layout and tile pairs as in ``numba_bc``: rows packed into tiles of ``TILE_J`` rows, contiguous
per sample and class, here float64 probabilities. For ``UNROLL_I`` rows i at a time the
per-sample squared norms against the ``TILE_J`` rows of a j tile are accumulated over the
classes, then rooted and added to the pair's running sum. Everything is float64 with
``fastmath=False``: the value of a pair is the same float operations for (i, j) and (j, i)
(``(a - b)^2 == (b - a)^2``), so the matrix is bitwise symmetric and independent of tiling,
chunking and threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lowdim.geometry.kernels.numba_bc import (  # noqa: F401 (tile_pairs: this kernel's too)
    TILE_I,
    TILE_J,
    serial_below,
    tile_pairs,
    tile_place,
)

UNROLL_I = 4  # rows i sharing each load of a row-j value
CHUNK = 32    # samples per pass over a tile: a 32 x 10 x 64 float64 j-chunk is 160 KiB


def pack_rows(x: np.ndarray) -> np.ndarray:
    """(rows, S, C) probabilities -> (ceil(rows/TILE_J), S, C, TILE_J) float64, zero-padded:
    the layout of ``numba_bc.pack_roots`` without the roots (a reshape, no compiled loop)."""
    rows, s, c = x.shape
    n_tiles = -(-rows // TILE_J)
    padded = np.zeros((n_tiles * TILE_J, s, c))
    padded[:rows] = x
    return np.ascontiguousarray(padded.reshape(n_tiles, TILE_J, s, c).transpose(0, 2, 3, 1))


def accumulate(a: np.ndarray, b: np.ndarray, tiles: np.ndarray, squared: bool,
               total: np.ndarray) -> None:
    """Add one chunk of samples into ``total`` (M1, M2) float64, in place.

    a: (tiles_i, S, C, TILE_J), b: (tiles_j, S, C, TILE_J) packed rows (``pack_rows``) of the
    same S samples; tiles: (K, 2) tile pairs (``tile_pairs``).
    """
    with serial_below(len(tiles) * TILE_I * TILE_J * a.shape[1] * a.shape[2]):
        _accumulate(a, b, tiles, squared, total)


@njit(parallel=True, fastmath=False, cache=True, nogil=True)
def _accumulate(a, b, tiles, squared, total):  # pragma: no cover - compiled
    """The compiled body of ``accumulate``, parallel over tile pairs."""
    m1, m2 = total.shape
    n_samples = a.shape[1]
    n_classes = a.shape[2]
    for k in prange(tiles.shape[0]):
        jt, i0, j0, at, ao, ni, nj = tile_place(tiles, k, m1, m2)
        s = np.zeros((TILE_I, TILE_J), dtype=np.float64)
        for ii in range(ni):
            for jj in range(nj):
                s[ii, jj] = total[i0 + ii, j0 + jj]
        d = np.empty((UNROLL_I, TILE_J), dtype=np.float64)
        for s0 in range(0, n_samples, CHUNK):
            s1 = min(n_samples, s0 + CHUNK)
            for ib in range(0, ni, UNROLL_I):
                for n in range(s0, s1):
                    for u in range(UNROLL_I):
                        for jj in range(TILE_J):
                            d[u, jj] = 0.0
                    for c in range(n_classes):
                        a0 = a[at, n, c, ao + ib]
                        a1 = a[at, n, c, ao + ib + 1]
                        a2 = a[at, n, c, ao + ib + 2]
                        a3 = a[at, n, c, ao + ib + 3]
                        for jj in range(TILE_J):
                            x = b[jt, n, c, jj]
                            t0 = a0 - x
                            t1 = a1 - x
                            t2 = a2 - x
                            t3 = a3 - x
                            d[0, jj] += t0 * t0
                            d[1, jj] += t1 * t1
                            d[2, jj] += t2 * t2
                            d[3, jj] += t3 * t3
                    if squared:
                        for u in range(UNROLL_I):
                            for jj in range(TILE_J):
                                s[ib + u, jj] += d[u, jj]
                    else:
                        for u in range(UNROLL_I):
                            for jj in range(TILE_J):
                                s[ib + u, jj] += np.sqrt(d[u, jj])
        for ii in range(ni):
            for jj in range(nj):
                total[i0 + ii, j0 + jj] = s[ii, jj]
