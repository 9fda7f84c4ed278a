"""Run many specs with a backend (local for now), resumably: complete runs are never redone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lowdim.data import Prepared
from lowdim.grid import RunSpec
from lowdim.runs import is_complete, read_meta, write_run
from lowdim.train import DeviceData, train_run


def data_fingerprint(prepared: Prepared) -> str:
    """A short hash of the prepared arrays, so runs trained on other data count as missing."""
    digest = hashlib.sha256(prepared.dataset.encode())
    for array in (prepared.train_images, prepared.train_labels, prepared.eval_train_index,
                  prepared.test_images, prepared.test_labels, prepared.eval_test_index):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LaunchSummary:
    """What a launch did: runs trained now, runs found complete, runs that diverged."""

    trained: list[str]
    skipped: list[str]
    diverged: list[str]


def pending(specs: Sequence[RunSpec], store: str | Path, fingerprint: str) -> list[RunSpec]:
    """The specs whose run is not yet complete in the store (same spec, same data)."""
    return [s for s in specs if not is_complete(store, s, fingerprint)]


def launch_local(specs: Sequence[RunSpec], prepared: Prepared, store: str | Path,
                 device: torch.device, *, eval_batch_size: int = 1000,
                 augment_padding: int | None = None, progress: bool = True) -> LaunchSummary:
    """Train every pending spec one after the other on `device`, writing each run as it ends."""
    fingerprint = data_fingerprint(prepared)
    todo = pending(specs, store, fingerprint)
    todo_ids = {s.run_id for s in todo}
    skipped = [s.run_id for s in specs if s.run_id not in todo_ids]
    data = DeviceData.from_prepared(prepared, device)
    trained, diverged = [], []
    runs_bar = tqdm(todo, desc="runs", unit="run", disable=not progress)
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
        write_run(store, result, fingerprint)
        trained.append(spec.run_id)
        if result.status == "diverged":
            diverged.append(spec.run_id)
    diverged += [i for i in skipped if read_meta(store, i)["status"] == "diverged"]
    return LaunchSummary(trained=trained, skipped=skipped, diverged=diverged)
