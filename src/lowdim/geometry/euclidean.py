"""Mean per-sample Euclidean distance between models, for the comparison embedding
(docs/study.md D20).

    d_E(u, v) = (1/N') sum_n || p_u^n - p_v^n ||_2

over every ``sample_step``-th sample (N' of them), the probability vectors taken as points of R^C.
This is the authors' ``deuclid`` (docs/study.md A8): a mean of per-sample distances, **not
squared**.

**As InPCA's input.** The authors fed this matrix to the same eigendecomposition code as the
Bhattacharyya matrix (``inpca_results_all/euclidean``), so InPCA treats d_E, like d_B, as a matrix
of *squared* distances: ``lowdim.geometry.inpca.inpca(euclidean_distances(p))`` reproduces that
comparison.
(This follows docs/study.md; the authors' ``deuclid`` itself is not in the public repository.)
``squared=True`` gives instead the mean per-sample squared distance
(1/N') sum_n ||p_u^n - p_v^n||^2, a true squared Euclidean distance between the flattened
predictions divided by N', whose InPCA is classical PCA (no negative eigenvalues).

Numerics: the default ``method="fused"`` (``geometry.kernels.numba_euclid``) sums float64
differences per pair, sample by sample, never storing the (rows, rows, samples) cube: exactly 0
between identical rows, bitwise symmetric, the same bits whatever the blocks; 20 to 27 times the
speed of the numpy form on 2 cores (``benchmarks/euclidean.py``). ``method="reference"`` is that
numpy form, kept as the tests' oracle: per block ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b in float64,
clipped at 0 before the square root, whose rounding leaves ~1e-8 where two different rows hold
identical predictions (in the symmetric case the diagonal is still set to 0).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from lowdim.geometry.distances import check_probabilities

_MAX_BLOCK_ROWS = 512
_MAX_FUSED_ROWS = 2048


def _check_step(sample_step: int) -> int:
    if isinstance(sample_step, bool) or not isinstance(sample_step, (int, np.integer)):
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step!r}")
    if sample_step < 1:
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step}")
    return int(sample_step)


def _block(x: np.ndarray, rows: slice, samples: slice) -> np.ndarray:
    """x[rows, samples] as float64 laid out (samples, rows, C)."""
    return np.ascontiguousarray(np.asarray(x[rows, samples], dtype=np.float64).transpose(1, 0, 2))


def euclidean_distances(
    p: np.ndarray,
    q: np.ndarray | None = None,
    *,
    sample_step: int = 1,
    squared: bool = False,
    max_block_bytes: int = 64 * 2**20,
    progress: bool = False,
    out: np.ndarray | None = None,
    method: str = "fused",
) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None (= p) -> (M1, M2) float64 mean per-sample Euclidean distance.

    Symmetric case (q None or q is p): blocks on or above the diagonal only, mirrored. Blocks of
    rows and samples keep the working set under ``max_block_bytes``, whatever M and N.
    ``out``: where to write the result, an (M1, M2) float64 array or a 2-D float64
    ``lowdim.store.arrays.NpyFile`` (each block written as it is done, so the matrix need not fit
    in memory); returned. Default: a new array.
    ``method``: "fused" (the numba kernel ``geometry.kernels.numba_euclid``: float64 differences,
    exactly 0 between identical rows) or "reference" (numpy's Gram form, the oracle the tests
    compare it with).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    step = _check_step(sample_step)
    symmetric = q is None or q is p
    p = check_probabilities(p, "p", 3)
    q = p if symmetric else check_probabilities(q, "q", 3)
    if q.shape[1:] != p.shape[1:]:
        raise ValueError("p and q must share the number of samples N and classes C: "
                         f"p has (N, C) = {p.shape[1:]}, q has {q.shape[1:]}")
    if int(max_block_bytes) != max_block_bytes or max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be a positive integer, got {max_block_bytes!r}")
    m1, n, c = p.shape
    m2 = q.shape[0]
    n_used = len(range(0, n, step))
    plan, sums = _ENGINES[method]
    b, s = plan(max(m1, m2), c, n_used, int(max_block_bytes))
    rows_i = [slice(i, min(i + b, m1)) for i in range(0, m1, b)]
    rows_j = [slice(j, min(j + b, m2)) for j in range(0, m2, b)]
    chunks = [slice(k * step, min((k + s) * step, n), step) for k in range(0, n_used, s)]
    pairs = [(a, bb) for a in range(len(rows_i)) for bb in range(len(rows_j))
             if not symmetric or bb >= a]
    if out is None:
        out = np.empty((m1, m2))
    elif tuple(out.shape) != (m1, m2) or out.dtype != np.float64:
        raise ValueError(f"out must be ({m1}, {m2}) float64, got {tuple(out.shape)} {out.dtype}")
    tiles = out.write if hasattr(out, "write") else None  # an NpyFile writes its tiles to disk

    def put(rows: slice, cols: slice, block: np.ndarray) -> None:
        if tiles is None:
            out[rows, cols] = block
        else:
            tiles(rows, cols, block)
    for a, bb in tqdm(pairs, desc="Euclidean blocks", disable=not progress):
        ri, rj = rows_i[a], rows_j[bb]
        diagonal = symmetric and a == bb
        blk = sums(p, q, ri, rj, chunks, diagonal, squared) / n_used
        if diagonal:
            blk = np.triu(blk) + np.triu(blk, 1).T
            np.fill_diagonal(blk, 0.0)
        put(ri, rj, blk)
        if symmetric and a != bb:
            put(rj, ri, blk.T)
    return out


def _reference_blocks(m: int, c: int, n_used: int, budget: int) -> tuple[int, int]:
    """Rows per block and samples per chunk of the numpy form: per sample the (b, b) distance
    cube plus both float64 input blocks."""
    b = min(m, _MAX_BLOCK_ROWS)
    per_sample = 8 * (b * b + 2 * b * c)
    while b > 1 and per_sample > budget:
        b = max(1, b // 2)
        per_sample = 8 * (b * b + 2 * b * c)
    return b, max(1, min(n_used, budget // per_sample))


def _fused_blocks(m: int, c: int, n_used: int, budget: int) -> tuple[int, int]:
    """Rows per block and samples per chunk of the fused kernel: half the budget for the (b, b)
    sums, half for the two packed float64 blocks of a chunk."""
    b = min(m, _MAX_FUSED_ROWS)
    while b > 1 and 8 * b * b > budget // 2:
        b = max(1, b // 2)
    return b, max(1, min(n_used, (budget // 2) // (16 * b * c)))


def _reference_sums(p, q, ri: slice, rj: slice, chunks: list[slice], diagonal: bool,
                    squared: bool) -> np.ndarray:
    """Sum over the chunks' samples of the per-sample distances of rows ri x rj (numpy)."""
    acc = np.zeros((ri.stop - ri.start, rj.stop - rj.start))
    for sl in chunks:
        x = _block(p, ri, sl)
        y = x if diagonal else _block(q, rj, sl)
        sq = (x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :]
        sq -= 2.0 * np.matmul(x, y.transpose(0, 2, 1))
        np.maximum(sq, 0.0, out=sq)
        if not squared:
            np.sqrt(sq, out=sq)
        acc += sq.sum(axis=0)
    return acc


def _fused_sums(p, q, ri: slice, rj: slice, chunks: list[slice], diagonal: bool,
                squared: bool) -> np.ndarray:
    """The same sums by the numba kernel; on a diagonal block only the tiles on or above it."""
    from lowdim.geometry.kernels import numba_euclid as kernel

    acc = np.zeros((ri.stop - ri.start, rj.stop - rj.start))
    pairs = kernel.tile_pairs(*acc.shape, upper=diagonal)
    for sl in chunks:
        x = kernel.pack_rows(np.ascontiguousarray(p[ri, sl]))
        y = x if diagonal else kernel.pack_rows(np.ascontiguousarray(q[rj, sl]))
        kernel.accumulate(x, y, pairs, squared, acc)
    return acc


# method -> (rows per block and samples per chunk, the sums of one block pair)
_ENGINES = {"fused": (_fused_blocks, _fused_sums),
            "reference": (_reference_blocks, _reference_sums)}
METHODS = tuple(_ENGINES)
