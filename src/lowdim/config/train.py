"""The `train` section: how each run trains, where, and its `ray` subsection."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from lowdim.config.cluster import Address, Resource, Retries
from lowdim.config.load import Check, ConfigError, Positive, Range

if TYPE_CHECKING:
    from lowdim.config.grid import GridConfig

Workers = Check(lambda v: v >= 1, "must be auto (one process per CPU core) or a whole number >= 1 "
                "(1: every run in the stage's process)")
NotNegative = Check(lambda v: v >= 0, "must be >= 0")
GpuAmount = Annotated[float, Resource]


@dataclass(frozen=True)
class EachValue:
    """A rule on every value of a mapping, each named by its key (`train.ray.num_gpus.vit`)."""

    rule: Check

    def check(self, value: Mapping[str, object], key: str) -> None:
        for name, item in value.items():
            self.rule.check(item, f"{key}.{name}")


# The key of a per-architecture `train.ray.num_gpus` mapping that applies to every other one.
DEFAULT_ARCH = "default"


@dataclass(frozen=True)
class RayConfig:
    """The Ray backend: which cluster, resources per task, runs per task, retries, failures."""

    # "auto": the running cluster (RAY_ADDRESS); None: start one
    address: Annotated[str, Address] | None = "auto"
    num_cpus: Annotated[float, Resource] = 1.0
    # GPUs per task: one amount for every task (fractions let small networks share a GPU), or a
    # mapping {architecture: amount}, with `default` for the architectures it does not name
    num_gpus: GpuAmount | Annotated[dict[str, float], EachValue(Resource)] = 0.0
    runs_per_task: Annotated[int, Positive] = 1
    max_retries: Annotated[int, Retries] = 2  # resubmissions of a run after a failed attempt
    max_failed_fraction: Annotated[float, Range(0, 1, "left",
                                                " (0: any failed run fails the stage)")] = 0.0

    def check(self) -> None:
        """A task reserves something, or Ray would start every run at once; a mapping of GPUs
        names something."""
        if isinstance(self.num_gpus, Mapping) and not self.num_gpus:
            raise ConfigError("train.ray.num_gpus is an empty mapping: give a number of GPUs per "
                              "task, or {default: <GPUs>, <architecture>: <GPUs>, ...}")
        for key, amount in self.gpu_amounts().items():
            if self.num_cpus == 0 and amount == 0:
                both = ("train.ray.num_cpus and train.ray.num_gpus are both 0" if key is None
                        else f"train.ray.num_cpus = 0 and train.ray.num_gpus.{key} = 0")
                raise ConfigError(f"{both}: a task must reserve some CPU or GPU, or Ray would "
                                  "start every run at once")

    def gpu_amounts(self) -> dict[str | None, float]:
        """Every amount of GPUs given, by key: None for a single number, else the mapping."""
        if isinstance(self.num_gpus, Mapping):
            return dict(self.num_gpus)
        return {None: self.num_gpus}

    def gpus(self, arch: str) -> float:
        """GPUs a task that trains `arch` reserves: the number, or the mapping's entry for
        `arch` (else its `default`)."""
        if not isinstance(self.num_gpus, Mapping):
            return self.num_gpus
        if arch in self.num_gpus:
            return self.num_gpus[arch]
        if DEFAULT_ARCH in self.num_gpus:
            return self.num_gpus[DEFAULT_ARCH]
        raise ConfigError(f"train.ray.num_gpus names no amount for architecture {arch!r} and has "
                          f"no {DEFAULT_ARCH}: add {arch}: <GPUs per task>, or {DEFAULT_ARCH}: "
                          "<GPUs per task> for every architecture it does not name")


def check_gpus_for(ray: RayConfig, archs: Iterable[str]) -> None:
    """Raise ConfigError unless a per-architecture `train.ray.num_gpus` names only `archs` (and
    `default`) and gives an amount for each of them."""
    archs = tuple(dict.fromkeys(archs))
    if not isinstance(ray.num_gpus, Mapping):
        return
    for key in ray.num_gpus:
        if key != DEFAULT_ARCH and key not in archs:
            close = difflib.get_close_matches(key, (*archs, DEFAULT_ARCH), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"train.ray.num_gpus.{key}: the grid trains no architecture "
                              f"{key!r}{hint}; its architectures are {', '.join(archs)}: name "
                              f"one of them, or {DEFAULT_ARCH} for all the others")
    for arch in archs:
        ray.gpus(arch)


@dataclass(frozen=True)
class TrainConfig:
    """How each run trains: learning-rate scaling, device, evaluation batch size, backend,
    packing and the GPU speed options (README "Fast training on a GPU")."""

    SECTION = "train"

    lr_reference_batch_size: Annotated[int, Positive] = 200
    eval_batch_size: Annotated[int, Positive] = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment_padding: Annotated[int, NotNegative] | None = None
    threads: Annotated[int, Positive] | None = None
    # Local CPU runs trained at once, each in its own process; auto = one per available core.
    workers: Literal["auto"] | Annotated[int, Workers] = "auto"
    # The CPU kernels of every CPU training process (lowdim.training.kernels): pinned = the AVX2
    # paths of ATen, MKL and oneDNN, whatever the processor offers beyond them; native = the
    # widest path each library finds (what the environment says).
    cpu_kernels: Literal["pinned", "native"] = "pinned"
    backend: Literal["local", "ray"] = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    # Runs trained together in one step; auto = 1 on a CPU, sized to free memory on CUDA.
    pack_size: Literal["auto"] | Annotated[int, Positive] = "auto"
    channels_last: bool = False  # speed only: NHWC convolutions
    compile: bool = False        # speed only: torch.compile the packed step
    tf32: bool = False           # CUDA only: TF32 tensor cores (10-bit mantissa products)
    bf16: bool = False           # CUDA only, opt-in: bfloat16 autocast, changes the maths

    def check(self) -> None:
        """On Ray, the device and the GPUs reserved per task agree (the ray section is read only
        then). Every other key applies on Ray as it does locally (lowdim.training.ray_backend);
        whether tf32, bf16 and fp16-mixed can apply depends on each architecture's GPUs, checked
        at launch, before any task (`ray_backend.check_ray_options`)."""
        if self.backend != "ray":
            return
        for key, amount in self.ray.gpu_amounts().items():
            name = "train.ray.num_gpus" + ("" if key is None else f".{key}")
            if self.device == "cpu" and amount > 0:
                raise ConfigError(f"{name} = {amount:g} but train.device = 'cpu': set it to 0, or "
                                  "device to auto or cuda")
            if self.device == "cuda" and amount == 0:
                raise ConfigError(f"train.device = 'cuda' but {name} = 0: Ray hides GPUs from "
                                  "tasks that reserve none; set it (e.g. 0.25)")


def check_with(train: TrainConfig, grid: GridConfig) -> None:
    """On Ray, a per-architecture `train.ray.num_gpus` names the grid's architectures only and
    gives each an amount."""
    if train.backend == "ray":
        check_gpus_for(train.ray, grid.arch)
