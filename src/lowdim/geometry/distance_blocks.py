"""Incremental distance matrices: blocks of pairs of runs, reused from a cache.

The rows of an analysis set fall into units: the checkpoints of one run (its ``run_id``), or the
reference rows of one kind (ignorance, truth, geodesic). The distances between two units depend
only on their probabilities, the sample set (``sample_step``, N, C), ``bc_floor`` and the engine
that computes them, so each block of a unit pair is stored under a key made of exactly those:
the two units' labels and content hashes, the settings and the engine's name and version.
Adding runs to a grid then computes only the blocks that involve a new (or changed) run.

Why the cache is a plain directory and not a DVC output: it is memoization, not a product. Only
deterministic engines (the fused kernels, whose value for a pair depends on nothing but its two
rows, bit for bit) use it, so on a given machine the assembled matrix has the same bytes with or
without it (across CPU types, numpy's vectorized log may differ in the last bit), and the stage's
declared outputs stay a function of its declared inputs. As a ``persist: true`` output it
would instead be hashed at every run, stored a second time in the DVC cache and the remote (it
holds as many numbers as the matrices themselves) and pulled by every reader, who never needs it.
So the distances stage reads and writes ``data/cache/distances`` (git-ignored, outside every DVC
output: ``dvc status`` never sees it), and deleting it is always safe.

At scale (``write_bhattacharyya``, ``write_distances``: what the stage runs) the matrix is never
in memory: every tile goes to a ``.npy`` file as soon as it is computed or read from the cache,
and the row sums, total and squared norms that the embedding's double centring needs are
accumulated from the stored values in the same pass (``eigen.CentringAccumulator``) and saved
beside it. Every entry is written exactly once: cached blocks of unit pairs that the
computation covers anyway are not read (a damaged cached block is found from its header,
before anything is written). ``plan_distances`` states the disk and memory needed up front and
``check_distances_disk`` stops the stage when the disk cannot hold the matrices.

Landmark distances (``distances.landmarks: L``, ``write_landmark_distances``): only the
distances of every row to L landmark rows, D[:, landmarks] (M, L), and those among V held-out
rows (V, V), with the same kernel: L M + V^2 / 2 pairs instead of M^2 / 2, about M / (2 L)
times less work and disk. No block cache there (a landmark set cuts across the units).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lowdim.geometry.distances import (
    DistanceSettings,
    Engine,
    check_inputs,
    distance_blocks,
    plan_blocks,
    resolve_engine,
)
from lowdim.geometry.eigen import CentringAccumulator
from lowdim.store.arrays import NpyFile, as_slice, check_disk_space, existing_ancestor, human_bytes
from lowdim.store.atomic import atomic_directory
from lowdim.store.block_cache import BlockCache
from lowdim.store.distance_matrices import (
    CENTRING_SUFFIX,
    HOLDOUT_SUFFIX,
    LANDMARKS_SUFFIX,
    save_centring,
    save_landmark_index,
)
from lowdim.store.products import REFERENCE

log = logging.getLogger(__name__)

# Rows hashed per read, so hashing a unit never holds more than this many elements at once.
_HASH_ELEMS = 1 << 24
STORED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@dataclass(frozen=True)
class Unit:
    """Rows that enter and leave the grid together: one run's checkpoints, or one reference kind."""

    label: str           # run id, or reference kind
    rows: np.ndarray     # sorted row indices into the stacked probabilities
    digest: str          # content hash of those rows' probabilities

    @property
    def key(self) -> str:
        return f"{self.label}:{self.digest}"


@dataclass(frozen=True)
class BlockStats:
    """What one incremental computation did."""

    units: int
    blocks: int          # unit pairs (u <= v), diagonal blocks included
    cached: int          # blocks read from the cache
    computed: int        # blocks computed (and written to the cache, when there is one)
    pairs_computed: int  # row pairs the kernel evaluated (symmetric pairs counted once)


def unit_labels(index: pd.DataFrame) -> np.ndarray:
    """(M,) label of each row of an analysis-set index: its run_id, or its kind when not a run."""
    for column in ("kind", "run_id"):
        if column not in index:
            raise ValueError(f"the index has no {column!r} column: pass the analysis set's "
                             "index.parquet table")
    runs = (index["kind"] == "run").to_numpy()
    if index.loc[runs, "run_id"].isna().any():
        raise ValueError("some run rows of the index have no run_id")
    return np.where(runs, index["run_id"].astype(object), index["kind"].astype(object)).astype(str)


