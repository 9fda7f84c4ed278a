"""The quantities that were figure-only, as metrics (issue 24): distance to the geodesic at equal
progress (Figure 9), outlier counts (Figure 8), negative eigenvalues of the InPCA (Figure S1),
Figure 16's lead of the larger network, and the synthetic study's slope of chi_k against c; and
how the results page shows them. Every case is small enough to check by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.size_pair import progress_milestones, size_pair_metrics
from lowdim.analysis.spectrum import negative_eigenvalue_metrics
from lowdim.analysis.trajectory_analyses import outlier_counts
from lowdim.analysis.trajectory_metrics import outlier_metrics, to_geodesic_metrics
from lowdim.studies.synthetic import stress_slopes
from lowdim.tools.results import Profile, render_page

# --- Figure 9: distance to the geodesic ---


def _to_geodesic(distances: dict[str, list[float]], grid: list[float]) -> pd.DataFrame:
    """Long table: one row per run and grid point."""
    return pd.DataFrame([{"run_id": run, "progress": s, "distance": d}
                         for run, values in distances.items()
                         for s, d in zip(grid, values, strict=True)])


def test_distance_to_the_geodesic_is_summarised_at_the_nearest_grid_point():
    grid = [0.25, 0.5, 0.75, 1.0]
    table = _to_geodesic({"a": [0.1, 0.2, 0.3, 0.0], "b": [0.3, 0.1, 0.6, 0.0],
                          "c": [0.2, 0.5, 0.9, 0.0]}, grid)
    assert to_geodesic_metrics(table) == {
        "to_geodesic_median_at_0.25": 0.2, "to_geodesic_max_at_0.25": 0.3,
        "to_geodesic_median_at_0.5": 0.2, "to_geodesic_max_at_0.5": 0.5,
        "to_geodesic_median_at_0.75": 0.6, "to_geodesic_max_at_0.75": 0.9}
    # a level between grid points takes the nearest one, the lower one on a tie
    coarse = _to_geodesic({"a": [1.0, 2.0], "b": [3.0, 4.0]}, [0.2, 0.3])
    assert to_geodesic_metrics(coarse, levels=(0.25, 0.29)) == {
        "to_geodesic_median_at_0.25": 2.0, "to_geodesic_max_at_0.25": 3.0,
        "to_geodesic_median_at_0.29": 3.0, "to_geodesic_max_at_0.29": 4.0}
    # no trained run: nothing to summarise, None in the metrics file
    empty = to_geodesic_metrics(table.iloc[0:0], levels=(0.5,))
    assert empty == {"to_geodesic_median_at_0.5": None, "to_geodesic_max_at_0.5": None}


def test_distance_to_the_geodesic_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['distance'\]"):
        to_geodesic_metrics(pd.DataFrame({"progress": [0.5]}))
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 1\]"):
        to_geodesic_metrics(_to_geodesic({"a": [0.1]}, [0.5]), levels=(50,))


# --- Figure 8: outliers ---


def _index() -> pd.DataFrame:
    """Three runs of two architectures (loss 4 is an outlier, 3.99 is not) and two reference
    rows, whose loss does not count."""
    rows = [("fc-1", "fc", "sgd", 0, 5.0), ("fc-1", "fc", "sgd", 1, 4.0),
            ("fc-1", "fc", "sgd", 2, 1.0), ("fc-2", "fc", "adam", 0, 3.99),
            ("fc-2", "fc", "adam", 1, 0.5),
            ("vit-1", "vit", "sgd", 0, 2.0), ("vit-1", "vit", "sgd", 1, 6.0)]
    runs = pd.DataFrame(rows, columns=["run_id", "arch", "optimizer", "epoch", "train_loss"])
    runs["kind"] = "run"
    refs = pd.DataFrame({"kind": ["ignorance", "truth"], "run_id": None, "arch": None,
                         "optimizer": None, "epoch": np.nan, "train_loss": [9.0, 0.0]})
    return pd.concat([runs, refs], ignore_index=True)


def test_outliers_are_counted_by_checkpoint_and_by_run():
    found = outlier_metrics(_index(), loss_cut=4.0)
    assert found == {"checkpoints": 3, "of_checkpoints": 7, "runs": 2, "of_runs": 3,
                     "by_arch": {"fc": {"checkpoints": 2, "runs": 1},
                                 "vit": {"checkpoints": 1, "runs": 1}}}
    # the same checkpoints as Figure 8's bars
    bars = outlier_counts(_index()[lambda t: t["kind"] == "run"], loss_cut=4.0)
    assert bars["outliers"].sum() == found["checkpoints"]
    assert bars["checkpoints"].sum() == found["of_checkpoints"]
    # a higher cut: none, every architecture still listed
    assert outlier_metrics(_index(), loss_cut=10.0)["by_arch"] == {
        "fc": {"checkpoints": 0, "runs": 0}, "vit": {"checkpoints": 0, "runs": 0}}


def test_outliers_reject_bad_input():
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['train_loss'\]"):
        outlier_metrics(_index().drop(columns="train_loss"))
    with pytest.raises(ValueError, match="loss_cut must be a finite number"):
        outlier_metrics(_index(), loss_cut=float("nan"))
    missing = _index()
    missing.loc[0, "train_loss"] = np.nan
    with pytest.raises(ValueError, match="run rows without a train_loss"):
        outlier_metrics(missing)


# --- Figure S1: negative eigenvalues ---


def test_negative_eigenvalues_are_counted_with_their_share_of_the_stress():
    lam = np.array([4.0, -3.0, 2.0, -1.0, -1e-12])  # the last is null against 4: no sign
    # ||W||^2 = 40 > 16 + 9 + 4 + 1: the rest lies in eigenvalues not computed
    found = negative_eigenvalue_metrics(lam, 40.0, top=2)
    assert found == {"computed_eigenvalues": 5, "negative_eigenvalues": 2,
                     "negative_eigenvalues_top_2": 1, "negative_stress_share": 0.25}
    assert negative_eigenvalue_metrics(np.array([1.0, 0.5]), 1.25, top=50)[
        "negative_eigenvalues_top_50"] == 0
    # a zero matrix has nothing to share
    assert negative_eigenvalue_metrics(np.zeros(3), 0.0)["negative_stress_share"] == 0.0


def test_negative_eigenvalues_reject_bad_input():
    with pytest.raises(ValueError, match="sorted by"):
        negative_eigenvalue_metrics(np.array([1.0, -2.0]), 5.0)
    with pytest.raises(ValueError, match="finite 1-D array"):
        negative_eigenvalue_metrics(np.array([[1.0]]), 1.0)
    with pytest.raises(ValueError, match="frobenius_sq must be a finite number >= 0"):
        negative_eigenvalue_metrics(np.array([1.0]), -1.0)
    with pytest.raises(ValueError, match="top must be a whole number >= 1"):
        negative_eigenvalue_metrics(np.array([1.0]), 1.0, top=0)


# --- Figure 16: the larger network's lead ---


def _pair_runs() -> tuple[pd.DataFrame, np.ndarray]:
    """Two seeds of a small and a large network, four checkpoints each (epochs 0..3)."""
    runs = [("s42", "small", 42), ("s43", "small", 43), ("l42", "large", 42), ("l43", "large", 43)]
    index = pd.DataFrame({"kind": "run", "run_id": [r for r, _, _ in runs for _ in range(4)],
                          "arch": [a for _, a, _ in runs for _ in range(4)], "optimizer": "sgd",
                          "seed": [s for _, _, s in runs for _ in range(4)],
                          "checkpoint": list(range(4)) * 4, "epoch": [0.0, 1.0, 2.0, 3.0] * 4})
    progress = np.array([0.0, 0.3, 0.6, 0.8,    # small, s42: 0.25 at 1, 0.5 at 2, 0.9 never
                         0.0, 0.1, 0.4, 0.95,   # small, s43: 0.25 at 2, 0.5 at 3, 0.9 at 3
                         0.0, 0.6, 0.7, 0.9,    # large, s42: 0.25 at 1, 0.5 at 1, 0.9 at 3
                         0.0, 0.2, 0.5, 0.92])  # large, s43: 0.25 at 2, 0.5 at 2, 0.9 at 3
    return index, progress


def test_the_size_pair_metrics_hold_the_table_and_the_cells():
    index, progress = _pair_runs()
    milestones = progress_milestones(index, progress, ["small", "large"], levels=(0.25, 0.5, 0.9))
    found = size_pair_metrics(milestones, ("small", "large"))
    assert found["smaller"] == "small" and found["larger"] == "large"
    # 0.25: 1.5 against 1.5 (no later); 0.5: 2.5 against 1.5 (earlier); 0.9: one small run
    # never reaches it, so the cell is shown but not compared
    assert found["cells"] == {"compared": 2, "no_later": 2, "earlier": 1}
    assert found["by_level"]["0.5"]["sgd"] == {
        "smaller": {"mean_epoch": 2.5, "reached": 2, "runs": 2},
        "larger": {"mean_epoch": 1.5, "reached": 2, "runs": 2}, "lead": 1.0}
    assert found["by_level"]["0.25"]["sgd"]["lead"] == 0.0
    assert found["by_level"]["0.9"]["sgd"] == {
        "smaller": {"mean_epoch": 3.0, "reached": 1, "runs": 2},
        "larger": {"mean_epoch": 3.0, "reached": 2, "runs": 2}, "lead": None}
    json.dumps(found, allow_nan=False)  # a metrics file: no NaN
    # a level no run reaches: no mean epoch, nothing compared
    never = size_pair_metrics(progress_milestones(index, progress, ["small", "large"],
                                                  levels=(0.99,)), ("small", "large"))
    assert never["cells"] == {"compared": 0, "no_later": 0, "earlier": 0}
    assert never["by_level"]["0.99"]["sgd"]["smaller"]["mean_epoch"] is None
    json.dumps(never, allow_nan=False)


def test_the_size_pair_metrics_reject_a_pair_without_runs():
    index, progress = _pair_runs()
    milestones = progress_milestones(index, progress, ["small", "large"], levels=(0.5,))
    with pytest.raises(ValueError, match=r"no runs of \['huge'\]"):
        size_pair_metrics(milestones, ("small", "huge"))
    with pytest.raises(ValueError, match="two different architectures"):
        size_pair_metrics(milestones, ("small", "small"))


# --- the synthetic study: chi_k against c ---


def test_the_slope_of_chi_against_c_is_the_least_squares_one():
    rows = [{"c": c, "group": "default", "k": k, "explained_stress": 0.5 + 0.2 * c + 0.1 * k}
            for c in (0.0, 0.5, 1.0) for k in (1, 2, 3, 4)]
    # not on a line: chi = 0.1, 0.4, 0.4 at c = 0, 0.5, 1 -> slope 0.15 / 0.5 = 0.3
    rows += [{"c": c, "group": "corners", "k": 1, "explained_stress": chi}
             for c, chi in ((0.0, 0.1), (0.5, 0.4), (1.0, 0.4))]
    rows += [{"c": 0.0, "group": "alone", "k": 1, "explained_stress": 0.3}]
    slopes = stress_slopes(pd.DataFrame(rows))
    assert slopes["default"] == pytest.approx(
        {"explained_stress_1": 0.2, "explained_stress_2": 0.2, "explained_stress_3": 0.2})
    assert slopes["corners"] == pytest.approx({"explained_stress_1": 0.3})
    assert slopes["alone"] == {"explained_stress_1": None}  # one c: no slope
    with pytest.raises(ValueError, match="more than one chi_1 for a c value"):
        stress_slopes(pd.DataFrame(rows + [rows[0]]))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['group'\]"):
        stress_slopes(pd.DataFrame({"c": [0.0], "k": [1], "explained_stress": [0.5]}))


# --- the results page ---

LARGER = {"enabled": True, "smaller": "wr-10", "larger": "wr-16",
          "cells": {"compared": 1, "no_later": 1, "earlier": 1},
          "by_level": {"0.5": {"sgd": {"smaller": {"mean_epoch": 2.5, "reached": 2, "runs": 2},
                                       "larger": {"mean_epoch": 1.5, "reached": 2, "runs": 2},
                                       "lead": 1.0}},
                       "0.25": {"sgd": {"smaller": {"mean_epoch": 1.0, "reached": 1, "runs": 2},
                                        "larger": {"mean_epoch": 1.0, "reached": 2, "runs": 2},
                                        "lead": None}}}}
TRAJECTORIES = {"outliers": {"checkpoints": 3, "of_checkpoints": 70, "runs": 2, "of_runs": 6,
                             "by_arch": {"fc": {"checkpoints": 3, "runs": 2}}},
                "train": {"between_within_arch_ratio": 2.5, "to_geodesic_median_at_0.25": 0.05,
                          "to_geodesic_max_at_0.25": 0.1}}
EMBEDDING = {"train": {"explained_stress_1": 0.9, "computed_eigenvalues": 50,
                       "negative_eigenvalues": 8, "negative_eigenvalues_top_50": 8,
                       "negative_stress_share": 0.0084}}
SYNTHETIC = {"c=0": {"default": {"explained_stress_1": 0.9}},
             "c=0.5": {"default": {"explained_stress_1": 0.8}},
             "slope_against_c": {"default": {"explained_stress_1": -0.2}}}
PAPER = {"values": [], "quoted": []}


def test_the_page_shows_the_former_figure_only_quantities():
    page = render_page([Profile("quick", "metrics", {
        "embedding": EMBEDDING, "trajectories": TRAJECTORIES, "larger": LARGER,
        "synthetic": SYNTHETIC})], PAPER)
    # Figure 16: one row per level and optimizer, levels in order, and the count of cells
    assert ("| level | optimizer | wr-10: mean first epoch | reached | wr-16: mean first epoch | "
            "reached | lead (epochs) |") in page
    assert page.index("| 0.25 | sgd | 1.0 | 1 of 2 | 1.0 | 2 of 2 | – |") < page.index(
        "| 0.5 | sgd | 2.5 | 2 of 2 | 1.5 | 2 of 2 | 1.0 |")
    assert "- wr-16 against wr-10: no later in 1 and earlier in 1 of the 1 (level" in page
    # Figures 8 and 9: outliers are no space; the distance to the geodesic has its own table
    assert "| outliers |" not in page
    assert "| train | 0.25 | 0.05 | 0.1 |" in page
    assert "3 of 70 checkpoints, in 2 of 6 runs" in page and "| fc | 3 | 2 |" in page
    # Figure S1 and the synthetic slope
    assert "| train | 50 | 8 | 8 of 50 | 0.0084 |" in page
    assert "| default | -0.2 |" in page and "| slope_against_c |" not in page
    off = render_page([Profile("quick", "metrics", {"larger": {"enabled": False}})], PAPER)
    assert "Not computed: `trajectories.size_pair` is null." in off
