"""What a launch has done and what remains, shared by every backend: the data fingerprint that
keys runs to their data, the pending runs (same spec, data and effective settings), the summary
of a launch, failure records."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowdim.data import Prepared
from lowdim.store.atomic import atomic_directory
from lowdim.store.records import RunSpec
from lowdim.store.runs import META, is_complete


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


def pending(specs: Sequence[RunSpec], store: str | Path, fingerprint: str,
            settings: Callable[[RunSpec], dict[str, Any]] | None = None) -> list[RunSpec]:
    """The specs whose run is not yet complete in the store: same spec, same data and, given
    `settings` (a spec's planned settings: lowdim.training.settings), the same settings."""
    return [s for s in specs
            if not is_complete(store, s, fingerprint, None if settings is None else settings(s))]


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
