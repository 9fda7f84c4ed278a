"""The local backend: one run at a time in this process, several at once on a CPU in worker
processes (`train.workers`), or compatible runs in packs (lowdim.training.packed). Resumable:
complete runs, trained with the settings this launch would use, are never redone
(`lowdim.training.ledger.pending`).

`training_options` reads every key of the `train` section that changes how a run trains, and
`train_in_process` trains runs with them: the one training path of both backends (the local
backend in its own process, each task of the Ray backend, lowdim.training.ray_backend).

`train.cpu_kernels` (lowdim.training.kernels) is honoured where processes start: pinned CPU runs
train in worker processes that set the pinned variables before torch runs anything, unless this
process already started with them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lowdim.config.train import TrainConfig
from lowdim.data import Prepared
from lowdim.store.records import RunSpec
from lowdim.store.runs import read_meta, write_run
from lowdim.training.kernels import (
    PINNED_ATEN_CAPABILITY,
    kernels_of,
    planned_kernels,
    this_cpu_can_pin,
    worker_environment,
)
from lowdim.training.ledger import LaunchSummary, data_fingerprint, pending
from lowdim.training.packed import (
    SpeedOptions,
    check_speed_options,
    float32_mode,
    train_packs,
    uses_packing,
)
from lowdim.training.precision import check_precision, trains_alone
from lowdim.training.run import DeviceData, RunResult, step_progress, train_run
from lowdim.training.settings import Settings, crop_padding, planned_settings

log = logging.getLogger(__name__)

# The keys of the `train` section, by what reads them. TRAINING: how a run trains, read by
# `training_options` for both backends. PLACEMENT: where and how many at once (the launch reads
# them; each backend has its own, docs/cluster.md; cpu_kernels is the environment the training
# processes start with, which each backend gives its own way). GRID: read when the grid is
# expanded.
TRAINING_KEYS = ("eval_batch_size", "augment_padding", "pack_size", "channels_last", "compile",
                 "tf32", "bf16")
PLACEMENT_KEYS = ("device", "threads", "workers", "backend", "ray", "cpu_kernels")
GRID_KEYS = ("lr_reference_batch_size",)


def training_options(train: TrainConfig) -> dict[str, Any]:
    """The `train` keys that change how a run trains (TRAINING_KEYS), as the keyword arguments of
    `launch_local` and `train_in_process`."""
    return {"eval_batch_size": train.eval_batch_size, "augment_padding": train.augment_padding,
            "pack_size": train.pack_size, "speed": SpeedOptions.from_config(train)}


def train_in_process(specs: Sequence[RunSpec], data: DeviceData, *, pack_size: int | str = 1,
                     speed: SpeedOptions | None = None, eval_batch_size: int = 1000,
                     augment_padding: int | None = None,
                     progress: bool = True) -> Iterator[RunResult]:
    """Train `specs` in this process on the device of `data`, yielding each result as it ends:
    compatible runs in packs when the launch packs (`uses_packing`; a run that `trains_alone`
    still trains alone), else one `train_run` at a time. The caller sets the float32 mode and
    the torch threads (`float32_mode`, `torch_threads`)."""
    speed = speed or SpeedOptions()
    if not uses_packing(pack_size, speed, data.train_images.device):
        yield from one_at_a_time(specs, data, eval_batch_size=eval_batch_size,
                                 augment_padding=augment_padding, progress=progress)
        return
    yield from train_packs([s for s in specs if not trains_alone(s)], data, pack_size=pack_size,
                           options=speed, eval_batch_size=eval_batch_size,
                           augment_padding=augment_padding, progress=progress)
    yield from one_at_a_time([s for s in specs if trains_alone(s)], data,
                             eval_batch_size=eval_batch_size, augment_padding=augment_padding,
                             progress=progress)


def launch_local(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path,
                 device: torch.device, *, eval_batch_size: int = 1000,
                 augment_padding: int | None = None, progress: bool = True,
                 pack_size: int | str = 1, speed: SpeedOptions | None = None,
                 workers: int | str = 1, threads: int | None = None,
                 cpu_kernels: str = "native") -> LaunchSummary:
    """Train every pending spec on `device`, writing each run as it ends.

    Compatible runs train together in packs of up to `pack_size` ('auto': 1 on a CPU, sized to
    free memory on CUDA; see lowdim.training.packed). Otherwise runs train one `train_run` at a
    time: on a CPU in up to `workers` processes at once ('auto': one per available core) with
    `threads` torch threads each (None: an equal share of this process's threads among the
    `workers` asked for), the same bytes as one at a time in this process with that many threads
    (which it then uses); with 1, in this process. A run of another precision than fp32 trains
    alone even when the launch packs (lowdim.training.precision). A run counts as complete only
    when its recorded settings are those this launch would use (`local_settings`).

    `cpu_kernels` (lowdim.training.kernels): 'native', the kernels this process's environment
    gives; 'pinned', the AVX2 kernels of ATen, MKL and oneDNN for every CPU run, which then
    trains in a worker process that sets them before torch runs (also with `workers` 1) unless
    this process started with them. A processor that cannot take the pin trains native, with a
    warning, and its runs record it.
    """
    speed = speed or SpeedOptions()
    check_speed_options(speed, device)
    check_precision(specs, device.type)
    fingerprint = data_fingerprint(prepared)
    packing = uses_packing(pack_size, speed, device)
    cpu_workers = device.type == "cpu" and not packing
    run_threads = worker_threads(threads, worker_count(workers, RUNS_UNCAPPED) if cpu_workers
                                 else 1)
    environment = kernel_environment(cpu_kernels, device)
    needs_workers = pins_in_workers(environment, os.environ)
    if needs_workers and packing:
        raise ValueError("train.cpu_kernels = 'pinned' trains CPU runs in worker processes that "
                         "pin the kernels, but this launch packs runs (train.pack_size > 1, "
                         "channels_last or compile), which train in this process: set "
                         "train.cpu_kernels: native, or train.pack_size: 1 without the packed "
                         "options, or start this process with the pinned variables set "
                         "(lowdim.training.kernels.PINNED_ENVIRONMENT)")
    todo = pending(specs, store, fingerprint, local_settings(
        device, prepared.train_images.shape[2], threads=run_threads,
        eval_batch_size=eval_batch_size, augment_padding=augment_padding,
        pack_size=pack_size if packing else None, speed=speed,
        cpu_kernels=planned_kernels(device.type, environment, os.environ)))
    todo_ids = {s.run_id for s in todo}
    skipped = [s.run_id for s in specs if s.run_id not in todo_ids]
    processes = worker_count(workers, len(todo)) if cpu_workers else 1
    in_process = processes == 1 and not needs_workers
    data = DeviceData.from_prepared(prepared, device) if in_process else None
    trained, diverged = [], []
    with float32_mode(device, speed.tf32), torch_threads(run_threads, device):
        if not in_process:
            results = in_workers(todo, prepared, workers=processes, threads=run_threads,
                                 eval_batch_size=eval_batch_size,
                                 augment_padding=augment_padding, progress=progress,
                                 environment=environment)
        else:
            results = train_in_process(todo, data, pack_size=pack_size, speed=speed,
                                       eval_batch_size=eval_batch_size,
                                       augment_padding=augment_padding, progress=progress)
        for result in results:
            write_run(store, result, fingerprint)
            trained.append(result.spec.run_id)
            if result.status == "diverged":
                diverged.append(result.spec.run_id)
    grid_order = {s.run_id: i for i, s in enumerate(todo)}  # worker processes end in any order
    trained.sort(key=grid_order.__getitem__)
    diverged.sort(key=grid_order.__getitem__)
    diverged += [i for i in skipped if read_meta(store, i)["status"] == "diverged"]
    return LaunchSummary(trained=trained, skipped=skipped, diverged=diverged)


def local_settings(device: torch.device, height: int, *, threads: int, eval_batch_size: int,
                   augment_padding: int | None, pack_size: int | str | None,
                   speed: SpeedOptions,
                   cpu_kernels: str | None = "native") -> Callable[[RunSpec], Settings]:
    """The settings each run of a local launch will record (pack_size None: one run at a time),
    for images of this height; a run that trains alone (`trains_alone`) records no pack and
    none of the packed path's options. `cpu_kernels`: those its process will run
    (lowdim.training.kernels.planned_kernels)."""
    def settings(pack: int | str | None, options: SpeedOptions) -> Callable[[RunSpec], Settings]:
        return planned_settings(device.type, threads=threads, eval_batch_size=eval_batch_size,
                                padding=crop_padding(augment_padding, height), pack_size=pack,
                                channels_last=options.channels_last, compile=options.compile,
                                tf32=options.tf32, bf16=options.bf16, cpu_kernels=cpu_kernels)

    in_packs, alone = settings(pack_size, speed), settings(None, SpeedOptions(tf32=speed.tf32))
    return lambda spec: alone(spec) if trains_alone(spec) else in_packs(spec)


def kernel_environment(cpu_kernels: str, device: torch.device) -> dict[str, str]:
    """The variables each CPU training process of a launch sets for `cpu_kernels`
    (lowdim.training.kernels.worker_environment); none on CUDA. 'pinned' on a processor that
    cannot take the pin logs a warning and sets none."""
    if device.type != "cpu":
        return worker_environment(cpu_kernels, pinnable=False)
    pinnable = this_cpu_can_pin()
    if cpu_kernels == "pinned" and not pinnable:
        log.warning("train.cpu_kernels = 'pinned' needs an x86-64 processor with AVX2 and FMA; "
                    "this one has none, so its runs train with the native kernels and record "
                    "cpu_kernels: native")
    return worker_environment(cpu_kernels, pinnable)


def pins_in_workers(environment: Mapping[str, str], environ: Mapping[str, str]) -> bool:
    """Whether runs that need `environment` must train in worker processes: a process whose
    environment (`environ`) lacks those values cannot take them any more, since its libraries
    may already have read theirs."""
    return any(environ.get(name) != value for name, value in environment.items())


def check_pinned_here() -> None:
    """Raise RuntimeError unless ATen runs the pinned kernels in this process (called once the
    pinned variables are set): a worker forked from a process that had already run ATen
    kernels keeps that process's choice."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != PINNED_ATEN_CAPABILITY:
        raise RuntimeError(f"this worker process runs ATen's {capability} kernels, not the "
                           f"pinned {PINNED_ATEN_CAPABILITY}: torch ran an operation before the "
                           "pinned variables were set (in the process it was forked from?); "
                           "set train.cpu_kernels: native, or report this as a bug")