def content_digest(x: np.ndarray, rows: np.ndarray) -> str:
    """Hash of the dtype, shape and bytes of x[rows] (x: (M, N, C), possibly memory-mapped)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.dtype.str}{(len(rows), *x.shape[1:])}".encode())
    step = max(1, _HASH_ELEMS // max(1, int(np.prod(x.shape[1:]))))
    for start in range(0, len(rows), step):  # a slice when contiguous: one read from disk
        h.update(np.ascontiguousarray(x[as_slice(rows[start:start + step])]).tobytes())
    return h.hexdigest()


def find_units(p: np.ndarray, labels: Sequence[str]) -> list[Unit]:
    """Group the rows of p (M, N, C) by label, in order of first appearance, and hash each group."""
    _check_labels(labels, len(p))
    labels = np.asarray(labels)
    names, first = np.unique(labels, return_index=True)
    units = []
    for name in names[np.argsort(first)]:
        rows = np.flatnonzero(labels == name)
        units.append(Unit(str(name), rows, content_digest(p, rows)))
    return units


class _ArraySink:
    """The assembled matrix in memory (the small-M path; bitwise the historical result)."""

    def __init__(self, m: int) -> None:
        self.out = np.empty((m, m), dtype=np.float64)

    def put(self, rows_i: np.ndarray, rows_j: np.ndarray, block: np.ndarray,
            mirrored: bool) -> None:
        _put(self.out, rows_i, rows_j, block)

    def rows(self, rows_i: np.ndarray) -> np.ndarray:
        return self.out[rows_i]

    def block(self, rows_i: np.ndarray, rows_j: np.ndarray) -> np.ndarray:
        return self.out[np.ix_(rows_i, rows_j)]


class _FileSink:
    """The matrix written tile by tile into a .npy file, its centring sums accumulated on the way.

    Each tile is written as soon as it is computed (or read from the cache), in the stored
    dtype, through short-lived memory maps (``lowdim.store.products.NpyFile``); the sums are taken
    over the stored values, each entry once. Memory: O(M) besides the tile in hand.
    """

    def __init__(self, path: Path, m: int, dtype: np.dtype, name: str) -> None:
        self.file = NpyFile.create(path, (m, m), dtype)
        self.sums = CentringAccumulator(m, name)

    def put(self, rows_i: np.ndarray, rows_j: np.ndarray, block: np.ndarray,
            mirrored: bool) -> None:
        stored = np.asarray(block).astype(self.file.dtype, copy=False)
        rows_i, rows_j = as_slice(rows_i), as_slice(rows_j)
        self.file.write(rows_i, rows_j, stored)
        if mirrored:
            self.file.write(rows_j, rows_i, stored.T)
        self.sums.add(rows_i, rows_j, stored, mirrored)

    def rows(self, rows_i: np.ndarray) -> np.ndarray:
        return self.file[as_slice(rows_i)]  # whole rows, as stored (pread when contiguous)

    def block(self, rows_i: np.ndarray, rows_j: np.ndarray) -> np.ndarray:
        return self.file[as_slice(rows_i), as_slice(rows_j)]  # as stored


def _assemble(p: np.ndarray, labels: Sequence[str], cache: BlockCache | None, make_sink,
              settings: DistanceSettings | None, *, progress: bool, dtype: np.dtype
              ) -> tuple[object, BlockStats]:
    """Fill a sink with every entry of the (M, M) matrix exactly once: cached blocks of unit
    pairs that the computation does not cover, then the computed tiles (module docstring).
    ``settings`` None: ``DistanceSettings()``."""
    settings = DistanceSettings() if settings is None else settings
    p, _ = check_inputs(p, None, settings.sample_step, settings.bc_floor)
    engine = resolve_engine(settings.method, settings.device, settings.bc_floor)
    if cache is not None and not engine.deterministic:
        log.warning("the %s method depends on block sizes in the last bits: distances are "
                    "computed without the block cache", engine.name)
        cache = None
    if cache is None:  # every block is computed: no unit hashes, no O(units^2) bookkeeping
        sink = make_sink(len(p))
        count = len(_check_labels(labels, len(p)))
        rows_f, rows_o = np.arange(len(p)), np.zeros(0, dtype=np.int64)
        _compute(p, rows_f, rows_o, sink, settings, engine, progress)
        blocks = count * (count + 1) // 2
        stats = BlockStats(units=count, blocks=blocks, cached=0, computed=blocks,
                           pairs_computed=len(p) * (len(p) + 1) // 2)
        log.info("Bhattacharyya blocks: %s", stats)
        return sink, stats
    plan = plan_blocks_to_compute(p, labels, cache, engine, settings, dtype)
    units, namespace, pairs, missing = plan.units, plan.namespace, plan.pairs, plan.missing
    index, usable = plan.index, plan.usable
    sink = make_sink(len(p))
    fresh, partners = plan.fresh, plan.partners
    fresh_set, partner_set = set(fresh), set(partners)

    def covered(a: int, b: int) -> bool:  # computed below: never also taken from the cache
        return ((a in fresh_set and (b in fresh_set or b in partner_set))
                or (b in fresh_set and a in partner_set))

    loaded = [key for key in usable if not covered(*pairs[key])]
    for key, block in cache.load(index, loaded):
        first, second = _ordered(units, pairs[key])
        a, b = pairs[key]
        sink.put(first.rows, second.rows, block, mirrored=a != b)
    rows_f = _rows(units, fresh)
    rows_o = _rows(units, partners)
    writer = _CacheWriter(cache, namespace, sink, units, missing, len(p))
    _compute(p, rows_f, rows_o, writer, settings, engine, progress)
    writer.flush()  # the rest: every missing block is complete now
    stats = BlockStats(units=len(units), blocks=len(pairs), cached=len(pairs) - len(missing),
                       computed=len(missing),
                       pairs_computed=len(rows_f) * (len(rows_f) + 1) // 2
                       + len(rows_f) * len(rows_o))
    log.info("Bhattacharyya blocks: %s", stats)
    return sink, stats


@dataclass(frozen=True)
class BlocksToCompute:
    """The blocks of unit pairs that a cached computation of one matrix must compute, and how:
    the rows of the `fresh` units against each other and against the `partners`' rows."""

    namespace: str                    # the cache namespace (engine, settings, N, C, dtype)
    units: list[Unit]
    pairs: dict[str, tuple[int, int]]  # block key -> unit pair (a <= b), every pair
    index: dict[str, Path]            # block key -> cache segment, as found
    usable: list[str]                 # keys of cached blocks of the right shape
    missing: list[tuple[int, int]]    # unit pairs to compute (absent, or of the wrong shape)
    fresh: list[int]
    partners: list[int]

    def ordered(self, pair: tuple[int, int]) -> tuple[Unit, Unit]:
        """The units of a pair as their block is stored (rows, columns)."""
        return _ordered(self.units, pair)


