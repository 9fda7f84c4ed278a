"""Bhattacharyya distances between models in prediction space (PAPER.md A2).

A model is its (N, C) matrix of class probabilities on a fixed, ordered sample set. For two models
u and v the per-sample Bhattacharyya coefficient is ``BC_n = sum_c sqrt(p_u^n(c) p_v^n(c))`` and

    d_B(u, v) = -(1/N') * sum_n log clip(BC_n, bc_floor, 1)

Conventions (chosen here, documented once):

- **Intensive normalization.** The sum over samples is divided by the number of samples used, N'.
  There is no extra factor 1/2: this is the convention of the authors' main repository. (Their ICML
  2023 code halves the intensive distance once more before InPCA; a caller who wants that convention
  multiplies the result by 0.5.) Closed forms under this convention: d_B(ignorance, truth) = ½ ln C,
  and d_B(P, truth) = half the mean cross-entropy of P.
- **Clamp.** Per-sample coefficients are clipped to ``[bc_floor, 1]`` before the log
  (``BC_FLOOR = 1e-8`` by default), so one sample contributes at most ``-log(bc_floor)`` ≈ 18.4.
  Exact zeros arise when float32 softmax underflows (mostly in distances to the one-hot truth); the
  authors replaced the resulting infinities with the magic number 100 and clipped negative values at
  0. The upper clip at 1 removes the rounding excess of ``sum_c p`` above 1, so distances are >= 0.
- **Sample subset.** ``sample_step`` keeps the samples n = 0, step, 2*step, ...; ``sample_step=2``
  reproduces the every-other-sample convention of the authors' big pairwise matrices (A1).
- **Inputs are validated, never repaired.** Entries must be finite and >= 0, and every
  probability row must sum to 1 within ``SUM_TOL = 1e-3``. Rows are not renormalized here:
  renormalize low-precision (float16) predictions before calling.

The fast kernel (``bhattacharyya``) runs in torch on any device: float32 square roots, a batched
matmul per (row block, row block, sample chunk) giving (samples, rows_i, rows_j) coefficients, clip
and log in place, a float32 sum over the chunk, and a float64 accumulation across chunks. Blocks are
sized so that the working set of one block never exceeds ``max_block_bytes``, whatever the number
of models.
``bhattacharyya_reference`` is a plain float64 numpy oracle for small inputs.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

BC_FLOOR = 1e-8
SUM_TOL = 1e-3

# Validation streams over the leading axis in pieces of about this many elements, so that checking a
# large (M, N, C) array never allocates a full-size temporary.
_CHECK_ELEMS = 1 << 24
# Largest default row block: beyond it, kernel-call overheads are already amortized.
_MAX_BLOCK_ROWS = 2048
# Default sample chunk the planner aims for before it shrinks row blocks below _MAX_BLOCK_ROWS.
_TARGET_CHUNK = 64
# On a CPU, automatically sized blocks aim at this working set (max_block_bytes stays the ceiling):
# cache-sized blocks measured ~2.5x faster than 256 MiB blocks on a 2-core machine.
_CPU_BLOCK_BYTES = 16 * 2**20


def check_probabilities(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Validate probabilities of shape (..., C) with ``ndim`` axes; return them as an ndarray."""
    x = np.asarray(x)
    shapes = {2: "(N, C)", 3: "(M, N, C)"}
    if x.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array of shape {shapes.get(ndim, ndim)}, "
            f"got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array of probabilities, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    step = max(1, _CHECK_ELEMS // max(1, x[0].size))
    for start in range(0, x.shape[0], step):
        blk = x[start : start + step]
        if not np.isfinite(blk).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        low = blk.min()
        if low < 0:
            raise ValueError(
                f"{name} has negative entries (min {low:.3g}); probabilities must be >= 0"
            )
        dev = np.abs(blk.sum(axis=-1, dtype=np.float64) - 1.0).max()
        if dev > SUM_TOL:
            raise ValueError(
                f"{name}: probability rows must sum to 1 within {SUM_TOL:g} (worst deviation "
                f"{dev:.3g}); rows are not renormalized here, renormalize them before calling"
            )
    return x


