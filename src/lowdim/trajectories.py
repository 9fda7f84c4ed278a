"""Whole trajectories from the analysis set: progress of every checkpoint, reindexing onto a
common progress grid, per-configuration averages and the reindexed geodesic (docs/study.md A6-A9).

The trajectory set of one prediction space is a table (one row per trajectory: trained runs, then
one average per configuration, then the geodesic) and a stacked (R, G, N, C) array of their
probabilities at the G grid points, in the table's order. The analyses in `lowdim.analysis` take
the distance tensor of this array with this table.

Choices, documented where they are made:

- only trained runs (final train error <= `max_error`, the authors' filter for every
  reindexed analysis) enter the set, and configuration averages are taken over those runs;
- the reindexing index is 1 - train error of each checkpoint for both spaces (the authors'
  production call) or the checkpoint's progress lambda in that space;
- the geodesic enters at its own parameter t = s_j: reindexing it by accuracy would be
  degenerate, since every point past P0 already predicts the true class (accuracy 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lowdim.analysis import (
    cluster_configurations,
    configuration_distances,
    configuration_to_geodesic,
    distance_to_geodesic,
    feature_importance,
    trajectory_embedding,
    tube_width,
)
from lowdim.geometry import (
    average_trajectories,
    geodesic,
    progress,
    reindex,
    riemann_length,
    trajectory_distance_tensor,
    trajectory_distances,
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
    trained = runs[runs["trained"]].reset_index(drop=True)
    if trained.empty:
        raise ValueError("no run is trained (final train error at most "
                         "trajectories.trained_max_error): train longer, or raise the limit")
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    reindexed = np.stack([
        reindex(np.asarray(probs[rows]), index_values[rows], grid).astype(np.float32)
        for rows in (rows_of.get_group(r).to_numpy() for r in trained["run_id"])
    ])
    averages, average_rows = [], []
    for config, members in trained.groupby("config", sort=True):
        averages.append(average_trajectories(reindexed[members.index.to_numpy()]))
        average_rows.append({**members.iloc[0][list(FACTORS)].to_dict(), "config": config,
                             "seeds": len(members)})
    p0_row, p1_row = reference_rows(index)
    geo = geodesic(np.asarray(probs[p0_row]), np.asarray(probs[p1_row]), grid)
    table = pd.concat([
        trained.assign(kind="run", seeds=1),
        pd.DataFrame(average_rows).assign(kind="average", run_id=None, seed=-1),
        pd.DataFrame([{"kind": "geodesic", "config": "geodesic", "run_id": None, "seed": -1,
                       "arch": "geodesic", "seeds": 0}]),
    ], ignore_index=True)
    table.insert(0, "trajectory", np.arange(len(table)))
    stacked = np.concatenate([reindexed, np.stack(averages).astype(np.float32),
                              geo[None].astype(np.float32)])
    return table, stacked


def run_lengths(index: pd.DataFrame, probs: np.ndarray, run_ids: pd.Series, *,
                bc_floor: float) -> np.ndarray:
    """(R,) Riemann length (A15) of each run's checkpoint sequence in one space."""
    rows_of = index[index["kind"] == "run"].sort_values("checkpoint").groupby("run_id")["row"]
    return np.array([riemann_length(np.asarray(probs[rows_of.get_group(r).to_numpy()]),
                                    bc_floor=bc_floor) for r in run_ids])


def analyse_space(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                  index_values: np.ndarray, grid: np.ndarray, *, bc_floor: float,
                  importance_repeats: int, seed: int) -> dict[str, object]:
    """Every trajectory-level product of one prediction space, keyed by product name."""
    table, stacked = build_trajectory_set(index, probs, runs, index_values, grid)
    tensor = trajectory_distance_tensor(stacked, bc_floor=bc_floor)
    del stacked  # (R, G, N, C): the largest array of the stage
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
