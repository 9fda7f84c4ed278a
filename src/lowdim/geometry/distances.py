"""Bhattacharyya distances between models in prediction space (docs/study.md A2).

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

Methods (``bhattacharyya(..., method=)``). Each streams blocks of rows of its inputs, so
memory-mapped arrays are read block by block and memory does not grow with M, apart from the result.

- ``"reference"``: the chunked torch method, the baseline. Float32 square roots, a batched matmul
  per (row block, row block, sample chunk) giving (samples, rows_i, rows_j) coefficients, clip
  and log in place, a float32 sum over the chunk, a float64 accumulation across chunks. It writes
  every per-sample coefficient to memory and takes one log per coefficient.
- ``"fused"``: the device's kernel from ``lowdim.geometry.kernels`` (CPU: numba; CUDA: Triton)
  forms each coefficient in registers, multiplies the clipped coefficients of a pair into a running
  product (exact power-of-two rescaling prevents underflow) and takes one log per pair. Each pair's
  value depends only on its two rows: bitwise symmetric, and independent of block sizes.
- ``"auto"`` (default): ``fused`` when the device's kernel can run, else ``reference``, with the
  reason logged.

``bhattacharyya_reference`` is a plain float64 numpy oracle for small inputs, used by tests. Both
methods agree with it within 1e-6 absolute for C = 10: float32 roots and coefficients err by at
most about (C + 2) * 2**-24 relative per sample, ~1e-8 in distance on random rows and up to 3e-7
on rows whose samples all round alike (the geodesic points).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:  # torch is imported where a torch engine runs: the CPU kernel needs none
    import torch

log = logging.getLogger(__name__)

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
METHODS = ("auto", "reference", "fused")


class DistancesSection(Protocol):
    """What ``DistanceSettings.from_config`` reads of the ``distances`` section of the params
    (``lowdim.config.distances.DistancesConfig``)."""

    sample_step: int
    bc_floor: float
    method: str
    max_block_mib: int


@dataclass(frozen=True)
class DistanceSettings:
    """How Bhattacharyya distances are computed, as one value: the sample subset
    (``sample_step``), the clamp (``bc_floor``), the ``method`` (auto | reference | fused), the
    ``device`` and the memory bound of one block (``max_block_bytes``).

    Built once from the ``distances`` section (``from_config``) and passed whole through the
    block and stage layer (``lowdim.geometry.distance_blocks``); the kernel-level functions take
    its fields as keywords: ``bhattacharyya(p, **settings.kwargs())``.
    """

    sample_step: int = 1
    bc_floor: float = BC_FLOOR
    method: str = "auto"
    device: str = "cpu"
    max_block_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        check_step_and_floor(self.sample_step, self.bc_floor)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        size = self.max_block_bytes
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"max_block_bytes must be a positive integer, got {size!r}")
        object.__setattr__(self, "device", str(self.device))  # a torch.device -> its name

    @classmethod
    def from_config(cls, section: DistancesSection, device: str | torch.device
                    ) -> DistanceSettings:
        """The settings of the ``distances`` section (``max_block_mib`` in MiB) on `device`."""
        return cls(sample_step=section.sample_step, bc_floor=section.bc_floor,
                   method=section.method, device=device,
                   max_block_bytes=section.max_block_mib * 2**20)

    def all_samples(self) -> DistanceSettings:
        """The same settings on every sample (``sample_step`` 1), for distances defined on all
        samples (the convergence analysis at equal progress, A8)."""
        return replace(self, sample_step=1)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the kernel-level functions (``bhattacharyya``)."""
        return {"sample_step": self.sample_step, "bc_floor": self.bc_floor,
                "method": self.method, "device": self.device,
                "max_block_bytes": self.max_block_bytes}