@contextmanager
def torch_threads(threads: int, device: torch.device) -> Iterator[None]:
    """On a CPU, this process trains with `threads` torch threads; restored after."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_at_a_time(specs: Sequence[RunSpec], data: DeviceData, *, eval_batch_size: int = 1000,
                  augment_padding: int | None = None,
                  progress: bool = True) -> Iterator[RunResult]:
    """Train `specs` one after the other with `train_run`, yielding each result as it ends."""
    runs_bar = tqdm(specs, desc="runs", unit="run", disable=not progress)
    for spec in runs_bar:
        runs_bar.set_postfix_str(spec.run_id)
        steps_bar, on_step = step_progress(progress)
        result = train_run(spec, data, eval_batch_size=eval_batch_size,
                           augment_padding=augment_padding, on_step=on_step)
        steps_bar.close()
        yield result


# --------------------------------------------------------------------------- worker processes


def available_cores() -> int:
    """CPU cores this process may run on: its affinity where the OS reports one."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


RUNS_UNCAPPED = 2**31  # worker_count's run count for the processes asked for, whatever the runs


def worker_count(workers: int | str, runs: int) -> int:
    """Processes that train `runs` runs: `workers` ('auto': one per available core), at most
    one per run and at least 1."""
    wanted = available_cores() if workers == "auto" else int(workers)
    return max(1, min(wanted, runs))


