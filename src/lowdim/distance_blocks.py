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
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lowdim.distances import BC_FLOOR, check_inputs, distance_blocks, resolve_engine
from lowdim.store import BlockCache

log = logging.getLogger(__name__)

# Rows hashed per read, so hashing a unit never holds more than this many elements at once.
_HASH_ELEMS = 1 << 24


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
    for start in range(0, len(rows), step):
        h.update(np.ascontiguousarray(x[rows[start:start + step]]).tobytes())
    return h.hexdigest()


def find_units(p: np.ndarray, labels: Sequence[str]) -> list[Unit]:
    """Group the rows of p (M, N, C) by label, in order of first appearance, and hash each group."""
    labels = np.asarray(labels)
    if labels.shape != (len(p),):
        raise ValueError(f"labels must give one label per row of p: {len(p)} rows, "
                         f"got labels of shape {labels.shape}")
    names, first = np.unique(labels, return_index=True)
    units = []
    for name in names[np.argsort(first)]:
        rows = np.flatnonzero(labels == name)
        units.append(Unit(str(name), rows, content_digest(p, rows)))
    return units


def cached_bhattacharyya(
    p: np.ndarray,
    labels: Sequence[str],
    cache: BlockCache | None,
    *,
    sample_step: int = 1,
    bc_floor: float = BC_FLOOR,
    method: str = "auto",
    device: str | torch.device = "cpu",
    max_block_bytes: int = 256 * 2**20,
    progress: bool = False,
) -> tuple[np.ndarray, BlockStats]:
    """(M, N, C) probabilities, (M,) unit labels -> (M, M) float64 distances and what was done.

    Blocks of unit pairs found in `cache` are read; the others are computed (only the rows of
    the units involved, streamed from p, which may be memory-mapped) and written to it. With
    a deterministic engine the result is bitwise the full computation; the reference engine
    is not deterministic across block shapes, so with it the cache is not used (logged).
    """
    p, _ = check_inputs(p, None, sample_step, bc_floor)
    engine = resolve_engine(method, device, bc_floor)
    if cache is not None and not engine.deterministic:
        log.warning("the %s method depends on block sizes in the last bits: distances are "
                    "computed without the block cache", engine.name)
        cache = None
    units = find_units(p, labels)
    namespace = f"{engine.name}_step{sample_step}_floor{bc_floor!r}_n{p.shape[1]}_c{p.shape[2]}"
    out = np.empty((len(p), len(p)), dtype=np.float64)
    pairs = {_block_key(units[a], units[b]): (a, b)
             for a in range(len(units)) for b in range(a, len(units))}
    index = {} if cache is None else cache.index(namespace)
    missing = [pair for key, pair in pairs.items() if key not in index]
    found = [key for key in pairs if key in index]
    for key, block in ([] if cache is None else cache.load(index, found)):
        if not _put_cached(out, units, pairs[key], block):
            missing.append(pairs[key])
    fresh, partners = _rows_to_compute(missing)
    rows_f = _rows(units, fresh)
    rows_o = _rows(units, partners)
    kw = dict(sample_step=sample_step, bc_floor=bc_floor, engine=engine, device=device,
              max_block_bytes=max_block_bytes, progress=progress, check=False)
    for ri, rj, block in distance_blocks(p, rows_f, **kw):
        _put(out, ri, rj, block)
    for ri, rj, block in distance_blocks(p, rows_f, rows_o, **kw):
        _put(out, ri, rj, block)
    if cache is not None and missing:
        keys = sorted(_block_key(units[a], units[b]) for a, b in missing)
        name = hashlib.blake2b("".join(keys).encode(), digest_size=16).hexdigest()
        cache.save(namespace, ((key, _stored(out, units, pairs[key])) for key in keys), name)
    stats = BlockStats(units=len(units), blocks=len(pairs), cached=len(pairs) - len(missing),
                       computed=len(missing),
                       pairs_computed=len(rows_f) * (len(rows_f) + 1) // 2
                       + len(rows_f) * len(rows_o))
    log.info("Bhattacharyya blocks: %s", stats)
    return out, stats


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


def _stored(out: np.ndarray, units: list[Unit], pair: tuple[int, int]) -> np.ndarray:
    """The block of a unit pair as stored: rows of the unit whose key sorts first."""
    u, v = (units[i] for i in pair)
    first, second = (u, v) if u.key <= v.key else (v, u)
    return out[np.ix_(first.rows, second.rows)]


def _put_cached(out: np.ndarray, units: list[Unit], pair: tuple[int, int],
                block: np.ndarray) -> bool:
    """Write a cached block into the matrix; False (and a warning) when its shape is wrong."""
    u, v = (units[i] for i in pair)
    first, second = (u, v) if u.key <= v.key else (v, u)
    if block.shape != (len(first.rows), len(second.rows)):
        log.warning("a cached block of %s and %s has shape %s instead of %s: recomputing it",
                    first.label, second.label, block.shape, (len(first.rows), len(second.rows)))
        return False
    _put(out, first.rows, second.rows, block)
    return True
