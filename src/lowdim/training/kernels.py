"""Which CPU kernels a training process runs, and pinning them (`train.cpu_kernels`).

PyTorch's CPU arithmetic picks its code at run time from the processor, in three libraries,
each steered by one environment variable:

- ATen's vectorized kernels (element-wise, reductions, softmax, optimizers):
  `ATEN_CPU_CAPABILITY` (default | avx2 | avx512);
- MKL's BLAS (the fully connected layers' matrix products): `MKL_CBWR`, its conditional
  numerical reproducibility branch;
- oneDNN (convolutions, some element-wise primitives): `ONEDNN_MAX_CPU_ISA`.

A different path sums in a different order, so one run trained on two machines differs in the
last bits after a step and visibly after an epoch (docs/performance.md, "CPU kernels and
cross-machine spread"). Each library reads its variable once, when it is first used: what counts
is the process's environment before its first tensor operation.

`pinned` gives every CPU training process the AVX2 path of all three (PINNED_ENVIRONMENT),
whatever the user's environment says; `native` leaves the environment as it is (each library
takes the widest path the processor offers). Two limits, from the libraries' documentation: MKL
honours a branch other than AUTO or COMPATIBLE on Intel processors only (elsewhere it takes its
AUTO branch: CNR mode with the processor's own dispatch), and a processor without AVX2 (or not
x86-64) cannot take the pin at all, so there runs stay native and say so.

This module is torch-free: the worker processes apply it before torch runs anything.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path

CPU_KERNELS = ("pinned", "native")

# The AVX2 path of each library (values as the libraries document them).
PINNED_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
                      "ONEDNN_MAX_CPU_ISA": "AVX2"}
# What torch.backends.cpu.get_cpu_capability() reports in a process that took the pin.
PINNED_ATEN_CAPABILITY = "AVX2"
# The x86 flags ATen's AVX2 kernels need (its own test: AVX2 and FMA3).
AVX2_FLAGS = frozenset({"avx2", "fma"})
X86_64 = ("x86_64", "amd64")


def kernels_of(environ: Mapping[str, str]) -> str:
    """'pinned' when `environ` holds every pinned variable at its pinned value, else 'native'."""
    pinned = all(environ.get(name) == value for name, value in PINNED_ENVIRONMENT.items())
    return "pinned" if pinned else "native"


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo's text (empty without one)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def can_pin(machine: str, flags: frozenset[str]) -> bool:
    """Whether a processor of this architecture (platform.machine()) and these flags can run
    the pinned kernels: x86-64 with AVX2 and FMA."""
    return machine.lower() in X86_64 and AVX2_FLAGS <= flags


def this_cpu_can_pin() -> bool:
    """`can_pin` for this machine, from /proc/cpuinfo; elsewhere (macOS, Windows) from torch's
    own processor test."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        return can_pin(platform.machine(), cpu_flags(cpuinfo.read_text()))
    if platform.machine().lower() not in X86_64:
        return False
    import torch  # only where the OS gives no /proc/cpuinfo

    return bool(torch.cpu._is_avx2_supported())


def check_cpu_kernels(value: str) -> str:
    """`value` when it is one of CPU_KERNELS; else ValueError naming them."""
    if value not in CPU_KERNELS:
        raise ValueError(f"cpu_kernels = {value!r}: use one of {', '.join(CPU_KERNELS)}")
    return value


def worker_environment(cpu_kernels: str, pinnable: bool) -> dict[str, str]:
    """The variables a CPU training process sets before torch runs: PINNED_ENVIRONMENT when
    pinning on a processor that can take it, none otherwise."""
    pinning = check_cpu_kernels(cpu_kernels) == "pinned" and pinnable
    return dict(PINNED_ENVIRONMENT) if pinning else {}


def planned_kernels(device_type: str, environment: Mapping[str, str],
                    environ: Mapping[str, str]) -> str | None:
    """The kernels a run will record: None on CUDA (the setting is about CPU runs), else those
    of a process whose environment is `environ` with `environment` set over it."""
    if device_type == "cuda":
        return None
    return kernels_of({**environ, **environment})
