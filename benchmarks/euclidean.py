"""The Euclidean comparison's kernel (`geometry.euclidean`): fused numba against the numpy form.

Both methods compute the same symmetric matrix of mean per-sample Euclidean distances on the same
Dirichlet-distributed predictions, one after the other in this process (which goes first
alternates between repeats); it prints each one's time, the ratio reference / fused, the
pair-sample rate and the largest difference between the two matrices. The joint stage computes
two such matrices (train and test spaces), so its time at scale follows this ratio.

    python benchmarks/euclidean.py                      # M = 1,500, N = 400, C = 10
    python benchmarks/euclidean.py --m 3000 --n 200 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lowdim.geometry.euclidean import euclidean_distances


def timed(probs: np.ndarray, method: str) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    d = euclidean_distances(probs, method=method)
    return time.perf_counter() - start, d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1500, help="models (rows)")
    parser.add_argument("--n", type=int, default=400, help="samples")
    parser.add_argument("--c", type=int, default=10, help="classes")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(args.c, 0.3), size=(args.m, args.n)).astype(np.float32)
    euclidean_distances(probs[:70, :40])  # compile (or load) the kernel outside the timing
    pair_samples = args.m * (args.m + 1) / 2 * args.n
    print(f"M = {args.m}, N = {args.n}, C = {args.c}; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}")
    for r in range(args.repeat):
        order = ("fused", "reference") if r % 2 == 0 else ("reference", "fused")
        times, mats = {}, {}
        for method in order:
            times[method], mats[method] = timed(probs, method)
        diff = np.abs(mats["fused"] - mats["reference"]).max()
        print(f"  repeat {r + 1}: fused {times['fused']:.2f} s "
              f"({pair_samples / times['fused'] / 1e9:.2f} G pair-samples/s), reference "
              f"{times['reference']:.2f} s; reference / fused = "
              f"{times['reference'] / times['fused']:.1f}; largest difference {diff:.1e}")


if __name__ == "__main__":
    main()
