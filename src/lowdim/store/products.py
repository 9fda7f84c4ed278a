"""Files of the distances, embedding and trajectories stages under `data/`.

Arrays are `.npy`/`.npz` read with allow_pickle=False; tables are parquet. Every product is
written atomically. Arrays too large for memory (the stacked predictions, the M x M distance
matrices) go through ``NpyFile``: written shard by shard or tile by tile and read in row
blocks, with nothing kept mapped, so a stage's resident memory stays at one block whatever M is.
``check_disk_space`` stops a stage before it writes when the disk cannot hold its product.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.geometry.eigen import CentringStats, stats_from_arrays
from lowdim.geometry.inpca import Embedding
from lowdim.store.atomic import atomic_directory, atomic_file

log = logging.getLogger(__name__)

REFERENCE = "reference.parquet"
CENTRING_SUFFIX = "_centring.npz"  # <space>_centring.npz: sums for the double centring of D
# Rows of a mirrored (column-subset) tile written through one short-lived memory map.
_WRITE_ROWS = 256


# --------------------------------------------------------------------------- large arrays


class NpyFile:
    """A ``.npy`` file of shape (rows, ...) read and written in blocks of leading-axis rows.

    Nothing stays mapped between calls, so the process's resident set holds only the block
    being read or written (a long-lived ``np.memmap`` would keep every page it touched in the
    RSS until unmapped):

    - ``file[rows]`` / ``file[rows, cols]`` (2-D) / ``read_rows(start, stop)``: a copy. Whole
      rows are read with ``os.preadv`` straight into the result; other selections go through
      a memory map of the rows' span that is dropped before returning.
    - ``write_rows(start, block)``: whole rows, with ``os.pwrite``.
    - ``write(rows, cols, block)`` (2-D): a tile; rows and columns are slices or sorted index
      arrays. Through short-lived memory maps of at most ``_WRITE_ROWS`` rows each.

    ``create`` writes the header with ``np.lib.format.open_memmap`` (the bytes ``np.save``
    writes) and sizes the file sparsely: disk blocks are allocated as tiles arrive. Objects of
    this class pass for read-only matrices in ``lowdim.geometry.eigen`` and
    ``lowdim.geometry.inpca`` (``blockwise``); ``np.asarray(file)`` reads everything.
    """

    blockwise = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject or len(shape) == 0:
            raise ValueError(f"{self.path} must hold a C-ordered numeric array with at least one "
                             "axis")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def create(cls, path: str | Path, shape: Sequence[int], dtype: np.dtype | str) -> NpyFile:
        """A new .npy file of `shape` and `dtype` (contents zero until written)."""
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype),
                                           shape=tuple(int(s) for s in shape))
        del header  # unmapped: nothing was touched but the header
        return cls(path)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.read_rows(0, self.shape[0])
        return out if dtype is None else out.astype(dtype, copy=False)

    def _map(self, start: int, stop: int, mode: str) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode,
                         offset=self.offset + start * self.row_bytes,
                         shape=(stop - start, *self.row_shape))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as a new array, read with pread (no memory map)."""
        start, stop = max(0, start), min(self.shape[0], stop)
        out = np.empty((max(0, stop - start), *self.row_shape), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        done, position = 0, self.offset + start * self.row_bytes
        with open(self.path, "rb", buffering=0) as f:
            while done < len(view):
                got = os.preadv(f.fileno(), [view[done:done + (1 << 30)]], position + done)
                if got <= 0:
                    raise OSError(f"{self.path} is shorter than its header says: run the stage "
                                  "that writes it again")
                done += got
        return out

    def __getitem__(self, key) -> np.ndarray:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(rows, (int, np.integer)):
            row = int(rows) + (self.shape[0] if rows < 0 else 0)
            out = self.read_rows(row, row + 1)[0]
            return out[rest] if rest else out
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(self.shape[0])
            if not rest or all(isinstance(r, slice) and r == slice(None) for r in rest):
                return self.read_rows(start, stop)
            mapped = self._map(start, max(start, stop), "r")
            out = np.array(mapped[(slice(None), *rest)])
            del mapped
            return out
        idx = np.arange(self.shape[0])[rows]
        if idx.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)[(slice(None), *rest)]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        mapped = self._map(lo, hi, "r")
        if len(rest) == 1 and not isinstance(rest[0], slice):  # rows and columns both fancy
            out = np.array(mapped[np.ix_(idx - lo, np.arange(self.shape[1])[rest[0]])])
        else:
            out = np.array(mapped[(idx - lo, *rest)])
        del mapped
        return out

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Write whole rows start..start+len(block)-1 with pwrite."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape or start < 0 or start + len(block) > self.shape[0]:
            raise ValueError(f"cannot write rows {start}..{start + len(block) - 1} of shape "
                             f"{block.shape[1:]} into {self.path} of shape {self.shape}")
        view = memoryview(block.reshape(-1).view(np.uint8))
        done, position = 0, self.offset + start * self.row_bytes
        with open(self.path, "r+b", buffering=0) as f:
            while done < len(view):
                done += os.pwrite(f.fileno(), view[done:done + (1 << 30)], position + done)

    def write(self, rows: slice | np.ndarray, cols: slice | np.ndarray,
              block: np.ndarray) -> None:
        """Write a 2-D tile: self[rows, cols] = block (slices or sorted index arrays)."""
        if self.ndim != 2:
            raise ValueError(f"tiles are written into 2-D files, {self.path} is {self.ndim}-D")
        rows, cols = _as_slice(rows), _as_slice(cols)
        block = np.asarray(block)
        if isinstance(rows, slice) and isinstance(cols, slice) and cols == slice(0, self.shape[1]):
            self.write_rows(rows.start, block)
            return
        idx = np.arange(self.shape[0])[rows]
        for part in range(0, len(idx), _WRITE_ROWS):
            sub = idx[part:part + _WRITE_ROWS]
            lo, hi = int(sub[0]), int(sub[-1]) + 1
            mapped = self._map(lo, hi, "r+")
            values = block[part:part + _WRITE_ROWS]
            if isinstance(cols, slice) and hi - lo == len(sub):
                mapped[:, cols] = values
            else:
                mapped[np.ix_(sub - lo, np.arange(self.shape[1])[cols])] = values
            del mapped  # unmapped: the dirty pages leave the RSS for the page cache


