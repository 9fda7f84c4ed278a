"""The analysis set on disk: the index table (one row per run checkpoint or reference point)
and the stacked probabilities of each prediction space, `<space>.npy` beside `index.parquet`.

Built and written by the predictions stage (`lowdim.analysis.analysis_set`); read by every stage
after it. No maths here, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.store.arrays import NpyFile
from lowdim.store.atomic import atomic_directory
from lowdim.store.inputs import read_input

INDEX = "index.parquet"
MAKER = "predictions"  # the stage that writes the analysis set


SPEC_COLUMNS = ("run_id", "arch", "optimizer", "batch_size", "base_lr", "lr", "weight_decay",
                "augment", "init", "epochs", "seed")


INT_COLUMNS = ("batch_size", "epochs", "seed", "checkpoint", "step")


@dataclass(frozen=True)
class AnalysisSet:
    """One row per run checkpoint or reference point, and the probabilities of each row."""

    index: pd.DataFrame               # columns: row, kind, SPEC_COLUMNS, checkpoint, step, ...
    probs: Mapping[str, np.ndarray]   # space -> (M, N, C) float32, rows in index order
    excluded: tuple[str, ...] = ()    # diverged runs left out


def save_analysis_set(analysis: AnalysisSet, directory: str | Path) -> None:
    """Write index.parquet and <space>.npy atomically (temporary directory, then rename)."""
    with atomic_directory(directory) as tmp:
        analysis.index.to_parquet(tmp / INDEX, index=False)
        for space, probs in analysis.probs.items():
            np.save(tmp / f"{space}.npy", probs)


def load_index(directory: str | Path) -> pd.DataFrame:
    """The index table of an analysis set."""
    return read_input(Path(directory) / INDEX, pd.read_parquet, MAKER)


def load_probs(directory: str | Path, space: str) -> np.ndarray:
    """Stacked probabilities of one space, memory-mapped: (M, N, C) float32."""
    return read_input(Path(directory) / f"{space}.npy",
                      lambda p: np.load(p, mmap_mode="r", allow_pickle=False), MAKER)


def open_probs(directory: str | Path, space: str) -> NpyFile:
    """Stacked probabilities of one space as an NpyFile: (M, N, C) float32 rows read on demand,
    nothing kept mapped (what the distances stage streams through at scale)."""
    return read_input(Path(directory) / f"{space}.npy", NpyFile, MAKER)
