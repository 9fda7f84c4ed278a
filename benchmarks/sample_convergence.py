"""How the distances, the explained stress and the embedding converge in the number of samples N.

The intensive distance is a mean over samples, so a subset of N samples estimates it with an error
that shrinks like 1/sqrt(N). This measures the constant, on a profile's stored predictions at fixed
M (every row of the analysis set): the reference is the matrix on all N_ref samples of a space;
for each N, `--draws` seeded subsets of N samples (without replacement) give D_N and its InPCA
(dense), compared with the reference:

- `D rel`: ||D_N - D||_F / ||D||_F over the whole matrix;
- `Δχ_k`: the largest change of the explained stress chi_k over the draws, for each k;
- `coords rel`: the top-3 coordinates after the best orthogonal alignment (Procrustes) with the
  reference's, ||X_N R - X||_F / ||X||_F.

A subset of N of N_ref samples differs from the reference by sampling without replacement, whose
variance carries the factor (1/N - 1/N_ref); each error is fitted as a * sqrt(1/N - 1/N_ref) over
the sizes, and a / sqrt(N) is then the error against the infinite-sample limit, which gives the N a
target error needs (printed for `--targets`). Only the sizes' spread is measured: the constant
depends on the data (how confident and how diverse the models are), so measure it on a pilot of
your own grid before choosing N for the whole study.

    python benchmarks/sample_convergence.py [--predictions data/predictions] [--space train]
        [--sizes 25 50 100 200 400] [--draws 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import inpca
from lowdim.store.analysis_set import load_probs

STRESS_DIMS = (1, 3, 10)


def procrustes_error(x: np.ndarray, reference: np.ndarray) -> float:
    """||x R - reference||_F / ||reference||_F for the orthogonal R that minimises it."""
    u, _, vt = np.linalg.svd(x.T @ reference)
    return float(np.linalg.norm(x @ (u @ vt) - reference) / np.linalg.norm(reference))


def compare(d: np.ndarray, coords: np.ndarray, stress: np.ndarray, ref_d: np.ndarray,
            ref_coords: np.ndarray, ref_stress: np.ndarray) -> dict[str, float]:
    """The three errors of one subset's matrix and embedding against the reference."""
    out = {"D rel": float(np.linalg.norm(d - ref_d) / np.linalg.norm(ref_d)),
           "coords rel": procrustes_error(coords[:, :3], ref_coords[:, :3])}
    for k in STRESS_DIMS:
        out[f"Δχ_{k}"] = float(abs(stress[k - 1] - ref_stress[k - 1]))
    return out


def fit_constant(sizes: np.ndarray, errors: np.ndarray, n_ref: int) -> float:
    """Least-squares a of errors ~ a * sqrt(1/N - 1/N_ref)."""
    x = np.sqrt(1.0 / sizes - 1.0 / n_ref)
    return float(x @ errors / (x @ x))


def embed(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = inpca(d, n_components=max(STRESS_DIMS), solver="dense")
    return emb.coords, emb.explained_stress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions"))
    parser.add_argument("--space", default="train")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.003])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    probs = np.asarray(load_probs(args.predictions, args.space), dtype=np.float32)
    m, n_ref, c = probs.shape
    sizes = [n for n in args.sizes if n < n_ref]
    start = time.perf_counter()
    ref_d = bhattacharyya(probs)
    ref_coords, ref_stress = embed(ref_d)
    print(f"{args.predictions} {args.space}: M = {m}, N_ref = {n_ref}, C = {c}; reference chi_1, "
          f"chi_3, chi_10 = {', '.join(f'{ref_stress[k - 1]:.4f}' for k in STRESS_DIMS)} "
          f"({time.perf_counter() - start:.0f} s)")
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in sizes:
        found = []
        for _ in range(args.draws):
            samples = np.sort(rng.choice(n_ref, size=n, replace=False))
            d = bhattacharyya(np.ascontiguousarray(probs[:, samples]))
            found.append(compare(d, *embed(d), ref_d, ref_coords, ref_stress))
        rows.append((n, {key: max(f[key] for f in found) for key in found[0]}))
        print(f"  N = {n}: done ({time.perf_counter() - start:.0f} s)")

    keys = list(rows[0][1])
    print(f"\nlargest error over {args.draws} draws, against all {n_ref} samples\n")
    print("| N | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for n, errors in rows:
        print(f"| {n} | " + " | ".join(f"{errors[k]:.2g}" for k in keys) + " |")
    n_arr = np.array([n for n, _ in rows], dtype=float)
    print(f"\nfitted error ~ a * sqrt(1/N - 1/{n_ref}); against the infinite-sample limit a / "
          "sqrt(N), and the N each target needs\n")
    print("| error | a | " + " | ".join(f"N for {t:g}" for t in args.targets) + " |")
    print("|---" * (len(args.targets) + 2) + "|")
    for key in keys:
        a = fit_constant(n_arr, np.array([e[key] for _, e in rows]), n_ref)
        needed = [f"{int(np.ceil((a / t) ** 2)):,}" for t in args.targets]
        print(f"| {key} | {a:.3g} | " + " | ".join(needed) + " |")


if __name__ == "__main__":
    main()