def _as_slice(rows: slice | np.ndarray) -> slice | np.ndarray:
    """A slice for contiguous ascending index arrays, else the array itself."""
    if isinstance(rows, slice):
        return rows
    rows = np.asarray(rows)
    if rows.size and rows[-1] - rows[0] + 1 == rows.size and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def human_bytes(n: float) -> str:
    """A byte count for people: 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needed: int, directory: str | Path, what: str, advice: str) -> int:
    """Raise OSError when the filesystem of `directory` has fewer than `needed` free bytes.

    Returns the free bytes. The message names both numbers, the directory and `advice` (what
    the user can change), so a stage stops before writing instead of failing half way.
    """
    where = _existing_ancestor(Path(directory))
    free = shutil.disk_usage(where).free
    if needed > free:
        raise OSError(
            f"{what} needs {needed} bytes ({human_bytes(needed)}) on the filesystem of {where}, "
            f"which has {free} bytes ({human_bytes(free)}) available. Free space there, "
            f"{advice}"
        )
    return free


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


def open_distance_matrix(directory: str | Path, space: str) -> NpyFile:
    """The (M, M) distance matrix of one space as an NpyFile: read in blocks, never all at once."""
    return NpyFile(Path(directory) / f"{space}.npy")


def save_centring(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write the sums of ``eigen.CentringAccumulator.arrays`` (an npz) atomically."""
    with atomic_file(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def load_centring(directory: str | Path, space: str) -> CentringStats | None:
    """CentringStats saved beside a distance matrix by the distances stage, or None if absent."""
    path = Path(directory) / f"{space}{CENTRING_SUFFIX}"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return stats_from_arrays({k: z[k] for k in z.files})


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
        # fields added later (landmarks) keep their defaults in older files
        values = {f.name: z[f.name] for f in dataclasses.fields(Embedding) if f.name in z.files}
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
    `lowdim.geometry.distance_blocks`): deleting it is always safe. Segments are written atomically,
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

    def shapes(self, index: Mapping[str, Path], keys: Iterable[str]
               ) -> dict[str, tuple[int, ...] | None]:
        """key -> shape of each of `keys`, from the block's header alone (None: unreadable)."""
        by_segment: dict[Path, list[str]] = {}
        for key in keys:
            by_segment.setdefault(index[key], []).append(key)
        found: dict[str, tuple[int, ...] | None] = {}
        for path, wanted in by_segment.items():
            found.update(dict.fromkeys(wanted))
            try:
                with zipfile.ZipFile(path) as zf:
                    for key in wanted:
                        with zf.open(f"{key}.npy") as member:
                            version = np.lib.format.read_magic(member)
                            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                    else np.lib.format.read_array_header_2_0)
                            found[key] = tuple(read(member)[0])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                log.warning("ignoring unreadable cache segment %s (%s); delete it", path, err)
        return found

    def save(self, namespace: str, blocks: Iterable[tuple[str, np.ndarray]], name: str) -> Path:
        """Write (key, block) pairs as the segment `name` of `namespace`, atomically."""
        final = self.root / namespace / f"{name}.npz"
        with atomic_file(final) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                         allowZip64=True) as zf:
            for key, block in blocks:
                # float64, or float32 blocks of a float32 matrix (their own namespace)
                dtype = np.float32 if np.asarray(block).dtype == np.float32 else np.float64
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(block, dtype),
                                              allow_pickle=False)
        return final
