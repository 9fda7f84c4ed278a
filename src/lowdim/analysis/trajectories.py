"""Whole trajectories from the analysis set: progress of every checkpoint, reindexing onto a
common progress grid, per-configuration averages and the reindexed geodesic (docs/study.md A6-A9).

The trajectory set of one prediction space is a table (one row per trajectory: trained runs, then
one average per configuration, then the geodesic) and a stacked (R, G, N, C) array of their
probabilities at the G grid points, in the table's order. The analyses in
`lowdim.analysis.trajectory_analyses` take the distance tensor of this array with this table.

Choices, documented where they are made:

- only trained runs (final train error <= `max_error`, the authors' filter for every
  reindexed analysis) enter the set, and configuration averages are taken over those runs;
- the reindexing index is 1 - train error of each checkpoint for both spaces (the authors'
  production call) or the checkpoint's progress lambda in that space;
- the geodesic enters at its own parameter t = s_j: reindexing it by accuracy would be
  degenerate, since every point past P0 already predicts the true class (accuracy 1).

Scale. Memory is O(block + M + R^2 + G R) (``BLOCK_BYTES`` bounds a block; with the fused
distance kernel, the default, no product depends on it, bit for bit:
tests/test_trajectories_blocked.py, tests/test_trajectories_streamed.py):

- ``checkpoint_progress`` reads the (M, N, C) probabilities a block of checkpoints at a time
  (``geometry.geodesic.progress``), never forming the (M, N) inner products of all of them;
- ``trajectory_tensor`` never holds the (R, G, N, C) trajectory set, nor any per-sample
  (G, R, R, N) quantity: it builds the trajectories a few grid points at a time (an
  (R, g, N, C) float32 slab within the budget), reading each run's bracketing checkpoints only,
  and reduces each grid point at once to its (R, R) distances by the blocked kernel of
  ``lowdim.geometry.distances``. When one grid point alone exceeds the budget (R = 2,300
  trajectories of N = 50,000 samples: 4.6 GB), its slab goes to a scratch file a block of
  trajectories at a time and the kernel reads it from there;
- ``stream_tensor`` never holds the (G, R, R) float64 tensor (4.2 GB at the paper's G = 100
  and R = 2,300): it writes it to its ``.npy`` a grid point at a time, keeps the (G, R) pairs
  the analyses read at every grid point (runs to their averages, trajectories to the geodesic)
  and reads the (R, R) mean over progress back from the file a block of rows at a time
  (``trajectory_analyses.ReducedTensor``; the same bits as the whole tensor's analyses);
- the stage (notebooks/60_trajectories.ipynb) analyses and writes one space at a time.

The pairwise work itself (O(G R^2 N C)) is streamed. """

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lowdim.analysis.trajectory_analyses import (
    ReducedTensor,
    cluster_configurations,
    configuration_distances,
    configuration_to_geodesic,
    distance_to_geodesic,
    feature_importance,
    gather_pairs,
    mean_over_progress,
    tensor_pairs,
    trajectory_embedding,
    tube_width,
)
from lowdim.geometry.distances import BC_FLOOR, bhattacharyya, check_probabilities
from lowdim.geometry.geodesic import (
    average_trajectories,
    check_index,
    chord_angles,
    geodesic,
    progress,
    reindex,
    reindex_brackets,
    riemann_length,
    slerp_roots,
    unit_roots,
)
from lowdim.store.arrays import NpyFile, check_disk_space

FACTORS = ("arch", "optimizer", "batch_size", "lr", "weight_decay", "augment", "init", "epochs")
# Default memory bound of one block (of checkpoints for progress, of reindexed trajectories and of
# the distance kernel for the tensor). The products do not depend on it, bit for bit.
BLOCK_BYTES = 64 * 2**20


def progress_grid(points: int) -> np.ndarray:
    """The common grid s_j = j / G, j = 1..G (A7: 0.01, ..., 1.00 for G = 100)."""
    return np.arange(1, points + 1) / points


def config_key(row: Mapping) -> str:
    """A readable key shared by the seeds of one configuration (every factor but the seed)."""
    return (f"{row['arch']}|{row['optimizer']}|bs{row['batch_size']}|lr{row['lr']:g}"
            f"|wd{row['weight_decay']:g}|{row['augment']}|{row['init']}|ep{row['epochs']}")


