"""Trajectory analyses (docs/study.md A10-A13, A15, D9, D14): closed forms, constructed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, leaves_list

from lowdim.analysis.trajectory_analyses import (
    cluster_configurations,
    configuration_distances,
    configuration_to_geodesic,
    distance_to_geodesic,
    feature_importance,
    outlier_counts,
    summary_metrics,
    trained,
    trajectory_embedding,
    tube_width,
)
from lowdim.geometry.distances import ignorance_point, truth_point
from lowdim.geometry.geodesic import (
    PROGRESS_GRID,
    average_trajectories,
    geodesic,
    reindex,
    trajectory_distance_tensor,
)
from lowdim.geometry.inpca import minkowski_sq_distances

N, C = 30, 10


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def random_trajectory(rng: np.random.Generator, k: int = 6) -> np.ndarray:
    """A reindexed (G, N, C) trajectory through k random checkpoints."""
    checkpoints = rng.dirichlet(np.full(C, 0.5), size=(k, N))
    return reindex(checkpoints, np.linspace(0.0, 1.0, k))


def make_table(kinds, configs, archs, optimizers=None, errors=None) -> pd.DataFrame:
    """A trajectory table with the factor columns; seeds count up within a config."""
    n = len(kinds)
    table = pd.DataFrame({
        "kind": kinds, "config": configs, "arch": archs,
        "optimizer": optimizers if optimizers is not None else ["sgd"] * n,
        "batch_size": 200, "lr": 0.1, "weight_decay": 0.0, "augment": "none", "init": "default",
    })
    table["seed"] = table.groupby("config").cumcount()
    table["final_train_error"] = errors if errors is not None else [
        0.05 if k == "run" else np.nan for k in kinds]
    return table


def line_tensor(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Trajectories at fixed positions x (R,) on a line, distances scaled by scale (G,)."""
    return scale[:, None, None] * np.abs(x[:, None] - x[None, :])[None]


def test_tube_width_of_identical_seeds_is_zero(rng):
    a, b = random_trajectory(rng), random_trajectory(rng)
    runs = [a, a, a, b, b]
    trajs = np.stack([*runs, average_trajectories(np.stack(runs[:3])),
                      average_trajectories(np.stack(runs[3:]))])
    table = make_table(["run"] * 5 + ["average"] * 2, ["A"] * 3 + ["B"] * 2 + ["A", "B"],
                       ["fc"] * 3 + ["cnn"] * 2 + ["fc", "cnn"])
    tensor = trajectory_distance_tensor(trajs.astype(np.float32))
    width = tube_width(tensor, table)
    assert len(width) == 5 * 100
    assert list(width.columns[:3]) == ["row", "config", "arch"]
    assert {"optimizer", "seed", "final_train_error", "progress", "distance"} <= set(width.columns)
    np.testing.assert_array_equal(width["row"].unique(), np.arange(5))
    np.testing.assert_allclose(width["progress"].to_numpy()[:100], PROGRESS_GRID)
    np.testing.assert_allclose(width["distance"], 0.0, atol=1e-6)


def test_tube_width_reads_the_run_to_average_entries():
    # runs at 0, 2 (config A) and 10 (config B); averages at 1 and 10; distances scale with t
    x = np.array([0.0, 2.0, 10.0, 1.0, 10.0])
    grid = np.array([0.2, 0.5, 1.0])
    tensor = line_tensor(x, grid)
    table = make_table(["run"] * 3 + ["average"] * 2, ["A", "A", "B", "A", "B"],
                       ["fc", "fc", "cnn", "fc", "cnn"])
    width = tube_width(tensor, table, grid)
    expected = np.outer([1.0, 1.0, 0.0], grid).reshape(-1)  # |x_run - x_avg| * t
    np.testing.assert_allclose(width["distance"], expected)
    keep = np.array([False, True, True, True, True])
    np.testing.assert_array_equal(tube_width(tensor, table, grid, runs=keep)["row"].unique(),
                                  [1, 2])


