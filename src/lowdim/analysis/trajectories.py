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

Scale. The stage (``analyse_space``) never holds the (R, G, N, C) trajectory set, nor any
per-sample (G, R, R, N) quantity: ``trajectory_tensor`` builds the trajectories a few grid
points at a time (R x g x N x C float32, at most ``max_block_bytes``), reading each run's
bracketing checkpoints only, and reduces each grid point at once to its (R, R) distances by
the blocked kernel of ``lowdim.geometry.distances``. What remains is the (G, R, R) float64 distance
tensor, O(G R^2) memory (4.2 GB for the paper's G = 100, R = 2,300), which the analyses of
``lowdim.analysis.trajectory_analyses`` take whole; the pairwise work itself (O(G R^2 N C)) is
streamed. """

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from lowdim.analysis.trajectory_analyses import (
    cluster_configurations,
    configuration_distances,
    configuration_to_geodesic,
    distance_to_geodesic,
    feature_importance,
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
    trajectory_distances,
    unit_roots,
)

FACTORS = ("arch", "optimizer", "batch_size", "lr", "weight_decay", "augment", "init", "epochs")


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


def checkpoint_progress(index: pd.DataFrame, probs: np.ndarray) -> np.ndarray:
    """(M,) progress lambda (A6, angle-sum mode, all samples) of every row of one space."""
    p0_row, p1_row = reference_rows(index)
    p0, p1 = np.asarray(probs[p0_row]), np.asarray(probs[p1_row])
    return progress(np.asarray(probs), p0, p1)


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
                      bc_floor: float = BC_FLOOR, max_block_bytes: int = 256 * 2**20,
                      device: str = "cpu", progress_bar: bool = False
                      ) -> tuple[pd.DataFrame, np.ndarray]:
    """The trajectory table and its (G, R, R) float64 distance tensor at equal progress (A8).

    Equals ``build_trajectory_set`` followed by ``geometry.trajectory_distance_tensor`` (the
    same float32 trajectories, the same kernel), without the (R, G, N, C) set: grid points are
    taken in chunks whose (R, g, N, C) float32 slab fits ``max_block_bytes``, each run
    contributing only the checkpoints that bracket the chunk's grid points. O(G R^2) memory for
    the tensor, which the analyses need whole; O(G R^2 N C) work, streamed by the kernel.
    """
    table, trained, members = _trajectory_table(index, runs)
    grid = np.asarray(grid, dtype=np.float64)
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    run_rows = [rows_of.get_group(r).to_numpy() for r in trained["run_id"]]
    brackets = [reindex_brackets(check_index(index_values[rows], len(rows)), grid)
                for rows in run_rows]
    p0_row, p1_row = reference_rows(index)
    p0, p1 = np.asarray(probs[p0_row]), np.asarray(probs[p1_row])
    n_runs, count = len(run_rows), len(table)
    per_point = count * int(np.prod(probs.shape[1:])) * 4
    chunk = int(max(1, min(len(grid), max_block_bytes // max(1, per_point))))
    tensor = np.empty((len(grid), count, count))
    for g0 in tqdm(range(0, len(grid), chunk), desc="trajectory distances",
                   disable=not progress_bar):
        points = np.arange(g0, min(g0 + chunk, len(grid)))
        slab = np.empty((len(points), count, *probs.shape[1:]), dtype=np.float32)
        for r, rows in enumerate(run_rows):
            slab[:, r] = _reindexed_points(probs, rows, brackets[r], points)
        for c, member in enumerate(members):  # (S, g, N, C) seeds of one configuration
            slab[:, n_runs + c] = average_trajectories(slab[:, member].swapaxes(0, 1))
        slab[:, -1] = geodesic(p0, p1, grid[points])
        for j, point in enumerate(points):
            tensor[point] = bhattacharyya(slab[j], bc_floor=bc_floor, device=device,
                                          max_block_bytes=max_block_bytes)
    return table, tensor


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
                  importance_repeats: int, seed: int, max_block_bytes: int = 256 * 2**20,
                  progress_bar: bool = False) -> dict[str, object]:
    """Every trajectory-level product of one prediction space, keyed by product name.

    The distance tensor comes from ``trajectory_tensor`` (streamed; O(G R^2) memory). The
    analyses on it are O(G R^2) (tube width, distance to the geodesic: one (G, R) slice per
    run) or O(R^2) (trajectory and configuration distances, clustering, importance, the
    trajectory embedding).
    """
    table, tensor = trajectory_tensor(index, probs, runs, index_values, grid, bc_floor=bc_floor,
                                      max_block_bytes=max_block_bytes, progress_bar=progress_bar)
    distances = trajectory_distances(tensor)
    configurations, config_distances = configuration_distances(tensor, table)
    products: dict[str, object] = {
        "table": table, "tensor": tensor, "distances": distances,
        "tube_width": tube_width(tensor, table, grid),
        "to_geodesic": distance_to_geodesic(tensor, table, grid),
        "configurations": configurations, "configuration_distances": config_distances,
        "embedding": trajectory_embedding(distances),
    }
    if len(configurations) >= 2:
        products["linkage"] = cluster_configurations(config_distances)
        products["importance"] = feature_importance(
            config_distances, configurations,
            to_geodesic=configuration_to_geodesic(tensor, table, configurations),
            n_repeats=importance_repeats, seed=seed)
    return products