def cache_namespace(engine: Engine, settings: DistanceSettings, n: int, c: int,
                    dtype: str | np.dtype) -> str:
    """The cache directory of blocks computed by `engine` with `settings` on N = n samples of
    C = c classes, for matrices stored as `dtype`."""
    namespace = f"{engine.name}_step{settings.sample_step}_floor{settings.bc_floor!r}_n{n}_c{c}"
    if np.dtype(dtype) != np.float64:  # blocks read back from a rounded matrix are rounded too
        namespace += f"_{np.dtype(dtype).name}"
    return namespace


def plan_blocks_to_compute(p: np.ndarray, labels: Sequence[str], cache: BlockCache,
                           engine: Engine, settings: DistanceSettings,
                           dtype: str | np.dtype) -> BlocksToCompute:
    """What `cache` lacks of the matrix of p (M, N, C) (validated by the caller) with unit
    `labels`: every row's unit is hashed, the cache's index read, and a cached block of the
    wrong shape counted as missing (logged)."""
    units = find_units(p, labels)
    namespace = cache_namespace(engine, settings, p.shape[1], p.shape[2], dtype)
    pairs = {_block_key(units[a], units[b]): (a, b)
             for a in range(len(units)) for b in range(a, len(units))}
    index = cache.index(namespace)
    missing = [pair for key, pair in pairs.items() if key not in index]
    found = [key for key in pairs if key in index]
    shapes = cache.shapes(index, found)
    usable = []
    for key in found:
        first, second = _ordered(units, pairs[key])
        expected = (len(first.rows), len(second.rows))
        if shapes.get(key) != expected:
            log.warning("a cached block of %s and %s has shape %s instead of %s: recomputing it",
                        first.label, second.label, shapes.get(key), expected)
            missing.append(pairs[key])
        else:
            usable.append(key)
    fresh, partners = _rows_to_compute(missing)
    return BlocksToCompute(namespace, units, pairs, index, usable, missing, fresh, partners)


# --------------------------------------------------------------------------- tiles elsewhere


@dataclass(frozen=True)
class Tile:
    """Missing blocks computed together as one rectangle of rows, wherever it runs (a Ray task,
    lowdim.cluster.distance_tiles): `rows_i` against `rows_j` (None: against themselves), then
    each block (its key and its two units, as stored) cut out of it."""

    namespace: str
    rows_i: np.ndarray
    rows_j: np.ndarray | None
    blocks: tuple[tuple[str, Unit, Unit], ...]

    @property
    def units(self) -> list[Unit]:
        """Every unit of the tile's blocks, once."""
        return list({u.key: u for _, a, b in self.blocks for u in (a, b)}.values())

    @property
    def pairs(self) -> int:
        """Row pairs the tile evaluates (a symmetric one counted once)."""
        n = len(self.rows_i)
        return n * (n + 1) // 2 if self.rows_j is None else n * len(self.rows_j)


