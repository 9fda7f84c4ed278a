"""Peak memory of the joint, averaging and tangents studies on synthetic checkpoints, and the
bytes they write.

Builds the run store, analysis set, distances, embedding and trajectories of R runs x T
checkpoints with N train samples (N / 5 test) as ``benchmarks/scale.py`` does, then runs the code
cells of notebooks 84, 80 and 82 (parameters injected as papermill would) each in a child process
and reads that child's peak resident set (VmHWM). The averaged configuration is the first with
two or more runs (every synthetic run of one architecture differs only in its seed).

``--compare DIR`` first runs the studies from another tree (DIR/src and DIR/notebooks, e.g. an
older commit unpacked with ``git archive <commit> src notebooks | tar -x -C DIR``) on the same
products, then this tree's, and says whether every output file has the same bytes.

    PYTHONPATH=src nice -n 15 python benchmarks/studies_rss.py --runs 60 --n 200 --compare DIR

Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from trajectories_rss import _CHILD, run_child, same_bytes  # noqa: E402 - the child's VmHWM reader

STUDIES = {"joint": "84_joint_embedding", "averaging": "80_averaging", "tangents": "82_tangents"}
OVERRIDES = {"trajectories": {"trained_max_error": 1.0},
             "studies": {"averaging": {"arch": None, "optimizer": None}}}


def run_study(study: str, tree: Path, work: Path, label: str) -> dict:
    """One study's notebook of `tree`, run with `tree`/src first on the path."""
    out = work / f"{study}-{label}"
    shutil.rmtree(out, ignore_errors=True)
    parameters = {"params_file": str(ROOT / "params.yaml"), "overrides": OVERRIDES,
                  "predictions_dir": str(work / "predictions"),
                  "distances_dir": str(work / "distances"),
                  "embedding_dir": str(work / "embedding"),
                  "trajectories_dir": str(work / "trajectories"),
                  f"{study}_dir": str(out / "data"), "metrics_file": str(out / f"{study}.json")}
    notebook = tree / "notebooks" / f"{STUDIES[study]}.ipynb"
    code = _CHILD.format(notebook=str(notebook), parameters=json.dumps(parameters))
    return {**run_child(code, tree, study), "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="R runs")
    parser.add_argument("--checkpoints", type=int, default=66, help="T checkpoints per run")
    parser.add_argument("--n", type=int, default=200, help="train samples (test: N / 5)")
    parser.add_argument("--c", type=int, default=10, help="classes")
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--compare", type=Path, default=None,
                        help="another tree (src/ and notebooks/) to run first and compare with")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the store and products go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()

    import scale  # the run store and the stages of the scale benchmark

    work = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / "lowdim-studies-rss"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n = {"train": args.n, "test": max(1, args.n // 5)}
    start = time.perf_counter()
    scale.build_store(work, args.runs, args.checkpoints, n, args.c)
    scale.child("predictions", work, {"c": args.c})
    scale.child("distances", work, {"c": args.c, "dtype": "float64", "cache": False,
                                    "device": "cpu"})
    scale.child("embedding", work, {"landmarks": None, "device": "cpu"})
    scale.child("trajectories", work, {})
    m = args.runs * args.checkpoints + 2 + scale.GEODESIC_POINTS
    print(f"studies: M = {m} ({args.runs} runs x {args.checkpoints} + "
          f"{2 + scale.GEODESIC_POINTS} reference rows), N = {n['train']} train / {n['test']} "
          f"test, C = {args.c}; {os.cpu_count()} CPUs; inputs built in "
          f"{time.perf_counter() - start:.1f} s in {work}", flush=True)
    trees = ([("compared", args.compare.resolve())] if args.compare else []) + [("this", ROOT)]
    for study in args.studies:
        results = {}
        for label, tree in trees:
            results[label] = r = run_study(study, tree, work, label)
            print(f"  {study:<10} {label:<9} {r['wall']:.1f} s, peak RSS "
                  f"{r['rss'] / 2**20:.0f} MiB", flush=True)
        if args.compare:
            differ = same_bytes(results["compared"]["out"], results["this"]["out"])
            print(f"  {study:<10} outputs: " + ("every file has the same bytes" if not differ
                  else f"{len(differ)} files differ: {', '.join(differ[:10])}"), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
