"""The distances stage's products on disk: the M x M matrices (written tile by tile and read in row
blocks through ``lowdim.store.arrays.NpyFile``), the centring sums beside them, and the
reference table of every row's distances to truth and ignorance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.store.arrays import NpyFile
from lowdim.store.atomic import atomic_directory, atomic_file
from lowdim.store.inputs import load_npz, read_input
from lowdim.store.products import REFERENCE

CENTRING_SUFFIX = "_centring.npz"  # <space>_centring.npz: sums for the double centring of D


def save_distances(matrices: Mapping[str, np.ndarray], reference: pd.DataFrame,
                   directory: str | Path) -> None:
    """Write `<space>.npy` (M×M float64) for each space and the reference distances table."""
    with atomic_directory(directory) as tmp:
        for space, d in matrices.items():
            np.save(tmp / f"{space}.npy", d)
        reference.to_parquet(tmp / REFERENCE, index=False)


def load_distance_matrix(directory: str | Path, space: str, mmap: bool = False) -> np.ndarray:
    """The (M, M) distance matrix of one prediction space; memory-mapped (read-only) if `mmap`."""
    return read_input(Path(directory) / f"{space}.npy",
                      lambda p: np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None),
                      "distances")


def open_distance_matrix(directory: str | Path, space: str) -> NpyFile:
    """The (M, M) distance matrix of one space as an NpyFile: read in blocks, never all at once."""
    return read_input(Path(directory) / f"{space}.npy", NpyFile, "distances")


def save_centring(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write the sums of ``eigen.CentringAccumulator.arrays`` (an npz) atomically."""
    with atomic_file(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def load_centring_sums(directory: str | Path, space: str) -> dict[str, np.ndarray] | None:
    """The centring sums saved beside a distance matrix by the distances stage (to be turned into
    `lowdim.geometry.eigen.CentringStats` by ``stats_from_arrays``), or None if absent."""
    path = Path(directory) / f"{space}{CENTRING_SUFFIX}"
    if not path.is_file():
        return None
    return read_input(path, load_npz, "distances")
