"""Training and distance throughput of the quick profile on each available device.

Trains the same runs on the CPU and (when present) on CUDA in one process and prints both times
and their ratio; computes the train-space distance matrix of the CPU-trained predictions with
each device's kernel (times, ratio, largest difference); and reports how far the CUDA-trained
trajectories end up from the CPU-trained ones (floating-point order differs between devices, so
trajectories are not bitwise equal across devices).

    python benchmarks/device.py [--runs 6] [--profile profiles/quick.yaml]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _grid import prepared_data, profile_runs

from lowdim.analysis.analysis_set import renormalize
from lowdim.config.profile import load_profile
from lowdim.geometry.distances import bhattacharyya
from lowdim.training.run import DeviceData, train_run


def train_all(specs, prepared, device: torch.device) -> tuple[float, np.ndarray]:
    """Seconds to train `specs` on `device`, and their stacked train-space predictions."""
    data = DeviceData.from_prepared(prepared, device)
    start = time.perf_counter()
    results = [train_run(s, data) for s in specs]
    seconds = time.perf_counter() - start
    return seconds, np.concatenate([renormalize(r.stacked("train")) for r in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--runs", type=int, default=6, help="runs of the grid to train")
    args = parser.parse_args()
    cfg = load_profile(args.profile)
    prepared = prepared_data(cfg)
    specs = profile_runs(cfg)
    specs = specs[:: max(1, len(specs) // args.runs)][: args.runs]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    train_seconds, probs = {}, {}
    for device in devices:
        train_seconds[device.type], probs[device.type] = train_all(specs, prepared, device)
        print(f"{device.type:>4}: trained {len(specs)} runs in {train_seconds[device.type]:7.2f} s")
    dist_seconds, matrices = {}, {}
    for device in devices:
        start = time.perf_counter()
        matrices[device.type] = bhattacharyya(probs["cpu"], sample_step=cfg.distances.sample_step,
                                              device=device.type)
        dist_seconds[device.type] = time.perf_counter() - start
        m = len(probs["cpu"])
        print(f"{device.type:>4}: distances {m}x{m} in {dist_seconds[device.type]:.3f} s")
    if "cuda" in probs:
        gap = np.array([bhattacharyya(a[None], b[None])[0, 0]
                        for a, b in zip(probs["cpu"], probs["cuda"], strict=True)])
        print(f"training speed-up cuda/cpu: {train_seconds['cpu'] / train_seconds['cuda']:.2f}x; "
              f"distance speed-up: {dist_seconds['cpu'] / dist_seconds['cuda']:.2f}x; "
              f"max |D_cpu - D_cuda| on the same predictions = "
              f"{np.abs(matrices['cpu'] - matrices['cuda']).max():.2e}")
        print(f"d_B(CPU-trained, CUDA-trained) at equal checkpoints: median {np.median(gap):.2e}, "
              f"max {gap.max():.2e}")


if __name__ == "__main__":
    main()
