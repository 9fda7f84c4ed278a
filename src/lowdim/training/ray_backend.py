"""The Ray backend of the launcher: each bundle of runs is a Ray task on some node of a cluster.

The driver (the train stage) puts the prepared data into Ray's object store once, submits one
task per bundle, and writes every run to the store as soon as its task returns, so workers need
no shared filesystem and an interrupted stage resumes. A failed attempt (an exception in a run,
or a lost worker or node) is logged and the run is resubmitted, at most `train.ray.max_retries`
times; a run that still fails gets a `failed` record in the store (never complete, so the next
launch retries it) and counts against `train.ray.max_failed_fraction`.

Retries are the driver's own (Ray's `max_retries` is 0): one bound for every kind of failure,
and every retry is visible in the stage's log.

A task trains as the local backend does, through the same function (`local.train_in_process`)
with the same options (`local.training_options`): packs of compatible runs when the launch
packs, the same float32 mode (strict fp32 on CUDA unless `train.tf32`), bf16, channels_last,
compile and each run's precision, with `train.threads` torch threads (null: one per CPU the
task reserves, Ray's own rule). The driver plans the packs exactly as a local launch does
(`plan_bundles`), so a packed run has the same bytes through either backend; a pack is one
task, and `train.ray.runs_per_task` bundles the runs that train one at a time. Each task
reserves its architecture's GPUs (`train.ray.num_gpus`, a number or a mapping per
architecture). A setting that cannot apply where a task trains (tf32, bf16 or fp16-mixed on a
task without a GPU) is refused before any task is submitted (`check_ray_options`).
`train.cpu_kernels` (lowdim.training.kernels) is the environment a CPU task's worker process
starts with (Ray's `runtime_env`), checked in the task (`check_task_kernels`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lowdim.cluster.ray_common import (
    check_environment,
    connect,
    environment_versions,
    node_fits,
    one_line,
)
from lowdim.config.train import RayConfig, TrainConfig, check_gpus_for
from lowdim.data import Prepared
from lowdim.device import resolve_device
from lowdim.store.records import RunSpec
from lowdim.store.runs import read_meta, write_run
from lowdim.training.kernels import (
    kernels_of,
    planned_kernels,
    this_cpu_can_pin,
    worker_environment,
)
from lowdim.training.ledger import (
    LaunchSummary,
    check_failures,
    data_fingerprint,
    pending,
    write_failure,
)
from lowdim.training.local import (
    check_pinned_here,
    local_settings,
    torch_threads,
    train_in_process,
    training_options,
)
from lowdim.training.packed import (
    MAX_AUTO_PACK,
    SpeedOptions,
    check_speed_options,
    compatible_groups,
    float32_mode,
    split_evenly,
    uses_packing,
)
from lowdim.training.precision import check_precision, trains_alone
from lowdim.training.run import DeviceData, RunResult
from lowdim.training.settings import Settings

log = logging.getLogger(__name__)

ERROR_CHARS = 4000  # the tail of a traceback kept in the log and in a failure record


@dataclass(frozen=True)
class Outcome:
    """What a task reports for one run: its result, or the error that stopped it."""

    run_id: str
    result: RunResult | None
    error: str | None    # the full traceback or error message
    summary: str | None  # its one-line form, for the log
    node: str | None     # the Ray node that trained it (None: the task was lost)


@dataclass(frozen=True)
class Bundle:
    """The work of one task: units trained one after the other, each by one call of
    `train_in_process` (a pack, or a single run), all of one architecture (its resources)."""

    units: tuple[tuple[RunSpec, ...], ...]

    @property
    def specs(self) -> list[RunSpec]:
        """Every run of the bundle, unit by unit."""
        return [spec for unit in self.units for spec in unit]

    @property
    def arch(self) -> str:
        return self.units[0][0].arch


def bundles(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """Consecutive groups of `size` specs (the last may be shorter), in grid order."""
    if size < 1:
        raise ValueError(f"bundle size {size} must be positive: set train.ray.runs_per_task >= 1")
    return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


def task_threads(train: TrainConfig) -> int:
    """torch threads of a task: `train.threads`, or one per CPU it reserves (at least 1)."""
    return train.threads or max(1, int(train.ray.num_cpus))


def task_device_type(train: TrainConfig, arch: str | None = None) -> str:
    """Where a task of `arch` trains: CUDA when asked, or with `auto` when the task reserves a
    GPU (Ray hides GPUs from tasks that reserve none). `arch` None: a single `num_gpus`."""
    if arch is None and isinstance(train.ray.num_gpus, Mapping):
        raise TypeError("train.ray.num_gpus is given per architecture: name the architecture")
    gpus = train.ray.num_gpus if arch is None else train.ray.gpus(arch)
    wants_gpu = train.device == "cuda" or (train.device == "auto" and gpus > 0)
    return "cuda" if wants_gpu else "cpu"


def task_resources(ray_cfg: RayConfig, arch: str) -> dict[str, float]:
    """What the task that trains runs of `arch` reserves: Ray's num_cpus and num_gpus."""
    return {"num_cpus": ray_cfg.num_cpus, "num_gpus": ray_cfg.gpus(arch)}


