"""Run many specs with a backend (local, or Ray in `launch_ray`), resumably: complete runs are
never redone.

The local backend trains one run at a time, or compatible runs in packs (lowdim.packed)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lowdim.atomic import atomic_directory
from lowdim.config import TrainConfig
from lowdim.data import Prepared
from lowdim.grid import RunSpec
from lowdim.packed import (
    SpeedOptions,
    check_speed_options,
    float32_mode,
    train_packs,
    uses_packing,
)
from lowdim.runs import META, is_complete, read_meta, write_run
from lowdim.train import DeviceData, RunResult, resolve_device, train_run


def data_fingerprint(prepared: Prepared) -> str:
    """A short hash of the prepared arrays, so runs trained on other data count as missing."""
    digest = hashlib.sha256(prepared.dataset.encode())
    for array in (prepared.train_images, prepared.train_labels, prepared.eval_train_index,
                  prepared.test_images, prepared.test_labels, prepared.eval_test_index):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LaunchSummary:
    """What a launch did: runs trained now, runs found complete, runs that diverged, and runs
    that failed every attempt (run id to its last error; the Ray backend only)."""

    trained: list[str]
    skipped: list[str]
    diverged: list[str]
    failed: dict[str, str] = field(default_factory=dict)


def pending(specs: Sequence[RunSpec], store: str | Path, fingerprint: str) -> list[RunSpec]:
    """The specs whose run is not yet complete in the store (same spec, same data)."""
    return [s for s in specs if not is_complete(store, s, fingerprint)]


def launch_local(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path,
                 device: torch.device, *, eval_batch_size: int = 1000,
                 augment_padding: int | None = None, progress: bool = True,
                 pack_size: int | str = 1,
                 speed: SpeedOptions | None = None) -> LaunchSummary:
    """Train every pending spec on `device`, writing each run as it ends.

    Compatible runs train together in packs of up to `pack_size` ('auto': 1 on a CPU, sized to
    free memory on CUDA; see lowdim.packed); with 1 and no `speed` option, one `train_run` at a
    time, as before packing existed.
    """
    speed = speed or SpeedOptions()
    check_speed_options(speed, device)
    fingerprint = data_fingerprint(prepared)
    todo = pending(specs, store, fingerprint)
    todo_ids = {s.run_id for s in todo}
    skipped = [s.run_id for s in specs if s.run_id not in todo_ids]
    data = DeviceData.from_prepared(prepared, device)
    trained, diverged = [], []
    with float32_mode(device, speed.tf32):
        if uses_packing(pack_size, speed, device):
            results = train_packs(todo, data, pack_size=pack_size, options=speed,
                                  eval_batch_size=eval_batch_size,
                                  augment_padding=augment_padding, progress=progress)
        else:
            results = one_at_a_time(todo, data, eval_batch_size=eval_batch_size,
                                    augment_padding=augment_padding, progress=progress)
        for result in results:
            write_run(store, result, fingerprint)
            trained.append(result.spec.run_id)
            if result.status == "diverged":
                diverged.append(result.spec.run_id)
    diverged += [i for i in skipped if read_meta(store, i)["status"] == "diverged"]
    return LaunchSummary(trained=trained, skipped=skipped, diverged=diverged)


def one_at_a_time(specs: Sequence[RunSpec], data: DeviceData, *, eval_batch_size: int = 1000,
                  augment_padding: int | None = None,
                  progress: bool = True) -> Iterator[RunResult]:
    """Train `specs` one after the other with `train_run`, yielding each result as it ends."""
    runs_bar = tqdm(specs, desc="runs", unit="run", disable=not progress)
    for spec in runs_bar:
        runs_bar.set_postfix_str(spec.run_id)
        steps_bar = tqdm(desc="steps", unit="step", leave=False, mininterval=2.0,
                         disable=not progress)

        def on_step(step: int, total: int, bar=steps_bar) -> None:
            bar.total = total
            bar.update(1)

        result = train_run(spec, data, eval_batch_size=eval_batch_size,
                           augment_padding=augment_padding, on_step=on_step)
        steps_bar.close()
        yield result


def launch(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path, train: TrainConfig,
           *, progress: bool = True) -> LaunchSummary:
    """Train every pending spec with the backend named by `train.backend` (local or ray)."""
    if train.backend == "ray":
        from lowdim.launch_ray import launch_ray  # Ray is imported only when it is used

        return launch_ray(specs, prepared, store, train, progress=progress)
    if train.threads:
        torch.set_num_threads(train.threads)
    return launch_local(specs, prepared, store, resolve_device(train.device),
                        eval_batch_size=train.eval_batch_size,
                        augment_padding=train.augment_padding, progress=progress,
                        pack_size=train.pack_size, speed=SpeedOptions.from_config(train))


def write_failure(store: str | Path, spec: RunSpec, fingerprint: str, error: str,
                  attempts: int) -> Path:
    """Record a run that failed every attempt: meta.json with status "failed" and the error,
    and no predictions, so it never counts as complete and the next launch retries it."""
    final = Path(store) / spec.run_id
    meta = {"run_id": spec.run_id, "spec": spec.to_dict(), "data_fingerprint": fingerprint,
            "status": "failed", "attempts": attempts, "failure": error}
    with atomic_directory(final) as tmp:
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return final


def check_failures(summary: LaunchSummary, total: int, max_failed_fraction: float) -> None:
    """Raise RuntimeError with a summary when more than `max_failed_fraction` of `total` runs
    failed; otherwise return (logging nothing: the launcher already logged each failure)."""
    if not summary.failed or len(summary.failed) <= max_failed_fraction * total:
        return
    allowed = math.floor(max_failed_fraction * total)
    listed = "\n".join(f"  {run_id}: {error}" for run_id, error in summary.failed.items())
    raise RuntimeError(
        f"{len(summary.failed)} of {total} runs failed every attempt, more than the {allowed} "
        f"that train.ray.max_failed_fraction = {max_failed_fraction:g} allows; "
        f"{len(summary.trained)} trained now, {len(summary.skipped)} were already complete. "
        f"Failed runs (status 'failed' in the run store; the next launch retries them):\n{listed}"
    )
