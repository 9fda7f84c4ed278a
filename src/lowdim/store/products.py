"""Files of the distances, embedding and trajectories stages under `data/`.

Arrays are `.npy`/`.npz` read with allow_pickle=False; tables are parquet. Every product is
written atomically. The M x M distance matrices go through ``lowdim.store.arrays.NpyFile``
(written tile by tile, read in row blocks). Product names that several stages share (the
synthetic study's per-c names) are made here, so readers need not import the code that wrote them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.store.arrays import save_npz
from lowdim.store.atomic import atomic_directory
from lowdim.store.inputs import load_npz, read_input
from lowdim.store.records import Embedding

log = logging.getLogger(__name__)

REFERENCE = "reference.parquet"


# --------------------------------------------------------------------------- large arrays


def load_reference(directory: str | Path) -> pd.DataFrame:
    """Distances of every row to truth and ignorance: columns <space>_to_truth/_to_ignorance."""
    return read_input(Path(directory) / REFERENCE, pd.read_parquet, "distances")


def save_embeddings(embeddings: Mapping[str, Embedding], directory: str | Path) -> None:
    """Write `<space>.npz` holding every field of each Embedding."""
    with atomic_directory(directory) as tmp:
        for space, emb in embeddings.items():
            _save_embedding(emb, tmp / f"{space}.npz")


def _save_embedding(emb: Embedding, path: Path) -> None:
    save_npz(path, {f.name: np.asarray(getattr(emb, f.name))
                    for f in dataclasses.fields(Embedding)})


def load_embedding(directory: str | Path, space: str) -> Embedding:
    """The Embedding of one prediction space."""
    z = read_input(Path(directory) / f"{space}.npz", load_npz, "embedding")
    # fields added later (landmarks) keep their defaults in older files
    values = {f.name: z[f.name] for f in dataclasses.fields(Embedding) if f.name in z}
    for name in ("frobenius_sq", "grand_mean"):
        values[name] = float(values[name])
    return Embedding(**values)


def save_products(products: Mapping[str, np.ndarray | pd.DataFrame | Embedding],
                  directory: str | Path) -> None:
    """Write each named product: tables as `<name>.parquet`, embeddings as `<name>.npz`, arrays
    as `<name>.npy`; one directory, atomically."""
    with atomic_directory(directory) as tmp:
        write_products(products, tmp)


def write_products(products: Mapping[str, np.ndarray | pd.DataFrame | Embedding],
                   directory: Path) -> None:
    """``save_products``' files, written into an existing directory (not atomically): for a
    stage that writes its products a part at a time inside one ``atomic_directory``."""
    for name, product in products.items():
        if isinstance(product, pd.DataFrame):
            product.to_parquet(directory / f"{name}.parquet", index=False)
        elif isinstance(product, Embedding):
            _save_embedding(product, directory / f"{name}.npz")
        else:
            np.save(directory / f"{name}.npy", np.asarray(product))


def load_table(directory: str | Path, name: str) -> pd.DataFrame:
    """A table written by `save_products`."""
    return read_input(Path(directory) / f"{name}.parquet", pd.read_parquet)


def load_array(directory: str | Path, name: str) -> np.ndarray:
    """An array written by `save_products`."""
    return read_input(Path(directory) / f"{name}.npy", lambda p: np.load(p, allow_pickle=False))



def product_name(c: float, group: str) -> str:
    """The stem of one (c, group) product, e.g. 'c0.5_default'."""
    return f"c{c:g}_{group}"