def task_environment(train: TrainConfig, device_type: str) -> dict[str, str]:
    """The variables a task's worker process starts with for `train.cpu_kernels`: on a CPU,
    the pinned kernels' (lowdim.training.kernels.PINNED_ENVIRONMENT) or none; none on CUDA.
    Ray starts a worker with them before torch runs anything, so pinned runs may pack here."""
    return worker_environment(train.cpu_kernels, pinnable=device_type == "cpu")


def packs_on(train: TrainConfig, device_type: str) -> bool:
    """Whether tasks on `device_type` train in packs (as a local launch there would)."""
    return uses_packing(train.pack_size, SpeedOptions.from_config(train),
                        torch.device(device_type))


def ray_settings(train: TrainConfig, height: int) -> Callable[[RunSpec], Settings]:
    """The settings each run of a Ray launch will record, for images of this height: those of a
    local launch on its task's device with the task's threads."""
    def of(spec: RunSpec) -> Settings:
        device_type = task_device_type(train, spec.arch)
        options = training_options(train)
        return local_settings(
            torch.device(device_type), height, threads=task_threads(train),
            eval_batch_size=options["eval_batch_size"],
            augment_padding=options["augment_padding"],
            pack_size=options["pack_size"] if packs_on(train, device_type) else None,
            speed=options["speed"],
            cpu_kernels=planned_kernels(device_type, task_environment(train, device_type), {})
        )(spec)
    return of


def check_ray_options(specs: Sequence[RunSpec], train: TrainConfig) -> None:
    """Raise ValueError, before any task starts, for a setting that cannot apply where a task
    trains: an architecture without an amount of GPUs, tf32 or bf16 on a task without a GPU,
    a run's precision (fp16-mixed) on a task without a GPU."""
    check_gpus_for(train.ray, [s.arch for s in specs])
    speed = SpeedOptions.from_config(train)
    by_device: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_device.setdefault(task_device_type(train, spec.arch), []).append(spec)
    for device_type, on_it in by_device.items():
        if device_type == "cuda":
            check_precision(on_it, device_type)
            continue
        archs = ", ".join(dict.fromkeys(s.arch for s in on_it))
        try:
            check_speed_options(speed, torch.device(device_type))
            check_precision(on_it, device_type)
        except ValueError as err:
            if train.device == "cpu":
                raise ValueError(f"the Ray tasks train on a CPU (train.device = 'cpu'): {err}"
                                 ) from None
            raise ValueError(f"the Ray tasks of {archs} reserve no GPU (train.ray.num_gpus is 0 "
                             f"for them), so they train on a CPU: {err}; or reserve GPUs for "
                             "them in train.ray.num_gpus") from None


def plan_bundles(specs: Sequence[RunSpec], train: TrainConfig) -> list[Bundle]:
    """The tasks of a launch: each pack a local launch would train (same runs, same order) as
    one task, and the runs that train one at a time in bundles of `train.ray.runs_per_task` of
    one architecture each. With `pack_size: auto` on CUDA a task gets a compatible group (at
    most MAX_AUTO_PACK runs) and sizes its packs to its GPU's free memory, as a local launch
    sizes them to its own."""
    packed, single = [], []
    for spec in specs:
        device_type = task_device_type(train, spec.arch)
        (packed if packs_on(train, device_type) and not trains_alone(spec) else single).append(
            spec)
    planned = []
    for group in compatible_groups(packed):
        size = train.pack_size
        if size == "auto":  # a CPU: 1 (packed.auto_pack_size); CUDA: sized in the task
            size = MAX_AUTO_PACK if task_device_type(train, group[0].arch) == "cuda" else 1
        planned += [Bundle((tuple(pack),)) for pack in split_evenly(group, min(size, len(group)))]
    by_arch: dict[str, list[RunSpec]] = {}
    for spec in single:
        by_arch.setdefault(spec.arch, []).append(spec)
    for runs in by_arch.values():
        planned += [Bundle(tuple((s,) for s in b))
                    for b in bundles(runs, train.ray.runs_per_task)]
    return planned


# --------------------------------------------------------------------------- worker side

_DATA_CACHE: dict[tuple[str, str], DeviceData] = {}  # one entry per worker process