def plan_tiles(plan: BlocksToCompute, max_rows: int) -> list[Tile]:
    """The missing blocks of `plan` as tiles of at most about `max_rows` rows a side.

    The fresh units are cut, in order and never split, into groups of up to `max_rows` rows,
    the partners likewise; every missing pair has a fresh end (`_rows_to_compute`), so it lies
    in exactly one tile: a fresh group against itself (symmetric), against a later fresh group,
    or against a partner group. Each tile computes the rows of its blocks' units only.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows = {max_rows!r}: must be a positive integer")

    def groups(chosen: list[int], tag: str) -> dict[int, tuple[str, int]]:
        where, rows, g = {}, 0, 0
        for u in chosen:
            size = len(plan.units[u].rows)
            if rows and rows + size > max_rows:
                g, rows = g + 1, 0
            where[u] = (tag, g)
            rows += size
        return where

    group_of = {**groups(plan.fresh, "a-fresh"), **groups(plan.partners, "b-partner")}
    tiles: dict[tuple, list[tuple[int, int]]] = {}
    for a, b in plan.missing:
        tiles.setdefault(tuple(sorted((group_of[a], group_of[b]))), []).append((a, b))
    planned = []
    for (first, second), pairs in sorted(tiles.items()):
        ends = [{a if group_of[a] == first else b for a, b in pairs},
                {b if group_of[b] == second else a for a, b in pairs}]
        if first == second:
            ends = [ends[0] | ends[1]] * 2
        rows_i, rows_j = (_rows(plan.units, sorted(e)) for e in ends)
        blocks = []
        for pair in pairs:
            first_unit, second_unit = plan.ordered(pair)
            key = _block_key(first_unit, second_unit)
            blocks.append((key, first_unit, second_unit))
        planned.append(Tile(plan.namespace, rows_i, None if first == second else rows_j,
                            tuple(blocks)))
    return planned


def compute_tile(p: np.ndarray, tile: Tile, settings: DistanceSettings,
                 dtype: str | np.dtype = "float64") -> list[tuple[str, np.ndarray]]:
    """Each block of `tile` as a local run stores it: (key, block in `dtype`).

    p (M, N, C), possibly an NpyFile, must hold the rows the tile was planned for: each unit's
    content is hashed again and compared (a ValueError names the unit), and the engine that
    `settings` selects here must be the planned one (its name keys the cache). The tile's
    rectangle is computed with the kernel the local stage runs (`distance_blocks`); the
    deterministic engines give each pair the same bits whatever the tile, and a block is cut
    from it as the stage's sink would store it (rounded once to `dtype`).
    """
    dtype = _check_dtype(dtype)
    engine = resolve_engine(settings.method, settings.device, settings.bc_floor)
    if not tile.namespace.startswith(f"{engine.name}_") or not engine.deterministic:
        raise ValueError(f"this node computes with the {engine.name} engine, but the tile was "
                         f"planned for the cache namespace {tile.namespace}: give every node "
                         "and the driver the same distances.method and device")
    p, _ = check_inputs(p, None, settings.sample_step, settings.bc_floor)
    for unit in tile.units:
        if content_digest(p, unit.rows) != unit.digest:
            raise ValueError(f"the probabilities of {unit.label} read here differ from those "
                             "the tile was planned with: every node must read the same "
                             "predictions (a shared filesystem, at the same path)")
    rows_j = tile.rows_i if tile.rows_j is None else tile.rows_j
    out = np.empty((len(tile.rows_i), len(rows_j)), dtype=np.float64)
    pos_i = {r: k for k, r in enumerate(tile.rows_i.tolist())}
    pos_j = {r: k for k, r in enumerate(rows_j.tolist())}
    kw = {"sample_step": settings.sample_step, "bc_floor": settings.bc_floor, "engine": engine,
          "device": settings.device, "max_block_bytes": settings.max_block_bytes}
    for ri, rj, block in distance_blocks(p, tile.rows_i, tile.rows_j, check=False, **kw):
        ii, jj = [pos_i[r] for r in ri.tolist()], [pos_j[r] for r in rj.tolist()]
        out[np.ix_(ii, jj)] = block
        if tile.rows_j is None and ri[0] != rj[0]:  # the mirror image of an off-diagonal tile
            out[np.ix_(jj, ii)] = block.T
    blocks = []
    for key, first, second in tile.blocks:
        if all(r in pos_i for r in first.rows.tolist()) and all(
                r in pos_j for r in second.rows.tolist()):
            cut = out[np.ix_([pos_i[r] for r in first.rows.tolist()],
                             [pos_j[r] for r in second.rows.tolist()])]
        else:  # the block lies the other way round in the rectangle
            cut = out[np.ix_([pos_i[r] for r in second.rows.tolist()],
                             [pos_j[r] for r in first.rows.tolist()])].T
        blocks.append((key, np.ascontiguousarray(cut.astype(dtype, copy=False))))
    return blocks


def segment_name(keys: Sequence[str]) -> str:
    """The file name of the cache segment holding the blocks `keys` (as `_CacheWriter` names
    its segments)."""
    return hashlib.blake2b("".join(sorted(keys)).encode(), digest_size=16).hexdigest()


class _CacheWriter:
    """A sink that also writes each computed block to the cache soon after it is complete.

    The kernel's tiles do not follow unit boundaries, so the writer counts, for every missing
    unit pair, the entries of the symmetric matrix its tiles have covered (each entry is
    computed exactly once: ``_compute``). A pair whose count reaches its size is complete; the
    complete ones are written as one cache segment (atomically: ``BlockCache.save``) once
    ``cache.flush_seconds`` have passed since the last segment, and the rest at the end. An
    interrupted stage thus keeps every segment written so far, and its rerun computes only the
    blocks that no segment holds. The blocks are read back from the sink as stored, so the
    cached bytes are those of a single end-of-stage segment, whichever segment holds them.
    """

    def __init__(self, cache: BlockCache, namespace: str, sink, units: list[Unit],
                 missing: list[tuple[int, int]], m: int) -> None:
        self.cache, self.namespace, self.sink, self.units = cache, namespace, sink, units
        self.unit_of = np.full(m, -1, dtype=np.int64)
        for u, unit in enumerate(units):
            self.unit_of[unit.rows] = u
        # entries of the symmetric matrix in a pair's block and its mirror image
        self.left = {(a, b): len(units[a].rows) * len(units[b].rows) * (1 if a == b else 2)
                     for a, b in missing}
        self.ready: list[tuple[int, int]] = []
        self.last = time.monotonic()

    def put(self, rows_i: np.ndarray, rows_j: np.ndarray, block: np.ndarray,
            mirrored: bool) -> None:
        self.sink.put(rows_i, rows_j, block, mirrored)
        ui, ni = np.unique(self.unit_of[rows_i], return_counts=True)
        uj, nj = np.unique(self.unit_of[rows_j], return_counts=True)
        times = 2 if mirrored else 1
        for x, nx in zip(ui.tolist(), ni.tolist(), strict=True):
            for y, ny in zip(uj.tolist(), nj.tolist(), strict=True):
                pair = (x, y) if x <= y else (y, x)
                if pair in self.left:
                    self.left[pair] -= nx * ny * times
                    if self.left[pair] == 0:
                        del self.left[pair]
                        self.ready.append(pair)
        if self.ready and time.monotonic() - self.last >= self.cache.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the complete blocks not yet in the cache as one segment."""
        if not self.ready:
            return
        blocks = {_block_key(self.units[a], self.units[b]): (a, b) for a, b in self.ready}
        keys = sorted(blocks)
        self.cache.save(self.namespace, self._blocks(blocks, keys), segment_name(keys))
        self.ready = []
        self.last = time.monotonic()

    def _blocks(self, blocks: dict[str, tuple[int, int]], keys: list[str]
                ) -> Iterator[tuple[str, np.ndarray]]:
        for key in keys:
            first, second = _ordered(self.units, blocks[key])
            yield key, self.sink.block(first.rows, second.rows)


