"""Local training of a profile's grid: one run at a time against runs in worker processes.

For each way WORKERSxTHREADS (e.g. 1x2: one run at a time in this process with 2 torch threads;
2x1: two worker processes with 1 thread each), the grid trains into a fresh temporary run store
with `launch_local`, as the train stage does, and the script prints the wall time of each way,
worker start-up included, and the load average around it (other jobs slow every way).

    python benchmarks/workers.py --profile profiles/quick.yaml --ways 1x2,2x1
    python benchmarks/workers.py --profile profiles/tiny.yaml --ways 1x2,2x1,1x1 --repeat 2
    python benchmarks/workers.py --profile profiles/quick.yaml --seeds 1 --epochs 4  # a subset
    # seconds per run of chosen networks alone (--archs replaces grid.arch, --optimizers
    # grid.optimizer), to compare this machine's speed with timings measured elsewhere:
    python benchmarks/workers.py --archs allcnn --optimizers sgd --seeds 1 --ways 1x2,1x1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from _grid import prepared_data, profile_runs

from lowdim.config.profile import load_profile
from lowdim.training.local import launch_local


def parse_way(way: str) -> tuple[int, int]:
    """'2x1' -> (2 workers, 1 thread each)."""
    workers, threads = way.split("x")
    return int(workers), int(threads)


def time_way(specs, prepared, workers: int, threads: int) -> float:
    """Seconds to train `specs` into a fresh store with `workers` processes of `threads` threads."""
    torch.set_num_threads(threads)  # the one-at-a-time path trains in this process
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        launch_local(specs, prepared, store, torch.device("cpu"), progress=False,
                     workers=workers, threads=threads)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--ways", default="1x2,2x1", help="WORKERSxTHREADS, comma-separated")
    parser.add_argument("--seeds", type=int, default=None, help="keep the first N grid seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override grid.epochs")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every way")
    parser.add_argument("--archs", default=None, help="comma-separated: replaces grid.arch")
    parser.add_argument("--optimizers", default=None,
                        help="comma-separated: replaces grid.optimizer")
    args = parser.parse_args()

    cfg = load_profile(args.profile)
    specs = profile_runs(
        cfg, seed=cfg.grid.seed[:args.seeds] if args.seeds else None,
        epochs=(args.epochs,) if args.epochs else None,
        arch=tuple(args.archs.split(",")) if args.archs else None,
        optimizer=tuple(args.optimizers.split(",")) if args.optimizers else None)
    prepared = prepared_data(cfg)
    print(f"{cfg.profile}: {len(specs)} runs, {os.cpu_count()} CPUs")
    for round_ in range(args.repeat):
        for way in args.ways.split(","):
            load = os.getloadavg()[0]
            seconds = time_way(specs, prepared, *parse_way(way))
            print(f"round {round_ + 1} {way}: {seconds:.1f} s, {seconds / len(specs):.1f} s per "
                  f"run  (load {load:.1f} -> "
                  f"{os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