def run_table(index: pd.DataFrame, max_error: float) -> pd.DataFrame:
    """One row per run: factors, seed, config key, final errors and losses, `trained` flag."""
    runs = index[index["kind"] == "run"].sort_values(["run_id", "checkpoint"])
    last = runs.groupby("run_id", sort=True).last().reset_index()
    table = last[["run_id", *FACTORS, "seed"]].copy()
    table["config"] = [config_key(r) for r in table.to_dict("records")]
    for space in ("train", "test"):
        table[f"final_{space}_error"] = last[f"{space}_error"].to_numpy()
        table[f"final_{space}_loss"] = last[f"{space}_loss"].to_numpy()
    table["trained"] = table["final_train_error"] <= max_error
    return table


def reference_rows(index: pd.DataFrame) -> tuple[int, int]:
    """Rows of the ignorance and truth points in the analysis set."""
    rows = []
    for kind in ("ignorance", "truth"):
        found = index.index[index["kind"] == kind]
        if len(found) != 1:
            raise ValueError(f"the analysis set must hold exactly one {kind} row, found "
                             f"{len(found)}: rebuild it with the predictions stage")
        rows.append(int(found[0]))
    return rows[0], rows[1]


def checkpoint_progress(index: pd.DataFrame, probs: np.ndarray, *,
                        max_block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """(M,) progress lambda (A6, angle-sum mode, all samples) of every row of one space.

    `probs` (an array, a memory map or a blockwise ``NpyFile``) is read a block of models at a
    time (``geometry.geodesic.progress``): O(block + M) memory, the same bits for any budget.
    """
    p0_row, p1_row = reference_rows(index)
    p0, p1 = np.asarray(probs[p0_row]), np.asarray(probs[p1_row])
    return progress(probs, p0, p1, max_block_bytes=max_block_bytes)


def reindex_index(index: pd.DataFrame, run_progress: np.ndarray | None, by: str) -> np.ndarray:
    """(M,) index values used to reindex each row: 1 - train error, or progress lambda."""
    if by == "accuracy":
        return 1.0 - index["train_error"].to_numpy(dtype=np.float64)
    if by == "progress":
        if run_progress is None:
            raise ValueError("reindexing by progress needs the progress of every checkpoint")
        return np.asarray(run_progress, dtype=np.float64)
    raise ValueError(f"reindex_by = {by!r} is not known: use 'accuracy' or 'progress'")


def build_trajectory_set(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                         index_values: np.ndarray, grid: np.ndarray
                         ) -> tuple[pd.DataFrame, np.ndarray]:
    """Trained runs, configuration averages and the geodesic on the grid.

    (M, N, C) probabilities of one space and (M,) index values -> the trajectory table and a
    (R, G, N, C) float32 array in its order.
    """
    table, trained, members = _trajectory_table(index, runs)
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    reindexed = np.stack([
        reindex(np.asarray(probs[rows]), index_values[rows], grid).astype(np.float32)
        for rows in (rows_of.get_group(r).to_numpy() for r in trained["run_id"])
    ])
    averages = [average_trajectories(reindexed[positions]) for positions in members]
    p0_row, p1_row = reference_rows(index)
    geo = geodesic(np.asarray(probs[p0_row]), np.asarray(probs[p1_row]), grid)
    stacked = np.concatenate([reindexed, np.stack(averages).astype(np.float32),
                              geo[None].astype(np.float32)])
    return table, stacked


def run_lengths(index: pd.DataFrame, probs: np.ndarray, run_ids: pd.Series, *,
                bc_floor: float) -> np.ndarray:
    """(R,) Riemann length (A15) of each run's checkpoint sequence in one space."""
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    return np.array([riemann_length(np.asarray(probs[rows_of.get_group(r).to_numpy()]),
                                    bc_floor=bc_floor) for r in run_ids])


def _trajectory_table(index: pd.DataFrame, runs: pd.DataFrame
                      ) -> tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray]]:
    """The trajectory table, the trained runs and each configuration's member positions."""
    trained = runs[runs["trained"]].reset_index(drop=True)
    if trained.empty:
        raise ValueError("no run is trained (final train error at most "
                         "trajectories.trained_max_error): train longer, or raise the limit")
    average_rows, members = [], []
    for config, group in trained.groupby("config", sort=True):
        members.append(group.index.to_numpy())
        average_rows.append({**group.iloc[0][list(FACTORS)].to_dict(), "config": config,
                             "seeds": len(group)})
    table = pd.concat([
        trained.assign(kind="run", seeds=1),
        pd.DataFrame(average_rows).assign(kind="average", run_id=None, seed=-1),
        pd.DataFrame([{"kind": "geodesic", "config": "geodesic", "run_id": None, "seed": -1,
                       "arch": "geodesic", "seeds": 0}]),
    ], ignore_index=True)
    table.insert(0, "trajectory", np.arange(len(table)))
    return table, trained, members


