"""The corner study in blocks (lowdim.studies.corners, Scale): its joint set and distances written
to files and its convergence analysis built a chunk of grid points at a time give the bytes of
the in-memory computation (the stacked reindexed runs and their (G, R, R) tensor)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.trajectories import run_distance_points
from lowdim.geometry.distances import DistanceSettings, bhattacharyya
from lowdim.geometry.geodesic import reindex, trajectory_distance_tensor
from lowdim.store.arrays import NpyFile
from lowdim.studies.common import Rows
from lowdim.studies.corners import convergence, joint_distances, joint_set, stack_to_file

GRID = np.linspace(0.05, 1.0, 9)


def _runs(rng: np.random.Generator, runs: int = 5, checkpoints: int = 6, n: int = 30,
          c: int = 10) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(M, N, C) float32 probabilities of `runs` runs (rows interleaved, so that a run's rows are
    not contiguous), each run's rows, and a per-row accuracy rising along each run."""
    probs = rng.dirichlet(np.full(c, 0.3), size=(runs * checkpoints, n)).astype(np.float32)
    run_rows = [np.arange(r, runs * checkpoints, runs) for r in range(runs)]
    accuracy = np.empty(runs * checkpoints)
    for rows in run_rows:
        accuracy[rows] = np.sort(rng.uniform(0.1, 0.95, checkpoints))
    return probs, run_rows, accuracy


def _stacked_tensor(probs, run_rows, accuracy, budget: int) -> np.ndarray:
    """The in-memory oracle: every run reindexed whole, stacked as float32, and its tensor."""
    stacked = np.stack([reindex(np.asarray(probs[rows]), accuracy[rows], GRID)
                        .astype(np.float32) for rows in run_rows])
    return trajectory_distance_tensor(stacked, bc_floor=1e-8, max_block_bytes=budget)


@pytest.mark.parametrize("budget", [256 * 2**20, 5 * 30 * 10 * 4 * 2, 4000],
                         ids=["one-chunk", "two-points-a-chunk", "scratch-file"])
def test_run_distance_points_equal_the_stacked_tensor_bit_for_bit(tmp_path, budget):
    rng = np.random.default_rng(0)
    probs, run_rows, accuracy = _runs(rng)
    expected = _stacked_tensor(probs, run_rows, accuracy, budget)
    np.save(tmp_path / "probs.npy", probs)
    for source in (probs, NpyFile(tmp_path / "probs.npy")):
        points = list(run_distance_points(source, run_rows, accuracy, GRID, bc_floor=1e-8,
                                          max_block_bytes=budget, scratch_dir=tmp_path))
        assert [g for g, _ in points] == list(range(len(GRID)))
        assert np.array_equal(np.stack([m for _, m in points]), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probs.npy"]  # scratch removed


def test_convergence_takes_the_medians_of_the_stacked_tensor():
    rng = np.random.default_rng(1)
    probs, run_rows, accuracy = _runs(rng, runs=5)
    kinds = ["run", "run", "run", "corner_run", "corner_run"]
    index = pd.DataFrame({"row": np.arange(len(probs)), "kind": "", "run_id": "",
                          "corner": "", "phase": pd.array([pd.NA] * len(probs), "Int64"),
                          "checkpoint": 0, "seed": 42, "train_error": 1.0 - accuracy})
    for r, rows in enumerate(run_rows):
        index.loc[rows, ["kind", "run_id", "corner"]] = [kinds[r], f"r{r}",
                                                         "" if r < 3 else "uniform-0"]
        index.loc[rows, "checkpoint"] = np.arange(len(rows))
        if r >= 3:
            index.loc[rows, "phase"] = 2
    budget = 2 * 5 * 30 * 10 * 4
    table = convergence(index, probs, GRID, DistanceSettings(bc_floor=1e-8,
                                                             max_block_bytes=budget))
    tensor = _stacked_tensor(probs, run_rows, accuracy, budget)
    upper = np.triu_indices(3, k=1)
    spread = np.median(tensor[:, :3, :3][:, upper[0], upper[1]], axis=1)
    for r in (3, 4):
        mine = table[table["run_id"] == f"r{r}"]
        reached = GRID >= accuracy[run_rows[r][0]]
        expected = np.where(reached, np.median(tensor[:, r, :3], axis=1), np.nan)
        assert np.array_equal(mine["to_normal"].to_numpy(), expected, equal_nan=True)
        assert np.array_equal(mine["normal_spread"].to_numpy(), spread)


def test_stack_to_file_concatenates_arrays_rows_and_files_in_small_blocks(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.dirichlet(np.ones(4), size=(5, 3)).astype(np.float32)
    b = rng.dirichlet(np.ones(4), size=(7, 3)).astype(np.float32)
    np.save(tmp_path / "b.npy", b)
    picked = np.array([6, 0, 3])
    parts = [a, Rows(NpyFile(tmp_path / "b.npy"), picked), NpyFile(tmp_path / "b.npy")]
    stored = stack_to_file(parts, tmp_path / "joint.npy", max_block_bytes=2 * 3 * 4 * 4)
    assert np.array_equal(np.load(tmp_path / "joint.npy"), np.concatenate([a, b[picked], b]))
    assert stored.shape == (15, 3, 4)
    with pytest.raises(ValueError, match=r"share their \(N, C\) shape"):
        stack_to_file([a, b[:, :2]], tmp_path / "bad.npy")


def test_the_joint_set_on_disk_and_its_distances_are_the_in_memory_bytes(tmp_path):
    rng = np.random.default_rng(3)
    main_probs = rng.dirichlet(np.ones(10), size=(11, 12)).astype(np.float32)
    main_index = pd.DataFrame({
        "row": np.arange(11), "kind": ["run"] * 8 + ["ignorance", "truth", "geodesic"],
        "run_id": ["a"] * 4 + ["b"] * 4 + [""] * 3, "arch": ["fc"] * 4 + ["vit"] * 4 + [""] * 3,
        "optimizer": "sgd", "seed": 1, "checkpoint": [0, 1, 2, 3] * 2 + [0] * 3, "step": 0,
        "epoch": 0.0, "t": np.nan, "train_loss": 1.0, "train_error": 0.5})
    corner = (pd.DataFrame({"kind": "corner_run", "run_id": "c", "corner": "uniform-0",
                            "phase": 2, "checkpoint": [0, 1], "seed": 42, "train_error": 0.3}),
              rng.dirichlet(np.ones(10), size=(2, 12)).astype(np.float32))
    labels = {"uniform-0": rng.integers(0, 10, 12)}
    index, in_memory = joint_set([corner], main_index, main_probs, "fc", labels, 10, 3)
    index_file, on_disk = joint_set([corner], main_index, main_probs, "fc", labels, 10, 3,
                                    out=tmp_path / "joint.npy")
    pd.testing.assert_frame_equal(index, index_file)
    assert isinstance(on_disk, NpyFile)
    assert np.array_equal(np.asarray(on_disk), in_memory)
    for method in ("reference", "fused"):
        settings = DistanceSettings(sample_step=2, bc_floor=1e-8, method=method)
        stored = joint_distances(on_disk, settings, tmp_path / f"d_{method}.npy")
        assert np.array_equal(np.asarray(stored),
                              bhattacharyya(in_memory, **settings.kwargs()))
