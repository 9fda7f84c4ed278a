"""The Ray backend of the launcher: each bundle of runs is a Ray task on some node of a cluster.

The driver (the train stage) puts the prepared data into Ray's object store once, submits one
task per bundle of `train.ray.runs_per_task` pending runs, and writes every run to the store as
soon as its task returns, so workers need no shared filesystem and an interrupted stage resumes.
A failed attempt (an exception in a run, or a lost worker or node) is logged and the run is
resubmitted, at most `train.ray.max_retries` times; a run that still fails gets a `failed`
record in the store (never complete, so the next launch retries it) and counts against
`train.ray.max_failed_fraction`.

Retries are the driver's own (Ray's `max_retries` is 0): one bound for every kind of failure,
and every retry is visible in the stage's log.

A task trains one run at a time with `train_run` (no packing: `TrainConfig.check` refuses the
packed path's options on Ray), in strict fp32 on CUDA as the local backend does, with
`train.threads` torch threads (null: one per CPU the task reserves, Ray's own rule).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import platform
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import lowdim
from lowdim.config.train import RayConfig, TrainConfig
from lowdim.data import Prepared
from lowdim.device import resolve_device
from lowdim.store.records import RunSpec
from lowdim.store.runs import read_meta, write_run
from lowdim.training.ledger import (
    LaunchSummary,
    check_failures,
    data_fingerprint,
    pending,
    write_failure,
)
from lowdim.training.packed import float32_mode
from lowdim.training.precision import check_precision
from lowdim.training.run import DeviceData, RunResult, train_run
from lowdim.training.settings import Settings, crop_padding, planned_settings

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


def bundles(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """Consecutive groups of `size` specs (the last may be shorter), in grid order."""
    if size < 1:
        raise ValueError(f"bundle size {size} must be positive: set train.ray.runs_per_task >= 1")
    return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


def environment_versions() -> dict[str, str]:
    """What a worker must share with the driver: the versions of Python, torch and NumPy, and
    a digest of the lowdim source that trains the runs."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "lowdim": _source_digest()}