def worker_threads(threads: int | None, workers: int) -> int:
    """torch threads of each of `workers` processes: `threads`, or with None an equal share of
    this process's torch threads (torch's default unless set)."""
    return threads if threads else max(1, torch.get_num_threads() // workers)


_WORKER_DATA: DeviceData | None = None  # the prepared data, set once in each worker process


def worker_context() -> multiprocessing.context.BaseContext:
    """How worker processes start, never forked from a process that has trained (torch's
    threads would be broken): forked from a server that imported torch and lowdim once (about
    0.1 s a process after the first, against seconds for a spawned one), or spawned where the
    platform has no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # only before the server starts; then ignored
    return context


def _start_worker(prepared: Prepared, threads: int, environment: Mapping[str, str]) -> None:
    """In a fresh worker process: set the kernels' variables (`environment`) before torch runs
    anything and check that ATen took them, set its torch threads, and make the data tensors
    once."""
    global _WORKER_DATA
    os.environ.update(environment)
    if kernels_of(environment) == "pinned":
        check_pinned_here()
    torch.set_num_threads(threads)
    _WORKER_DATA = DeviceData.from_prepared(prepared, torch.device("cpu"))


def _train_in_worker(spec: RunSpec, eval_batch_size: int,
                     augment_padding: int | None) -> RunResult:
    """One `train_run` on the worker's data; its result returns to the launching process."""
    return train_run(spec, _WORKER_DATA, eval_batch_size=eval_batch_size,
                     augment_padding=augment_padding)


def in_workers(specs: Sequence[RunSpec], prepared: Prepared, *, workers: int, threads: int,
               eval_batch_size: int = 1000, augment_padding: int | None = None,
               progress: bool = True,
               environment: Mapping[str, str] | None = None) -> Iterator[RunResult]:
    """Train `specs` on a CPU in `workers` processes with `threads` torch threads each, at most
    one run per process at a time, yielding each result as it ends (in the order they end).

    Processes start clean (`worker_context`): each sets `environment` (the kernels' variables,
    `kernel_environment`) before torch runs anything, then its torch threads. When a run
    raises, no further run starts: the runs already running finish and are yielded, then the
    first error is raised, as the in-process path raises it. A process that dies (killed, out
    of memory) ends every run in flight with BrokenProcessPool.
    """
    queue = iter(specs)
    running: dict[Future, RunSpec] = {}
    error: BaseException | None = None
    pool = ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_start_worker,
                               initargs=(prepared, threads, dict(environment or {})))

    def start_next() -> None:
        spec = next(queue, None)
        if spec is not None:
            running[pool.submit(_train_in_worker, spec, eval_batch_size, augment_padding)] = spec

    try:
        with tqdm(total=len(specs), desc="runs", unit="run", disable=not progress) as bar:
            for _ in range(workers):
                start_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: f.exception() is None):  # errors first
                    spec = running.pop(future)
                    if future.exception() is not None:
                        _log_worker_failure(spec, future.exception())
                        error = future.exception() if error is None else error
                        continue
                    if error is None:
                        start_next()
                    bar.set_postfix_str(spec.run_id)
                    bar.update(1)
                    yield future.result()
    except BaseException:  # an interrupt, or the caller stopped: start nothing, wait for nothing
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if error is not None:
        raise error


def _log_worker_failure(spec: RunSpec, error: BaseException) -> None:
    """Name the run whose training failed in a worker (a lost process: say what may cause it)."""
    if isinstance(error, BrokenProcessPool):
        log.error("run %s: a worker process died (out of memory? lower train.workers); the "
                  "runs written so far are kept", spec.run_id)
    else:
        log.error("run %s failed in a worker process (%s: %s); the runs already running "
                  "finish, no other starts", spec.run_id, type(error).__name__, error)
