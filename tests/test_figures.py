"""Pure helpers of the figure panels: spread labelling, leaf labels, epochs to progress."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.size_pair import epochs_to_progress, larger_lead, progress_milestones
from lowdim.figures.embedding_panels import spread_centres, spread_labels
from lowdim.figures.trajectory_panels import configuration_label


def test_spread_labels_pick_the_nearest_centre_within_the_radius():
    to_centres = np.array([[0.05, 0.5, 0.9],   # near the first
                           [0.6, 0.1, 0.12],   # near the second (nearest of two inside)
                           [0.3, 0.4, 0.2],    # outside every radius
                           [0.9, 0.8, 0.15]])  # exactly on the radius counts as inside
    np.testing.assert_array_equal(spread_labels(to_centres, 0.15), [0, 1, -1, 2])


def test_spread_labels_reject_bad_input():
    with pytest.raises(ValueError, match=r"must be \(M, K\)"):
        spread_labels(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="radius = 0: must be positive"):
        spread_labels(np.zeros((3, 2)), 0)


def test_spread_centres_are_the_nearest_geodesic_points():
    t = np.linspace(0.01, 1.0, 100)
    index = pd.DataFrame({"kind": ["run"] * 3 + ["geodesic"] * 100,
                          "t": np.concatenate([[np.nan] * 3, t])})
    index["row"] = np.arange(len(index))
    np.testing.assert_array_equal(spread_centres(index), [3, 3 + 50, 3 + 98])
    with pytest.raises(ValueError, match="no geodesic rows"):
        spread_centres(index[index["kind"] == "run"])


def test_configuration_label_lists_the_factors():
    row = pd.Series({"arch": "fc", "optimizer": "sgd", "batch_size": 64, "lr": 0.032,
                     "weight_decay": 0.0, "augment": "none"})
    assert configuration_label(row) == "fc / sgd / 64 / 0.032 / 0 / none"


def test_epochs_to_progress_finds_the_first_crossing():
    index = pd.DataFrame({"kind": "run", "run_id": ["a"] * 4 + ["b"] * 4,
                          "arch": ["small"] * 4 + ["large"] * 4, "optimizer": "sgd", "seed": 42,
                          "checkpoint": list(range(4)) * 2,
                          "epoch": [0.0, 1.0, 2.0, 3.0] * 2})
    progress = np.array([0.0, 0.2, 0.6, 0.9, 0.0, 0.7, 0.8, 0.9])
    reached = epochs_to_progress(index, progress, ["small", "large"]).set_index("run_id")
    assert reached.loc["a", "epoch"] == 2.0 and reached.loc["b", "epoch"] == 1.0
    never = epochs_to_progress(index, np.zeros(8), ["small"])
    assert never["epoch"].isna().all()


def _pair_runs() -> tuple[pd.DataFrame, np.ndarray]:
    """Two seeds of a small and a large network, four checkpoints each (epochs 0..3)."""
    runs = [("s42", "small", 42), ("s43", "small", 43), ("l42", "large", 42), ("l43", "large", 43)]
    index = pd.DataFrame({"kind": "run", "run_id": [r for r, _, _ in runs for _ in range(4)],
                          "arch": [a for _, a, _ in runs for _ in range(4)], "optimizer": "sgd",
                          "seed": [s for _, _, s in runs for _ in range(4)],
                          "checkpoint": list(range(4)) * 4, "epoch": [0.0, 1.0, 2.0, 3.0] * 4})
    progress = np.array([0.0, 0.3, 0.6, 0.8,    # small, s42: 0.5 at epoch 2, 0.9 never
                         0.0, 0.1, 0.4, 0.95,   # small, s43: 0.5 at epoch 3, 0.9 at epoch 3
                         0.0, 0.6, 0.7, 0.9,    # large, s42: 0.5 at epoch 1, 0.9 at epoch 3
                         0.0, 0.2, 0.5, 0.92])  # large, s43: 0.5 at epoch 2, 0.9 at epoch 3
    return index, progress


def test_progress_milestones_average_the_runs_that_reach_each_level():
    index, progress = _pair_runs()
    table = progress_milestones(index, progress, ["small", "large"], levels=(0.5, 0.9, 0.99))
    cell = table.set_index(["level", "arch"])
    assert cell.loc[(0.5, "small"), "mean_epoch"] == 2.5
    assert cell.loc[(0.5, "large"), "mean_epoch"] == 1.5
    assert cell.loc[(0.9, "small"), ["mean_epoch", "reached", "runs"]].tolist() == [3.0, 1, 2]
    assert cell.loc[(0.9, "large"), ["reached", "runs"]].tolist() == [2, 2]
    assert np.isnan(cell.loc[(0.99, "large"), "mean_epoch"])
    assert cell.loc[(0.99, "large"), "reached"] == 0


def test_larger_lead_compares_only_levels_every_run_reaches():
    index, progress = _pair_runs()
    table = progress_milestones(index, progress, ["small", "large"], levels=(0.25, 0.5, 0.9))
    lead = larger_lead(table, ("small", "large"))
    # 0.9: one small run never reaches it, so the level is not compared
    assert lead.index.tolist() == [(0.25, "sgd"), (0.5, "sgd")]
    assert lead.tolist() == [0.0, 1.0]  # 0.25: both at 1.5 on average; 0.5: 2.5 against 1.5
    slower = progress.copy()
    slower[13:16] = [0.1, 0.2, 0.6]  # large s43 now reaches 0.5 at epoch 3: mean 2.0
    slower[9:12] = [0.2, 0.3, 0.6]   # and large s42 at epoch 3 too: mean 3.0, half an epoch late
    late = progress_milestones(index, slower, ["small", "large"], levels=(0.5,))
    assert larger_lead(late, ("small", "large")).tolist() == [-0.5]


def test_the_stress_panel_shows_what_landmark_coordinates_achieve():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lowdim.figures.embedding_panels import achieved_points, stress_panel
    from lowdim.geometry.inpca import inpca

    rng = np.random.default_rng(0)
    x = rng.random((40, 40))
    d = x + x.T
    np.fill_diagonal(d, 0.0)
    emb = inpca(d, 5, landmarks=12)
    metrics = {"train": {"explained_stress_1": 0.5, "explained_stress_3": 0.7,
                         "explained_stress_50": 0.9, "landmark_matrix_stress_1": 0.6,
                         "landmarks": 12, "stress_holdout_points": 0},
               "test": {"explained_stress_1": 0.4}}  # no landmarks: its own curve only
    assert achieved_points(metrics["train"], top=10) == ([1, 3], [0.5, 0.7])
    fig, ax = plt.subplots()
    stress_panel(ax, {"train": emb, "test": emb}, top=10, metrics=metrics)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["train, landmark matrix (12 points)", "train, achieved by the coordinates",
                      "test"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.5, 0.7]
    plt.close(fig)
