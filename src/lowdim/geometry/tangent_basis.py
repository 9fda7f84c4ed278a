"""Tangent bases: a four-point basis near the start and the end of training (docs/study.md A14).

Two "average models" are Gaussian-kernel averages, in progress lambda, of many checkpoints: one near
the start of training (centre 0.2, or 0.3 for the authors' AllCNN subset) and one near the end
(0.8, or 0.7). With ignorance P0 and truth P* they make a four-point basis, ordered as the authors'
(P0, P*, start average, end average). Full InPCA of the four points gives three axes; every
checkpoint is then placed on them out of sample (Gower/Nystrom, ``lowdim.geometry.inpca.project``).
How much of the true distances these three axes keep is the L1 "explained distance" of A5.

Conventions, as the authors' ``tangents.py``:

- the kernel is exp(-(lambda_i - centre)^2 / (2 width^2)), width 0.05, normalized to sum 1, applied
  to the probabilities (an arithmetic mean); the caller selects the checkpoints (the authors keep
  those with train loss < 4, docs/study.md A15);
- the basis distances use every sample; pass ``sample_step`` to match a distance matrix computed on
  a subset (the pipeline's matrices use ``distances.sample_step``);
- the explained distance compares signed squared InPCA distances sum_k sign_k (x_ik - x_jk)^2 with
  D itself, since InPCA treats D as squared distances.
"""

from __future__ import annotations

import numpy as np

from lowdim.geometry.distances import BC_FLOOR, bhattacharyya, check_probabilities
from lowdim.geometry.inpca import inpca, project
from lowdim.store.records import BASIS_NAMES, Embedding

# A centre farther than this many widths from every checkpoint has no checkpoint to average.
MAX_GAP_WIDTHS = 5.0
_MODEL_BLOCK = 256  # models per block of the weighted sum, to bound memory
# ... and at most this many bytes of float64 models per block: 256 models of 25,000 samples and
# 10 classes are 512 MB (1.9 GiB peak RSS in the tangents study at M = 2,082).
_BLOCK_BYTES = 64 * 2**20


