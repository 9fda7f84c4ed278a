"""Peak memory of the corner study's analysis half (joint set, distances, InPCA, convergence) on
synthetic checkpoints, and whether its products keep their bytes.

Writes a main analysis set of R normal runs x T checkpoints (N samples, C classes; train error
falling along each run) and the phase-1 and phase-2 checkpoints of K corner runs, then calls
``lowdim.studies.corners.compare_arch`` on them in a child process (its peak resident set is
the child's VmHWM), reading the main set as that version's notebook 70 does (in blocks with
``NpyFile``, formerly memory-mapped). Corner training is left out (this version spills each
run's predictions to disk as it ends); the K corner runs' predictions are passed to both
versions in memory (K T N C float32: 26 MiB at the defaults). ``--compare DIR`` first runs
another tree's ``compare_arch`` (DIR/src, e.g. ``git archive <commit> src | tar -x -C DIR``) on
the same inputs, then this tree's, and says whether the embedding and the convergence table are
the same bytes.

    PYTHONPATH=src nice -n 15 python benchmarks/corners_rss.py --runs 60 --corners 10 --compare DIR

Numbers, not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from trajectories_rss import run_child  # noqa: E402 - a child process on another tree's src

_CHILD = """
import inspect, json, time, types
from pathlib import Path
import numpy as np, pandas as pd
import lowdim
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.corners import CornersConfig
from lowdim.geometry.distances import DistanceSettings
from lowdim.studies import corners

work = Path({work!r})
main_index = pd.read_parquet(work / "main_index.parquet")
if hasattr(corners, "stack_to_file"):  # as notebook 70 reads it: in blocks, or memory-mapped
    from lowdim.store.arrays import NpyFile
    main_probs = NpyFile(work / "main_probs.npy")
else:
    main_probs = np.load(work / "main_probs.npy", mmap_mode="r")
parts = [(pd.read_parquet(work / f"corner_{{k}}.parquet"), np.load(work / f"corner_{{k}}.npy"))
         for k in range({corners})]
cfg = CornersConfig(arch="fc", kinds=("subsample",), subsample_size=50, grid_points=100)
settings = DistanceSettings(sample_step=2, bc_floor=1e-8)
start = time.perf_counter()
args = (parts, "fc", cfg, EmbeddingConfig(), types.SimpleNamespace(num_classes={c}), main_index,
        main_probs, settings, settings.all_samples())
if "scratch" in inspect.signature(corners.compare_arch).parameters:
    found, metrics = corners.compare_arch(*args, scratch=work)
else:
    found, metrics = corners.compare_arch(*args)
wall = time.perf_counter() - start
out = Path({out!r})
out.mkdir(parents=True, exist_ok=True)
np.save(out / "coords.npy", found["embedding"].coords)
found["convergence"].to_parquet(out / "convergence.parquet")
hwm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text()
           .splitlines() if line.startswith("VmHWM:"))
print(json.dumps({{"rss": hwm, "wall": wall, "lowdim": lowdim.__file__,
                  "m": len(found["index"])}}))
"""


def write_inputs(work: Path, runs: int, corners: int, checkpoints: int, n: int, c: int) -> int:
    """The main analysis set (R fc runs, then ignorance, truth and a 3-point geodesic) and K
    corner runs of two phases each; returns the joint set's row count."""
    import pandas as pd

    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    error = np.linspace(0.9, 0.02, checkpoints)

    def path(m: int) -> np.ndarray:  # noisy runs from uniform towards the labels' corner
        t = np.linspace(0.0, 1.0, m)[:, None, None]
        logits = 6.0 * t * np.eye(c)[labels] + rng.standard_normal((m, n, c))
        p = np.exp(logits - logits.max(axis=2, keepdims=True))
        return (p / p.sum(axis=2, keepdims=True)).astype(np.float32)

    main = np.lib.format.open_memmap(work / "main_probs.npy", mode="w+", dtype=np.float32,
                                     shape=(runs * checkpoints + 5, n, c))
    for r in range(runs):
        main[r * checkpoints:(r + 1) * checkpoints] = path(checkpoints)
    main[runs * checkpoints:] = 1.0 / c  # the references' values are not what is measured
    del main
    index = pd.DataFrame({
        "kind": ["run"] * (runs * checkpoints) + ["ignorance", "truth"] + ["geodesic"] * 3,
        "run_id": [f"fc-{r}" for r in range(runs) for _ in range(checkpoints)] + [""] * 5,
        "arch": ["fc"] * (runs * checkpoints) + [""] * 5, "optimizer": "sgd",
        "seed": [r for r in range(runs) for _ in range(checkpoints)] + [0] * 5,
        "checkpoint": list(np.tile(np.arange(checkpoints), runs)) + [0] * 5, "step": 0,
        "epoch": 0.0, "t": np.nan, "train_loss": 1.0,
        "train_error": list(np.tile(error, runs)) + [0.9] * 5})
    index.insert(0, "row", np.arange(len(index)))
    index.to_parquet(work / "main_index.parquet")
    for k in range(corners):
        phase = k % 2 + 1
        rows = pd.DataFrame({"kind": "corner_run", "run_id": f"corner-{k // 2}-p{phase}",
                             "arch": "fc", "corner": f"subsample-{k // 2}", "phase": phase,
                             "checkpoint": np.arange(checkpoints), "seed": 42,
                             "train_error": error if phase == 2 else error[::-1]})
        rows.to_parquet(work / f"corner_{k}.parquet")
        np.save(work / f"corner_{k}.npy", path(checkpoints))
    return len(index) - 5 + corners * checkpoints


def run_tree(tree: Path, work: Path, corners: int, c: int, label: str) -> dict:
    out = work / f"out-{label}"
    code = _CHILD.format(work=str(work), corners=corners, c=c, out=str(out))
    return {**run_child(code, tree, "compare_arch"), "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="R normal runs")
    parser.add_argument("--corners", type=int, default=10, help="corner runs (phases alternate)")
    parser.add_argument("--checkpoints", type=int, default=66, help="T checkpoints per run")
    parser.add_argument("--n", type=int, default=1000, help="samples")
    parser.add_argument("--c", type=int, default=10, help="classes")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another tree (its src/) to run first on the same inputs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lowdim-corners-rss-") as tmp:
        work = Path(tmp)
        m = write_inputs(work, args.runs, args.corners, args.checkpoints, args.n, args.c)
        print(f"joint set: {args.runs} normal + {args.corners} corner runs x {args.checkpoints}"
              f" checkpoints, N = {args.n}, C = {args.c}: about {m} rows")
        trees = ([("before", args.compare)] if args.compare else []) + [("this tree", ROOT)]
        results = {}
        for label, tree in trees:
            results[label] = run_tree(tree, work, args.corners, args.c, label.replace(" ", "-"))
            r = results[label]
            print(f"{label}: M_j = {r['m']}, peak RSS {r['rss'] / 2**20:.0f} MiB, "
                  f"wall {r['wall']:.1f} s", flush=True)
        if args.compare:
            a, b = results["before"]["out"], results["this tree"]["out"]
            same = all((a / f).read_bytes() == (b / f).read_bytes()
                       for f in ("coords.npy", "convergence.parquet"))
            print("embedding and convergence table: "
                  + ("the same bytes" if same else "DIFFERENT"))


if __name__ == "__main__":
    main()
