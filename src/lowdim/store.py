"""Files of the distances, embedding and trajectories stages under `data/`.

Arrays are `.npy`/`.npz` read with allow_pickle=False; tables are parquet. Every product is
written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.atomic import atomic_directory, atomic_file
from lowdim.inpca import Embedding

log = logging.getLogger(__name__)

REFERENCE = "reference.parquet"


def save_distances(matrices: Mapping[str, np.ndarray], reference: pd.DataFrame,
                   directory: str | Path) -> None:
    """Write `<space>.npy` (M×M float64) for each space and the reference distances table."""
    with atomic_directory(directory) as tmp:
        for space, d in matrices.items():
            np.save(tmp / f"{space}.npy", d)
        reference.to_parquet(tmp / REFERENCE, index=False)


def load_distance_matrix(directory: str | Path, space: str, mmap: bool = False) -> np.ndarray:
    """The (M, M) distance matrix of one prediction space; memory-mapped (read-only) if `mmap`."""
    return np.load(Path(directory) / f"{space}.npy", allow_pickle=False,
                   mmap_mode="r" if mmap else None)


def load_reference(directory: str | Path) -> pd.DataFrame:
    """Distances of every row to truth and ignorance: columns <space>_to_truth/_to_ignorance."""
    return pd.read_parquet(Path(directory) / REFERENCE)


def save_embeddings(embeddings: Mapping[str, Embedding], directory: str | Path) -> None:
    """Write `<space>.npz` holding every field of each Embedding."""
    with atomic_directory(directory) as tmp:
        for space, emb in embeddings.items():
            _save_embedding(emb, tmp / f"{space}.npz")


def _save_embedding(emb: Embedding, path: Path) -> None:
    np.savez(path, **{f.name: np.asarray(getattr(emb, f.name))
                      for f in dataclasses.fields(Embedding)})


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


def save_products(products: Mapping[str, np.ndarray | pd.DataFrame | Embedding],
                  directory: str | Path) -> None:
    """Write each named product: tables as `<name>.parquet`, embeddings as `<name>.npz`, arrays
    as `<name>.npy`; one directory, atomically."""
    with atomic_directory(directory) as tmp:
        for name, product in products.items():
            if isinstance(product, pd.DataFrame):
                product.to_parquet(tmp / f"{name}.parquet", index=False)
            elif isinstance(product, Embedding):
                _save_embedding(product, tmp / f"{name}.npz")
            else:
                np.save(tmp / f"{name}.npy", np.asarray(product))


def load_table(directory: str | Path, name: str) -> pd.DataFrame:
    """A table written by `save_products`."""
    return pd.read_parquet(Path(directory) / f"{name}.parquet")


def load_array(directory: str | Path, name: str) -> np.ndarray:
    """An array written by `save_products`."""
    return np.load(Path(directory) / f"{name}.npy", allow_pickle=False)

class BlockCache:
    """Distance blocks on disk, in segment files: <root>/<namespace>/<segment>.npz.

    Each computation that adds blocks writes one segment (an uncompressed npz whose members are
    named by block key), so the file count grows with the number of incremental runs, not with
    the number of blocks. A plain directory outside the DVC outputs (see
    `lowdim.distance_blocks`): deleting it is always safe. Segments are written atomically,
    block by block (memory does not hold them all), and read with allow_pickle=False.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def index(self, namespace: str) -> dict[str, Path]:
        """Block key -> segment holding it, over every readable segment of `namespace`.

        A key found in several segments maps to the newest: a block rewritten after a damaged
        copy was found wins over it.
        """
        found = {}
        segments = (self.root / namespace).glob("[!.]*.npz")  # not temporary files
        for path in sorted(segments, key=lambda f: (f.stat().st_mtime_ns, f.name)):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except (OSError, zipfile.BadZipFile) as err:
                log.warning("ignoring unreadable cache segment %s (%s); delete it", path, err)
                continue
            found.update({name.removesuffix(".npy"): path for name in names})
        return found

    def load(self, index: Mapping[str, Path], keys: Iterable[str]
             ) -> Iterator[tuple[str, np.ndarray]]:
        """(key, block) for each of `keys`, reading each segment once."""
        by_segment: dict[Path, list[str]] = {}
        for key in keys:
            by_segment.setdefault(index[key], []).append(key)
        for path, wanted in by_segment.items():
            with np.load(path, allow_pickle=False) as npz:
                for key in wanted:
                    yield key, npz[key]

    def save(self, namespace: str, blocks: Iterable[tuple[str, np.ndarray]], name: str) -> Path:
        """Write (key, block) pairs as the segment `name` of `namespace`, atomically."""
        final = self.root / namespace / f"{name}.npz"
        with atomic_file(final) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                         allowZip64=True) as zf:
            for key, block in blocks:
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(block, np.float64),
                                              allow_pickle=False)
        return final