def _compute(p: np.ndarray, rows_f: np.ndarray, rows_o: np.ndarray, sink,
             settings: DistanceSettings, engine: Engine, progress: bool) -> None:
    """Put fresh x fresh (symmetric tiles) and fresh x partner blocks into the sink."""
    kw = {"sample_step": settings.sample_step, "bc_floor": settings.bc_floor, "engine": engine,
          "device": settings.device, "max_block_bytes": settings.max_block_bytes,
          "progress": progress}
    for ri, rj, block in distance_blocks(p, rows_f, check=False, **kw):
        sink.put(ri, rj, block, mirrored=ri[0] != rj[0])  # symmetric tiles: diagonal or disjoint
    for ri, rj, block in distance_blocks(p, rows_f, rows_o, check=False, **kw):
        sink.put(ri, rj, block, mirrored=True)


def _check_labels(labels: Sequence[str], m: int) -> np.ndarray:
    """(M,) unit labels -> their distinct values; the labels must give one per row."""
    labels = np.asarray(labels)
    if labels.shape != (m,):
        raise ValueError(f"labels must give one label per row of p: {m} rows, "
                         f"got labels of shape {labels.shape}")
    return np.unique(labels)


def cached_bhattacharyya(
    p: np.ndarray,
    labels: Sequence[str],
    cache: BlockCache | None,
    *,
    settings: DistanceSettings | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, BlockStats]:
    """(M, N, C) probabilities, (M,) unit labels -> (M, M) float64 distances and what was done.

    ``settings``: how distances are computed (None: ``DistanceSettings()``, the defaults).
    Blocks of unit pairs found in `cache` are read; the others are computed (only the rows of
    the units involved, streamed from p, which may be memory-mapped) and written to it. With
    a deterministic engine the result is bitwise the full computation; the reference engine
    is not deterministic across block shapes, so with it the cache is not used (logged).
    The matrix is assembled in memory: for large M use ``write_bhattacharyya``.
    """
    sink, stats = _assemble(p, labels, cache, _ArraySink, settings, progress=progress,
                            dtype=np.dtype(np.float64))
    return sink.out, stats