def _device_data(prepared: Prepared, fingerprint: str, device: torch.device) -> DeviceData:
    """The prepared data on `device`, built once per worker process and data fingerprint."""
    key = (fingerprint, str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        # Arrays from the object store are read-only views; torch wants writable memory. An
        # optional array that is absent (None) stays None.
        arrays = {f.name: np.array(value) for f in dataclasses.fields(prepared)
                  if f.name not in ("dataset", "classes")
                  and (value := getattr(prepared, f.name)) is not None}
        _DATA_CACHE[key] = DeviceData.from_prepared(dataclasses.replace(prepared, **arrays),
                                                    device)
    return _DATA_CACHE[key]


def check_task_kernels(train: TrainConfig, device_type: str) -> None:
    """In a task: raise RuntimeError unless this worker runs the CPU kernels that
    `train.cpu_kernels` asks for (its runs would record others, and be retrained forever)."""
    if device_type != "cpu":
        return
    wanted = planned_kernels(device_type, task_environment(train, device_type), {})
    if kernels_of(os.environ) != wanted:
        raise RuntimeError(f"this worker's environment gives the {kernels_of(os.environ)} CPU "
                           f"kernels, but train.cpu_kernels = {train.cpu_kernels!r}: remove the "
                           "pinned variables (lowdim.training.kernels.PINNED_ENVIRONMENT) from "
                           "the nodes' environment, or set train.cpu_kernels: pinned")
    if wanted == "pinned":
        if not this_cpu_can_pin():
            raise RuntimeError("train.cpu_kernels = 'pinned' needs an x86-64 processor with "
                               "AVX2 and FMA, which this node lacks: train on other nodes, or "
                               "set train.cpu_kernels: native")
        check_pinned_here()


def train_bundle(bundle: Bundle, prepared: Prepared, fingerprint: str,
                 train: TrainConfig, versions: dict[str, str]) -> list[Outcome]:
    """Train a bundle's units one after the other in a Ray worker, as a local launch trains
    them; an exception fails only its unit (a pack, or one run)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    check_environment(versions)
    device = resolve_device(train.device)
    expected = task_device_type(train, bundle.arch)
    if device.type != expected:
        raise RuntimeError(f"this task trains on {device.type}, not on the {expected} that "
                           f"train.device = {train.device!r} and {bundle.arch}'s "
                           f"train.ray.num_gpus = {train.ray.gpus(bundle.arch)} promise")
    check_task_kernels(train, device.type)
    data = _device_data(prepared, fingerprint, device)
    options = training_options(train)
    outcomes = []
    # The same float32 mode and thread count as the local backend: the same bytes.
    with float32_mode(device, options["speed"].tf32), torch_threads(task_threads(train), device):
        for unit in bundle.units:
            try:
                results = {r.spec.run_id: r for r in
                           train_in_process(unit, data, progress=False, **options)}
                outcomes += [Outcome(s.run_id, results[s.run_id], None, None, node)
                             for s in unit]
            except Exception as err:  # noqa: BLE001 - fails this unit only; the driver retries
                outcomes += [Outcome(s.run_id, None, traceback.format_exc(), one_line(err), node)
                             for s in unit]
    return outcomes


# --------------------------------------------------------------------------- driver side


def warn_if_unschedulable(ray_cfg: RayConfig, nodes: Sequence[dict[str, Any]],
                          archs: Sequence[str] = ()) -> bool:
    """Log a warning (and return True) when no alive node offers one task's CPUs and GPUs (for
    each of `archs`; none: the single `num_gpus`)."""
    wanted = {arch: ray_cfg.gpus(arch) for arch in archs} if archs else {None: ray_cfg.num_gpus}
    short = False
    for arch, gpus in wanted.items():
        if not node_fits({"CPU": ray_cfg.num_cpus, "GPU": gpus}, nodes):
            short = True
            log.warning("no node of the Ray cluster offers %g CPUs and %g GPUs per task%s: tasks "
                        "wait until such a node joins (lower train.ray.num_cpus / num_gpus?)",
                        ray_cfg.num_cpus, gpus, "" if arch is None else f" for {arch}")
    return short


@dataclass
class _Ledger:
    """The driver's record of a launch: what each returning outcome means for the run store."""

    store: Path
    fingerprint: str
    max_retries: int
    bar: tqdm
    trained: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: Counter = field(default_factory=Counter)

    def record(self, spec: RunSpec, outcome: Outcome) -> bool:
        """Write a trained run, or count a failed attempt (and record a run out of attempts);
        True when the run should be submitted again."""
        if outcome.result is not None:
            write_run(self.store, outcome.result, self.fingerprint)
            log.info("run %s written (trained on node %s)", spec.run_id, outcome.node)
            self.trained.append(spec.run_id)
            if outcome.result.status == "diverged":
                self.diverged.append(spec.run_id)
            self.bar.update(1)
            return False
        self.attempts[spec.run_id] += 1
        attempt, error = self.attempts[spec.run_id], outcome.error[-ERROR_CHARS:]
        if attempt <= self.max_retries:
            log.warning("run %s: attempt %d of %d failed%s: %s; retrying", spec.run_id, attempt,
                        self.max_retries + 1, f" on node {outcome.node}" if outcome.node else "",
                        outcome.summary)
            return True
        log.error("run %s: failed all %d attempts; last error:\n%s", spec.run_id, attempt, error)
        write_failure(self.store, spec, self.fingerprint, error, attempt)
        self.failed[spec.run_id] = outcome.summary
        self.bar.update(1)
        return False


