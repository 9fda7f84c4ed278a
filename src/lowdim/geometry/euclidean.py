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

Numerics: per block, ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b in float64, clipped at 0 before the
square root. The Gram form's rounding leaves ~1e-8 where two different rows hold identical
predictions; in the symmetric case the diagonal is exactly 0 and the matrix exactly symmetric.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from lowdim.geometry.distances import check_probabilities

_MAX_BLOCK_ROWS = 512


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
) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None (= p) -> (M1, M2) float64 mean per-sample Euclidean distance.

    Symmetric case (q None or q is p): blocks on or above the diagonal only, mirrored. Blocks of
    rows and samples keep the working set under ``max_block_bytes``, whatever M and N.
    ``out``: where to write the result, an (M1, M2) float64 array or a 2-D float64
    ``lowdim.store.arrays.NpyFile`` (each block written as it is done, so the matrix need not fit
    in memory); returned. Default: a new array.
    """
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
    b = min(max(m1, m2), _MAX_BLOCK_ROWS)
    # Per sample: the (bi, bj) distance cube plus both float64 input blocks.
    per_sample = 8 * (b * b + 2 * b * c)
    while b > 1 and per_sample > max_block_bytes:
        b = max(1, b // 2)
        per_sample = 8 * (b * b + 2 * b * c)
    s = max(1, min(n_used, max_block_bytes // per_sample))
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
        acc = np.zeros((ri.stop - ri.start, rj.stop - rj.start))
        for sl in chunks:
            x = _block(p, ri, sl)
            y = x if (symmetric and a == bb) else _block(q, rj, sl)
            sq = (x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :]
            sq -= 2.0 * np.matmul(x, y.transpose(0, 2, 1))
            np.maximum(sq, 0.0, out=sq)
            if not squared:
                np.sqrt(sq, out=sq)
            acc += sq.sum(axis=0)
        blk = acc / n_used
        if symmetric and a == bb:
            blk = np.triu(blk) + np.triu(blk, 1).T
            np.fill_diagonal(blk, 0.0)
        put(ri, rj, blk)
        if symmetric and a != bb:
            put(rj, ri, blk.T)
    return out
