"""The run store: one directory per run under data/runs/<run_id>/.

Each holds `train.npy` and `test.npy` (probabilities of every checkpoint, float32, T×N×C) and
`meta.json` (the full spec, checkpoint steps and epochs, per-checkpoint loss and error, status,
timing, the effective training settings and the provenance: `lowdim.training.settings`, and
`predictions`: what the arrays hold). A run directory appears only complete: it is written under
a temporary name and renamed.

Stored precision (docs/study.md, "Stored precision"): float32 probabilities. Float16 ones, the
store's format before, round every probability below about 6e-8 to 0, so a confidently wrong
sample's distance saturates at the clamp; benchmarks/storage_precision.py measured errors of up
to 3.4 in distances on the quick profile, and of up to 1.7e-4 with float16 log-probabilities.
A run written in the old format (no `predictions` entry in its meta.json: float16
probabilities) is still read as it is, but it is not complete: the train stage retrains it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lowdim.store.atomic import atomic_directory
from lowdim.store.inputs import read_input
from lowdim.store.records import SPACES, RunSpec

if TYPE_CHECKING:  # the store's readers (analysis, figures) never load torch
    from lowdim.training.run import RunResult

META = "meta.json"
STATUSES = ("ok", "diverged")
# What <space>.npy holds (meta.json "predictions"), and its dtype.
PREDICTIONS = "float32 probabilities"
PREDICTIONS_DTYPE = np.float32
LEGACY_PREDICTIONS = "float16 probabilities"  # runs whose meta.json has no "predictions"


def run_meta(result: RunResult, data_fingerprint: str) -> dict[str, Any]:
    """The meta.json content of a finished run."""
    return {
        "run_id": result.spec.run_id,
        "spec": result.spec.to_dict(),
        "data_fingerprint": data_fingerprint,
        "predictions": PREDICTIONS,
        "status": result.status,
        "diverged_at_step": result.diverged_at_step,
        "iters_per_epoch": result.iters_per_epoch,
        "steps": result.steps,
        "epochs": result.epochs,
        "loss": result.loss,
        "error": result.error,
        "seconds": round(result.seconds, 3),
        "settings": result.settings,
        "provenance": result.provenance,
    }


def write_run(store: str | Path, result: RunResult, data_fingerprint: str) -> Path:
    """Write one run atomically: a temporary directory renamed to data/runs/<run_id>/."""
    arrays = {space: result.stacked(space) for space in SPACES}
    for space, array in arrays.items():
        if array.dtype != PREDICTIONS_DTYPE:
            raise ValueError(f"run {result.spec.run_id} has {array.dtype} {space} predictions: the "
                             f"run store holds {PREDICTIONS}; train it with "
                             "probs_dtype=np.float32 (train_run's default)")
    final = Path(store) / result.spec.run_id
    with atomic_directory(final) as tmp:
        for space, array in arrays.items():
            np.save(tmp / f"{space}.npy", array)
        (tmp / META).write_text(json.dumps(run_meta(result, data_fingerprint), indent=1))
    return final


def read_meta(store: str | Path, run_id: str) -> dict[str, Any] | None:
    """The run's meta.json, or None when the run has not been written."""
    path = Path(store) / run_id / META
    if not path.is_file():
        return None
    return read_input(path, lambda p: json.loads(p.read_text()), "train")


def is_complete(store: str | Path, spec: RunSpec, data_fingerprint: str,
                settings: Mapping[str, Any] | None = None) -> bool:
    """True when the store holds this exact run, trained on this exact data, its predictions in
    the store's format (`PREDICTIONS`; a run of the old float16 format is retrained) and, unless
    `settings` is None, with these effective settings (a run written before runs recorded them
    has none: it is not complete)."""
    meta = read_meta(store, spec.run_id)
    return (meta is not None and meta["status"] in STATUSES and meta["spec"] == spec.to_dict()
            and meta["data_fingerprint"] == data_fingerprint
            and stored_predictions(meta) == PREDICTIONS
            and (settings is None or meta.get("settings") == dict(settings)))


PROVENANCE = {"device type": ("device", "type"), "device": ("device", "name"),
              "torch": ("versions", "torch"), "cuda": ("versions", "cuda")}


