"""Run many specs with the backend that `train.backend` names: local (`lowdim.training.local`)
or Ray (`lowdim.training.ray_backend`, imported only when it is used). Both are resumable:
complete runs are never redone, and both train with the same options
(`lowdim.training.local.training_options`) through the same function (`train_in_process`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lowdim.config.train import TrainConfig
from lowdim.data import Prepared
from lowdim.device import resolve_device
from lowdim.store.records import RunSpec
from lowdim.training.ledger import LaunchSummary
from lowdim.training.local import launch_local, training_options


def launch(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path, train: TrainConfig,
           *, progress: bool = True) -> LaunchSummary:
    """Train every pending spec with the backend named by `train.backend` (local or ray); the
    local backend trains `train.workers` CPU runs at once, in processes that run the CPU kernels
    `train.cpu_kernels` names (lowdim.training.kernels)."""
    if train.backend == "ray":
        from lowdim.training.ray_backend import launch_ray  # Ray is imported only when it is used

        return launch_ray(specs, prepared, store, train, progress=progress)
    if train.threads:
        torch.set_num_threads(train.threads)
    return launch_local(specs, prepared, store, resolve_device(train.device), progress=progress,
                        workers=train.workers, threads=train.threads,
                        cpu_kernels=train.cpu_kernels, **training_options(train))
