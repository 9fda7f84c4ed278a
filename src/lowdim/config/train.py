"""The `train` section: how each run trains, where, and its `ray` subsection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from lowdim.config.load import Check, ConfigError, Positive, Range

# Ray's rule for resource requests: a fraction of one unit, or whole units.
Resource = Check(lambda v: v >= 0 and (v <= 1 or float(v).is_integer()),
                 "must be a fraction in [0, 1] or a whole number (Ray's rule for resource "
                 "requests)")
Address = Check(lambda v: bool(v.strip()), "use auto (the running cluster), host:port, or null "
                "(start a local Ray instance)")
Workers = Check(lambda v: v >= 1, "must be auto (one process per CPU core) or a whole number >= 1 "
                "(1: every run in the stage's process)")
NotNegative = Check(lambda v: v >= 0, "must be >= 0")


@dataclass(frozen=True)
class RayConfig:
    """The Ray backend: which cluster, resources per task, runs per task, retries, failures."""

    # "auto": the running cluster (RAY_ADDRESS); None: start one
    address: Annotated[str, Address] | None = "auto"
    num_cpus: Annotated[float, Resource] = 1.0
    num_gpus: Annotated[float, Resource] = 0.0  # fractions let several small networks share one
    runs_per_task: Annotated[int, Positive] = 1
    max_retries: Annotated[int, NotNegative] = 2  # resubmissions of a run after a failed attempt
    max_failed_fraction: Annotated[float, Range(0, 1, "left",
                                                " (0: any failed run fails the stage)")] = 0.0

    def check(self) -> None:
        """A task reserves something, or Ray would start every run at once."""
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise ConfigError("train.ray.num_cpus and train.ray.num_gpus are both 0: a task must "
                              "reserve some CPU or GPU, or Ray would start every run at once")


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
        then), and nothing asks for the packed path, which Ray tasks do not take."""
        if self.backend != "ray":
            return
        asked = [key for key in ("channels_last", "compile", "tf32", "bf16") if getattr(self, key)]
        if asked:
            raise ConfigError(f"train.{asked[0]} = true but train.backend = 'ray': Ray tasks train "
                              "one run at a time, without the packed path and its options; set "
                              f"train.{asked[0]}: false, or train.backend: local")
        if self.pack_size not in ("auto", 1):
            raise ConfigError(f"train.pack_size = {self.pack_size} but train.backend = 'ray': Ray "
                              "tasks train one run at a time; set train.pack_size: auto (or 1), "
                              "or train.backend: local")
        if self.device == "cpu" and self.ray.num_gpus > 0:
            raise ConfigError(f"train.ray.num_gpus = {self.ray.num_gpus} but train.device = "
                              "'cpu': set num_gpus to 0, or device to auto or cuda")
        if self.device == "cuda" and self.ray.num_gpus == 0:
            raise ConfigError("train.device = 'cuda' but train.ray.num_gpus = 0: Ray hides GPUs "
                              "from tasks that reserve none; set num_gpus (e.g. 0.25)")
