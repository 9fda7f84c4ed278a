"""The speed cost of pinned CPU kernels (`train.cpu_kernels`): the same runs, native and pinned.

Each round trains the chosen runs of a profile's grid twice, each time one after the other in one
fresh worker process (`lowdim.training.local.in_workers`, as the train stage starts them): with
the native kernels, and with the pinned variables set first; which way goes first alternates.
It prints each run's training time (the training loop alone, `RunResult.seconds`, no process
start), the ratio pinned / native per architecture and overall, whether the two ways gave the
same predictions to the byte, and the load average around each round (other jobs slow both
ways).

    python benchmarks/cpu_kernels.py                       # fc and allcnn of the quick profile
    python benchmarks/cpu_kernels.py --archs fc,allcnn,wr-10-1-8,convmixer,vit --repeat 3
    # on an AVX-512 machine, where native and pinned kernels differ:
    python benchmarks/cpu_kernels.py --archs fc,allcnn,vit --epochs 4 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import torch
from _grid import prepared_data, profile_runs

from lowdim.config.profile import load_profile
from lowdim.training.kernels import this_cpu_can_pin, worker_environment
from lowdim.training.local import in_workers

WAYS = ("native", "pinned")


def train_way(specs, prepared, way: str) -> dict[str, tuple[float, bytes]]:
    """Train `specs` in one worker process with `way`'s kernels: run id -> (seconds,
    predictions' bytes)."""
    out = {}
    for result in in_workers(specs, prepared, workers=1, threads=1, progress=False,
                             environment=worker_environment(way, pinnable=True)):
        assert result.settings["cpu_kernels"] == way, result.settings
        out[result.spec.run_id] = (result.seconds, np.stack(result.probs["train"]).tobytes()
                                   + np.stack(result.probs["test"]).tobytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--archs", default="fc,allcnn", help="comma-separated: grid.arch")
    parser.add_argument("--optimizers", default="sgd", help="comma-separated: grid.optimizer")
    parser.add_argument("--seeds", type=int, default=1, help="keep the first N grid seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override grid.epochs")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of both ways")
    args = parser.parse_args()
    if not this_cpu_can_pin():
        raise SystemExit("this processor cannot take the pinned kernels (x86-64 with AVX2 and "
                         "FMA): nothing to compare")

    cfg = load_profile(args.profile)
    specs = profile_runs(cfg, arch=tuple(args.archs.split(",")),
                         optimizer=tuple(args.optimizers.split(",")),
                         seed=cfg.grid.seed[:args.seeds],
                         epochs=(args.epochs,) if args.epochs else None)
    prepared = prepared_data(cfg)
    print(f"{cfg.profile}: {len(specs)} runs, {os.cpu_count()} CPUs, "
          f"native ATen capability {torch.backends.cpu.get_cpu_capability()}")
    seconds: dict[str, dict[str, list[float]]] = {w: {} for w in WAYS}
    for round_ in range(args.repeat):
        order = WAYS if round_ % 2 == 0 else WAYS[::-1]
        load = os.getloadavg()[0]
        results = {}
        for way in order:
            results[way] = train_way(specs, prepared, way)
        for run_id, (native_s, native_bytes) in results["native"].items():
            pinned_s, pinned_bytes = results["pinned"][run_id]
            seconds["native"].setdefault(run_id, []).append(native_s)
            seconds["pinned"].setdefault(run_id, []).append(pinned_s)
            print(f"round {round_ + 1} {run_id}: native {native_s:.2f} s, pinned "
                  f"{pinned_s:.2f} s, ratio {pinned_s / native_s:.3f}, same bytes "
                  f"{'yes' if native_bytes == pinned_bytes else 'no'}")
        print(f"round {round_ + 1} load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    for arch in dict.fromkeys(s.arch for s in specs):
        ids = [s.run_id for s in specs if s.arch == arch]
        native = sum(statistics.median(seconds["native"][i]) for i in ids)
        pinned = sum(statistics.median(seconds["pinned"][i]) for i in ids)
        print(f"{arch}: median native {native:.2f} s, pinned {pinned:.2f} s, ratio "
              f"{pinned / native:.3f}")
    native = sum(sum(v) for v in seconds["native"].values())
    pinned = sum(sum(v) for v in seconds["pinned"].values())
    print(f"all rounds: native {native:.1f} s, pinned {pinned:.1f} s, ratio {pinned / native:.3f}")


if __name__ == "__main__":
    main()
