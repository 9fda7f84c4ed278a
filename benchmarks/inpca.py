"""InPCA: dense eigh against the iterative solvers, on realistic Bhattacharyya matrices.

For each M, builds M points on training-like trajectories of probability vectors (softmax
logits that move from ignorance, 0, towards the true labels, bent along directions shared by a
few families of runs and along each run's own, plus per-checkpoint noise), computes their
Bhattacharyya distance matrix D with ``lowdim.geometry.distances.bhattacharyya``, then times
``inpca(D, solver="dense")`` (scipy eigh of the formed W, the baseline) and
``inpca(D, solver=s, n_eigenvalues=K)`` for each iterative solver s, all in the same run on the
same D. Prints the times (best of ``--repeat``), their ratio, and the largest relative error
against dense of the top 10 eigenvalues and of the explained stress at k = 1, 3, 10, 50 (those
<= K). ``--mmap`` also times the iterative solvers reading D memory-mapped from a .npy file.

    python benchmarks/inpca.py [--sizes 2000 4000 8000] [--eigenvalues 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import inpca
from lowdim.store.records import Embedding

STRESS_DIMS = (1, 3, 10, 50)
CHECKPOINTS = 100  # points per trajectory


def trajectories(m: int, samples: int, classes: int, families: int, seed: int) -> np.ndarray:
    """-> (m, samples, classes) float32 probabilities along ceil(m / 100) noisy, curved runs."""
    rng = np.random.default_rng(seed)
    truth = np.eye(classes)[rng.integers(0, classes, samples)]
    family_bends = rng.normal(size=(families, samples, classes))
    t = np.linspace(0.0, 1.0, CHECKPOINTS)[:, None, None] ** 0.7  # fast early progress
    runs = []
    for _ in range(-(-m // CHECKPOINTS)):
        bend = family_bends[rng.integers(families)] + 0.5 * rng.normal(size=(samples, classes))
        logits = rng.uniform(4.0, 10.0) * t * truth + 3.0 * np.sin(np.pi * t) * bend
        logits += 0.3 * rng.normal(size=logits.shape)
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        runs.append(p / p.sum(axis=-1, keepdims=True))
    return np.concatenate(runs)[:m].astype(np.float32)


def timed(repeat: int, fn, *args, **kw) -> tuple[float, Embedding]:
    """Fewest seconds of `repeat` calls (the least disturbed by other work), and the result."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - start)
    return best, out


def errors(emb: Embedding, dense: Embedding) -> tuple[float, float]:
    """Largest relative error of the top 10 eigenvalues and of chi_k at STRESS_DIMS."""
    top = min(10, len(emb.eigenvalues))
    lam = np.abs(emb.eigenvalues[:top] / dense.eigenvalues[:top] - 1.0).max()
    dims = [k - 1 for k in STRESS_DIMS if k <= len(emb.explained_stress)]
    chi = np.abs(emb.explained_stress[dims] / dense.explained_stress[dims] - 1.0).max()
    return float(lam), float(chi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--eigenvalues", type=int, default=50, help="K, computed iteratively")
    parser.add_argument("--solvers", nargs="+", default=["randomized", "lanczos"])
    parser.add_argument("--samples", type=int, default=64, help="N samples per point")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--families", type=int, default=6, help="shared bends of the runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mmap", action="store_true", help="also time memory-mapped input")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many, each solver")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k = args.eigenvalues
    print(f"{args.threads} threads, K = {k}, N = {args.samples}, C = {args.classes}, "
          f"best of {args.repeat}")
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for m in args.sizes:
            p = trajectories(m, args.samples, args.classes, args.families, args.seed)
            d_time, d = timed(1, bhattacharyya, p)
            dense_time, dense = timed(args.repeat, inpca, d, k, solver="dense")
            lam = dense.eigenvalues[:k]
            chi = {j: round(float(dense.explained_stress[j - 1]), 3) for j in STRESS_DIMS}
            print(f"\nM = {m}: D in {d_time:.1f} s; {int((lam < 0).sum())} of the top {k} "
                  f"eigenvalues negative; chi_k {chi}; load average {os.getloadavg()[0]:.1f} "
                  "(timings are noisy when other work shares the cores)")
            print(f"  dense eigh            {dense_time:8.2f} s")
            inputs = [("", d)]
            if args.mmap:
                np.save(Path(tmp) / "d.npy", d)
                inputs.append((" (mmap)", np.load(Path(tmp) / "d.npy", mmap_mode="r")))
            for solver in args.solvers:
                for label, source in inputs:
                    seconds, emb = timed(args.repeat, inpca, source, k, solver=solver,
                                         n_eigenvalues=k)
                    lam_err, chi_err = errors(emb, dense)
                    print(f"  {solver + label:<21} {seconds:8.2f} s   {dense_time / seconds:6.1f}x "
                          f"faster   top-10 eigenvalues rel. err {lam_err:.1e}   explained "
                          f"stress rel. err {chi_err:.1e}")


if __name__ == "__main__":
    main()
