"""What the special studies share: their result, the configured distance and InPCA settings, the
joint matrix of a base set plus new points, and the run selection of a study.

**Scale.** The studies embed matrices of M points, and M x M float64 is 180 GB at M = 150,000.
So the matrices they embed are *lazy* (`LazyMatrix`: `Submatrix` of a stored D, `WeightedSum` of
stored matrices, `JointMatrix` of a stored base and a few new rows): blockwise objects that
`lowdim.geometry.inpca` reads slab by slab (the iterative solvers), each block assembled on demand
from memory-mapped or `NpyFile` slices of the stored matrices, with exactly the values (and bytes)
the in-memory matrix would hold. Memory: one slab (``eigen.DEFAULT_BLOCK_BYTES``) plus what they
keep in memory (a `JointMatrix`'s R x M new rows). A matrix of at most
``store.lazy.IN_MEMORY_BYTES`` (128 MiB: M = 4,096) is read whole before it is embedded, so that
the solvers' passes run at memory speed where that costs little; the dense solver
(``embedding.solver: dense``, or ``auto`` at M <= ``inpca.AUTO_DENSE_MAX``) forms the whole
M x M matrix in any case: ``8 M^2`` bytes, and a few times that while it centres and decomposes
it.

Every study computes its distances and embeddings with the settings of the `distances` and
`embedding` sections (method, bc_floor, sample_step, max_block_mib; solver, n_components), so a
study's numbers follow the same settings as the distances and embedding stages. As in the
distances stage, distances run on CUDA when it is available, else on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.load import ConfigError
from lowdim.config.studies.runs import RunSelection, check_selection
from lowdim.geometry.distances import DistanceSettings
from lowdim.geometry.inpca import inpca
from lowdim.store.arrays import as_slice
from lowdim.store.lazy import LazyMatrix, in_memory_if_small
from lowdim.store.records import Embedding


@dataclass(frozen=True)
class StudyResult:
    """What ``run_<study>`` returns: products to save (`store.save_products`: tables, arrays,
    embeddings by name), JSON-ready metrics (metrics/<study>.json) and a table to show."""

    products: dict[str, Any]
    metrics: dict[str, Any]
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)


def distance_device() -> str:
    """The device distances run on: CUDA when available, else the CPU (as the distances stage)."""
    from lowdim.device import resolve_device

    return str(resolve_device("auto"))


def distance_options(settings: DistancesConfig, device: str | None = None, *,
                     all_samples: bool = False) -> DistanceSettings:
    """The `DistanceSettings` of the `distances` section on `device` (None: `distance_device()`).

    ``all_samples=True`` sets ``sample_step`` to 1, for distances defined on every sample (the
    convergence analysis at equal progress, A8). Kernel-level functions take its keywords:
    ``bhattacharyya(p, **options.kwargs())``.
    """
    device = distance_device() if device is None else device
    options = DistanceSettings.from_config(settings, device)
    return options.all_samples() if all_samples else options


def embed(d: np.ndarray, settings: EmbeddingConfig, n_components: int | None = None) -> Embedding:
    """(M, M) distances -> InPCA with the configured solver.

    Default: ``embedding.n_components`` axes and, as the embedding stage, the eigenvalues that the
    explained stress at ``embedding.stress_dims`` needs. An explicit ``n_components`` (a study's
    own number of axes) asks for those axes only.
    """
    d = in_memory_if_small(d)  # the solvers' passes at memory speed where it costs little
    if n_components is None:
        k = settings.n_components
        return inpca(d, k, solver=settings.solver, n_eigenvalues=max(k, *settings.stress_dims))
    return inpca(d, n_components, solver=settings.solver)


class WeightedSum(LazyMatrix):
    """sum_s w_s D_s with w_s = n_s / sum_s n_s, of stored (M, M) matrices {space: D_s} and
    counts {space: n_s}, block by block (the same sum, in the same order, as in memory)."""

    def __init__(self, matrices: Mapping[str, Any], counts: Mapping[str, int]) -> None:
        shapes = {tuple(np.shape(d)) for d in matrices.values()}
        if len(shapes) != 1:
            raise ValueError(f"the spaces' matrices must share one shape (the same models), got "
                             f"{sorted(shapes)}")
        self.matrices, self.counts = matrices, counts
        super().__init__(shapes.pop()[0])

    def block(self, rows: slice, cols: slice) -> np.ndarray:
        total = sum(self.counts.values())
        return sum(np.asarray(self.matrices[s][rows, cols], dtype=np.float64)
                   * (self.counts[s] / total) for s in self.matrices)


class JointMatrix(LazyMatrix):
    """[[base, cross^T], [cross, new]]: an (M, M) base read block by block (any matrix or
    `LazyMatrix`), with (R, M) `cross` and (R, R) `new` in memory: `joint_distance_matrix`,
    assembled on demand."""

    def __init__(self, base: Any, cross: np.ndarray, new: np.ndarray) -> None:
        self.base = base
        self.cross = np.asarray(cross, dtype=np.float64)
        self.new = np.asarray(new, dtype=np.float64)
        m, r = np.shape(base)[0], self.new.shape[0]
        if (tuple(np.shape(base)) != (m, m) or self.new.shape != (r, r)
                or self.cross.shape != (r, m)):
            raise ValueError(f"need base (M, M), cross (R, M), new (R, R); got {np.shape(base)}, "
                             f"{self.cross.shape}, {self.new.shape}")
        self.m = m
        super().__init__(m + r)

    def block(self, rows: slice, cols: slice) -> np.ndarray:
        (r_base, r_new), (c_base, c_new) = _split(rows, self.m), _split(cols, self.m)
        nr, nc = r_base.stop - r_base.start, c_base.stop - c_base.start
        out = np.empty((rows.stop - rows.start, cols.stop - cols.start))
        if nr and nc:
            out[:nr, :nc] = self.base[r_base, c_base]
        out[:nr, nc:] = self.cross[c_new, r_base].T
        out[nr:, :nc] = self.cross[r_new, c_base]
        out[nr:, nc:] = self.new[r_new, c_new]
        return out


def _split(positions: slice, m: int) -> tuple[slice, slice]:
    """A slice of the joint matrix's rows -> its part among the M base rows, and among the new
    rows (counted from 0)."""
    start, stop = positions.start, positions.stop
    return slice(min(start, m), min(stop, m)), slice(max(start, m) - m, max(stop, m) - m)


class Rows:
    """Some rows of a stored (M, ...) array (ndarray, memory map or `NpyFile`), read on demand:
    ``Rows(x, rows)[key]`` is ``x[rows][key]`` for an int, a slice or a (slice, ...) key, and
    only those rows are read (the whole `rows` by ``np.asarray``). Passes for a blockwise array
    of probabilities in `lowdim.geometry.distances` and `lowdim.geometry.tangent_basis`."""

    blockwise = True

    def __init__(self, source: Any, rows: np.ndarray) -> None:
        self.source, self.rows = source, np.asarray(rows)
        self.shape = (len(self.rows), *tuple(source.shape)[1:])
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, (int, np.integer)):
            return np.asarray(self.source[(int(self.rows[first]), *rest)])
        if not isinstance(first, slice):
            raise TypeError(f"Rows is read by an int or a slice of rows, got {key!r}")
        return np.asarray(self.source[(as_slice(self.rows[first]), *rest)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)


def joint_distance_matrix(d_base: np.ndarray, cross: np.ndarray, d_new: np.ndarray) -> np.ndarray:
    """(M, M) base, (R, M) new-to-base, (R, R) new -> (M + R, M + R), base rows first."""
    d_base, cross, d_new = (np.asarray(x, dtype=np.float64) for x in (d_base, cross, d_new))
    m, r = d_base.shape[0], d_new.shape[0]
    if d_base.shape != (m, m) or d_new.shape != (r, r) or cross.shape != (r, m):
        raise ValueError(f"need d_base (M, M), cross (R, M), d_new (R, R); got {d_base.shape}, "
                         f"{cross.shape}, {d_new.shape}")
    return np.block([[d_base, cross.T], [cross, d_new]])


def check_spaces(name: str, values: Mapping[str, Any], spaces: tuple[str, ...]) -> None:
    """Raise ValueError unless `values` has one entry per prediction space."""
    if set(values) != set(spaces):
        raise ValueError(f"{name} must hold one entry per prediction space "
                         f"({', '.join(spaces)}), got {sorted(values)}")


def selection_mask(index: pd.DataFrame, selection: RunSelection, where: str) -> np.ndarray:
    """(len(index),) bool: the run rows (every checkpoint) of the runs of `index` that
    `selection` keeps (`where`: its key, for the messages). ConfigError when the analysis set
    lacks an axis, a listed value is on none of its runs, or no run is kept."""
    runs = index[index["kind"] == "run"]
    axes = selection.axes
    missing = [axis for axis in axes if axis not in runs.columns]
    if missing:
        raise ConfigError(f"{where} names {', '.join(missing)}, which the analysis set does not "
                          "record: rebuild it with the predictions stage, or select on its "
                          "columns")
    per_run = runs.drop_duplicates("run_id")[["run_id", *axes]]
    kept = check_selection(per_run[axes].to_dict("records"), selection, where,
                           "the analysis set")
    chosen = per_run["run_id"].to_numpy()[np.asarray(kept, dtype=bool)]
    return ((index["kind"] == "run") & index["run_id"].isin(chosen)).to_numpy()
