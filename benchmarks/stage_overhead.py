"""Fixed cost of one figure stage before it does any work: a fresh interpreter importing what a
figure notebook imports and loading the parameter file, two ways in the same run:

  torch-free  `load_config(..., build_models=False)`, as the stages that build no network do now;
  building    `load_config(...)` with every architecture built (what every stage did before,
              importing torch on the way).

Each way runs --repeat times in fresh subprocesses, alternating; the best time of each is
printed with the ratio. A papermill stage adds a Jupyter kernel start on top (`--kernel`
times an empty notebook through papermill, once).

    python benchmarks/stage_overhead.py --profile profiles/quick.yaml --repeat 5 --kernel
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIGURE_IMPORTS = ("import matplotlib.pyplot, lowdim.plotting, lowdim.figures, "
                  "lowdim.trajectory_panels, lowdim.study_panels, lowdim.predictions, "
                  "lowdim.store")


def probe(profile: str, build_models: bool) -> str:
    """Python source of one stage start-up; prints whether torch was imported."""
    return (f"import sys\nfrom lowdim.config import load_config\n{FIGURE_IMPORTS}\n"
            f"load_config({profile!r}, build_models={build_models})\n"
            "print('torch' in sys.modules)")


def timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of a subprocess and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def kernel_start_seconds() -> float:
    """Wall time of papermill running a notebook with one empty code cell."""
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "", "outputs": [],
                     "execution_count": None}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "empty.ipynb"
        path.write_text(json.dumps(nb))
        seconds, _ = timed([sys.executable, "-m", "papermill", "--no-progress-bar", str(path),
                            str(Path(tmp) / "out.ipynb")])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kernel", action="store_true", help="also time a kernel start")
    args = parser.parse_args()
    best = {"torch-free": float("inf"), "building": float("inf")}
    loaded = {}
    for _ in range(args.repeat):
        for way, build in (("torch-free", False), ("building", True)):
            seconds, torch_loaded = timed([sys.executable, "-c", probe(args.profile, build)])
            best[way] = min(best[way], seconds)
            loaded[way] = torch_loaded
    for way, seconds in best.items():
        print(f"{way:>10}: {seconds:6.2f} s (best of {args.repeat}); torch imported: "
              f"{loaded[way]}")
    print(f"ratio torch-free / building: {best['torch-free'] / best['building']:.2f}")
    if args.kernel:
        print(f"papermill kernel start (empty notebook): {kernel_start_seconds():.2f} s")


if __name__ == "__main__":
    main()
