"""Summary numbers of what Figures 8 and 9 draw, for the trajectories stage's metrics file
(docs/study.md A11, A15, D9, D10).

- ``to_geodesic_metrics``: from the long table of each trained run's distance to the geodesic at
  equal progress (``trajectory_analyses.distance_to_geodesic``, the trajectories stage's
  ``<space>_to_geodesic.parquet``, Figure 9's data), the median and the maximum over runs at a
  few progress levels;
- ``outlier_metrics``: from the analysis set's index, the checkpoints whose train cross-entropy is
  at least the outlier cut (A15, Figure 8's bars), in all and per architecture, and the runs
  that hold any.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LEVELS = (0.25, 0.5, 0.75)  # progress levels of the distance to the geodesic
DIGITS = 6  # decimals of the metrics files


def _number(x: float) -> float | None:
    """A metrics-file number: rounded to DIGITS decimals; NaN (no run) -> None."""
    return None if pd.isna(x) else round(float(x), DIGITS)


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing}")


def to_geodesic_metrics(to_geodesic: pd.DataFrame,
                        levels: Sequence[float] = LEVELS) -> dict[str, float | None]:
    """Long table (columns progress, distance; one row per run and grid point) -> for each
    level, ``to_geodesic_median_at_<level>`` and ``to_geodesic_max_at_<level>``: the median and
    the maximum over the table's runs of the distance at the grid point nearest the level (the
    lower one on a tie). No rows: None for each."""
    _require(to_geodesic, ("progress", "distance"),
             "to_geodesic (the trajectories stage's <space>_to_geodesic table)")
    levels = [float(level) for level in levels]
    if any(not 0 <= level <= 1 for level in levels):
        raise ValueError(f"levels must lie in [0, 1] (progress), got {levels}")
    grid = np.sort(to_geodesic["progress"].unique())
    out: dict[str, float | None] = {}
    for level in levels:
        median = largest = np.nan
        if grid.size:
            nearest = grid[int(np.argmin(np.abs(grid - level)))]
            at = to_geodesic.loc[to_geodesic["progress"] == nearest, "distance"]
            median, largest = at.median(), at.max()
        out[f"to_geodesic_median_at_{level:g}"] = _number(median)
        out[f"to_geodesic_max_at_{level:g}"] = _number(largest)
    return out


def outlier_metrics(index: pd.DataFrame, *, loss_cut: float = 4.0) -> dict[str, object]:
    """Index table (one row per checkpoint) -> the outliers among the rows of kind "run": a
    checkpoint is one when its train_loss >= loss_cut (A15, as
    ``trajectory_analyses.outlier_counts``).

    {"checkpoints": outlier checkpoints, "of_checkpoints": run checkpoints, "runs": runs with at
    least one outlier checkpoint, "of_runs": runs, "by_arch": {arch: {"checkpoints", "runs"}}
    for every architecture of the index's runs, zeros included}."""
    _require(index, ("kind", "run_id", "arch", "train_loss"),
             "index (the analysis set's index table)")
    if not np.isfinite(loss_cut):
        raise ValueError(f"loss_cut must be a finite number, got {loss_cut}")
    runs = index[index["kind"] == "run"]
    loss = pd.to_numeric(runs["train_loss"], errors="coerce")
    if loss.isna().any():
        raise ValueError("index has run rows without a train_loss")
    flagged = runs[loss.to_numpy() >= loss_cut]
    by_arch = {str(arch): {"checkpoints": int((flagged["arch"] == arch).sum()),
                           "runs": int(flagged.loc[flagged["arch"] == arch, "run_id"].nunique())}
               for arch in sorted(runs["arch"].unique())}
    return {"checkpoints": len(flagged), "of_checkpoints": len(runs),
            "runs": int(flagged["run_id"].nunique()), "of_runs": int(runs["run_id"].nunique()),
            "by_arch": by_arch}
