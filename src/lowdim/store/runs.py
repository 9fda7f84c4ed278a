"""The run store: one directory per run under data/runs/<run_id>/.

Each holds `train.npy` and `test.npy` (probabilities of every checkpoint, float16, T×N×C) and
`meta.json` (the full spec, checkpoint steps and epochs, per-checkpoint loss and error, status,
versions, timing). A run directory appears only complete: it is written under a temporary name
and renamed.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lowdim.store.atomic import atomic_directory
from lowdim.store.records import SPACES, RunSpec

if TYPE_CHECKING:  # the store's readers (analysis, figures) never load torch
    from lowdim.training.run import RunResult

META = "meta.json"
STATUSES = ("ok", "diverged")


def run_meta(result: RunResult, data_fingerprint: str) -> dict[str, Any]:
    """The meta.json content of a finished run."""
    import torch  # already loaded wherever a run was trained

    return {
        "run_id": result.spec.run_id,
        "spec": result.spec.to_dict(),
        "data_fingerprint": data_fingerprint,
        "status": result.status,
        "diverged_at_step": result.diverged_at_step,
        "iters_per_epoch": result.iters_per_epoch,
        "steps": result.steps,
        "epochs": result.epochs,
        "loss": result.loss,
        "error": result.error,
        "seconds": round(result.seconds, 3),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__},
    }


def write_run(store: str | Path, result: RunResult, data_fingerprint: str) -> Path:
    """Write one run atomically: a temporary directory renamed to data/runs/<run_id>/."""
    final = Path(store) / result.spec.run_id
    with atomic_directory(final) as tmp:
        for space in SPACES:
            np.save(tmp / f"{space}.npy", result.stacked(space))
        (tmp / META).write_text(json.dumps(run_meta(result, data_fingerprint), indent=1))
    return final


def read_meta(store: str | Path, run_id: str) -> dict[str, Any] | None:
    """The run's meta.json, or None when the run has not been written."""
    path = Path(store) / run_id / META
    return json.loads(path.read_text()) if path.is_file() else None


def is_complete(store: str | Path, spec: RunSpec, data_fingerprint: str) -> bool:
    """True when the store holds this exact run, trained on this exact data."""
    meta = read_meta(store, spec.run_id)
    return (meta is not None and meta["status"] in STATUSES and meta["spec"] == spec.to_dict()
            and meta["data_fingerprint"] == data_fingerprint)


def load_predictions(store: str | Path, run_id: str, space: str) -> np.ndarray:
    """Probabilities of every checkpoint of one run: (T, N, C) float16, memory-mapped."""
    return np.load(Path(store) / run_id / f"{space}.npy", mmap_mode="r", allow_pickle=False)


def stale_entries(store: str | Path, keep: set[str]) -> list[Path]:
    """Entries of the store that belong to no current run: old grids and interrupted writes."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(p for p in store.iterdir() if p.name not in keep)


def remove_entries(paths: list[Path]) -> None:
    """Delete store entries (directories or files)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