def trajectory_tensor(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                      index_values: np.ndarray, grid: np.ndarray, *,
                      bc_floor: float = BC_FLOOR, max_block_bytes: int = BLOCK_BYTES,
                      device: str = "cpu", scratch_dir: str | Path | None = None,
                      progress_bar: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The trajectory table and its (G, R, R) float64 distance tensor at equal progress (A8),
    in memory: O(G R^2). ``stream_tensor`` writes the same bytes to a file instead and keeps
    only what the analyses read.

    Equals ``build_trajectory_set`` followed by ``geometry.trajectory_distance_tensor`` (the
    same float32 trajectories, the same kernel), without the (R, G, N, C) set: grid points are
    taken in chunks whose (R, g, N, C) float32 slab fits ``max_block_bytes``, each run
    contributing only the checkpoints that bracket the chunk's grid points. When one grid
    point's (R, N, C) slab alone exceeds ``max_block_bytes``, each grid point's slab is written
    to a scratch ``.npy`` file in ``scratch_dir`` (default: the system's temporary directory)
    a block of trajectories at a time and the kernel reads it in blocks from there; the
    distances are the same, bit for bit, since the kernel plans its blocks from the shapes and
    the budget alone. O(G R^2 N C) work, streamed by the kernel. `probs` may be a memory map or
    a blockwise ``NpyFile`` (``lowdim.store.analysis_set.open_probs``).
    """
    table, points = tensor_points(index, probs, runs, index_values, grid, bc_floor=bc_floor,
                                  max_block_bytes=max_block_bytes, device=device,
                                  scratch_dir=scratch_dir, progress_bar=progress_bar)
    tensor = np.empty((len(grid), len(table), len(table)))
    for point, matrix in points:
        tensor[point] = matrix
    return table, tensor


def stream_tensor(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                  index_values: np.ndarray, grid: np.ndarray, path: str | Path | None = None,
                  *, bc_floor: float = BC_FLOOR, max_block_bytes: int = BLOCK_BYTES,
                  device: str = "cpu", scratch_dir: str | Path | None = None,
                  progress_bar: bool = False) -> tuple[pd.DataFrame, ReducedTensor]:
    """The trajectory table and the ``ReducedTensor`` of its (G, R, R) distance tensor, the
    tensor itself written to the ``.npy`` file `path` a grid point at a time.

    The file holds the bytes ``np.save`` writes of ``trajectory_tensor``'s tensor. Each grid
    point's (R, R) matrix is written as it comes and only the pairs the analyses read
    (``trajectory_analyses.tensor_pairs``) are kept; the mean over progress is then read back
    from the file a block of rows at a time (``mean_over_progress``, the bits of
    ``tensor.mean(axis=0)``). Memory: O(R^2 + G R) plus one block, not O(G R^2); disk: the
    file, G R^2 x 8 bytes (checked before writing). Without `path` the file is a temporary one
    in ``scratch_dir``, removed once reduced. Other arguments as ``trajectory_tensor``.
    """
    table, points = tensor_points(index, probs, runs, index_values, grid, bc_floor=bc_floor,
                                  max_block_bytes=max_block_bytes, device=device,
                                  scratch_dir=scratch_dir, progress_bar=progress_bar)
    if path is None:
        with tempfile.TemporaryDirectory(prefix="lowdim-trajectory-tensor-",
                                         dir=scratch_dir) as tmp:
            return table, _write_and_reduce(Path(tmp) / "tensor.npy", table, points, len(grid),
                                            max_block_bytes)
    return table, _write_and_reduce(Path(path), table, points, len(grid), max_block_bytes)


def _write_and_reduce(path: Path, table: pd.DataFrame, points, grid_points: int,
                      max_block_bytes: int) -> ReducedTensor:
    """Write each (grid point, matrix) to the (G, R, R) file at `path`, keep the analyses'
    pairs, then read the mean over progress back from the file."""
    count = len(table)
    check_disk_space(grid_points * count * count * 8, path.parent,
                     "the trajectory distance tensor", "free space there, or write the "
                     "trajectories' outputs to a larger filesystem")
    stored = NpyFile.create(path, (grid_points, count, count), np.float64)

    def written():
        for point, matrix in points:
            stored.write_rows(point, matrix[None])
            yield point, matrix

    pairs = tensor_pairs(table)
    values = gather_pairs(written(), grid_points, pairs)
    return ReducedTensor(mean_over_progress(stored, max_block_bytes), pairs, values)


def tensor_points(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                  index_values: np.ndarray, grid: np.ndarray, *,
                  bc_floor: float = BC_FLOOR, max_block_bytes: int = BLOCK_BYTES,
                  device: str = "cpu", scratch_dir: str | Path | None = None,
                  progress_bar: bool = False
                  ) -> tuple[pd.DataFrame, Iterator[tuple[int, np.ndarray]]]:
    """The trajectory table and an iterator of (grid point, (R, R) float64 distances), grid
    points in order: what ``trajectory_tensor`` stacks and ``stream_tensor`` writes. The
    iterator holds one chunk of grid points (or the scratch file) at a time."""
    table, trained, members = _trajectory_table(index, runs)
    grid = np.asarray(grid, dtype=np.float64)
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    run_rows = [rows_of.get_group(r).to_numpy() for r in trained["run_id"]]
    brackets = [reindex_brackets(check_index(index_values[rows], len(rows)), grid)
                for rows in run_rows]
    p0_row, p1_row = reference_rows(index)
    sources = _Sources(probs, run_rows, brackets, members,
                       np.asarray(probs[p0_row]), np.asarray(probs[p1_row]), grid)
    kernel = {"bc_floor": bc_floor, "device": device, "max_block_bytes": max_block_bytes}
    return table, _points(sources, len(table), kernel, scratch_dir, progress_bar)


def run_distance_points(probs: np.ndarray, run_rows: list[np.ndarray], index_values: np.ndarray,
                        grid: np.ndarray, *, bc_floor: float = BC_FLOOR, method: str = "auto",
                        device: str = "cpu", max_block_bytes: int = BLOCK_BYTES,
                        scratch_dir: str | Path | None = None, progress_bar: bool = False
                        ) -> Iterator[tuple[int, np.ndarray]]:
    """(grid point, (R, R) float64 distances between runs) at each point of `grid`, in order:
    run r is the checkpoints at rows ``run_rows[r]`` of the (M, N, C) `probs` (array, memory
    map or ``NpyFile``), reindexed onto `grid` by its rows' `index_values` (A7).

    The values of ``geometry.trajectory_distance_tensor`` of the stacked float32 reindexed runs,
    bit for bit, without the (R, G, N, C) stack or the (G, R, R) tensor: the runs are built a
    chunk of grid points at a time (or a grid point through a scratch file in `scratch_dir`
    when one alone exceeds ``max_block_bytes``), as ``trajectory_tensor`` builds its own.
    """
    grid = np.asarray(grid, dtype=np.float64)
    run_rows = [np.asarray(rows) for rows in run_rows]
    brackets = [reindex_brackets(check_index(index_values[rows], len(rows)), grid)
                for rows in run_rows]
    sources = _Sources(probs, run_rows, brackets, [], None, None, grid)
    kernel = {"bc_floor": bc_floor, "method": method, "device": device,
              "max_block_bytes": max_block_bytes}
    return _points(sources, len(run_rows), kernel, scratch_dir, progress_bar)


def _points(sources: _Sources, count: int, kernel: dict, scratch_dir: str | Path | None,
            progress_bar: bool) -> Iterator[tuple[int, np.ndarray]]:
    """The (grid point, (R, R)) iterator of `count` trajectories: in chunks of grid points, or
    through a scratch file when one grid point alone exceeds the kernel's budget."""
    budget = kernel["max_block_bytes"]
    if count * sources.point_bytes > budget:
        return _points_from_scratch(sources, count, budget, kernel, scratch_dir, progress_bar)
    return _points_in_chunks(sources, count, budget, kernel, progress_bar)


def _points_in_chunks(sources: _Sources, count: int, max_block_bytes: int, kernel: dict,
                      progress_bar: bool) -> Iterator[tuple[int, np.ndarray]]:
    """Grid points a chunk at a time: each chunk's (R, g, N, C) slab within the budget."""
    grid_points = len(sources.grid)
    chunk = int(min(grid_points, max_block_bytes // (count * sources.point_bytes)))
    for g0 in tqdm(range(0, grid_points, chunk), desc="trajectory distances",
                   disable=not progress_bar):
        points = np.arange(g0, min(g0 + chunk, grid_points))
        slab = sources.slab(points, np.arange(count))
        for j, point in enumerate(points):
            yield int(point), bhattacharyya(slab[j], **kernel)


@dataclass(frozen=True)
class _Sources:
    """What the trajectories at given grid points are made of: each trained run's checkpoint
    rows and brackets, each configuration's member runs, and the geodesic's endpoints."""

    probs: np.ndarray
    run_rows: list[np.ndarray]
    brackets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    members: list[np.ndarray]
    p0: np.ndarray | None  # the geodesic's ends (None: no geodesic among the trajectories)
    p1: np.ndarray | None
    grid: np.ndarray

    @property
    def point_bytes(self) -> int:
        """Bytes of one trajectory at one grid point (N x C float32)."""
        return int(np.prod(self.probs.shape[1:])) * 4

    def run(self, r: int, points: np.ndarray) -> np.ndarray:
        """(g, N, C) float64 values of trained run r at grid points `points`."""
        return _reindexed_points(self.probs, self.run_rows[r], self.brackets[r], points)

    def slab(self, points: np.ndarray, positions: np.ndarray,
             stored: NpyFile | None = None) -> np.ndarray:
        """(g, len(positions), N, C) float32: the trajectories at table positions `positions`
        (runs, then one average per configuration, then the geodesic) at grid points `points`.

        An average takes its seeds from this slab when they are in it, else from `stored`
        (a one-point slab of every trajectory already written), else recomputes them; the
        float32 values, and so the average, are the same either way.
        """
        n_runs = len(self.run_rows)
        out = np.empty((len(points), len(positions), *self.probs.shape[1:]), dtype=np.float32)
        where = {int(t): k for k, t in enumerate(positions)}
        for k, t in enumerate(positions):
            if t < n_runs:
                out[:, k] = self.run(int(t), points)
        for k, t in enumerate(positions):
            if n_runs <= t < n_runs + len(self.members):  # (g, S, N, C): one configuration
                member = self.members[t - n_runs]
                seeds = np.empty((len(points), len(member), *out.shape[2:]), dtype=np.float32)
                for s, r in enumerate(member):
                    if int(r) in where:
                        seeds[:, s] = out[:, where[int(r)]]
                    elif stored is not None:
                        seeds[:, s] = stored[int(r)]
                    else:
                        seeds[:, s] = self.run(int(r), points)
                out[:, k] = average_trajectories(seeds.swapaxes(0, 1))
            elif t == n_runs + len(self.members):
                out[:, k] = geodesic(self.p0, self.p1, self.grid[points])
        return out


def _points_from_scratch(sources: _Sources, count: int, max_block_bytes: int, kernel: dict,
                         scratch_dir: str | Path | None, progress_bar: bool
                         ) -> Iterator[tuple[int, np.ndarray]]:
    """Grid points one at a time through a scratch (R, N, C) file.

    Each grid point's trajectories are written in blocks of rows that fit ``max_block_bytes``
    (runs first, so that the averages read their seeds back from the file), then the kernel
    reads the file in its own blocks. Only one block of trajectories is in memory at a time.
    """
    rows = max(1, max_block_bytes // sources.point_bytes)
    with tempfile.TemporaryDirectory(prefix="lowdim-trajectory-slab-", dir=scratch_dir) as tmp:
        path = Path(tmp) / "slab.npy"
        check_disk_space(count * sources.point_bytes, tmp, "one grid point of the trajectories",
                         "or pass a scratch_dir on a larger filesystem (the stage uses its "
                         "output directory's)")
        stored = NpyFile.create(path, (count, *sources.probs.shape[1:]), np.float32)
        for point in tqdm(range(len(sources.grid)), desc="trajectory distances",
                          disable=not progress_bar):
            for start in range(0, count, rows):
                positions = np.arange(start, min(start + rows, count))
                stored.write_rows(start, sources.slab(np.array([point]), positions, stored)[0])
            yield point, bhattacharyya(stored, **kernel)


def _reindexed_points(probs: np.ndarray, rows: np.ndarray,
                      brackets: tuple[np.ndarray, np.ndarray, np.ndarray],
                      points: np.ndarray) -> np.ndarray:
    """(g, N, C) float64 values of one run at grid points `points`: ``geometry.reindex``'s
    per-point formula on the bracketing checkpoints only (read once, as one block)."""
    starts, ends, fractions = (b[points] for b in brackets)
    first, last = int(min(starts.min(), ends.min())), int(max(starts.max(), ends.max()))
    part = check_probabilities(np.asarray(probs[rows[first:last + 1]]), "trajectory", 3)
    out = np.empty((len(points), *part.shape[1:]))
    cached: tuple[int, int] | None = None
    for j, (ks, ke, f) in enumerate(zip(starts - first, ends - first, fractions, strict=True)):
        if ks == ke:
            a = unit_roots(part[ks])
            out[j] = a * a
            continue
        if cached != (ks, ke):
            a0, a1 = unit_roots(part[ks]), unit_roots(part[ke])
            theta = chord_angles(a0, a1)
            cached = (ks, ke)
        out[j] = slerp_roots(a0, a1, theta, np.array([f]))[0]
    return out


def analyse_space(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                  index_values: np.ndarray, grid: np.ndarray, *, bc_floor: float,
                  importance_repeats: int, seed: int, tensor_path: str | Path | None = None,
                  max_block_bytes: int = BLOCK_BYTES, scratch_dir: str | Path | None = None,
                  progress_bar: bool = False) -> tuple[dict[str, object], ReducedTensor]:
    """Every trajectory-level product of one prediction space, keyed by product name, and the
    ``ReducedTensor`` the analyses read (for ``summary_metrics``).

    The (G, R, R) distance tensor goes to the ``.npy`` file `tensor_path` a grid point at a
    time (``stream_tensor``; a temporary file without it), so it is not among the products;
    a scratch file in ``scratch_dir`` holds a grid point's trajectories when one exceeds
    ``max_block_bytes``. The analyses read its reductions: the (G, R) distances of the runs to
    their averages and of every trajectory to the geodesic (tube width, distance to the
    geodesic) and the (R, R) mean over progress (trajectory and configuration distances,
    clustering, importance, the trajectory embedding). Memory O(R^2 + G R) plus one block.
    """
    table, reduced = stream_tensor(index, probs, runs, index_values, grid, tensor_path,
                                   bc_floor=bc_floor, max_block_bytes=max_block_bytes,
                                   scratch_dir=scratch_dir, progress_bar=progress_bar)
    distances = reduced.mean
    configurations, config_distances = configuration_distances(reduced, table)
    products: dict[str, object] = {
        "table": table, "distances": distances,
        "tube_width": tube_width(reduced, table, grid),
        "to_geodesic": distance_to_geodesic(reduced, table, grid),
        "configurations": configurations, "configuration_distances": config_distances,
        "embedding": trajectory_embedding(distances),
    }
    if len(configurations) >= 2:
        products["linkage"] = cluster_configurations(config_distances)
        products["importance"] = feature_importance(
            config_distances, configurations,
            to_geodesic=configuration_to_geodesic(reduced, table, configurations),
            n_repeats=importance_repeats, seed=seed)
    return products, reduced
