"""Pure helpers of the figure panels: spread labelling, leaf labels, epochs to progress."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.figures import spread_centres, spread_labels
from lowdim.trajectory_panels import configuration_label, epochs_to_progress


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
