"""Figure 16's finding as numbers (docs/study.md D15): does the larger network of one family reach
each progress level no later than the smaller one?

Inputs are the analysis set's index (one row per checkpoint; columns kind, run_id, arch,
optimizer, seed, checkpoint, epoch) and the progress lambda of every row (the trajectories
stage's ``progress.parquet``, train space). The pair is ``trajectories.size_pair``: (smaller,
larger).

- ``epochs_to_progress``: the first epoch at which each run reaches a level;
- ``progress_milestones``: per level, network and optimizer, the mean of those epochs over the
  runs that reach the level, and how many of how many runs do (the table the figure's notebook
  shows);
- ``larger_lead``: per (level, optimizer) cell that every run of both networks reaches, the
  smaller network's mean first epoch minus the larger one's (>= 0: no later; > 0: earlier);
- ``size_pair_metrics``: both, as the fig16 stage writes them to ``metrics/larger.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MILESTONES = (0.25, 0.5, 0.75, 0.9)  # progress levels of Figure 16's table
DIGITS = 6  # decimals of the metrics files


def epochs_to_progress(index: pd.DataFrame, progress: np.ndarray, archs: Sequence[str],
                       level: float = 0.5) -> pd.DataFrame:
    """First epoch at which each run of `archs` reaches progress `level`; NaN if it never does.

    One row per run: run_id, arch, optimizer, seed, epoch (D15's "same path, reached faster")."""
    rows = []
    runs = index[(index["kind"] == "run") & index["arch"].isin(archs)]
    for run_id, group in runs.sort_values("checkpoint").groupby("run_id", sort=True):
        reached = group.index[progress[group.index] >= level]
        rows.append({"run_id": run_id, "arch": group["arch"].iloc[0],
                     "optimizer": group["optimizer"].iloc[0], "seed": group["seed"].iloc[0],
                     "epoch": float(index.loc[reached[0], "epoch"]) if len(reached) else np.nan})
    return pd.DataFrame(rows, columns=["run_id", "arch", "optimizer", "seed", "epoch"])


def progress_milestones(index: pd.DataFrame, progress: np.ndarray, archs: Sequence[str],
                        levels: Sequence[float] = MILESTONES) -> pd.DataFrame:
    """Per level, arch and optimizer: the mean first epoch over the runs that reach the level
    (NaN if none does) and how many of how many runs reach it (D15's table)."""
    rows = []
    for level in levels:
        reached = epochs_to_progress(index, progress, archs, level)
        for (arch, optimizer), runs in reached.groupby(["arch", "optimizer"], sort=True):
            rows.append({"level": level, "arch": arch, "optimizer": optimizer,
                         "mean_epoch": runs["epoch"].mean(),
                         "reached": int(runs["epoch"].notna().sum()), "runs": len(runs)})
    return pd.DataFrame(rows, columns=["level", "arch", "optimizer", "mean_epoch", "reached",
                                       "runs"])


def larger_lead(milestones: pd.DataFrame, pair: Sequence[str]) -> pd.Series:
    """Figure 16's finding cell by cell: for each (level, optimizer) that every run of both
    networks reaches, the smaller's mean first epoch minus the larger's (>= 0: the larger is no
    later; > 0: it is earlier)."""
    smaller, larger = pair
    complete = milestones[milestones["arch"].isin(pair)
                          & (milestones["reached"] == milestones["runs"])]
    wide = complete.pivot(index=["level", "optimizer"], columns="arch", values="mean_epoch")
    wide = wide.reindex(columns=[smaller, larger]).dropna()
    return (wide[smaller] - wide[larger]).rename("lead")


def _number(x: float) -> float | None:
    """A metrics-file number: rounded to DIGITS decimals; NaN (nothing to average) -> None."""
    return None if pd.isna(x) else round(float(x), DIGITS)


def size_pair_metrics(milestones: pd.DataFrame, pair: Sequence[str]) -> dict:
    """``progress_milestones`` of a pair -> the metrics-file entry of Figure 16:

    - ``smaller``, ``larger``: the pair's names;
    - ``cells``: ``compared``, the (level, optimizer) cells that every run of both networks
      reaches, and among them ``no_later`` (lead >= 0) and ``earlier`` (lead > 0);
    - ``by_level``: {level (as "0.25"): {optimizer: {"smaller": {mean_epoch, reached, runs},
      "larger": {...}, "lead": smaller's mean epoch minus the larger's, None where the cell is
      not compared}}}; a mean epoch no run reached is None.

    A pair member without runs in the milestones is an error: the pair must be trained (in
    grid.arch) for the comparison to mean anything."""
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"pair must name two different architectures (smaller, larger), got "
                         f"{list(pair)}")
    missing = [arch for arch in pair if arch not in set(milestones["arch"])]
    if missing:
        raise ValueError(f"no runs of {missing} in the milestones: put the size pair's "
                         "architectures in grid.arch (trajectories.size_pair names them)")
    smaller, larger = pair
    lead = larger_lead(milestones, pair)
    by_level: dict[str, dict] = {}
    cells = milestones.set_index(["level", "optimizer", "arch"]).sort_index()
    for level, optimizer in sorted({(lv, opt) for lv, opt in
                                    zip(milestones["level"], milestones["optimizer"],
                                        strict=True)}):
        entry: dict[str, object] = {}
        for role, arch in (("smaller", smaller), ("larger", larger)):
            key = (level, optimizer, arch)
            row = cells.loc[key] if key in cells.index else None
            entry[role] = ({"mean_epoch": None, "reached": 0, "runs": 0} if row is None else
                           {"mean_epoch": _number(row["mean_epoch"]),
                            "reached": int(row["reached"]), "runs": int(row["runs"])})
        entry["lead"] = _number(lead.get((level, optimizer), np.nan))
        by_level.setdefault(f"{level:g}", {})[optimizer] = entry
    return {"smaller": smaller, "larger": larger,
            "cells": {"compared": len(lead), "no_later": int((lead >= 0).sum()),
                      "earlier": int((lead > 0).sum())},
            "by_level": by_level}