def store_provenance(store: str | Path, run_ids: Iterable[str]) -> dict[str, Counter]:
    """How many of the written runs came from each device type, device, torch and CUDA version
    (None: a run written before runs recorded their provenance)."""
    summary = {name: Counter() for name in PROVENANCE}
    for run_id in run_ids:
        meta = read_meta(store, run_id)
        if meta is None or meta["status"] not in STATUSES:
            continue
        for name, (group, key) in PROVENANCE.items():
            summary[name][meta.get("provenance", {}).get(group, {}).get(key)] += 1
    return summary


def mixed_provenance(summary: Mapping[str, Counter]) -> list[str]:
    """A warning for each provenance field on which the runs differ, device type first."""
    return [f"the runs come from more than one {name}: "
            + ", ".join(f"{count} from {'an unrecorded one' if value is None else value}"
                        for value, count in counts.most_common())
            for name, counts in summary.items() if len(counts) > 1]


def stored_predictions(meta: Mapping[str, Any]) -> str:
    """What a run's arrays hold, from its meta.json: `PREDICTIONS`, or `LEGACY_PREDICTIONS` for
    a run written before runs recorded it."""
    kind = meta.get("predictions", LEGACY_PREDICTIONS)
    if kind not in (PREDICTIONS, LEGACY_PREDICTIONS):
        raise ValueError(f"run {meta.get('run_id')} holds {kind!r} predictions, which this version "
                         f"cannot read (it reads {PREDICTIONS} and {LEGACY_PREDICTIONS}): retrain "
                         "it (delete its directory under data/runs) or use the version that "
                         "wrote it")
    return kind


def load_predictions(store: str | Path, run_id: str, space: str) -> np.ndarray:
    """Probabilities of every checkpoint of one run: (T, N, C), memory-mapped; float32, or
    float16 for a run of the old format (`stored_predictions`). Renormalize before use."""
    return read_input(Path(store) / run_id / f"{space}.npy",
                      lambda p: np.load(p, mmap_mode="r", allow_pickle=False), "train")


def remove_entries(paths: list[Path]) -> None:
    """Delete store entries (directories or files)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def park_entries(store: str | Path, specs: list[RunSpec], data_fingerprint: str,
                 archive: str | Path) -> list[str]:
    """Make the store hold only runs of `specs`, deleting no finished run: every other finished
    run (another grid's, or one of these ids trained on another spec or data) moves to
    `<archive>/<hash of its meta.json>/<run_id>`, so runs of two grids that share an id never
    replace each other. Interrupted writes (`.<id>.tmp-*`, `.<id>.old-*`), stray files and failed
    runs of other grids are deleted. Returns the ids moved."""
    store, archive = Path(store), Path(archive)
    current = {spec.run_id: spec for spec in specs}
    parked = []
    for path in sorted(store.iterdir()) if store.is_dir() else []:
        meta = read_meta(store, path.name) if not path.name.startswith(".") else None
        spec = current.get(path.name)
        if spec is not None and (meta is None or meta["status"] not in STATUSES
                                 or is_complete(store, spec, data_fingerprint)):
            continue  # this grid's: complete, failed (retried) or unwritten
        if meta is None or meta["status"] not in STATUSES:
            remove_entries([path])
            continue
        target = archive / hashlib.sha256((path / META).read_bytes()).hexdigest()[:16] / path.name
        if target.exists():  # the same run, parked before
            remove_entries([path])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)  # data/runs and its archive share a filesystem
        parked.append(path.name)
    return parked


def unpark_entries(store: str | Path, specs: list[RunSpec], data_fingerprint: str,
                   archive: str | Path) -> list[str]:
    """Runs of `specs` that the store lacks, moved back from `archive` when a parked copy has the
    same spec and data (the launcher then checks its settings, as for any run in the store).
    Returns the ids moved back."""
    store, archive = Path(store), Path(archive)
    restored = []
    for spec in specs:
        if (store / spec.run_id).exists():
            continue
        for candidate in sorted(archive.glob(f"*/{spec.run_id}")):
            if is_complete(candidate.parent, spec, data_fingerprint):
                store.mkdir(parents=True, exist_ok=True)
                os.replace(candidate, store / spec.run_id)
                candidate.parent.rmdir()
                restored.append(spec.run_id)
                break
    return restored