def test_distance_to_geodesic_of_the_reindexed_geodesic_is_zero(rng):
    p0 = ignorance_point(N, C)
    p1 = truth_point(rng.integers(0, C, size=N), C)
    t_k = np.array([0.0, 0.03, 0.2, 0.45, 0.8, 1.0])
    on_geodesic = reindex(geodesic(p0, p1, t_k), t_k)
    elsewhere = random_trajectory(rng)
    trajs = np.stack([on_geodesic, elsewhere, geodesic(p0, p1, PROGRESS_GRID)])
    table = make_table(["run", "run", "geodesic"], ["A", "B", None], ["fc", "cnn", None])
    tensor = trajectory_distance_tensor(trajs.astype(np.float32))
    d = distance_to_geodesic(tensor, table)
    assert len(d) == 200
    np.testing.assert_allclose(d.loc[d["row"] == 0, "distance"], 0.0, atol=1e-5)
    assert (d.loc[d["row"] == 1, "distance"] > 0.05).all()
    np.testing.assert_allclose(d.loc[d["row"] == 1, "distance"], tensor[:, 1, 2])


def test_configuration_distances_average_over_seed_pairs_then_progress():
    # config A: runs at 0, 1; config B: runs at 4, 6, 8; an average and the geodesic far away
    x = np.array([0.0, 4.0, 1.0, 6.0, 8.0, 100.0, -50.0])
    grid = np.array([0.25, 0.5, 1.0])
    tensor = line_tensor(x, grid)
    table = make_table(["run"] * 5 + ["average", "geodesic"],
                       ["A", "B", "A", "B", "B", "A", None],
                       ["fc", "cnn", "fc", "cnn", "cnn", "fc", None],
                       errors=[0.1, 0.2, 0.3, 0.0, 0.1, np.nan, np.nan])
    configs, d = configuration_distances(tensor, table)
    assert list(configs["config"]) == ["A", "B"]  # order of first appearance
    assert list(configs["arch"]) == ["fc", "cnn"]
    assert list(configs["n_runs"]) == [2, 3]
    np.testing.assert_allclose(configs["mean_final_train_error"], [0.2, 0.1])
    pairs = [abs(a - b) for a in (0.0, 1.0) for b in (4.0, 6.0, 8.0)]
    expected = np.mean(pairs) * grid.mean()
    np.testing.assert_allclose(d, [[0.0, expected], [expected, 0.0]])
    # the mask leaves out the run at 8
    _, d_kept = configuration_distances(tensor, table, runs=np.arange(7) != 4)
    kept = [abs(a - b) for a in (0.0, 1.0) for b in (4.0, 6.0)]
    assert d_kept[0, 1] == pytest.approx(np.mean(kept) * grid.mean())
    # d2geod per configuration: mean over its runs and progress of the distance to x = -50
    to_geo = configuration_to_geodesic(tensor, table, configs)
    np.testing.assert_allclose(to_geo, [50.5 * grid.mean(), 56.0 * grid.mean()])


def test_configuration_key_must_not_mix_factors():
    tensor = line_tensor(np.array([0.0, 1.0]), np.ones(2))
    table = make_table(["run", "run"], ["A", "A"], ["fc", "cnn"])
    with pytest.raises(ValueError, match=r"configuration\(s\) \['A'\] mix several values of "
                                         r"'arch'"):
        configuration_distances(tensor, table)


def test_clustering_recovers_two_groups(rng):
    x = np.concatenate([rng.normal(0.0, 0.3, 5), rng.normal(10.0, 0.3, 4)])
    order = rng.permutation(9)
    x = x[order]
    group = (order >= 5).astype(int)
    d = np.abs(x[:, None] - x[None, :])
    z = cluster_configurations(d)
    assert z.shape == (8, 4)
    labels = fcluster(z, 2, criterion="maxclust")
    assert len(set(labels)) == 2
    for g in (0, 1):
        assert len(set(labels[group == g])) == 1
    # optimal leaf ordering keeps each group contiguous
    leaves = group[leaves_list(z)]
    assert np.count_nonzero(np.diff(leaves)) == 1


def configuration_grid() -> pd.DataFrame:
    rows = [dict(config=f"{a}-{o}-{b}-{g}", arch=a, optimizer=o, batch_size=b, augment=g,
                 weight_decay=0.0)
            for a in ("fc", "cnn", "vit") for o in ("sgd", "adam") for b in (100, 200)
            for g in ("none", "simple")]
    return pd.DataFrame(rows)