def write_bhattacharyya(
    p: np.ndarray,
    labels: Sequence[str],
    cache: BlockCache | None,
    path: str | Path,
    *,
    settings: DistanceSettings | None = None,
    dtype: str | np.dtype = "float64",
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], BlockStats]:
    """``cached_bhattacharyya`` written tile by tile into the .npy file `path`, never in memory.

    Returns the centring sums of the stored matrix (``eigen.CentringAccumulator.arrays``: row
    sums, total, squared norms, accumulated in the same pass) and what was done. ``dtype``:
    float64 (bitwise the in-memory matrix) or float32 (half the disk; each entry rounded by at
    most 6e-8 relative, below the kernel's own float32 error). Memory: one tile and O(M).
    """
    dtype = _check_dtype(dtype)
    sink, stats = _assemble(p, labels, cache,
                            lambda m: _FileSink(Path(path), m, dtype, Path(path).stem),
                            settings, progress=progress, dtype=dtype)
    return sink.sums.arrays(), stats


def _check_dtype(dtype: str | np.dtype) -> np.dtype:
    if np.dtype(dtype) not in STORED_DTYPES:
        raise ValueError(f"distances are stored as float64 or float32, got {dtype!r}")
    return np.dtype(dtype)


def _rows_to_compute(missing: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Units whose rows are computed against each other (fresh) and against fresh (partners).

    Every missing pair needs one end in `fresh`: units missing their own diagonal block (new or
    changed runs) first, then one end of any pair still uncovered. Usually the missing pairs
    are exactly fresh x fresh and fresh x old, so nothing is computed twice.
    """
    fresh = {a for a, b in missing if a == b}
    for a, b in missing:
        if a not in fresh and b not in fresh:
            fresh.add(a)
    partners = {b if a in fresh else a for a, b in missing} - fresh
    return sorted(fresh), sorted(partners)


def _rows(units: list[Unit], chosen: list[int]) -> np.ndarray:
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate([units[u].rows for u in chosen]))


def _put(out: np.ndarray, rows_i: np.ndarray, rows_j: np.ndarray, block: np.ndarray) -> None:
    """Write a block and its mirror image into the symmetric matrix."""
    out[np.ix_(rows_i, rows_j)] = block
    out[np.ix_(rows_j, rows_i)] = block.T


def _block_key(u: Unit, v: Unit) -> str:
    """The cache key of the block of units u and v, the same for either order."""
    first, second = sorted((u.key, v.key))
    return hashlib.blake2b(f"{first}|{second}".encode(), digest_size=16).hexdigest()


def _ordered(units: list[Unit], pair: tuple[int, int]) -> tuple[Unit, Unit]:
    """The units of a pair as their block is stored: the unit whose key sorts first gives rows."""
    u, v = (units[i] for i in pair)
    return (u, v) if u.key <= v.key else (v, u)


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class DistancesPlan:
    """What the distances stage will need for a grid, stated before it starts."""

    points: int                    # M: rows of the analysis set
    samples: dict[str, int]        # samples used per space (after sample_step)
    classes: int                   # C
    dtype: str                     # stored dtype of the matrices
    cache: bool                    # the block cache is on
    matrix_bytes: int              # disk: all matrices and their centring sums
    cache_bytes: int               # disk: a cold block cache (blocks of every unit pair)
    ram_bytes: int                 # memory: kernel block, tiles and O(M) bookkeeping
    pair_samples: int              # M (M + 1) / 2 x samples, summed over spaces
    landmarks: int | None = None   # L: only the (M, L) landmark columns (and V x V held out)
    holdout: int = 0               # V

    def describe(self) -> str:
        spaces = ", ".join(f"{s} N = {n}" for s, n in self.samples.items())
        shape = (f"{self.points} x {self.points}" if self.landmarks is None else
                 f"{self.points} x {self.landmarks} (landmark columns) and "
                 f"{self.holdout} x {self.holdout} (held out)")
        text = (f"distances: M = {self.points} points, {spaces}, C = {self.classes}; "
                f"{len(self.samples)} matrices of {shape} {self.dtype}: "
                f"disk {human_bytes(self.matrix_bytes)}")
        if self.cache:
            text += f" + block cache up to {human_bytes(self.cache_bytes)} (cold)"
        return (text + f"; memory about {human_bytes(self.ram_bytes)} plus the interpreter; "
                f"{self.pair_samples / 1e9:.3g} G pair-sample terms")


def plan_distances(points: int, samples: dict[str, int], classes: int, *, dtype: str = "float64",
                   cache: bool = True, max_block_bytes: int = 256 * 2**20, units: int = 1,
                   method: str = "auto", device: str | torch.device = "cpu",
                   landmarks: int | None = None, holdout: int = 0) -> DistancesPlan:
    """The disk and memory the distances stage needs for M points and these sample counts
    (``landmarks``: L, with ``holdout`` V: only the landmark columns and the held-out block)."""
    dtype = _check_dtype(dtype)
    if landmarks is not None:
        return _plan_landmarks(points, samples, classes, dtype, max_block_bytes, method, device,
                               min(int(landmarks), points), min(int(holdout), points))
    engine = resolve_engine(method, device)
    dev = torch.device(device)
    target = engine.cpu_target_bytes if dev.type == "cpu" else None
    ram = 0
    for n_used in samples.values():
        bi, bj, s = plan_blocks(points, points, n_used, classes, None, None, max_block_bytes,
                                 target, engine.block_bytes)
        # the kernel's block, the finished tile, its symmetrized and stored copies, a mirror
        ram = max(ram, engine.block_bytes(bi, bj, s, classes) + 4 * 8 * bi * bj)
    ram += 6 * 8 * points  # row sums, unit rows, labels
    if cache:
        ram += 400 * units * (units + 1) // 2  # keys of every unit pair, the cache index
    per_matrix = points * points * dtype.itemsize + 8 * points + 4096
    return DistancesPlan(
        points=points, samples=dict(samples), classes=classes, dtype=dtype.name, cache=cache,
        matrix_bytes=len(samples) * per_matrix,
        # unit pairs u <= v: half the matrix plus the diagonal blocks (~M^2 / units)
        cache_bytes=len(samples) * ((points * points + points * points // max(units, 1)) // 2
                                    * dtype.itemsize + 200 * units * (units + 1) // 2),
        ram_bytes=int(ram),
        pair_samples=points * (points + 1) // 2 * sum(samples.values()),
    )


def _plan_landmarks(points: int, samples: dict[str, int], classes: int, dtype: np.dtype,
                    max_block_bytes: int, method: str, device: str | torch.device,
                    count: int, holdout: int) -> DistancesPlan:
    """``plan_distances`` of landmark distances: (M, L) columns and a (V, V) held-out block."""
    engine = resolve_engine(method, device)
    target = engine.cpu_target_bytes if torch.device(device).type == "cpu" else None
    ram = 0
    for n_used in samples.values():
        bi, bj, s = plan_blocks(points, count, n_used, classes, None, None, max_block_bytes,
                                 target, engine.block_bytes)
        ram = max(ram, engine.block_bytes(bi, bj, s, classes) + 3 * 8 * bi * bj)
    ram += 8 * holdout * holdout + 4 * 8 * points
    per_space = points * count * dtype.itemsize + holdout * holdout * 8 + 8192
    return DistancesPlan(
        points=points, samples=dict(samples), classes=classes, dtype=dtype.name, cache=False,
        matrix_bytes=len(samples) * per_space + 16 * (count + holdout), cache_bytes=0,
        ram_bytes=int(ram),
        pair_samples=(points * count + holdout * (holdout + 1) // 2) * sum(samples.values()),
        landmarks=count, holdout=holdout)


def check_distances_disk(plan: DistancesPlan, directory: str | Path,
                         cache_dir: str | Path | None) -> bool:
    """Stop (OSError) when the matrices do not fit; return whether the cache fits beside them.

    The old product stays in place until the new one is complete, so the matrices need their
    full size free. A cold block cache needs as much again; when it does not fit the
    stage runs without it (logged) rather than fail after the computation.
    """
    side = plan.points if plan.landmarks is None else plan.landmarks
    free = check_disk_space(
        plan.matrix_bytes, directory, f"the distances stage ({plan.points} x {side} "
        f"{plan.dtype} matrices for {len(plan.samples)} spaces)",
        "or make the matrices smaller: store them as float32 (distances.dtype: float32 halves "
        "them), or use fewer points (fewer runs or checkpoints per run); raising "
        "distances.sample_step only shortens the computation, and embedding.landmarks only "
        "the embedding's memory and time.")
    if not plan.cache or cache_dir is None:
        return plan.cache
    cache_where = existing_ancestor(Path(cache_dir))
    same = cache_where.stat().st_dev == existing_ancestor(Path(directory)).stat().st_dev
    cache_free = free - plan.matrix_bytes if same else shutil.disk_usage(cache_where).free
    if plan.cache_bytes > cache_free:
        log.warning("the block cache may need up to %s on %s, which has %s left: computing "
                    "without it (set distances.cache: false to silence this)",
                    human_bytes(plan.cache_bytes), cache_where, human_bytes(max(cache_free, 0)))
        return False
    return True


def write_distances(
    probs: dict[str, np.ndarray],
    labels: Sequence[str],
    cache: BlockCache | None,
    directory: str | Path,
    reference: pd.DataFrame,
    *,
    settings: DistanceSettings | None = None,
    dtype: str = "float64",
    progress: bool = False,
) -> dict[str, BlockStats]:
    """The distances stage's product, written atomically into `directory`, with `settings`
    (None: ``DistanceSettings()``):

    ``<space>.npy`` (M x M, ``dtype``, written tile by tile by ``write_bhattacharyya``),
    ``<space>_centring.npz`` (its row sums, total and squared norms, for the embedding) and the
    `reference` table. Memory stays at one tile and O(M) whatever M is.
    """
    done = {}
    with atomic_directory(directory) as tmp:
        for space, p in probs.items():
            sums, done[space] = write_bhattacharyya(
                p, labels, cache, tmp / f"{space}.npy", settings=settings, dtype=dtype,
                progress=progress)
            save_centring(sums, tmp / f"{space}{CENTRING_SUFFIX}")
        reference.to_parquet(tmp / REFERENCE, index=False)
    return done


def write_landmark_distances(
    probs: dict[str, np.ndarray],
    landmarks: np.ndarray,
    holdout: np.ndarray,
    directory: str | Path,
    reference: pd.DataFrame,
    *,
    settings: DistanceSettings | None = None,
    dtype: str = "float64",
    progress: bool = False,
) -> dict[str, int]:
    """The distances stage's product under ``distances.landmarks``, written atomically into
    `directory` (``lowdim.store.distance_matrices`` names the files):

    ``<space>_landmarks.npy``: (M, L) D[:, landmarks] in ``dtype``, tile by tile (each entry the
    bits the whole matrix would hold: the fused kernel's value of a pair does not depend on its
    order or the block, and a landmark's distance to itself is exactly 0);
    ``<space>_holdout.npy``: (V, V) float64 distances among the `holdout` rows; ``landmarks.npz``
    (both index sets) and the `reference` table. Returns the row pairs computed per space.
    Memory: one tile, the (V, V) block and O(M).
    """
    settings = DistanceSettings() if settings is None else settings
    dtype = _check_dtype(dtype)
    done = {}
    with atomic_directory(directory) as tmp:
        for space, p in probs.items():
            p, _ = check_inputs(p, None, settings.sample_step, settings.bc_floor)
            m = len(p)
            rows = _check_index(landmarks, m, "landmarks")
            held = _check_index(holdout, m, "holdout")
            engine = resolve_engine(settings.method, settings.device, settings.bc_floor)
            kw = {"sample_step": settings.sample_step, "bc_floor": settings.bc_floor,
                  "engine": engine, "device": settings.device,
                  "max_block_bytes": settings.max_block_bytes, "progress": progress,
                  "check": False}
            out = NpyFile.create(tmp / f"{space}{LANDMARKS_SUFFIX}", (m, len(rows)), dtype)
            for ri, rj, block in distance_blocks(p, np.arange(m), rows, **kw):
                block[ri[:, None] == rj[None, :]] = 0.0  # a landmark to itself
                out.write(as_slice(ri), as_slice(np.searchsorted(rows, rj)),
                          block.astype(dtype, copy=False))
            square = np.zeros((len(held), len(held)))
            for ri, rj, block in distance_blocks(p, held, **kw):
                _put(square, np.searchsorted(held, ri), np.searchsorted(held, rj), block)
            np.save(tmp / f"{space}{HOLDOUT_SUFFIX}", square)
            done[space] = m * len(rows) + len(held) * (len(held) + 1) // 2
        save_landmark_index(landmarks, holdout, tmp)
        reference.to_parquet(tmp / REFERENCE, index=False)
    return done


def _check_index(rows: np.ndarray, m: int, name: str) -> np.ndarray:
    """Sorted, unique row indices (at least 2) into M rows."""
    rows = np.asarray(rows)
    if (rows.ndim != 1 or rows.size < 2 or not np.issubdtype(rows.dtype, np.integer)
            or rows[0] < 0 or rows[-1] >= m or np.any(np.diff(rows) <= 0)):
        raise ValueError(f"{name} must be at least 2 sorted, unique row indices in [0, {m - 1}]")
    return rows.astype(np.int64)
