"""Throughput of the fused Bhattacharyya kernel against the reference chunked method.

Both methods compute the same symmetric M x M matrix from the same random probabilities in one
process; each is timed --repeats times, alternating, and the best time counts. Throughput is in
G pair-sample terms per second: M(M+1)/2 pairs (both methods compute the upper triangle and the
diagonal) x N samples / seconds / 1e9; one term is C multiply-adds, a clip and a product (fused)
or a clip and a log (reference). Warm-up calls on a small input come first and are not timed
(numba compiles the CPU kernel there, or loads it from its cache; Triton compiles on first use).

    python benchmarks/distances.py [--device cpu|cuda] [--m 2000] [--n 2000] [--c 10]

Prints both throughputs, their ratio, the largest |fused - reference| over the matrix and the
largest deviation of each from the float64 oracle on the first --oracle-rows rows.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from lowdim.geometry.distances import bhattacharyya, bhattacharyya_reference, resolve_engine


def probabilities(m: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    """(m, n, c) float32 rows: Dirichlet(0.5) with 5% one-hot samples (exact zeros)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(c, 0.5), size=(m, n)).astype(np.float32)
    hot = rng.random((m, n)) < 0.05
    p[hot] = np.eye(c, dtype=np.float32)[rng.integers(0, c, size=int(hot.sum()))]
    return p / p.sum(-1, keepdims=True)


def timed(p: np.ndarray, method: str, device: str) -> tuple[float, float, np.ndarray]:
    """(wall seconds, process CPU seconds, matrix) of one symmetric computation."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    d = bhattacharyya(p, method=method, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--m", type=int, default=2000, help="points (rows of the matrix)")
    parser.add_argument("--n", type=int, default=2000, help="samples")
    parser.add_argument("--c", type=int, default=10, help="classes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--oracle-rows", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch and numba (default: their own defaults)")
    parser.add_argument("--fma-peak", type=float, default=3.35e13,
                        help="FP32 multiply-adds per second of the GPU (default: H100 SXM, "
                             "132 SMs x 128 lanes x 1.98 GHz); CUDA only")
    args = parser.parse_args()
    engine = resolve_engine("fused", args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        if engine.name.startswith("fused-numba"):
            import numba

            numba.set_num_threads(args.threads)
    p = probabilities(args.m, args.n, args.c)
    print(f"M={args.m} N={args.n} C={args.c} device={args.device} fused engine={engine.name}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"torch threads {torch.get_num_threads()}"
          + (f", numba threads {_numba_threads()}" if engine.name.startswith("fused-numba")
             else ""))

    start = time.perf_counter()
    for method in ("reference", "fused"):
        bhattacharyya(p[:70, :50], method=method, device=args.device)
    print(f"warm-up (not timed, includes kernel compilation or cache load): "
          f"{time.perf_counter() - start:.2f} s")

    best = {"reference": (np.inf, np.inf), "fused": (np.inf, np.inf)}
    out = {}
    for _ in range(args.repeats):
        for method in ("reference", "fused"):
            wall, cpu, out[method] = timed(p, method, args.device)
            best[method] = min(best[method], (wall, cpu))
    terms = args.m * (args.m + 1) / 2 * args.n
    rate = {k: terms / v[0] / 1e9 for k, v in best.items()}
    for method in ("reference", "fused"):
        wall, cpu = best[method]
        print(f"{method:>9}: {wall:8.3f} s wall, {cpu:8.3f} s CPU, "
              f"{rate[method]:7.3f} G pair-sample terms/s")
    print(f"fused / reference: {rate['fused'] / rate['reference']:.2f}x wall-clock throughput, "
          f"{best['reference'][1] / best['fused'][1]:.2f}x in CPU time")
    diff = np.abs(out["fused"] - out["reference"]).max()
    k = min(args.oracle_rows, args.m)
    oracle = bhattacharyya_reference(p[:k])
    np.fill_diagonal(oracle, 0.0)
    print(f"max |fused - reference| = {diff:.2e}; vs float64 oracle on {k} rows: fused "
          f"{np.abs(out['fused'][:k, :k] - oracle).max():.2e}, reference "
          f"{np.abs(out['reference'][:k, :k] - oracle).max():.2e}")
    if args.device.startswith("cuda"):
        print(f"fused: {rate['fused'] * 1e9 * args.c / args.fma_peak:.1%} of the FP32 FMA limit "
              f"({args.fma_peak / args.c:.2e} terms/s at C={args.c})")


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


if __name__ == "__main__":
    main()
