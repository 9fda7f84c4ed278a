"""Arrays too large for memory, and the disk they need.

``NpyFile`` is a ``.npy`` file written shard by shard or tile by tile and read in row blocks, with
nothing kept mapped, so a stage's resident memory stays at one block whatever the matrix size;
``check_disk_space`` stops a stage before it writes when the disk cannot hold its product.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


# Rows of a mirrored (column-subset) tile written through one short-lived memory map.
_WRITE_ROWS = 256
# The most bytes of rows mapped at once to read a part of each (a chunk of samples): the pages
# a map touches count in the resident set until it is dropped, and one map over every row of a
# (2,082, 25,000, 10) float32 file took the peak RSS to 2.6 GB to read 134 MB of it.
_READ_SPAN_BYTES = 64 * 2**20


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

    def rows_in_place(self, start: int, stop: int) -> np.memmap:
        """Rows start..stop-1 as a read-only memory map of the file, not a copy: for a slab read
        once and dropped (the products with D), where copying it out of the page cache cost as
        much as the product. Its pages count in the RSS while the caller holds it."""
        start, stop = max(0, start), min(self.shape[0], stop)
        return self._map(start, max(start, stop), "r")

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
            return self._read_part(start, max(start, stop), rest)
        idx = np.arange(self.shape[0])[rows]
        if idx.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)[(slice(None), *rest)]
        if len(rest) == 1 and not isinstance(rest[0], (slice, int, np.integer)):  # both fancy
            cols = np.arange(self.shape[1])[rest[0]]

            def select(mapped, at):
                return mapped[np.ix_(at, cols)]
        else:
            def select(mapped, at):
                return mapped[(at, *rest)]
        return self._read_at(idx, select)

    def _read_at(self, idx: np.ndarray, select) -> np.ndarray:
        """``select(map, rows)`` of rows `idx` (any order, repeats allowed), whose result's first
        axis is the rows: in groups of nearby rows, each through a map of at most
        ``_READ_SPAN_BYTES`` of rows (one map over the rows' whole span kept every page the
        selection touched in the resident set)."""
        span = max(1, _READ_SPAN_BYTES // max(1, self.row_bytes))
        order = np.argsort(idx, kind="stable")
        ordered = idx[order]
        out = None
        start = 0
        while start < len(ordered):
            lo = int(ordered[start])
            stop = int(np.searchsorted(ordered, lo + span, side="left"))
            hi = int(ordered[stop - 1]) + 1
            mapped = self._map(lo, hi, "r")
            part = select(mapped, ordered[start:stop] - lo)
            if out is None:
                out = np.empty((len(idx), *part.shape[1:]), dtype=part.dtype)
            out[order[start:stop]] = part
            del mapped, part
            start = stop
        return out

    def _read_part(self, start: int, stop: int, rest: tuple) -> np.ndarray:
        """Rows start..stop-1 selected by `rest` (the other axes' keys), through maps of at
        most ``_READ_SPAN_BYTES`` of rows each, dropped as soon as their part is copied."""
        empty, one = (np.empty((k, *self.row_shape), dtype=self.dtype)[(slice(None), *rest)]
                      for k in (0, 1))
        if empty.shape[:1] != (0,) or one.shape[:1] != (1,):  # advanced keys apart: numpy
            # puts their axes first, so the rows are not the result's first axis
            mapped = self._map(start, stop, "r")
            out = np.array(mapped[(slice(None), *rest)])
            del mapped
            return out
        if stop == start:
            return empty
        return self._read_at(np.arange(start, stop),
                             lambda mapped, at: mapped[(as_slice(at), *rest)])

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
        rows, cols = as_slice(rows), as_slice(cols)
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


def row_slab(source, rows: slice) -> np.ndarray:
    """Rows `rows` (a slice of step 1) of an (M, ...) ndarray, memory map or `NpyFile` as
    float64, read in place where they are stored as float64 (a view of an array or a memory
    map; an `NpyFile` maps the slab), else converted."""
    if isinstance(source, NpyFile):
        start, stop, _ = rows.indices(source.shape[0])
        return np.asarray(source.rows_in_place(start, stop), dtype=np.float64)
    return np.asarray(source[rows], dtype=np.float64)


def as_slice(rows: slice | np.ndarray) -> slice | np.ndarray:
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


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needed: int, directory: str | Path, what: str, advice: str) -> int:
    """Raise OSError when the filesystem of `directory` has fewer than `needed` free bytes.

    Returns the free bytes. The message names both numbers, the directory and `advice` (what
    the user can change), so a stage stops before writing instead of failing half way.
    """
    where = existing_ancestor(Path(directory))
    free = shutil.disk_usage(where).free
    if needed > free:
        raise OSError(
            f"{what} needs {needed} bytes ({human_bytes(needed)}) on the filesystem of {where}, "
            f"which has {free} bytes ({human_bytes(free)}) available. Free space there, "
            f"{advice}"
        )
    return free


# The timestamp of every member of an npz this package writes: np.savez stamps the current time,
# so the same arrays gave other bytes on every run, and DVC reran every stage downstream.
NPZ_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to the ``.npz`` file `path` (exactly there: no suffix is added) as
    ``np.savez`` does, uncompressed, but with fixed member timestamps: the same arrays give the
    same bytes. ``np.load`` reads it as any npz."""
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=NPZ_DATE_TIME)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
