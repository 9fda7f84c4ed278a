"""The trajectory set: run table, reindexing index, averages and the geodesic (docs/study.md
A6-A9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.trajectories import (
    build_trajectory_set,
    checkpoint_progress,
    config_key,
    progress_grid,
    reindex_index,
    run_table,
)
from lowdim.geometry.distances import ignorance_point, truth_point
from lowdim.geometry.geodesic import geodesic

LABELS = np.array([0, 1, 2, 1, 0, 2])
T_CHECKPOINTS = np.array([0.0, 0.2, 0.5, 0.9, 1.0])


def _spec(arch: str, seed: int) -> dict:
    return {"kind": "run", "run_id": f"{arch}_s{seed}", "arch": arch, "optimizer": "sgd",
            "batch_size": 64, "lr": 0.1, "weight_decay": 0.0, "augment": "none",
            "init": "default", "epochs": 4, "seed": seed}


def analysis_set(final_errors: dict[str, float]) -> tuple[pd.DataFrame, np.ndarray]:
    """Runs whose checkpoints lie on the ignorance -> truth geodesic at T_CHECKPOINTS, then the
    ignorance and truth rows, as the predictions stage lays them out."""
    p0, p1 = ignorance_point(len(LABELS), 3), truth_point(LABELS, 3)
    on_path = geodesic(p0, p1, T_CHECKPOINTS)
    rows, probs = [], []
    for run_id, final_error in final_errors.items():
        arch, seed = run_id.split("_s")
        for k, t in enumerate(T_CHECKPOINTS):
            error = 1.0 - t if k < len(T_CHECKPOINTS) - 1 else final_error
            rows.append({**_spec(arch, int(seed)), "checkpoint": k, "epoch": float(k),
                         "train_error": error, "test_error": error,
                         "train_loss": 1.0 - t, "test_loss": 1.0 - t})
        probs.append(on_path)
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    stacked = np.concatenate([*probs, p0[None], p1[None]]).astype(np.float32)
    return index, stacked


def test_progress_grid_is_the_authors_grid():
    np.testing.assert_allclose(progress_grid(100), np.linspace(0.01, 1.0, 100))


def test_config_key_ignores_the_seed():
    assert config_key(_spec("fc", 42)) == config_key(_spec("fc", 43))
    assert config_key(_spec("fc", 42)) != config_key(_spec("allcnn", 42))


def test_run_table_flags_trained_runs():
    index, _ = analysis_set({"fc_s42": 0.0, "fc_s43": 0.3})
    runs = run_table(index, max_error=0.1)
    assert list(runs["run_id"]) == ["fc_s42", "fc_s43"]
    assert list(runs["trained"]) == [True, False]
    assert list(runs["final_train_error"]) == [0.0, 0.3]


def test_reindex_index_choices():
    index, _ = analysis_set({"fc_s42": 0.0})
    np.testing.assert_allclose(reindex_index(index, None, "accuracy"),
                               1.0 - index["train_error"].to_numpy())
    lam = np.linspace(0, 1, len(index))
    np.testing.assert_array_equal(reindex_index(index, lam, "progress"), lam)
    with pytest.raises(ValueError, match="needs the progress of every checkpoint"):
        reindex_index(index, None, "progress")
    with pytest.raises(ValueError, match="'speed' is not known"):
        reindex_index(index, lam, "speed")


def test_checkpoint_progress_of_points_on_the_geodesic():
    index, probs = analysis_set({"fc_s42": 0.0})
    lam = checkpoint_progress(index, probs)
    np.testing.assert_allclose(lam[:5], T_CHECKPOINTS, atol=1e-5)
    assert lam[-2] == 0.0 and lam[-1] == 1.0


def test_trajectories_on_the_geodesic_reindex_to_it():
    index, probs = analysis_set({"fc_s42": 0.0, "fc_s43": 0.0, "allcnn_s42": 0.0,
                                 "allcnn_s43": 0.5})
    runs = run_table(index, max_error=0.1)
    grid = progress_grid(20)
    lam = checkpoint_progress(index, probs)
    table, stacked = build_trajectory_set(index, probs, runs, lam, grid)
    assert list(table["kind"]) == ["run"] * 3 + ["average"] * 2 + ["geodesic"]
    assert list(table.loc[table["kind"] == "average", "seeds"]) == [1, 2]  # allcnn_s43 untrained
    expected = geodesic(probs[-2], probs[-1], grid)
    for trajectory in stacked:  # runs, their averages and the geodesic all lie on it
        np.testing.assert_allclose(trajectory, expected, atol=1e-5)


def test_no_trained_run_is_a_clear_error():
    index, probs = analysis_set({"fc_s42": 0.5})
    runs = run_table(index, max_error=0.1)
    with pytest.raises(ValueError, match="no run is trained"):
        build_trajectory_set(index, probs, runs, np.zeros(len(index)), progress_grid(10))
