"""Fixed cost of one figure stage before it does any work: a fresh interpreter importing what a
figure notebook imports and loading the parameter file, two ways in the same run:

  torch-free  `load(..., FiguresConfig)`: the one section a figure stage reads, as it does now;
  building    the whole file validated with every architecture built (`lowdim.tools.params`,
              what every stage did before, importing torch on the way).

Each way runs --repeat times in fresh subprocesses, alternating; the best time of each is
printed with the ratio. A papermill stage adds a Jupyter kernel start on top (`--kernel`
times an empty notebook through papermill, once).

`--papermill` times papermill's own start (`import papermill`, which every stage pays before
its kernel starts) as installed, against the same import with `rfc3987_syntax` blocked: with
jsonschema >= 4.25 that package compiles an IRI grammar at import, which no notebook schema uses
(hence the `jsonschema<4.25` pin in pyproject.toml; ratio 1.00 means the pin is in effect).

    python benchmarks/stage_overhead.py --profile profiles/quick.yaml --repeat 5 --kernel
    python benchmarks/stage_overhead.py --papermill --repeat 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIGURE_IMPORTS = ("import matplotlib.pyplot, lowdim.figures.theme, "
                  "lowdim.figures.embedding_panels, lowdim.figures.trajectory_panels, "
                  "lowdim.figures.study_panels, lowdim.analysis.analysis_set, "
                  "lowdim.store.products")


def probe(profile: str, build_models: bool) -> str:
    """Python source of one stage start-up; prints whether torch was imported."""
    loading = (f"from lowdim.tools.params import validate_file\nvalidate_file({profile!r})"
               if build_models else "from lowdim.config.figures import FiguresConfig\n"
               f"from lowdim.config.load import load\nload({profile!r}, {{}}, FiguresConfig)")
    return f"import sys\n{FIGURE_IMPORTS}\n{loading}\nprint('torch' in sys.modules)"


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


PAPERMILL_PROBE = ("import sys\n{block}import papermill, jsonschema\n"
                   "print(jsonschema.__version__, 'rfc3987_syntax' in sys.modules)")


def papermill_import(repeat: int) -> None:
    """Best-of-`repeat` seconds of `import papermill`, as installed and with the IRI grammar
    package blocked, alternating; prints both and their ratio."""
    ways = {"as installed": "", "grammar blocked": "sys.modules['rfc3987_syntax'] = None\n"}
    best = dict.fromkeys(ways, float("inf"))
    seen = {}
    for _ in range(repeat):
        for way, block in ways.items():
            seconds, seen[way] = timed([sys.executable, "-c", PAPERMILL_PROBE.format(block=block)])
            best[way] = min(best[way], seconds)
    version, loaded = seen["as installed"].split()
    print(f"jsonschema {version}; rfc3987_syntax imported by papermill: {loaded}")
    for way, seconds in best.items():
        print(f"import papermill, {way:>15}: {seconds:6.2f} s (best of {repeat})")
    print(f"ratio as installed / grammar blocked: "
          f"{best['as installed'] / best['grammar blocked']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kernel", action="store_true", help="also time a kernel start")
    parser.add_argument("--papermill", action="store_true",
                        help="only time papermill's import (see the module docstring)")
    args = parser.parse_args()
    if args.papermill:
        papermill_import(args.repeat)
        return
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