def kernel_weights(progress: np.ndarray, centre: float, width: float = 0.05) -> np.ndarray:
    """(M,) progress -> (M,) Gaussian weights exp(-(lambda - centre)^2 / (2 width^2)), sum 1."""
    lam = np.asarray(progress, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.isfinite(lam).all():
        raise ValueError(f"progress must be a non-empty finite 1-D array, got shape {lam.shape}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    gap = np.abs(lam - centre)
    if gap.min() > MAX_GAP_WIDTHS * width:
        raise ValueError(
            f"no checkpoint has progress within {MAX_GAP_WIDTHS:g} widths ({width:g}) of the "
            f"centre {centre:g}: the nearest is at {lam[gap.argmin()]:.3g}; choose a centre "
            "inside the range of progress or a wider kernel"
        )
    # Shifting by the smallest gap changes no normalized weight and avoids underflow to 0/0.
    w = np.exp(-(gap**2 - gap.min() ** 2) / (2.0 * width**2))
    return w / w.sum()


def kernel_average(
    probs: np.ndarray, progress: np.ndarray, centre: float, width: float = 0.05
) -> np.ndarray:
    """(M, N, C), (M,) -> (N, C) float64 Gaussian-kernel average of the models around centre."""
    probs = check_probabilities(probs, "probs", 3)
    w = kernel_weights(progress, centre, width)
    if w.shape[0] != probs.shape[0]:
        raise ValueError(f"progress has {w.shape[0]} values but probs has {probs.shape[0]} models")
    out = np.zeros(probs.shape[1:])
    step = max(1, min(_MODEL_BLOCK, _BLOCK_BYTES // (8 * out.size)))
    for s in range(0, probs.shape[0], step):
        block = np.asarray(probs[s : s + step], dtype=np.float64)
        out += np.tensordot(w[s : s + step], block, axes=1)
    return out


def tangent_basis(
    p0: np.ndarray, p_star: np.ndarray, avg_start: np.ndarray, avg_end: np.ndarray
) -> np.ndarray:
    """Four (N, C) models -> (4, N, C) basis in the authors' order (P0, P*, start, end)."""
    points = [check_probabilities(x, name, 2)
              for x, name in zip((p0, p_star, avg_start, avg_end), BASIS_NAMES, strict=True)]
    shapes = {x.shape for x in points}
    if len(shapes) != 1:
        raise ValueError(f"the four basis points must share one shape (N, C), got {sorted(shapes)}")
    return np.stack([x.astype(np.float64) for x in points])


def tangent_embedding(
    basis: np.ndarray, *, sample_step: int = 1, bc_floor: float = BC_FLOOR, **distance_options
) -> Embedding:
    """(4, N, C) basis -> full (dense) InPCA of its pairwise distances, 3 axes.

    ``distance_options`` (method, device, max_block_bytes) go to ``distances.bhattacharyya``.
    """
    basis = check_probabilities(basis, "basis", 3)
    if basis.shape[0] != 4:
        raise ValueError(f"basis must hold 4 points (P0, P*, start, end), got {basis.shape[0]}")
    d = bhattacharyya(basis, sample_step=sample_step, bc_floor=bc_floor, **distance_options)
    return inpca(d, n_components=3)  # 4 centred points span at most 3 dimensions


def project_onto_basis(
    probs: np.ndarray,
    basis: np.ndarray,
    embedding: Embedding,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
    **distance_options,
) -> np.ndarray:
    """(M, N, C) models -> (M, 3) coordinates on the basis axes, out of sample.

    ``distance_options`` (method, device, max_block_bytes) go to ``distances.bhattacharyya``.
    """
    rows = bhattacharyya(probs, basis, sample_step=sample_step, bc_floor=bc_floor,
                         **distance_options)
    return project(rows, embedding)


def explained_distance_l1(
    d_true: np.ndarray, coords: np.ndarray, signs: np.ndarray, k: int
) -> float:
    """(M, M) D, (M, K) coordinates, (K,) signs -> 1 - sum|D_k - D| / sum D over pairs i < j.

    D_k(i, j) = sum_{l <= k} sign_l (x_il - x_jl)^2, the signed squared distance on the first k
    axes. 1 means the k axes reproduce every distance. Row blocks keep memory at O(M) per row;
    D may be blockwise (read by those row blocks, never whole).
    """
    # a blockwise D (lowdim.studies.common.Submatrix) is read by the row blocks below
    d = d_true if getattr(d_true, "blockwise", False) else np.asarray(d_true, dtype=np.float64)
    x = np.asarray(coords, dtype=np.float64)
    s = np.asarray(signs, dtype=np.float64)
    m = d.shape[0] if d.ndim == 2 else -1
    if d.ndim != 2 or d.shape != (m, m):
        raise ValueError(f"d_true must be a square (M, M) matrix, got shape {d.shape}")
    if x.ndim != 2 or x.shape[0] != m:
        raise ValueError(f"coords must have shape ({m}, K) to match d_true, got {x.shape}")
    if s.shape != (x.shape[1],) or not np.isin(s, (-1.0, 0.0, 1.0)).all():
        raise ValueError(f"signs must be ({x.shape[1]},) values in {{-1, 0, +1}}, got {s}")
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= x.shape[1]:
        raise ValueError(f"k must be an integer in 1..{x.shape[1]} (the axes given), got {k!r}")
    if not np.isfinite(x).all() or (isinstance(d, np.ndarray) and not np.isfinite(d).all()):
        raise ValueError("d_true and coords must be finite")
    x, s = x[:, : int(k)], s[: int(k)]
    norms = (x * x * s).sum(axis=1)
    error = total = 0.0
    # rows per block: any count >= 1 gives the same sums
    block = max(1, 2**22 // max(m, 1))  # pragma: no mutate
    for start in range(0, m, block):
        rows = slice(start, min(start + block, m))
        d_k = norms[rows, None] + norms[None, :] - 2.0 * (x[rows] * s) @ x.T
        upper = np.arange(m)[None, :] > np.arange(rows.start, rows.stop)[:, None]
        d_rows = np.asarray(d[rows], dtype=np.float64)
        if not np.isfinite(d_rows).all():
            raise ValueError("d_true and coords must be finite")
        error += np.abs(d_k - d_rows)[upper].sum()
        total += d_rows[upper].sum()
    if total <= 0:
        raise ValueError("d_true has no positive distance between distinct points")
    return 1.0 - error / total


def direction_cosine(
    p0: np.ndarray, p_star: np.ndarray, avg_start: np.ndarray, avg_end: np.ndarray
) -> float:
    """Four (N, C) models -> cosine between (avg_start - P0) and (P* - avg_end), flattened."""
    basis = tangent_basis(p0, p_star, avg_start, avg_end)
    initial = (basis[2] - basis[0]).ravel()
    final = (basis[1] - basis[3]).ravel()
    norms = np.linalg.norm(initial) * np.linalg.norm(final)
    if norms == 0:
        raise ValueError("a direction has zero length: the start average equals P0 or the end "
                         "average equals P*")
    return float(initial @ final / norms)
