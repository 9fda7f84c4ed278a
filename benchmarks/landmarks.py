"""The landmark route against the exact embedding, on training-like trajectories.

Generates R runs x T checkpoints of predictions on N samples (``benchmarks/scale.py``'s
``run_paths``: each run a noisy path from ignorance towards its own near-one-hot endpoint, at
its own speed), then:

- exact: the whole M x M distance matrix, written tile by tile to a file with its centring sums
  (``write_bhattacharyya``, what the distances stage runs), and its InPCA (``inpca``, the
  stage's solver: randomized above 2,000 points), timed;
- for each L: the landmark distances (``write_landmark_distances``: the (M, L) columns and the
  V x V held-out block, what the stage runs under ``distances.landmarks``), timed, and the
  landmark embedding from them (``landmark_inpca``).

Per L it prints the coordinates' error after alignment (orthogonal Procrustes of the centred
first k landmark coordinates onto the exact ones, relative Frobenius error, k = 3 and 10), the
stress chi_k the coordinates achieve (exact, from the whole matrix: ``achieved_stress``), its
held-out estimate (the V x V block only, what the embedding stage reports), the landmark
matrix's own chi_k (what was reported before) and the exact embedding's, and both distance
times. Numbers, not a test.

    PYTHONPATH=src nice -n 10 python benchmarks/landmarks.py                 # M = 9,600, N = 500
    PYTHONPATH=src nice -n 10 python benchmarks/landmarks.py --runs 470 --samples 1000 \\
        --per-run 0.5 1 2                                                      # M = 30,080
    PYTHONPATH=src python benchmarks/landmarks.py --predictions data/predictions \\
        --sample-step 2 --components 50                 # a pipeline's analysis set (train)

With ``--predictions`` the points are a stored analysis set's rows (``--space``; its runs give
the landmarks per run) instead of generated ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import run_paths  # noqa: E402  (benchmarks/scale.py: the same trajectories)

from lowdim.geometry.distance_blocks import (  # noqa: E402
    write_bhattacharyya,
    write_landmark_distances,
)
from lowdim.geometry.distances import DistanceSettings  # noqa: E402
from lowdim.geometry.eigen import stats_from_arrays  # noqa: E402
from lowdim.geometry.inpca import (  # noqa: E402
    achieved_stress,
    holdout_rows,
    inpca,
    landmark_inpca,
    landmark_rows,
)
from lowdim.geometry.landmarks import LANDMARK_CHOICES, farthest_landmarks  # noqa: E402
from lowdim.store.analysis_set import load_index, open_probs  # noqa: E402
from lowdim.store.arrays import NpyFile  # noqa: E402
from lowdim.store.distance_matrices import (  # noqa: E402
    load_holdout_distances,
    open_landmark_columns,
)

DIMS = (1, 3, 10, 50)


def predictions(runs: int, checkpoints: int, samples: int, classes: int, seed: int
                ) -> np.ndarray:
    """(runs x checkpoints, samples, classes) float32, run after run."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    return np.concatenate([run_paths(rng, labels, checkpoints, classes).astype(np.float32)
                           for _ in range(runs)])


def aligned_error(x: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Relative Frobenius error of the centred first k columns of x after the orthogonal
    Procrustes rotation (reflections included) that best maps them onto exact's."""
    a = x[:, :k] - x[:, :k].mean(axis=0)
    b = exact[:, :k] - exact[:, :k].mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return float(np.linalg.norm(a @ (u @ vt) - b) / np.linalg.norm(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--checkpoints", type=int, default=64, help="T per run")
    parser.add_argument("--samples", type=int, default=500, help="N")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-run", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                        help="landmarks per run: L = round(this x runs)")
    parser.add_argument("--holdout", type=int, default=1000, help="V held-out points")
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="an analysis set's directory (data/predictions) instead")
    parser.add_argument("--space", default="train")
    parser.add_argument("--sample-step", type=int, default=1)
    parser.add_argument("--choice", choices=LANDMARK_CHOICES, default="even",
                        help="distances.landmark_choice: where the landmarks go")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: "
                        "a temporary one; the M x M matrix needs 8 M^2 bytes there)")
    args = parser.parse_args()
    if args.predictions is None:
        p = predictions(args.runs, args.checkpoints, args.samples, args.classes, args.seed)
        what = f"{args.runs} runs x {args.checkpoints} checkpoints"
        units = np.repeat(np.arange(args.runs), args.checkpoints).astype(str)
    else:
        p = open_probs(args.predictions, args.space)
        index = load_index(args.predictions)
        args.runs = int(index["run_id"].nunique())
        what = f"{args.predictions} {args.space}, {args.runs} runs"
        units = np.arange(len(p)).astype(str)
    m, (n, c) = len(p), p.shape[1:]
    settings = DistanceSettings(sample_step=args.sample_step)
    k = args.components
    print(f"M = {m} ({what}), N = {len(range(0, n, args.sample_step))}, C = {c}, "
          f"landmarks {args.choice}, "
          f"V = {args.holdout} held out, {k} components; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        sums, _ = write_bhattacharyya(p, units, None, tmp / "d.npy", settings=settings)
        full_seconds = time.perf_counter() - start
        d = NpyFile(tmp / "d.npy")
        start = time.perf_counter()
        exact = inpca(d, k, stats=stats_from_arrays(sums))
        exact_embed = time.perf_counter() - start
        chi = {j: exact.explained_stress[j - 1] for j in DIMS if j <= k}
        print(f"exact: distances {full_seconds:.1f} s, embedding {exact_embed:.1f} s; chi_k "
              + ", ".join(f"chi_{j} {v:.4f}" for j, v in chi.items()))
        header = (f"{'L':>5} {'L/run':>5} {'dist s':>7} {'speedup':>7} {'M/2L':>6} "
                  f"{'embed s':>7} {'err k3':>7} {'err k10':>7} | "
                  + " | ".join(f"chi_{j}: achieved / held-out / landmark matrix / exact"
                               for j in DIMS if j <= k))
        print(header)
        rows_out = []
        for per_run in args.per_run:
            count = int(round(per_run * args.runs))
            out = tmp / f"landmarks_{count}"
            start = time.perf_counter()
            rows = (landmark_rows(m, count) if args.choice == "even" else
                    farthest_landmarks(p, count, sample_step=args.sample_step))
            held = holdout_rows(m, rows, args.holdout)
            write_landmark_distances({"train": p}, rows, held, out, pd.DataFrame({"x": [0]}),
                                     settings=settings)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            emb = landmark_inpca(open_landmark_columns(out, "train"), rows, k)
            embed_seconds = time.perf_counter() - start
            achieved = achieved_stress(d, emb.coords, emb.signs)
            estimate = achieved_stress(load_holdout_distances(out, "train"), emb.coords[held],
                                       emb.signs)
            cells = " | ".join(
                f"{achieved[j - 1]:.4f} / {estimate[j - 1]:.4f} / "
                f"{emb.explained_stress[j - 1]:.5f} / {chi[j]:.4f}"
                for j in DIMS if j <= min(k, len(achieved)))
            line = (f"{count:>5} {per_run:>5.2g} {seconds:>7.1f} {full_seconds / seconds:>7.1f} "
                    f"{m / (2 * count):>6.1f} {embed_seconds:>7.1f} "
                    f"{aligned_error(emb.coords, exact.coords, 3):>7.4f} "
                    f"{aligned_error(emb.coords, exact.coords, 10):>7.4f} | {cells}")
            print(line, flush=True)
            rows_out.append(line)


if __name__ == "__main__":
    main()
