"""A run's effective training settings and its provenance, both recorded in its meta.json.

`settings` holds every setting of the `train` section that can change a run's bytes, as it
applied to that run (None where it cannot apply); a run is complete only when they equal what the
current launch would use (`lowdim.training.ledger.pending`), so changing one retrains exactly the
runs it touches. Measured on a CPU (tests/test_run_settings.py): the torch thread count and the
evaluation batch size change the last bits of predictions and losses, so both are settings; so
do the CPU kernels the process ran (`cpu_kernels`, lowdim.training.kernels:
tests/test_cpu_kernels.py), recorded as the process's environment set them.
`provenance` records where and with what a run trained: device, precision, threads, versions.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lowdim
from lowdim.data import default_padding
from lowdim.store.records import RunSpec
from lowdim.training.kernels import kernels_of

Settings = dict[str, Any]


def crop_padding(augment_padding: int | None, height: int) -> int:
    """The crop padding of `train.augment_padding` for images of this height (None: default)."""
    return default_padding(height) if augment_padding is None else augment_padding


def run_padding(augment: str, padding: int) -> int | None:
    """The padding a run uses: `padding` with the simple augmentation, None without one."""
    return padding if augment == "simple" else None


def effective_settings(device_type: str, *, threads: int, eval_batch_size: int,
                       padding: int | None, pack_size: int | str | None,
                       channels_last: bool = False, compile: bool = False,
                       tf32: bool | str = False, bf16: bool = False,
                       cpu_kernels: str = "native") -> Settings:
    """The settings record; None where a setting cannot apply: threads and cpu_kernels on CUDA
    (the CPU share of a CUDA run does not depend on them), tf32 and bf16 on a CPU, pack_size of
    a run trained alone.
    """
    cuda = device_type == "cuda"
    return {"device": device_type, "threads": None if cuda else threads,
            "eval_batch_size": eval_batch_size, "augment_padding": padding,
            "pack_size": pack_size, "channels_last": channels_last, "compile": compile,
            "tf32": tf32 if cuda else None, "bf16": bf16 if cuda else None,
            "cpu_kernels": None if cuda else cpu_kernels}


def tf32_state(device: torch.device) -> bool | str:
    """Whether CUDA matmuls and convolutions use TF32 now: a bool, or "mixed" when only one does
    (PyTorch's own default: convolutions only). False on other devices."""
    if device.type != "cuda":
        return False
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    return matmul if matmul == cudnn else "mixed"


def observed_settings(device: torch.device, *, eval_batch_size: int, padding: int | None,
                      pack_size: int | str | None = None, channels_last: bool = False,
                      compile: bool = False, bf16: bool = False) -> Settings:
    """The settings of a run that trained in this process, threads, TF32 and the CPU kernels
    (this process's environment: lowdim.training.kernels) read as they are."""
    return effective_settings(device.type, threads=torch.get_num_threads(),
                              eval_batch_size=eval_batch_size, padding=padding,
                              pack_size=pack_size, channels_last=channels_last, compile=compile,
                              tf32=tf32_state(device), bf16=bf16,
                              cpu_kernels=kernels_of(os.environ))


def planned_settings(device_type: str, *, threads: int, eval_batch_size: int, padding: int,
                     pack_size: int | str | None = None, channels_last: bool = False,
                     compile: bool = False, tf32: bool = False, bf16: bool = False,
                     cpu_kernels: str = "native") -> Callable[[RunSpec], Settings]:
    """The settings each run of a launch will record, as a function of its spec (`cpu_kernels`:
    those of the processes that will train it, lowdim.training.kernels.planned_kernels)."""
    def of(spec: RunSpec) -> Settings:
        return effective_settings(device_type, threads=threads, eval_batch_size=eval_batch_size,
                                  padding=run_padding(spec.augment, padding),
                                  pack_size=pack_size, channels_last=channels_last,
                                  compile=compile, tf32=tf32, bf16=bf16,
                                  cpu_kernels=cpu_kernels)
    return of


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where the OS tells it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(device: torch.device, *, bf16: bool = False, pack_runs: int = 1) -> dict:
    """Where and how a run trained in this process: device, precision, threads, versions."""
    cuda = device.type == "cuda"
    return {
        "device": {"type": device.type, "name": device_name(device)},
        "precision": {"float32_matmul_precision": torch.get_float32_matmul_precision(),
                      "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
                      "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
                      "bf16_autocast": bf16},
        "threads": torch.get_num_threads(),
        "pack_runs": pack_runs,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda if cuda else None, "numpy": np.__version__,
                     "lowdim": lowdim.__version__},
    }
