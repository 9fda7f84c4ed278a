"""Matrices read a block at a time: an (M, M) matrix whose blocks are assembled on demand
(``LazyMatrix``), for instance a submatrix of a stored D (``Submatrix``), so that the iterative
InPCA solvers (``lowdim.geometry.inpca``, which read slab by slab what is ``blockwise``) work on
matrices too large to hold, with exactly the values (and bytes) of the in-memory matrix.

The special studies build their matrices from these (``lowdim.studies.common``); the intervals
stage embeds its resamples as ``Submatrix`` views of the stored D.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from lowdim.store.arrays import as_slice, row_slab

# A matrix to embed is read into memory up to this size (M = 4,096 in float64), else a block at
# a time: memory O(block + M) at any M, memory speed where it costs little.
IN_MEMORY_BYTES = 128 * 2**20
# A submatrix is read whole through slabs of the stored matrix's rows of at most this size.
SLAB_BYTES = 64 * 2**20


class LazyMatrix:
    """An (M, M) float64 matrix whose blocks are assembled on demand (`block`), never all at once:
    ``d[rows]`` and ``d[rows, cols]`` (slices of step 1) return a new array, as does ``d[idx]``
    for an integer array `idx` of rows (`take_rows`: what the landmark embedding reads);
    ``np.asarray(d)`` assembles everything. Passes for a read-only matrix in
    `lowdim.geometry.inpca` (``blockwise``).
    """

    blockwise = True
    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, m: int) -> None:
        self.shape = (int(m), int(m))

    def __len__(self) -> int:
        return self.shape[0]

    def block(self, rows: slice, cols: slice) -> np.ndarray:
        """The (rows, cols) block as a new float64 array (`rows`, `cols`: normalized slices)."""
        raise NotImplementedError

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        """Whole rows `idx` (an integer array) as a new float64 array; here row by row."""
        full = slice(0, self.shape[1], 1)
        out = np.empty((len(idx), self.shape[1]))
        for k, row in enumerate(np.arange(self.shape[0])[idx]):
            out[k] = self.block(slice(int(row), int(row) + 1, 1), full)[0]
        return out

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if (isinstance(rows, np.ndarray) and rows.dtype.kind in "iu" and rows.ndim == 1
                and isinstance(cols, slice) and cols == slice(None)):
            return self.take_rows(rows)
        if not (isinstance(rows, slice) and isinstance(cols, slice)):
            raise TypeError(f"{type(self).__name__} is read by slices or an integer array of "
                            f"rows, got {key!r}")
        rows, cols = (slice(*s.indices(self.shape[0])) for s in (rows, cols))
        if rows.step != 1 or cols.step != 1:
            raise TypeError(f"{type(self).__name__} is read by slices of step 1, got {key!r}")
        out = self.block(rows, cols)
        if cols.stop - cols.start == self.shape[1]:
            return out
        # A tile of an in-memory matrix is a view whose rows are not adjacent, and numpy sums
        # such a view row by row, not as one run: lay the tile out alike, so that reductions
        # over it (the solver's centring) give the in-memory matrix's bytes.
        padded = np.empty((out.shape[0], out.shape[1] + 1))
        padded[:, :-1] = out
        return padded[:, :-1]

    def whole(self) -> np.ndarray:
        """Every entry as a new float64 array (what ``np.asarray`` returns)."""
        return self.block(slice(0, self.shape[0], 1), slice(0, self.shape[1], 1))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.whole()
        return whole if dtype is None else whole.astype(dtype, copy=False)


def _read(source: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """source[rows][:, cols] as float64 from an (M, M) ndarray, memory map or `NpyFile`,
    reading only what is asked for: a tile when both are contiguous ranges, whole rows when
    `cols` is every column in order, else the (rows, cols) entries (a memory map touches only
    their pages; reading the rows whole first would read every row once per tile)."""
    r, c = as_slice(rows), as_slice(cols)
    if isinstance(c, slice) and c == slice(0, np.shape(source)[1]):
        return np.asarray(source[r], dtype=np.float64)
    if isinstance(r, slice) or isinstance(c, slice) or not isinstance(source, np.ndarray):
        return np.asarray(source[r, c], dtype=np.float64)  # NpyFile: two arrays are outer
    return np.asarray(source[np.ix_(r, c)], dtype=np.float64)


def row_slabs(rows: np.ndarray, step: int) -> list[slice]:
    """Sorted distinct row indices -> slices of at most `step` consecutive rows covering them:
    each a contiguous read of the source (a bootstrap's rows come in whole runs), and for
    0..M-1 the slabs ``lowdim.geometry.eigen.slabs`` cuts."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    out = []
    for run in np.split(rows, breaks) if rows.size else []:
        first, stop = int(run[0]), int(run[-1]) + 1
        out += [slice(a, min(a + step, stop)) for a in range(first, stop, step)]
    return out


class Submatrix(LazyMatrix):
    """The `rows` x `rows` submatrix of a stored (M, M) matrix (ndarray, memory map or
    `NpyFile`), read block by block: ``Submatrix(d, rows)`` holds ``d[np.ix_(rows, rows)]``;
    `rows` None: all of D (its blocks laid out as those of D in memory)."""

    def __init__(self, source: Any, rows: np.ndarray | None = None) -> None:
        self.source = source
        self.rows = np.arange(np.shape(source)[0]) if rows is None else np.asarray(rows)
        super().__init__(len(self.rows))

    def block(self, rows: slice, cols: slice) -> np.ndarray:
        return _read(self.source, self.rows[rows], self.rows[cols])

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        return _read(self.source, self.rows[idx], self.rows)

    @cached_property
    def distinct_rows(self) -> np.ndarray:
        """The sorted distinct rows of the source it selects (once: every product reads them)."""
        return np.unique(self.rows)

    def product(self, x: np.ndarray, symmetric: bool = True,
                block_bytes: int = SLAB_BYTES) -> np.ndarray:
        """(K, b) X -> (K, b) S X with S = (A + A^T)/2 for this submatrix A, reading whole rows
        of the source and never gathering its columns (``lowdim.geometry.eigen.d_product``
        hands the solvers' products here).

        With z the source-indexed sum of X over repeated rows (zero off the selection),
        (A X)_i = (D z)_{rows_i} and (A^T X)_i = (D^T z)_{rows_i}: one pass over the distinct
        selected rows of D, in slabs of at most `block_bytes`. The sums run over the source's
        columns, not the submatrix's, so the result equals the product with the in-memory
        submatrix to rounding; with every row of the source once and in order (``rows`` None)
        z is X and the slabs are ``d_product``'s: the same bytes.
        """
        m = np.shape(self.source)[1]
        z = np.zeros((m, x.shape[1]))
        np.add.at(z, self.rows, x)
        y = np.zeros_like(z)
        step = max(1, block_bytes // (8 * m))  # d_product's slabs (eigen.slabs)
        for picked in row_slabs(self.distinct_rows, step):
            slab = row_slab(self.source, picked)
            if symmetric:
                y[picked] = slab @ z
            else:  # d_product's order of sums: the slab's rows, then its columns transposed
                y[picked] += 0.5 * (slab @ z)
                y += 0.5 * (slab.T @ z[picked])
        return y[self.rows]

    def whole(self) -> np.ndarray:
        # a slab of the source's rows at a time: never the whole (K, M) rows before selecting
        m = self.shape[0]
        step = max(1, SLAB_BYTES // (8 * max(1, np.shape(self.source)[1])))
        out = np.empty((m, m))
        for start in range(0, m, step):
            out[start:start + step] = self.take_rows(np.arange(start, min(start + step, m)))
        return out


def in_memory_if_small(d, limit: int | None = None):
    """An (M, M) matrix (array, ``NpyFile``, ``LazyMatrix``) read whole when its float64 values
    take at most `limit` bytes (None: ``IN_MEMORY_BYTES``), so that the solvers' many passes
    run at memory speed; a larger one as it is, read a block at a time. The values are the same
    either way."""
    limit = IN_MEMORY_BYTES if limit is None else limit
    m = d.shape[0]
    return np.asarray(d) if 8 * m * m <= limit else d
