"""The fused Bhattacharyya kernel on CUDA, written in Triton (see the package docstring).

One program owns a BLOCK x BLOCK tile of pairs. For each sample it loads the C roots of its
rows i and rows j (coalesced: the layout is (samples, C, rows)), accumulates the coefficients
as float32 outer products in registers, clips them to [bc_floor, 1] and multiplies them into a
float32 running product. Every ``group`` samples the product's binary exponent moves into an
int32 (exact), so ``prod`` stays in [bc_floor ** group, 2) and never underflows; after the last
sample ``sum_n log clip(BC_n) = expo * ln 2 + log(prod)`` in float64. Error bound: each float32
multiply rounds by at most 2**-24 relative, so over N samples the log of the product is off by
at most N * 6e-8 and the intensive distance (divided by N) by at most 6e-8, plus the float32
rounding of the coefficients themselves -- the same order as the CPU kernel, well within 1e-6.

The result of a pair depends only on its two rows (fma(a, b, acc) == fma(b, a, acc)), so it is
bitwise symmetric and independent of the tiling. Triton ships with PyPI's CUDA build of torch;
without it (or without a GPU) ``unavailable_reason`` says why and callers fall back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

try:  # triton is optional: absent on CPU-only torch builds and on some platforms
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

BLOCK = 64        # rows per side of a tile of pairs
NUM_WARPS = 4
# The float32 product starts in [1, 2) and may fall by bc_floor per sample before a rescale.
_LOG_TINY32 = math.log(float(np.finfo(np.float32).tiny))
MIN_FLOOR = float(np.finfo(np.float32).tiny)


def unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernel cannot run on `device`, or None when it can."""
    if device.type != "cuda":
        return f"the Triton kernel runs on CUDA devices, not {device.type}"
    if triton is None:
        return "triton is not installed (it ships with PyPI's CUDA build of torch)"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def rescale_group(bc_floor: float) -> int:
    """Samples between two rescales such that bc_floor ** group stays a normal float32."""
    if not MIN_FLOOR <= bc_floor < 1.0:
        raise ValueError(
            f"bc_floor={bc_floor} is outside [{MIN_FLOOR:.3g}, 1), the range the Triton kernel "
            "supports (float32 product); use method='reference' for smaller floors"
        )
    return max(1, min(32, int(_LOG_TINY32 / math.log(bc_floor))))


def roots(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """(rows, S, C) probabilities -> (S, C, rows) contiguous float32 square roots on device."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    return torch.sqrt(t).permute(1, 2, 0).contiguous()


def new_state(rows_i: int, rows_j: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Running state of (rows_i, rows_j) pairs: float32 product 1 and int32 exponent 0."""
    return (torch.ones((rows_i, rows_j), dtype=torch.float32, device=device),
            torch.zeros((rows_i, rows_j), dtype=torch.int32, device=device))


def finish(prod: torch.Tensor, expo: torch.Tensor) -> np.ndarray:
    """(M1, M2) state -> (M1, M2) float64 sum over samples of log clip(BC), on the host."""
    return (expo.double() * math.log(2.0) + torch.log(prod.double())).cpu().numpy()


def finish_async(prod: torch.Tensor, expo: torch.Tensor) -> Callable[[], np.ndarray]:
    """``finish`` without waiting: queue the log and a copy into pinned host memory.

    Returns a callable that waits for the copy (a CUDA event) and gives the host array, so the
    caller can launch the next tile before it writes this one to host memory or to disk. The
    values are those of ``finish``. On a CPU tensor (Triton's interpreter) it is synchronous.
    """
    sums = expo.double() * math.log(2.0) + torch.log(prod.double())
    if sums.device.type != "cuda":
        host = sums.numpy()
        return lambda: host
    host = torch.empty(sums.shape, dtype=torch.float64, pin_memory=True)
    host.copy_(sums, non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def result() -> np.ndarray:
        done.synchronize()
        return host.numpy()

    return result


def accumulate(a: torch.Tensor, b: torch.Tensor, n_offset: int, bc_floor: float, group: int,
               prod: torch.Tensor, expo: torch.Tensor, upper: bool) -> None:
    """Advance the state over one chunk: a (S, C, M1), b (S, C, M2) roots; upper: j >= i only."""
    s, c, m1 = a.shape
    m2 = b.shape[2]
    if max(a.numel(), b.numel(), prod.numel()) >= 2**31:  # the kernel's offsets are int32
        raise ValueError(f"a block of {a.numel()} x {b.numel()} roots is too large for the Triton "
                         "kernel's 32-bit offsets: lower max_block_bytes")
    grid = (triton.cdiv(m1, BLOCK), triton.cdiv(m2, BLOCK))
    _kernel[grid](a, b, prod, expo, m1, m2, s, c, a.stride(0), a.stride(1), b.stride(0),
                  b.stride(1), prod.stride(0), n_offset, bc_floor, group,
                  UPPER=upper, BLOCK_I=BLOCK, BLOCK_J=BLOCK, num_warps=NUM_WARPS)


if triton is not None:

    @triton.jit
    def _kernel(a_ptr, b_ptr, prod_ptr, expo_ptr, m1, m2, s, c, a_sn, a_sc, b_sn, b_sc,
                state_stride, n_offset, floor, group,
                UPPER: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
        pid_i = tl.program_id(0)
        pid_j = tl.program_id(1)
        if UPPER:  # symmetric input: a tile whose largest j is below its smallest i is not needed
            if (pid_j + 1) * BLOCK_J <= pid_i * BLOCK_I:
                return
        offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
        offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
        mask_i = offs_i < m1
        mask_j = offs_j < m2
        mask = mask_i[:, None] & mask_j[None, :]
        state = offs_i[:, None].to(tl.int64) * state_stride + offs_j[None, :]
        prod = tl.load(prod_ptr + state, mask=mask, other=1.0)
        expo = tl.load(expo_ptr + state, mask=mask, other=0)
        for n in range(0, s):
            bc = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
            for k in range(0, c):
                a = tl.load(a_ptr + n * a_sn + k * a_sc + offs_i, mask=mask_i, other=0.0)
                b = tl.load(b_ptr + n * b_sn + k * b_sc + offs_j, mask=mask_j, other=0.0)
                bc += a[:, None] * b[None, :]
            prod = prod * tl.minimum(tl.maximum(bc, floor), 1.0)
            if (n_offset + n + 1) % group == 0:
                bits = prod.to(tl.int32, bitcast=True)
                expo += (bits >> 23) - 127
                prod = ((bits & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
        tl.store(prod_ptr + state, prod, mask=mask)
        tl.store(expo_ptr + state, expo, mask=mask)
