"""Peak memory of the trajectories stage on synthetic checkpoints, and the bytes it writes.

Builds the run store and the analysis set of R runs x T checkpoints with N train samples (N / 5
test) as ``benchmarks/scale.py`` does (its ``build_store`` and its predictions stage), then runs
the code cells of ``notebooks/60_trajectories.ipynb`` (the stage itself, parameters injected as
papermill would) in a child process and reads that child's peak resident set (VmHWM). Every
run counts as trained (``trajectories.trained_max_error`` 1.0), so R runs, 6 configuration
averages (one per architecture) and the geodesic enter the tensor.

``--compare DIR`` first runs the stage from another tree (DIR/src and DIR/notebooks, e.g. an
older commit unpacked with ``git archive <commit> src notebooks | tar -x -C DIR``) on the same
analysis set, then this tree's, and says whether every output file has the same bytes.

    PYTHONPATH=src nice -n 15 python benchmarks/trajectories_rss.py --runs 120 --n 1000
    PYTHONPATH=src nice -n 15 python benchmarks/trajectories_rss.py --compare /tmp/before

Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path("notebooks") / "60_trajectories.ipynb"

_CHILD = """
import json, sys, time
from pathlib import Path

cells = json.loads(Path({notebook!r}).read_text())["cells"]
code = [c for c in cells if c["cell_type"] == "code"]
first = next(i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", []))
namespace = {{"__name__": "__main__"}}
start = time.perf_counter()
exec("".join(code[first]["source"]), namespace)
namespace.update(json.loads({parameters!r}))
for cell in code[first + 1:]:
    exec("".join(cell["source"]), namespace)
wall = time.perf_counter() - start
import lowdim
hwm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text()
           .splitlines() if line.startswith("VmHWM:"))
print(json.dumps({{"rss": hwm, "wall": wall, "lowdim": lowdim.__file__}}))
"""


def run_stage(tree: Path, work: Path, label: str) -> dict:
    """The trajectories notebook of `tree`, run with `tree`/src first on the path."""
    out = work / f"trajectories-{label}"
    shutil.rmtree(out, ignore_errors=True)
    parameters = {"params_file": str(ROOT / "params.yaml"),
                  "overrides": {"trajectories": {"trained_max_error": 1.0}},
                  "predictions_dir": str(work / "predictions"),
                  "trajectories_dir": str(out / "data"),
                  "metrics_file": str(out / "trajectories.json")}
    code = _CHILD.format(notebook=str(tree / NOTEBOOK), parameters=json.dumps(parameters))
    return {**run_child(code, tree, "the stage"), "out": out}


def run_child(code: str, tree: Path, what: str) -> dict:
    """Run `code` in a new Python process with `tree`/src first on the path (working directory
    the repository's root, matplotlib headless). Its last line of output is a JSON object whose
    "lowdim" names the package it imported, which must be `tree`'s. Returns that object with
    ``process_wall``, the child's wall time; RuntimeError (`what` failed) on a failure."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{what} from {tree} failed:\n{done.stderr[-5000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall"] = time.perf_counter() - start
    if Path(result["lowdim"]).resolve().parents[1] != (tree / "src").resolve():
        raise RuntimeError(f"the child imported {result['lowdim']}, not {tree / 'src'}")
    return result


def same_bytes(a: Path, b: Path) -> list[str]:
    """Files that differ (or exist on one side only) between two output trees."""
    names = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()}
                   | {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    return [str(n) for n in names
            if not ((a / n).is_file() and (b / n).is_file()
                    and (a / n).read_bytes() == (b / n).read_bytes())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120, help="R runs")
    parser.add_argument("--checkpoints", type=int, default=66, help="T checkpoints per run")
    parser.add_argument("--n", type=int, default=1000, help="train samples (test: N / 5)")
    parser.add_argument("--c", type=int, default=10, help="classes")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another tree (src/ and notebooks/) to run first and compare with")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the store and products go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale  # the run store and the predictions stage of the scale benchmark

    work = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / "lowdim-trajectories-rss"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n = {"train": args.n, "test": max(1, args.n // 5)}
    start = time.perf_counter()
    scale.build_store(work, args.runs, args.checkpoints, n, args.c)
    scale.child("predictions", work, {"c": args.c})
    m = args.runs * args.checkpoints + 2 + scale.GEODESIC_POINTS
    print(f"trajectories stage: M = {m} ({args.runs} runs x {args.checkpoints} + "
          f"{2 + scale.GEODESIC_POINTS} reference rows), N = {n['train']} train / {n['test']} "
          f"test, C = {args.c}; {os.cpu_count()} CPUs; analysis set built in "
          f"{time.perf_counter() - start:.1f} s in {work}")
    trees = ([("compared", args.compare.resolve())] if args.compare else []) + [("this", ROOT)]
    results = {}
    for label, tree in trees:
        results[label] = run_stage(tree, work, label)
        r = results[label]
        print(f"  {label:<9} {str(tree):<40} stage {r['wall']:.1f} s (process "
              f"{r['process_wall']:.1f} s), peak RSS {r['rss'] / 2**20:.0f} MiB", flush=True)
    if args.compare:
        differ = same_bytes(results["compared"]["out"], results["this"]["out"])
        print("  outputs: " + ("every file has the same bytes" if not differ
                               else f"{len(differ)} files differ: {', '.join(differ[:10])}"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
