"""The trajectories stage and figure 7 in O(block + M) memory (issue 23): progress in blocks of
models, the trajectory tensor through a scratch file when one grid point exceeds the budget, and
the distance matrix read by rows from a memory map. Blocked results are compared byte for byte
with the unblocked ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from lowdim.analysis.trajectories import (
    checkpoint_progress,
    progress_grid,
    reindex_index,
    run_table,
    trajectory_tensor,
)
from lowdim.figures.embedding_panels import spread_distances
from lowdim.geometry.distances import bhattacharyya, ignorance_point, truth_point
from lowdim.geometry.geodesic import (
    geodesic,
    progress,
    progress_block_rows,
    progress_closed_form,
)
from lowdim.store.analysis_set import load_index, open_probs
from lowdim.store.arrays import NpyFile
from lowdim.store.products import load_array, load_table

WHOLE = 2**40  # a budget no test reaches: one block, the unblocked computation


def near_geodesic(rng: np.random.Generator, m: int, n: int, c: int):
    """(m, n, c) float32 models scattered around the ignorance -> truth geodesic, p0, p1."""
    labels = rng.integers(0, c, n)
    p0, p1 = ignorance_point(n, c), truth_point(labels, c)
    p = geodesic(p0, p1, rng.uniform(0.0, 1.0, m)) * rng.uniform(0.5, 1.5, (m, n, c)) + 1e-3
    return (p / p.sum(-1, keepdims=True)).astype(np.float32), p0, p1


def test_progress_block_rows_fit_the_budget():
    # 1,000 samples of 10 classes: 72,000 bytes a model, a fixed 15,360,000 for the roots;
    # (256 MiB - fixed) // (72,000 x 64) = 54 groups of 64 models
    assert progress_block_rows(1000, 10, 256 * 2**20) == 54 * 64
    assert progress_block_rows(1000, 10, 1) == 64  # never less than one group
    with pytest.raises(ValueError, match="max_block_bytes must be a positive integer"):
        progress_block_rows(1000, 10, 0)


@pytest.mark.parametrize("method", [progress, progress_closed_form])
def test_progress_in_blocks_is_bitwise_the_unblocked(tmp_path, method):
    p, p0, p1 = near_geodesic(np.random.default_rng(3), 150, 30, 5)
    whole = method(p, p0, p1, max_block_bytes=WHOLE)
    np.save(tmp_path / "p.npy", p)
    for source in (p, np.load(tmp_path / "p.npy", mmap_mode="r"), NpyFile(tmp_path / "p.npy")):
        blocked = method(source, p0, p1, max_block_bytes=1)  # blocks of 64, 64 and 22 models
        assert blocked.tobytes() == whole.tobytes()


def trajectory_set(rng: np.random.Generator):
    """An analysis set of 7 noisy runs (fc x 3 seeds, allcnn x 2, vit x 2; vit seed 1 not
    trained, so the configurations have 3, 2 and 1 trained seeds), ignorance and truth."""
    n, c, checkpoints = 24, 4, 7
    p, p0, p1 = near_geodesic(rng, 1, n, c)
    rows, probs = [], []
    for arch, seeds in (("fc", 3), ("allcnn", 2), ("vit", 2)):
        for seed in range(seeds):
            t = np.linspace(0.0, 0.95, checkpoints)
            path = geodesic(p0, p1, t) * rng.uniform(0.7, 1.3, (checkpoints, n, c))
            probs.append(path / path.sum(-1, keepdims=True))
            final = 0.5 if (arch, seed) == ("vit", 1) else 0.02
            for k in range(checkpoints):
                error = 1.0 - k / (checkpoints - 1) if k < checkpoints - 1 else final
                rows.append({"kind": "run", "run_id": f"{arch}_s{seed}", "arch": arch,
                             "optimizer": "sgd", "batch_size": 64, "lr": 0.1,
                             "weight_decay": 0.0, "augment": "none", "init": "default",
                             "epochs": 2, "seed": seed, "checkpoint": k, "epoch": float(k),
                             "train_error": error, "test_error": error, "train_loss": error,
                             "test_loss": error})
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    stacked = np.concatenate([*probs, p0[None], p1[None]]).astype(np.float32)
    return index, stacked


def test_the_scratch_file_tensor_is_bitwise_the_in_memory_one(tmp_path):
    index, probs = trajectory_set(np.random.default_rng(5))
    runs = run_table(index, max_error=0.1)
    grid = progress_grid(5)
    values = reindex_index(index, checkpoint_progress(index, probs), "progress")
    table, expected = trajectory_tensor(index, probs, runs, values, grid)  # the stage's default
    assert list(table["kind"]) == ["run"] * 6 + ["average"] * 3 + ["geodesic"]
    per_point = len(table) * 24 * 4 * 4
    # all grid points at once, one per chunk; then through the scratch file in blocks of
    # 2 trajectories (seeds and their averages in different blocks) and of 1
    for budget in (WHOLE, per_point, 2 * 24 * 4 * 4 + 7, 300):
        found_table, tensor = trajectory_tensor(index, probs, runs, values, grid,
                                                max_block_bytes=budget, scratch_dir=tmp_path)
        assert found_table.equals(table)
        assert tensor.tobytes() == expected.tobytes(), budget
        assert list(tmp_path.iterdir()) == []  # the scratch file is gone


def test_spread_distances_read_only_the_centres_rows(tmp_path):
    rng = np.random.default_rng(8)
    p, _, _ = near_geodesic(rng, 40, 16, 3)
    d = bhattacharyya(p)
    centres = np.array([3, 17, 39])
    garbage = np.full_like(d, np.nan)  # every row but the centres' is unreadable
    garbage[centres] = d[centres]
    np.save(tmp_path / "d.npy", garbage)
    mapped = np.load(tmp_path / "d.npy", mmap_mode="r")
    found = spread_distances(mapped, centres)
    assert found.shape == (40, 3) and found.dtype == np.float64
    assert found.tobytes() == np.ascontiguousarray(d[:, centres]).tobytes()
    with pytest.raises(ValueError, match=r"square \(M, M\)"):
        spread_distances(d[:5], centres)
    with pytest.raises(ValueError, match=r"in \[0, 39\], got \[3, 40\].*different runs"):
        spread_distances(d, [3, 40])


@pytest.mark.slow
def test_the_tiny_stage_tensor_and_progress_come_again_in_blocks(tiny_pipeline, tmp_path):
    """The tiny profile's stage output, recomputed with budgets that force many blocks: the
    same bytes (progress in 64-model blocks; the train tensor's grid points through the scratch
    file in two blocks of trajectories, the second's averages reading seeds back from it)."""
    repo = tiny_pipeline.repo
    params = yaml.safe_load((repo / "params.yaml").read_text())["trajectories"]
    index = load_index(repo / "data" / "predictions")
    stored = load_table(repo / "data" / "trajectories", "progress")
    for space in ("train", "test"):
        lam = checkpoint_progress(index, open_probs(repo / "data" / "predictions", space),
                                  max_block_bytes=1)
        assert lam.tobytes() == stored[f"{space}_progress"].to_numpy().tobytes()
    probs = open_probs(repo / "data" / "predictions", "train")
    tensor = load_array(repo / "data" / "trajectories", "train_tensor")
    count = tensor.shape[1]
    assert count >= 6  # trained runs, their averages and the geodesic
    values = reindex_index(index, stored["train_progress"].to_numpy(), params["reindex_by"])
    budget = (count // 2) * int(np.prod(probs.shape[1:])) * 4
    _, blocked = trajectory_tensor(index, probs, run_table(index, params["trained_max_error"]),
                                   values, progress_grid(params["grid_points"]),
                                   max_block_bytes=budget, scratch_dir=tmp_path)
    assert blocked.tobytes() == tensor.tobytes()