@functools.cache
def _source_digest() -> str:
    package = Path(lowdim.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def task_threads(train: TrainConfig) -> int:
    """torch threads of a task: `train.threads`, or one per CPU it reserves (at least 1)."""
    return train.threads or max(1, int(train.ray.num_cpus))


def task_device_type(train: TrainConfig) -> str:
    """Where a task trains: CUDA when asked, or with `auto` when the task reserves a GPU (Ray
    hides GPUs from tasks that reserve none)."""
    wants_gpu = train.device == "cuda" or (train.device == "auto" and train.ray.num_gpus > 0)
    return "cuda" if wants_gpu else "cpu"


def ray_settings(train: TrainConfig, height: int) -> Callable[[RunSpec], Settings]:
    """The settings each run of a Ray launch will record, for images of this height."""
    return planned_settings(task_device_type(train), threads=task_threads(train),
                            eval_batch_size=train.eval_batch_size,
                            padding=crop_padding(train.augment_padding, height))


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


def train_bundle(specs: list[RunSpec], prepared: Prepared, fingerprint: str,
                 train: TrainConfig, versions: dict[str, str]) -> list[Outcome]:
    """Train `specs` one after the other in a Ray worker; an exception fails only its run."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if environment_versions() != versions:
        raise RuntimeError(f"this worker runs {environment_versions()} but the driver runs "
                           f"{versions}: install the same environment and the same lowdim "
                           "commit on every node")
    device = resolve_device(train.device)
    if device.type != task_device_type(train):
        raise RuntimeError(f"this task trains on {device.type}, not on the "
                           f"{task_device_type(train)} that train.device = {train.device!r} and "
                           f"train.ray.num_gpus = {train.ray.num_gpus} promise")
    torch.set_num_threads(task_threads(train))  # the same count as the local backend: same bytes
    data = _device_data(prepared, fingerprint, device)
    outcomes = []
    with float32_mode(device, tf32=False):
        for spec in specs:
            try:
                result = train_run(spec, data, eval_batch_size=train.eval_batch_size,
                                   augment_padding=train.augment_padding)
                outcomes.append(Outcome(spec.run_id, result, None, None, node))
            except Exception as err:  # noqa: BLE001 - fails this run only; the driver retries
                outcomes.append(Outcome(spec.run_id, None, traceback.format_exc(),
                                        _one_line(err), node))
    return outcomes


# --------------------------------------------------------------------------- driver side


def connect(address: str | None) -> bool:
    """Connect to the cluster at `address` ("auto" or host:port), or start a local Ray instance
    when it is None; True when this call did either (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as err:
        raise ConnectionError(
            f"no Ray cluster at train.ray.address = {address!r} ({err}). Start one "
            "(ray start --head), set RAY_ADDRESS, or set train.ray.address: null to start a "
            "local Ray instance for this stage"
        ) from None
    return True


def warn_if_unschedulable(ray_cfg: RayConfig, nodes: Sequence[dict[str, Any]]) -> bool:
    """Log a warning (and return True) when no alive node offers one task's CPUs and GPUs."""
    need = {"CPU": ray_cfg.num_cpus, "GPU": ray_cfg.num_gpus}
    fits = any(n.get("Alive") and all(n["Resources"].get(k, 0.0) >= v for k, v in need.items()
                                      if v > 0) for n in nodes)
    if not fits:
        log.warning("no node of the Ray cluster offers %s CPUs and %s GPUs per task: tasks wait "
                    "until such a node joins (lower train.ray.num_cpus / num_gpus?)",
                    ray_cfg.num_cpus, ray_cfg.num_gpus)
    return not fits


def _one_line(err: BaseException) -> str:
    """The exception's type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


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

    Raises RuntimeError (after writing every finished run and failure record) when more than
    `train.ray.max_failed_fraction` of `specs` failed every attempt.
    """
    import ray

    check_precision(specs, task_device_type(train))  # before any task starts
    fingerprint = data_fingerprint(prepared)
    todo = pending(specs, store, fingerprint,
                   ray_settings(train, prepared.train_images.shape[2]))
    todo_ids = {s.run_id for s in todo}
    skipped = [s.run_id for s in specs if s.run_id not in todo_ids]
    with tqdm(total=len(todo), desc="runs", unit="run", disable=not progress) as bar:
        ledger = _Ledger(Path(store), fingerprint, train.ray.max_retries, bar)
        if todo:
            started_here = connect(train.ray.address)
            try:
                warn_if_unschedulable(train.ray, ray.nodes())
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
    """Submit `todo` in bundles, record each outcome as its task returns, resubmit retries."""
    import ray

    cfg = train.ray
    task = ray.remote(train_bundle).options(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                                            max_retries=0, retry_exceptions=False,
                                            name="lowdim.train_bundle")
    data_ref = ray.put(prepared)  # once, into the object store: no shared filesystem needed
    versions = environment_versions()

    def submit(bundle: list[RunSpec]) -> Any:
        return task.remote(bundle, data_ref, ledger.fingerprint, train, versions)

    in_flight = {submit(b): b for b in bundles(todo, cfg.runs_per_task)}
    log.info("submitted %d runs as %d Ray tasks (%s CPUs, %s GPUs each)", len(todo),
             len(in_flight), cfg.num_cpus, cfg.num_gpus)
    while in_flight:
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        bundle = in_flight.pop(ref)
        retry = [spec for spec, outcome in zip(bundle, _outcomes(ref, bundle), strict=True)
                 if ledger.record(spec, outcome)]
        in_flight.update({submit(b): b for b in bundles(retry, cfg.runs_per_task)})


def _outcomes(ref: Any, bundle: list[RunSpec]) -> list[Outcome]:
    """The task's outcomes, or one failed outcome per run when the task itself was lost."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # raised in the task, outside any one run
        cause = err.cause if err.cause is not None else err
        return [Outcome(s.run_id, None, str(err), _one_line(cause), None) for s in bundle]
    except ray.exceptions.RayError as err:  # a lost worker or node: a system failure
        return [Outcome(s.run_id, None, f"{type(err).__name__}: {err}", _one_line(err), None)
                for s in bundle]