def _check_pair(
    p: np.ndarray, q: np.ndarray | None, sample_step: int, bc_floor: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the arguments shared by the fast kernel and the reference."""
    if isinstance(sample_step, bool) or not isinstance(sample_step, (int, np.integer)):
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step!r}")
    if sample_step < 1:
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step}")
    if not (0.0 < bc_floor < 1.0):
        raise ValueError(f"bc_floor must lie in the open interval (0, 1), got {bc_floor}")
    p = check_probabilities(p, "p", 3)
    if q is not None:
        q = check_probabilities(q, "q", 3)
        if q.shape[1:] != p.shape[1:]:
            raise ValueError(
                "p and q must share the number of samples N and classes C: "
                f"p has (N, C) = {p.shape[1:]}, q has {q.shape[1:]}"
            )
    return p, q


def bhattacharyya_reference(
    p: np.ndarray,
    q: np.ndarray | None = None,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None -> (M1, M2) float64; plain numpy oracle for small inputs."""
    p, q = _check_pair(p, q, sample_step, bc_floor)
    a = np.sqrt(p[:, ::sample_step].astype(np.float64))
    b = a if q is None else np.sqrt(q[:, ::sample_step].astype(np.float64))
    bc = np.einsum("inc,jnc->ijn", a, b)
    return -np.log(np.clip(bc, bc_floor, 1.0)).mean(axis=-1)


def _block_bytes(bi: int, bj: int, s: int, c: int) -> int:
    """Peak working set of one block: float32 inputs and roots, the BC cube, the accumulators."""
    per_sample = 4 * (bi * bj + 2 * (bi + bj) * c)
    # float64 accumulator + float32 chunk sum + its float64 copy
    fixed = 20 * bi * bj
    return s * per_sample + fixed


def _plan_blocks(
    m1: int,
    m2: int,
    n_used: int,
    c: int,
    block_rows: int | None,
    sample_chunk: int | None,
    max_block_bytes: int,
    target_bytes: int | None = None,
) -> tuple[int, int, int]:
    """Pick (rows_i, rows_j, samples) per block: auto sizes aim at target_bytes, all fit the max."""
    for key, val in (("block_rows", block_rows), ("sample_chunk", sample_chunk)):
        if val is not None and (isinstance(val, bool) or int(val) != val or val < 1):
            raise ValueError(f"{key} must be a positive integer or None, got {val!r}")
    if int(max_block_bytes) != max_block_bytes or max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be a positive integer, got {max_block_bytes!r}")
    target = min(max_block_bytes, target_bytes or max_block_bytes)
    if block_rows is None:
        s_target = min(n_used, sample_chunk or _TARGET_CHUNK)
        b = min(max(m1, m2), _MAX_BLOCK_ROWS)
        while b > 1 and _block_bytes(min(b, m1), min(b, m2), s_target, c) > target:
            b = max(1, int(b / 1.25))
    else:
        b = int(block_rows)
    bi, bj = min(b, m1), min(b, m2)
    if sample_chunk is None:
        per_sample = _block_bytes(bi, bj, 1, c) - _block_bytes(bi, bj, 0, c)
        s = (target - _block_bytes(bi, bj, 0, c)) // per_sample
        if s < 1:  # explicit block_rows too big for the target: fall back to the ceiling
            s = (max_block_bytes - _block_bytes(bi, bj, 0, c)) // per_sample
        s = min(n_used, s)
    else:
        s = min(n_used, int(sample_chunk))
    if s < 1 or _block_bytes(bi, bj, s, c) > max_block_bytes:
        need = _block_bytes(bi, bj, max(s, 1), c)
        raise ValueError(
            f"max_block_bytes={max_block_bytes} is too small for blocks of {bi}x{bj} rows and "
            f"{max(s, 1)} samples ({need} bytes); raise max_block_bytes or lower "
            "block_rows / sample_chunk"
        )
    return bi, bj, s


def _roots(x: np.ndarray, rows: slice, samples: slice, device: torch.device) -> torch.Tensor:
    """Square roots of x[rows, samples] as float32 on device, laid out (samples, rows, C)."""
    blk = np.ascontiguousarray(x[rows, samples], dtype=np.float32)
    # torch.sqrt allocates a new tensor: the input block may be a view of the caller's array.
    return torch.sqrt(torch.from_numpy(blk).to(device)).transpose(0, 1)


def bhattacharyya(
    p: np.ndarray,
    q: np.ndarray | None = None,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
    block_rows: int | None = None,
    sample_chunk: int | None = None,
    max_block_bytes: int = 256 * 2**20,
    device: str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None (= p) -> (M1, M2) float64 intensive Bhattacharyya distances.

    Symmetric case (q None or q is p): only blocks on or above the diagonal are computed and
    mirrored; the result is exactly symmetric with an exactly zero diagonal. ``block_rows`` and
    ``sample_chunk`` default to sizes whose per-block working set fits in ``max_block_bytes``
    (on a CPU at most 16 MiB, which is faster for cache reasons); explicit sizes that exceed
    ``max_block_bytes`` raise. Apart from the result itself, memory does not grow with M.
    """
    symmetric = q is None or q is p
    p, q = _check_pair(p, None if symmetric else q, sample_step, bc_floor)
    if q is None:
        q = p
    dev = torch.device(device)
    m1, n, c = p.shape
    m2 = q.shape[0]
    n_used = len(range(0, n, sample_step))
    target = _CPU_BLOCK_BYTES if dev.type == "cpu" else None
    bi, bj, s = _plan_blocks(m1, m2, n_used, c, block_rows, sample_chunk, max_block_bytes, target)

    row_blocks = [slice(i, min(i + bi, m1)) for i in range(0, m1, bi)]
    col_blocks = [slice(j, min(j + bj, m2)) for j in range(0, m2, bj)]
    # A chunk covers subset positions [k, k + s), i.e. original indices k*step, (k+1)*step, ... .
    chunks = [
        slice(k * sample_step, min((k + s) * sample_step, n), sample_step)
        for k in range(0, n_used, s)
    ]
    pairs = [
        (a, b)
        for a in range(len(row_blocks))
        for b in range(len(col_blocks))
        if not symmetric or b >= a
    ]
    out = np.empty((m1, m2), dtype=np.float64)
    with torch.no_grad():
        for a, b in tqdm(pairs, desc="Bhattacharyya blocks", disable=not progress):
            ri, cj = row_blocks[a], col_blocks[b]
            acc = torch.zeros((ri.stop - ri.start, cj.stop - cj.start), dtype=torch.float64,
                              device=dev)
            for sl in chunks:
                x = _roots(p, ri, sl, dev)
                y = x if (symmetric and a == b) else _roots(q, cj, sl, dev)
                bc = torch.bmm(x, y.transpose(1, 2))  # (samples, rows_i, rows_j)
                # clamp then log in place: the BC cube is the block's largest buffer.
                bc.clamp_(bc_floor, 1.0).log_()
                acc += bc.sum(dim=0, dtype=torch.float32).to(torch.float64)
            blk = (acc / -n_used).cpu().numpy() + 0.0  # + 0.0 turns -0.0 into 0.0
            if symmetric and a == b:
                blk = np.triu(blk) + np.triu(blk, 1).T
                np.fill_diagonal(blk, 0.0)
            out[ri, cj] = blk
            if symmetric and a != b:
                out[cj, ri] = blk.T
    return out


def distance_to_points(p: np.ndarray, point: np.ndarray, **kw) -> np.ndarray:
    """(M, N, C), (N, C) -> (M,) distance of each model to one point; kw go to bhattacharyya."""
    point = check_probabilities(point, "point", 2)
    if point.shape != np.shape(p)[1:]:
        raise ValueError(
            f"point must have shape (N, C) = {np.shape(p)[1:]} to match p, got {point.shape}"
        )
    return bhattacharyya(p, point[None], **kw)[:, 0]


def ignorance_point(num_samples: int, num_classes: int) -> np.ndarray:
    """-> (N, C) float32 uniform probabilities 1/C: the model that knows nothing (P0)."""
    if num_samples < 1 or num_classes < 2:
        raise ValueError(
            f"need num_samples >= 1 and num_classes >= 2, got {num_samples} and {num_classes}"
        )
    return np.full((num_samples, num_classes), 1.0 / num_classes, dtype=np.float32)


def truth_point(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) integer labels -> (N, C) float32 one-hot probabilities: the perfect model (P*)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}], got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    out = np.zeros((labels.size, num_classes), dtype=np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out
