"""Files of the distances and embedding stages: `data/distances/` and `data/embedding/`.

Arrays are `.npy`/`.npz` read with allow_pickle=False; tables are parquet. Every product is
written atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.atomic import atomic_directory, atomic_file
from lowdim.inpca import Embedding

REFERENCE = "reference.parquet"


def save_distances(matrices: Mapping[str, np.ndarray], reference: pd.DataFrame,
                   directory: str | Path) -> None:
    """Write `<space>.npy` (M×M float64) for each space and the reference distances table."""
    with atomic_directory(directory) as tmp:
        for space, d in matrices.items():
            np.save(tmp / f"{space}.npy", d)
        reference.to_parquet(tmp / REFERENCE, index=False)


def load_distance_matrix(directory: str | Path, space: str) -> np.ndarray:
    """The (M, M) distance matrix of one prediction space."""
    return np.load(Path(directory) / f"{space}.npy", allow_pickle=False)


def load_reference(directory: str | Path) -> pd.DataFrame:
    """Distances of every row to truth and ignorance: columns <space>_to_truth/_to_ignorance."""
    return pd.read_parquet(Path(directory) / REFERENCE)


def save_embeddings(embeddings: Mapping[str, Embedding], directory: str | Path) -> None:
    """Write `<space>.npz` holding every field of each Embedding."""
    with atomic_directory(directory) as tmp:
        for space, emb in embeddings.items():
            fields = {f.name: np.asarray(getattr(emb, f.name))
                      for f in dataclasses.fields(Embedding)}
            np.savez(tmp / f"{space}.npz", **fields)


def load_embedding(directory: str | Path, space: str) -> Embedding:
    """The Embedding of one prediction space."""
    with np.load(Path(directory) / f"{space}.npz", allow_pickle=False) as z:
        values = {f.name: z[f.name] for f in dataclasses.fields(Embedding)}
    for name in ("frobenius_sq", "grand_mean"):
        values[name] = float(values[name])
    return Embedding(**values)


def stress_metrics(emb: Embedding, dims: Sequence[int]) -> dict[str, float]:
    """The metrics-file entry of one space: explained stress at each k in `dims` that exists."""
    available = len(emb.explained_stress)
    return {f"explained_stress_{k}": round(float(emb.explained_stress[k - 1]), 6)
            for k in dims if k <= available}


class BlockCache:
    """Distance blocks on disk, one float64 `.npy` per key: <root>/<namespace>/<key[:2]>/<key>.npy.

    A plain directory outside the DVC outputs (see `lowdim.distance_blocks`): deleting it is
    always safe. Blocks are written atomically and read with allow_pickle=False.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, namespace: str, key: str) -> Path:
        """Where the block `key` of `namespace` lives."""
        return self.root / namespace / key[:2] / f"{key}.npy"

    def load(self, namespace: str, key: str) -> np.ndarray | None:
        """The stored block, or None when there is none."""
        path = self.path(namespace, key)
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def save(self, namespace: str, key: str, block: np.ndarray) -> None:
        """Store a block atomically (an interrupted write leaves no file under the key)."""
        with atomic_file(self.path(namespace, key)) as tmp:
            np.save(tmp, np.ascontiguousarray(block, dtype=np.float64))
