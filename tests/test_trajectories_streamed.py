"""The trajectories stage's (G, R, R) distance tensor streamed (issue 23): written to its .npy a
grid point at a time, the analyses computed from what they read of it (``ReducedTensor``). The
file, the mean over progress and every analysis are compared byte for byte with the tensor held
whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_trajectories_blocked import WHOLE, trajectory_set

from lowdim.analysis.trajectories import (
    analyse_space,
    checkpoint_progress,
    progress_grid,
    reindex_index,
    run_table,
    stream_tensor,
    trajectory_tensor,
)
from lowdim.analysis.trajectory_analyses import (
    ReducedTensor,
    cluster_configurations,
    configuration_distances,
    configuration_to_geodesic,
    distance_to_geodesic,
    feature_importance,
    gather_pairs,
    mean_over_progress,
    summary_metrics,
    tensor_pairs,
    trajectory_embedding,
    tube_width,
)
from lowdim.store.arrays import NpyFile


def test_mean_over_progress_in_blocks_is_bitwise_the_whole_mean(tmp_path):
    rng = np.random.default_rng(2)
    # magnitudes that make the order of the 100 additions show in the last bits
    tensor = rng.random((100, 37, 37)) * 10.0 ** rng.integers(-6, 6, (100, 37, 37))
    np.save(tmp_path / "t.npy", tensor)
    expected = tensor.mean(axis=0).tobytes()
    for source in (tensor, np.load(tmp_path / "t.npy", mmap_mode="r"), NpyFile(tmp_path / "t.npy")):
        for budget in (1, 100 * 5 * 37 * 8, WHOLE):  # rows 1 at a time, 5 at a time, all
            assert mean_over_progress(source, budget).tobytes() == expected
    with pytest.raises(ValueError, match=r"tensor must have shape \(G, R, R\)"):
        mean_over_progress(tensor[:, :5], WHOLE)


def test_the_streamed_stage_writes_the_same_bytes_and_analyses(tmp_path):
    index, probs = trajectory_set(np.random.default_rng(5))
    runs = run_table(index, max_error=0.1)
    grid = progress_grid(12)  # more than 8 points: numpy's pairwise sums would show
    values = reindex_index(index, checkpoint_progress(index, probs), "accuracy")
    table, tensor = trajectory_tensor(index, probs, runs, values, grid)
    np.save(tmp_path / "expected.npy", tensor)
    per_point = len(table) * 24 * 4 * 4
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # all grid points in one chunk; one point per chunk; each point through the scratch file
    for budget in (WHOLE, per_point, per_point - 1):  # the last: two blocks of trajectories
        path = tmp_path / f"tensor-{budget}.npy"
        found_table, reduced = stream_tensor(index, probs, runs, values, grid, path,
                                             max_block_bytes=budget, scratch_dir=scratch)
        assert found_table.equals(table)
        assert path.read_bytes() == (tmp_path / "expected.npy").read_bytes(), budget
        assert reduced.mean.tobytes() == tensor.mean(axis=0).tobytes()
        assert reduced.shape == tensor.shape and list(scratch.iterdir()) == []
    _, unnamed = stream_tensor(index, probs, runs, values, grid, scratch_dir=scratch)
    assert list(scratch.iterdir()) == []  # the temporary tensor file is gone
    assert unnamed.values.tobytes() == reduced.values.tobytes()

    products, reduced = analyse_space(index, probs, runs, values, grid, bc_floor=1e-8,
                                      importance_repeats=2, seed=0,
                                      tensor_path=tmp_path / "stage.npy")
    assert (tmp_path / "stage.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
    assert "tensor" not in products
    # the analyses of the whole tensor, as the stage ran them before it streamed
    configs, config_d = configuration_distances(tensor, table)
    expected = {
        "table": table, "distances": tensor.mean(axis=0),
        "tube_width": tube_width(tensor, table, grid),
        "to_geodesic": distance_to_geodesic(tensor, table, grid),
        "configurations": configs, "configuration_distances": config_d,
        "linkage": cluster_configurations(config_d),
        "importance": feature_importance(
            config_d, configs, to_geodesic=configuration_to_geodesic(tensor, table, configs),
            n_repeats=2, seed=0),
    }
    assert sorted(products) == sorted([*expected, "embedding"])
    for name, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(products[name], value, check_exact=True)
        else:
            assert products[name].tobytes() == value.tobytes(), name
    embedding = trajectory_embedding(tensor.mean(axis=0))
    assert products["embedding"].coords.tobytes() == embedding.coords.tobytes()
    assert summary_metrics(reduced, table, grid) == summary_metrics(tensor, table, grid)
    assert (configuration_to_geodesic(reduced, table, configs).tobytes()
            == configuration_to_geodesic(tensor, table, configs).tobytes())


def test_reduced_tensor_pairs_and_errors():
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"kind": ["run", "run", "run", "average", "geodesic"],
                          "config": ["A", "A", "B", "A", "geodesic"]})
    pairs = tensor_pairs(table)
    # every trajectory to the geodesic (row 4), then the runs of A to their average (row 3)
    assert pairs.tolist() == [[0, 4], [1, 4], [2, 4], [3, 4], [4, 4], [0, 3], [1, 3]]
    tensor = rng.random((3, 5, 5))
    values = gather_pairs(((g, tensor[g]) for g in (2, 0, 1)), 3, pairs)
    reduced = ReducedTensor(tensor.mean(axis=0), pairs, values)
    assert reduced.take(np.array([1, 0]), 3).tobytes() == tensor[:, [1, 0], 3].tobytes()
    with pytest.raises(ValueError, match=r"holds no distances for the pair \(2, 3\)"):
        reduced.take(np.array([2]), 3)
    with pytest.raises(ValueError, match=r"grid point\(s\) \[1\] were not given"):
        gather_pairs(((g, tensor[g]) for g in (0, 2)), 3, pairs)
    with pytest.raises(ValueError, match=r"grid point 0 was given twice"):
        gather_pairs(((g, tensor[0]) for g in (0, 0)), 3, pairs)
    with pytest.raises(ValueError, match=r"tensor contains NaN or infinite values"):
        gather_pairs([(0, np.full((5, 5), np.nan))], 1, pairs)
    with pytest.raises(ValueError, match=r"values must be \(G, 7\)"):
        ReducedTensor(tensor.mean(axis=0), pairs, values[:, :3])