def test_feature_importance_ranks_the_determining_factor_first(rng):
    configs = configuration_grid()
    level = configs["arch"].map({"fc": 0.0, "cnn": 1.0, "vit": 3.0}).to_numpy()
    d = np.abs(level[:, None] - level[None, :]) + 0.5 * (level[:, None] != level[None, :])
    imp = feature_importance(d, configs, n_repeats=5, seed=1)
    assert list(imp.columns) == ["factor", "repeat", "importance"]
    assert len(imp) == 5 * 5
    median = imp.groupby("factor")["importance"].median()
    assert median.idxmax() == "arch"
    assert median["arch"] > 0.5
    assert median.drop("arch").abs().max() < 0.05 * median["arch"]
    # weight decay takes one value in the grid: no information, importance exactly 0
    np.testing.assert_array_equal(imp.loc[imp["factor"] == "weight_decay", "importance"], 0.0)
    # optional d2geod features are reported too; arch still leads
    with_geo = feature_importance(d, configs, n_repeats=3, to_geodesic=rng.uniform(size=24))
    med = with_geo.groupby("factor")["importance"].median()
    assert {"to_geodesic_first", "to_geodesic_second"} <= set(med.index)
    assert med.idxmax() == "arch"


def test_feature_importance_bad_input():
    configs = configuration_grid()
    d = np.zeros((24, 24))
    with pytest.raises(ValueError, match=r"configurations lack the factor column\(s\) \['depth'\]"):
        feature_importance(d, configs, factors=("arch", "depth"))
    with pytest.raises(ValueError, match=r"one row per row of distance \(24\), got 23 rows"):
        feature_importance(d, configs.iloc[:-1])
    with pytest.raises(ValueError, match=r"to_geodesic must be a finite array of shape \(24,\)"):
        feature_importance(d, configs, to_geodesic=np.zeros(3))
    with pytest.raises(ValueError, match=r"n_repeats must be an integer >= 1"):
        feature_importance(d, configs, n_repeats=0)
    with pytest.raises(ValueError, match=r"at least 3 configurations"):
        feature_importance(d[:2, :2], configs.iloc[:2])


def test_trajectory_embedding_of_squared_euclidean_distances_is_classical_mds(rng):
    x = rng.normal(size=(12, 3)) * np.array([3.0, 2.0, 1.0])
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    emb = trajectory_embedding(d, n_components=3)
    assert emb.coords.shape == (12, 3)
    np.testing.assert_array_equal(emb.signs, 1.0)
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d, atol=1e-9)
    assert emb.explained_stress[2] == pytest.approx(1.0, abs=1e-6)  # 1 - sqrt(rounding)
    with pytest.raises(ValueError, match=r"pass trajectory_distances\(tensor\), not the"):
        trajectory_embedding(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"distances must have a zero diagonal"):
        trajectory_embedding(d + np.eye(12))


def test_outlier_counts_on_a_constructed_index():
    index = pd.DataFrame({
        "kind": ["run"] * 8 + ["truth"],
        "arch": ["fc"] * 5 + ["cnn"] * 3 + [None],
        "optimizer": ["sgd"] * 5 + ["adam"] * 3 + [None],
        "epoch": [0.0, 5.0, 5.5, 150.0, 151.0, 0.0, 10.0, 40.0, np.nan],
        "train_loss": [5.0, 4.0, 3.9, 4.5, 6.0, 2.3, 4.1, 1.0, 0.0],
    })
    out = outlier_counts(index)
    labels = ["0-5", "5-10", "10-15", "15-25", "25-50", "50-75", "75-100", "100-150", ">150"]
    assert list(out["epoch_bin"].cat.categories) == labels
    assert len(out) == 2 * 9  # every (arch, optimizer) present x every bin, zeros included
    counts = out.set_index(["arch", "epoch_bin"], drop=True)
    # fc: [0, 5] holds epochs 0 (5.0) and 5 (4.0); (5, 10] holds 5.5 (3.9); 150 is in (100, 150]
    assert counts.loc[("fc", "0-5"), "outliers"] == 2
    assert counts.loc[("fc", "0-5"), "checkpoints"] == 2
    assert counts.loc[("fc", "5-10"), "outliers"] == 0
    assert counts.loc[("fc", "5-10"), "checkpoints"] == 1
    assert counts.loc[("fc", "100-150"), "outliers"] == 1
    assert counts.loc[("fc", ">150"), "outliers"] == 1
    # cnn: epoch 10 belongs to (5, 10]
    assert counts.loc[("cnn", "5-10"), "outliers"] == 1
    assert counts.loc[("cnn", "25-50"), "checkpoints"] == 1
    assert out["outliers"].sum() == 5 and out["checkpoints"].sum() == 8
    assert out.groupby("arch")["optimizer"].unique().map(list).to_dict() == {
        "cnn": ["adam"], "fc": ["sgd"]}
    assert outlier_counts(index, loss_cut=4.05)["outliers"].sum() == 4
    with pytest.raises(ValueError, match=r"index lacks the column\(s\) \['train_loss'\]"):
        outlier_counts(index.drop(columns="train_loss"))
    with pytest.raises(ValueError, match=r"epoch_bins must be finite, strictly increasing"):
        outlier_counts(index, epoch_bins=(0, 10, 5))
    with pytest.raises(ValueError, match=r"epoch 0 lies below the first bin edge 1"):
        outlier_counts(index, epoch_bins=(1, 10))