def check_probabilities(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Validate probabilities of shape (..., C) with ``ndim`` axes; return them as an ndarray.

    A blockwise array (``lowdim.store.products.NpyFile``: rows read from disk on demand) is checked
    block by block and returned as it is, so it is never read whole.
    """
    if not getattr(x, "blockwise", False):
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
    step = max(1, _CHECK_ELEMS // max(1, x[0].size))  # pragma: no mutate - any piece >= 1 row
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


def check_step_and_floor(sample_step: int, bc_floor: float) -> None:
    """Raise ValueError unless sample_step is an integer >= 1 and 0 < bc_floor < 1."""
    if isinstance(sample_step, bool) or not isinstance(sample_step, (int, np.integer)):
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step!r}")
    if sample_step < 1:
        raise ValueError(f"sample_step must be an integer >= 1, got {sample_step}")
    if not (0.0 < bc_floor < 1.0):
        raise ValueError(f"bc_floor must lie in the open interval (0, 1), got {bc_floor}")


def check_inputs(
    p: np.ndarray, q: np.ndarray | None, sample_step: int, bc_floor: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate (M1, N, C) and (M2, N, C) or None probabilities, sample_step and bc_floor."""
    check_step_and_floor(sample_step, bc_floor)
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
    p, q = check_inputs(p, q, sample_step, bc_floor)
    a = np.sqrt(p[:, ::sample_step].astype(np.float64))
    b = a if q is None else np.sqrt(q[:, ::sample_step].astype(np.float64))
    bc = np.einsum("inc,jnc->ijn", a, b)
    return -np.log(np.clip(bc, bc_floor, 1.0)).mean(axis=-1)


def _block_bytes(bi: int, bj: int, s: int, c: int) -> int:
    """Peak working set of one reference block: float32 inputs and roots, the BC cube, sums."""
    per_sample = 4 * (bi * bj + 2 * (bi + bj) * c)
    # float64 accumulator + float32 chunk sum + its float64 copy
    fixed = 20 * bi * bj
    return s * per_sample + fixed


def _fused_block_bytes(bi: int, bj: int, s: int, c: int) -> int:
    """Peak working set of one fused block: float32 rows and packed roots, state and result."""
    # float64 product + int64 exponent + three float64 arrays while finishing
    return s * 8 * (bi + bj) * c + 40 * bi * bj


def plan_blocks(
    m1: int,
    m2: int,
    n_used: int,
    c: int,
    block_rows: int | None,
    sample_chunk: int | None,
    max_block_bytes: int,
    target_bytes: int | None = None,
    block_bytes: Callable[[int, int, int, int], int] = _block_bytes,
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
        while b > 1 and block_bytes(min(b, m1), min(b, m2), s_target, c) > target:
            b = max(1, int(b / 1.25))
    else:
        b = int(block_rows)
    bi, bj = min(b, m1), min(b, m2)
    if sample_chunk is None:
        per_sample = block_bytes(bi, bj, 1, c) - block_bytes(bi, bj, 0, c)
        s = (target - block_bytes(bi, bj, 0, c)) // per_sample
        if s < 1:  # explicit block_rows too big for the target: fall back to the ceiling
            s = (max_block_bytes - block_bytes(bi, bj, 0, c)) // per_sample
        s = min(n_used, s)
    else:
        s = min(n_used, int(sample_chunk))
    if s < 1 or block_bytes(bi, bj, s, c) > max_block_bytes:
        need = block_bytes(bi, bj, max(s, 1), c)
        raise ValueError(
            f"max_block_bytes={max_block_bytes} is too small for blocks of {bi}x{bj} rows and "
            f"{max(s, 1)} samples ({need} bytes); raise max_block_bytes or lower "
            "block_rows / sample_chunk"
        )
    return bi, bj, s


# --------------------------------------------------------------------------- engines

Rows = slice | np.ndarray  # rows of an input: a slice, or sorted row indices


def _take(x: np.ndarray, rows: Rows, samples: slice) -> np.ndarray:
    """x[rows, samples] as a new C-contiguous float32 array (rows, S, C); x may be memory-mapped."""
    return np.array(x[rows, samples], dtype=np.float32, order="C")


def _roots(x: np.ndarray, rows: Rows, samples: slice, device: torch.device) -> torch.Tensor:
    """Square roots of x[rows, samples] as float32 on device, laid out (samples, rows, C)."""
    import torch

    return torch.sqrt(torch.from_numpy(_take(x, rows, samples)).to(device)).transpose(0, 1)


def _count(rows: Rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def _chunked_sums(p, q, ri: Rows, rj: Rows, chunks: list[slice], same: bool, bc_floor: float,
                  device: torch.device) -> np.ndarray:
    """Reference: (rows_i, rows_j) float64 sums of log clip(BC) by batched matmul per chunk."""
    import torch

    device = torch.device(str(device))  # the CPU comes as a torch-free stand-in
    acc = torch.zeros((_count(ri), _count(rj)), dtype=torch.float64, device=device)
    for sl in chunks:
        x = _roots(p, ri, sl, device)
        y = x if same else _roots(q, rj, sl, device)
        bc = torch.bmm(x, y.transpose(1, 2))  # (samples, rows_i, rows_j)
        # clamp then log in place: the BC cube is the block's largest buffer.
        bc.clamp_(bc_floor, 1.0).log_()
        acc += bc.sum(dim=0, dtype=torch.float32).to(torch.float64)
    return acc.cpu().numpy()


def _numba_sums(p, q, ri: Rows, rj: Rows, chunks: list[slice], same: bool, bc_floor: float,
                device: torch.device) -> np.ndarray:
    """Fused CPU kernel: (rows_i, rows_j) float64 sums of log clip(BC)."""
    from lowdim.geometry.kernels import numba_bc as nk

    group = nk.rescale_group(bc_floor)
    # The kernel vectorizes over rows j: put the longer side there (results are symmetric).
    swap = not same and _count(rj) < nk.TILE_J and _count(ri) > _count(rj)
    if swap:
        p, q, ri, rj = q, p, rj, ri
    prod, expo = nk.new_state(_count(ri), _count(rj))
    tiles = nk.tile_pairs(_count(ri), _count(rj), upper=same)
    offset = 0
    for sl in chunks:
        a = nk.pack_roots(_take(p, ri, sl))
        b = a if same else nk.pack_roots(_take(q, rj, sl))
        nk.accumulate(a, b, tiles, offset, bc_floor, group, prod, expo)
        offset += a.shape[1]
    sums = nk.finish(prod, expo)
    return sums.T if swap else sums


def _triton_sums(p, q, ri: Rows, rj: Rows, chunks: list[slice], same: bool, bc_floor: float,
                 device: torch.device) -> Callable[[], np.ndarray]:  # pragma: no mutate block, CUDA
    """Fused CUDA kernel: a callable giving the (rows_i, rows_j) float64 sums of log clip(BC).

    The kernels are queued and the result is copied to pinned host memory asynchronously; the
    callable waits for that copy only (``triton_bc.finish_async``).
    """
    from lowdim.geometry.kernels import triton_bc as tk

    group = tk.rescale_group(bc_floor)
    prod, expo = tk.new_state(_count(ri), _count(rj), device)
    offset = 0
    for sl in chunks:
        a = tk.roots(_take(p, ri, sl), device)
        b = a if same else tk.roots(_take(q, rj, sl), device)
        tk.accumulate(a, b, offset, bc_floor, group, prod, expo, upper=same)
        offset += a.shape[0]
    return tk.finish_async(prod, expo)


@dataclass(frozen=True)
class Engine:
    """One way to compute blocks of distances; ``name`` also keys the block cache."""

    name: str
    sums: Callable[..., np.ndarray]                 # (p, q, ri, rj, chunks, same, floor, device)
    block_bytes: Callable[[int, int, int, int], int]
    cpu_target_bytes: int | None                    # auto block size aims here on a CPU
    deterministic: bool                             # bitwise independent of blocks and order


REFERENCE = Engine("reference", _chunked_sums, _block_bytes, _CPU_BLOCK_BYTES, False)
# v1: version of the fused numerics; bump it when they change so cached blocks are not reused.
FUSED_NUMBA = Engine("fused-numba-v1", _numba_sums, _fused_block_bytes, None, True)
FUSED_TRITON = Engine("fused-triton-v1", _triton_sums, _fused_block_bytes, None, True)


def resolve_engine(method: str, device: str | torch.device = "cpu",
                   bc_floor: float = BC_FLOOR) -> Engine:
    """The engine `method` (auto | reference | fused) selects on `device`.

    auto: the device's fused kernel (CPU: numba, CUDA: Triton) when it can run, else the
    reference, with the reason logged; fused: that kernel or a ValueError saying why not.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "reference":
        return REFERENCE
    dev = _device(device)
    engine, reason = _fused_engine(dev, bc_floor)
    if engine is not None:
        return engine
    if method == "fused":
        raise ValueError(f"method='fused' cannot run on {dev}: {reason}; "
                         "use method='auto' or 'reference'")
    log.warning("Bhattacharyya distances use the reference method: %s", reason)
    return REFERENCE


class _CpuDevice:
    """The CPU without torch: what engines and planners read of a device (its type)."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"


def _device(device: str | torch.device) -> torch.device | _CpuDevice:
    """A torch.device, or a stand-in for the CPU so that the CPU path never imports torch."""
    if str(device) == "cpu":
        return _CpuDevice()
    import torch

    return torch.device(device)


def _no_grad(engine: Engine):
    """torch.no_grad() around a torch engine; nothing around the numba kernel."""
    if engine is FUSED_NUMBA:
        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def _fused_engine(dev: torch.device, bc_floor: float) -> tuple[Engine | None, str]:
    """The fused engine for `dev`, or None and the reason it cannot run."""
    if dev.type == "cpu":
        try:
            kernel = importlib.import_module("lowdim.geometry.kernels.numba_bc")
        except ImportError:
            return None, "numba is not installed (pip install numba)"
        engine = FUSED_NUMBA
    elif dev.type == "cuda":
        from lowdim.geometry.kernels import triton_bc as kernel

        reason = kernel.unavailable_reason(dev)
        if reason is not None:
            return None, reason
        engine = FUSED_TRITON
    else:
        return None, f"there is no fused kernel for {dev.type} devices"
    if not kernel.MIN_FLOOR <= bc_floor:
        return None, (f"bc_floor={bc_floor!r} is below {kernel.MIN_FLOOR:.3g}, the smallest "
                      "floor the fused kernel supports")
    return engine, ""


# --------------------------------------------------------------------------- blocks


def _sub_rows(rows: np.ndarray | None, positions: slice) -> Rows:
    """Rows of the input for a block of positions: a slice when they are contiguous."""
    if rows is None:
        return positions
    sub = rows[positions]
    if len(sub) and sub[-1] - sub[0] + 1 == len(sub) and np.all(np.diff(sub) == 1):
        return slice(int(sub[0]), int(sub[-1]) + 1)
    return sub


def _blocks(p: np.ndarray, q: np.ndarray, rows_i: np.ndarray | None,
            rows_j: np.ndarray | None, *, symmetric: bool, engine: Engine, sample_step: int,
            bc_floor: float, block_rows: int | None, sample_chunk: int | None,
            max_block_bytes: int, device: torch.device, progress: bool
            ) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Distance blocks of validated p[rows_i] against q[rows_j] (None: every row).

    Yields (positions in rows_i, positions in rows_j, (bi, bj) float64 block). Symmetric
    (q is p, rows_j is rows_i): only blocks on or above the diagonal, diagonal blocks mirrored
    with an exactly zero diagonal.
    """
    n, c = p.shape[1:]
    m1 = len(p) if rows_i is None else len(rows_i)
    m2 = len(q) if rows_j is None else len(rows_j)
    n_used = len(range(0, n, sample_step))
    target = engine.cpu_target_bytes if device.type == "cpu" else None
    bi, bj, s = plan_blocks(m1, m2, n_used, c, block_rows, sample_chunk, max_block_bytes,
                             target, engine.block_bytes)
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
    def finished(a: int, b: int, sums: np.ndarray | Callable[[], np.ndarray]
                 ) -> tuple[slice, slice, np.ndarray]:
        if callable(sums):
            sums = sums()
        blk = sums / -n_used + 0.0  # + 0.0 turns -0.0 into 0.0
        if symmetric and a == b:
            blk = np.triu(blk) + np.triu(blk, 1).T
            np.fill_diagonal(blk, 0.0)
        return row_blocks[a], col_blocks[b], blk

    # An engine may return a callable that waits for its block (the GPU's): the next block is
    # then launched before the previous one is handed over, so the device computes while the
    # caller writes the previous tile to host memory or disk.
    pending = None
    for a, b in tqdm(pairs, desc="Bhattacharyya blocks", disable=not progress):
        same = symmetric and a == b
        with _no_grad(engine):  # not around the yield: the caller's code keeps its grad mode
            sums = engine.sums(p, q, _sub_rows(rows_i, row_blocks[a]),
                               _sub_rows(rows_j, col_blocks[b]), chunks, same, bc_floor, device)
        if pending is not None:
            yield finished(*pending)
            pending = None
        if callable(sums):
            pending = (a, b, sums)
        else:
            yield finished(a, b, sums)
    if pending is not None:
        yield finished(*pending)


def bhattacharyya(
    p: np.ndarray,
    q: np.ndarray | None = None,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
    method: str = "auto",
    device: str | torch.device = "cpu",
    block_rows: int | None = None,
    sample_chunk: int | None = None,
    max_block_bytes: int = 256 * 2**20,
    progress: bool = False,
) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None (= p) -> (M1, M2) float64 intensive Bhattacharyya distances.

    ``method``: auto | reference | fused (module docstring). Symmetric case (q None or q is p):
    only blocks on or above the diagonal are computed and mirrored; the result is exactly
    symmetric with an exactly zero diagonal. ``block_rows`` and ``sample_chunk`` default to sizes
    whose per-block working set fits in ``max_block_bytes`` (the reference aims at 16 MiB on a
    CPU, faster for cache reasons); explicit sizes that exceed ``max_block_bytes`` raise. Inputs
    may be memory-mapped: apart from the result itself, memory does not grow with M.
    """
    symmetric = q is None or q is p
    p, q = check_inputs(p, None if symmetric else q, sample_step, bc_floor)
    q = p if q is None else q
    engine = resolve_engine(method, device, bc_floor)
    out = np.empty((p.shape[0], q.shape[0]), dtype=np.float64)
    for ri, cj, blk in _blocks(p, q, None, None, symmetric=symmetric, engine=engine,
                               sample_step=sample_step, bc_floor=bc_floor, block_rows=block_rows,
                               sample_chunk=sample_chunk, max_block_bytes=max_block_bytes,
                               device=_device(device), progress=progress):
        out[ri, cj] = blk
        if symmetric and ri != cj:
            out[cj, ri] = blk.T
    return out


def distance_blocks(
    p: np.ndarray,
    rows_i: np.ndarray,
    rows_j: np.ndarray | None = None,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
    engine: Engine,
    device: str | torch.device = "cpu",
    max_block_bytes: int = 256 * 2**20,
    progress: bool = False,
    check: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of d_B between rows `rows_i` and `rows_j` (None: rows_i, symmetric) of p (M, N, C).

    Yields (row indices i, row indices j, (len i, len j) float64 block); in the symmetric case
    only blocks on or above the diagonal, each to be mirrored by the caller. Reads p (which may
    be memory-mapped) block by block. ``check=False`` skips validating p when the caller did.
    """
    symmetric = rows_j is None
    if check:
        p, _ = check_inputs(p, None, sample_step, bc_floor)
    rows_i = _check_rows(rows_i, len(p), "rows_i")
    rows_j = rows_i if symmetric else _check_rows(rows_j, len(p), "rows_j")
    if len(rows_i) == 0 or len(rows_j) == 0:
        return
    for pi, pj, blk in _blocks(p, p, rows_i, rows_j, symmetric=symmetric, engine=engine,
                               sample_step=sample_step, bc_floor=bc_floor, block_rows=None,
                               sample_chunk=None, max_block_bytes=max_block_bytes,
                               device=_device(device), progress=progress):
        yield rows_i[pi], rows_j[pj], blk


def _check_rows(rows: np.ndarray, m: int, name: str) -> np.ndarray:
    """Sorted, unique row indices into an array of m rows."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of integer row indices, got {rows!r}")
    if rows.size and (rows[0] < 0 or rows[-1] >= m or np.any(np.diff(rows) <= 0)):
        raise ValueError(f"{name} must be sorted, unique row indices in [0, {m - 1}]")
    return rows.astype(np.int64)


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