def launch_ray(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path,
               train: TrainConfig, *, progress: bool = True) -> LaunchSummary:
    """Train every pending spec as Ray tasks and write each run as its task returns.

    Raises ValueError before any task starts when a setting cannot apply where a task trains
    (`check_ray_options`), and RuntimeError (after writing every finished run and failure
    record) when more than `train.ray.max_failed_fraction` of `specs` failed every attempt.
    """
    check_ray_options(specs, train)  # before connecting: nothing is submitted
    fingerprint = data_fingerprint(prepared)
    todo = pending(specs, store, fingerprint,
                   ray_settings(train, prepared.train_images.shape[2]))
    todo_ids = {s.run_id for s in todo}
    skipped = [s.run_id for s in specs if s.run_id not in todo_ids]
    with tqdm(total=len(todo), desc="runs", unit="run", disable=not progress) as bar:
        ledger = _Ledger(Path(store), fingerprint, train.ray.max_retries, bar)
        if todo:
            import ray  # only when there is work: a refused or complete launch needs no Ray

            started_here = connect(train.ray.address)
            try:
                warn_if_unschedulable(train.ray, ray.nodes(),
                                      list(dict.fromkeys(s.arch for s in todo)))
                _run_tasks(todo, prepared, train, ledger)
            finally:
                if started_here:
                    ray.shutdown()
    diverged = [i for i in skipped if read_meta(store, i)["status"] == "diverged"]
    summary = LaunchSummary(trained=ledger.trained, skipped=skipped,
                            diverged=ledger.diverged + diverged, failed=ledger.failed)
    check_failures(summary, len(specs), train.ray.max_failed_fraction)
    return summary


def _run_tasks(todo: list[RunSpec], prepared: Prepared, train: TrainConfig,
               ledger: _Ledger) -> None:
    """Submit `todo` as planned bundles, record each outcome as its task returns, resubmit the
    units that failed (a pack again whole: its runs fail together)."""
    import ray

    cfg = train.ray
    task = ray.remote(train_bundle)
    data_ref = ray.put(prepared)  # once, into the object store: no shared filesystem needed
    versions = environment_versions()

    def submit(bundle: Bundle) -> Any:
        environment = task_environment(train, task_device_type(train, bundle.arch))
        runtime = {"runtime_env": {"env_vars": environment}} if environment else {}
        return task.options(max_retries=0, retry_exceptions=False, name="lowdim.train_bundle",
                            **task_resources(cfg, bundle.arch), **runtime).remote(
            bundle, data_ref, ledger.fingerprint, train, versions)

    planned = plan_bundles(todo, train)
    in_flight = {submit(b): b for b in planned}
    log.info("submitted %d runs as %d Ray tasks (%s CPUs each; GPUs each: %s)", len(todo),
             len(in_flight), cfg.num_cpus, cfg.num_gpus)
    while in_flight:
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        bundle = in_flight.pop(ref)
        outcomes = dict(zip([s.run_id for s in bundle.specs], _outcomes(ref, bundle.specs),
                            strict=True))
        retry = []
        for unit in bundle.units:
            again = tuple(s for s in unit if ledger.record(s, outcomes[s.run_id]))
            if again:  # a pack's runs fail together: the same pack again
                retry.append(again)
        in_flight.update({submit(b): b for b in _rebundle(retry, cfg.runs_per_task)})


def _rebundle(units: list[tuple[RunSpec, ...]], runs_per_task: int) -> list[Bundle]:
    """Failed units as bundles again: a pack alone, single runs `runs_per_task` at a time."""
    packs = [Bundle((u,)) for u in units if len(u) > 1]
    singles = [u for u in units if len(u) == 1]
    return packs + [Bundle(tuple(b)) for b in bundles(singles, runs_per_task)]


def _outcomes(ref: Any, specs: list[RunSpec]) -> list[Outcome]:
    """The task's outcomes, or one failed outcome per run when the task itself was lost."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # raised in the task, outside any one run
        cause = err.cause if err.cause is not None else err
        return [Outcome(s.run_id, None, str(err), one_line(cause), None) for s in specs]
    except ray.exceptions.RayError as err:  # a lost worker or node: a system failure
        return [Outcome(s.run_id, None, f"{type(err).__name__}: {err}", one_line(err), None)
                for s in specs]
