"""The distances stage's products on disk: the M x M matrices (written tile by tile and read in row
blocks through ``lowdim.store.arrays.NpyFile``), the centring sums beside them, and the
reference table of every row's distances to truth and ignorance.

With landmark distances (``distances.landmarks: L``) the stage writes no M x M matrix but
``<space>_landmarks.npy``: the (M, L) matrix D[:, landmarks] (the L landmark rows of D, stored
transposed, so that row j holds point j's distances to the landmarks, what its projection reads),
``<space>_holdout.npy``: the (V, V) distances among V held-out non-landmark points (for the
stress the embedding achieves), and ``landmarks.npz`` with both sets of row indices
(``rows``, ``holdout``). ``require_full_matrix`` stops a reader of the whole matrix at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.store.arrays import NpyFile, save_npz
from lowdim.store.atomic import atomic_directory, atomic_file
from lowdim.store.inputs import load_npz, read_input
from lowdim.store.products import REFERENCE

CENTRING_SUFFIX = "_centring.npz"  # <space>_centring.npz: sums for the double centring of D
LANDMARKS_SUFFIX = "_landmarks.npy"  # <space>_landmarks.npy: (M, L) D[:, landmark rows]
HOLDOUT_SUFFIX = "_holdout.npy"  # <space>_holdout.npy: (V, V) D among held-out points
LANDMARK_INDEX = "landmarks.npz"  # rows (L,) and holdout (V,): sorted row indices


def save_distances(matrices: Mapping[str, np.ndarray], reference: pd.DataFrame,
                   directory: str | Path) -> None:
    """Write `<space>.npy` (M×M float64) for each space and the reference distances table."""
    with atomic_directory(directory) as tmp:
        for space, d in matrices.items():
            np.save(tmp / f"{space}.npy", d)
        reference.to_parquet(tmp / REFERENCE, index=False)


def load_distance_matrix(directory: str | Path, space: str, mmap: bool = False) -> np.ndarray:
    """The (M, M) distance matrix of one prediction space; memory-mapped (read-only) if `mmap`."""
    require_full_matrix(directory)
    return read_input(Path(directory) / f"{space}.npy",
                      lambda p: np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None),
                      "distances")


def open_distance_matrix(directory: str | Path, space: str) -> NpyFile:
    """The (M, M) distance matrix of one space as an NpyFile: read in blocks, never all at once."""
    require_full_matrix(directory)
    return read_input(Path(directory) / f"{space}.npy", NpyFile, "distances")


def save_centring(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write the sums of ``eigen.CentringAccumulator.arrays`` (an npz) atomically."""
    with atomic_file(path) as tmp:
        save_npz(tmp, {k: np.asarray(v) for k, v in arrays.items()})


def load_centring_sums(directory: str | Path, space: str) -> dict[str, np.ndarray] | None:
    """The centring sums saved beside a distance matrix by the distances stage (to be turned into
    `lowdim.geometry.eigen.CentringStats` by ``stats_from_arrays``), or None if absent."""
    path = Path(directory) / f"{space}{CENTRING_SUFFIX}"
    if not path.is_file():
        return None
    return read_input(path, load_npz, "distances")


def has_landmark_distances(directory: str | Path) -> bool:
    """Whether the distances stage wrote landmark rows (``distances.landmarks``) in `directory`
    instead of the whole matrices."""
    return (Path(directory) / LANDMARK_INDEX).is_file()


def require_full_matrix(directory: str | Path, stage: str | None = None) -> None:
    """Stop (ValueError) when `directory` holds landmark distances only: a reader of the whole
    M x M matrix cannot run on them. ``stage``: the name given in the message."""
    directory = Path(directory)
    if not has_landmark_distances(directory):
        return
    count = len(load_landmark_index(directory)["rows"])
    who = f"the {stage} stage" if stage else "this analysis"
    raise ValueError(
        f"{directory} holds landmark distances only (distances.landmarks = {count}: every "
        f"point's distances to {count} landmarks, no M x M matrix), but {who} needs the whole "
        "matrix. Set distances.landmarks: null and embedding.landmarks: null (the whole matrix: "
        "time and disk grow as M^2) and run `dvc repro` again, or leave this stage out "
        "(`dvc repro embedding` runs the landmark route up to the embedding)")


def save_landmark_index(rows: np.ndarray, holdout: np.ndarray, directory: str | Path) -> None:
    """Write the landmark index (``rows`` (L,), ``holdout`` (V,)) into `directory`; the
    matrices are written by ``lowdim.geometry.distance_blocks.write_landmark_distances``."""
    with atomic_file(Path(directory) / LANDMARK_INDEX) as tmp:
        save_npz(tmp, {"rows": np.asarray(rows, dtype=np.int64),
                       "holdout": np.asarray(holdout, dtype=np.int64)})


def load_landmark_index(directory: str | Path) -> dict[str, np.ndarray]:
    """``rows`` (L,) and ``holdout`` (V,): the landmark and held-out row indices."""
    return read_input(Path(directory) / LANDMARK_INDEX, load_npz, "distances")


def open_landmark_columns(directory: str | Path, space: str) -> NpyFile:
    """The (M, L) distances of every point to the landmarks (D[:, rows]), read in blocks."""
    return read_input(Path(directory) / f"{space}{LANDMARKS_SUFFIX}", NpyFile, "distances")


def load_holdout_distances(directory: str | Path, space: str) -> np.ndarray:
    """The (V, V) distances among the held-out points of ``load_landmark_index``."""
    return read_input(Path(directory) / f"{space}{HOLDOUT_SUFFIX}",
                      lambda p: np.load(p, allow_pickle=False), "distances")