def test_summary_metrics_on_a_constructed_tensor():
    # arch fc: runs at 0 and 1 (average 0.5); arch cnn: runs at 10 and 12 (average 11)
    x = np.array([0.0, 1.0, 10.0, 12.0, 0.5, 11.0])
    grid = np.array([0.1, 0.3, 0.45, 0.6, 1.0])  # nearest to 0.5 is 0.45
    table = make_table(["run"] * 4 + ["average"] * 2, ["A", "A", "B", "B", "A", "B"],
                       ["fc", "fc", "cnn", "cnn", "fc", "cnn"])
    metrics = summary_metrics(line_tensor(x, grid), table, grid)
    assert set(metrics) == {"tube_width_median_at_0.5", "between_within_arch_ratio"}
    # tube widths 0.5, 0.5, 1, 1 at t = 0.45 -> median 0.75 x 0.45
    assert metrics["tube_width_median_at_0.5"] == pytest.approx(0.75 * 0.45)
    # between pairs 10, 12, 9, 11 (mean 10.5); within 1 and 2 (mean 1.5): ratio 7
    assert metrics["between_within_arch_ratio"] == pytest.approx(7.0)
    one_arch = table.assign(arch="fc")
    assert np.isnan(summary_metrics(line_tensor(x, grid), one_arch, grid)[
        "between_within_arch_ratio"])


def test_trained_mask():
    table = make_table(["run", "run", "run", "average", "geodesic"], ["A", "A", "B", "A", None],
                       ["fc"] * 4 + [None], errors=[0.05, 0.1, 0.3, np.nan, 0.0])
    np.testing.assert_array_equal(trained(table), [True, True, False, False, False])
    np.testing.assert_array_equal(trained(table, max_error=0.01), [False] * 5)
    with pytest.raises(ValueError, match=r"max_error must lie in \[0, 1\]"):
        trained(table, max_error=10)


def test_table_bad_input_messages():
    x = np.array([0.0, 1.0, 2.0])
    tensor = line_tensor(x, np.array([0.5, 1.0]))
    grid = np.array([0.5, 1.0])
    table = make_table(["run", "run", "average"], ["A", "B", "A"], ["fc", "fc", "fc"])
    with pytest.raises(ValueError, match=r"table has 2 rows but the tensor has 3 trajectories"):
        tube_width(tensor, table.iloc[:2], grid)
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['mean'\]"):
        tube_width(tensor, table.assign(kind=["run", "run", "mean"]), grid)
    with pytest.raises(ValueError, match=r"table lacks the column\(s\) \['config'\]"):
        tube_width(tensor, table.drop(columns="config"), grid)
    with pytest.raises(ValueError, match=r"no average trajectory \(kind 'average'\) for "
                                         r"configuration\(s\) \['B'\]"):
        tube_width(tensor, table, grid)
    with pytest.raises(ValueError, match=r"exactly one row of kind 'geodesic', found 0"):
        distance_to_geodesic(tensor, table, grid)
    with pytest.raises(ValueError, match=r"grid must have shape \(2,\)"):
        distance_to_geodesic(tensor, table, PROGRESS_GRID)
    with pytest.raises(ValueError, match=r"runs must be a boolean mask of shape \(3,\)"):
        configuration_distances(tensor, table, runs=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"tensor must have shape \(G, R, R\)"):
        configuration_distances(tensor[0], table)
    with pytest.raises(ValueError, match=r"every run and average needs a config key"):
        configuration_distances(tensor, table.assign(config=["A", None, "A"]))
    with pytest.raises(ValueError, match=r"distance must be symmetric"):
        cluster_configurations(np.array([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"distance must be a square \(K, K\) matrix"):
        cluster_configurations(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"distance contains NaN or infinite values"):
        cluster_configurations(np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match=r"distance has negative entries"):
        cluster_configurations(-np.ones((2, 2)))
