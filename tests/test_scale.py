"""The geometry half at scale: predictions, distances and embedding streamed through disk with a
tiny memory budget give the same arrays as the in-memory path; disk needs are stated and checked."""

from __future__ import annotations

import logging
import shutil
from collections import namedtuple

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.analysis_set import (
    build_analysis_set,
    check_predictions_disk,
    plan_analysis_set,
    reference_distances,
    write_analysis_set,
)
from lowdim.analysis.trajectories import (
    analyse_space,
    build_trajectory_set,
    checkpoint_progress,
    progress_grid,
    reindex_index,
    run_table,
    trajectory_tensor,
)
from lowdim.geometry import eigen
from lowdim.geometry.distance_blocks import (
    cached_bhattacharyya,
    check_distances_disk,
    plan_distances,
    unit_labels,
    write_bhattacharyya,
    write_distances,
)
from lowdim.geometry.distances import (
    DistanceSettings,
    bhattacharyya,
    ignorance_point,
    truth_point,
)
from lowdim.geometry.geodesic import geodesic, trajectory_distance_tensor
from lowdim.geometry.inpca import inpca, landmark_rows, minkowski_sq_distances, project
from lowdim.store.analysis_set import open_probs, save_analysis_set
from lowdim.store.arrays import NpyFile
from lowdim.store.block_cache import BlockCache
from lowdim.store.distance_matrices import (
    load_centring_sums,
    load_distance_matrix,
    open_distance_matrix,
)
from lowdim.store.records import RunSpec
from lowdim.store.runs import write_run
from lowdim.training.run import RunResult

pytestmark = pytest.mark.usefixtures("single_thread")

C = 10
N = {"train": 48, "test": 20}
T = 9            # checkpoints per run
TINY = 30_000    # bytes: blocks of at most ~24 rows, so the matrices come in many tiles
FACTORS = dict(optimizer="sgd", batch_size=64, base_lr=0.1, lr=0.1, weight_decay=0.0,
               augment="none", init="default", epochs=2)


def noisy_paths(rng: np.random.Generator, runs: int, checkpoints: int, labels: np.ndarray,
                num_classes: int = C) -> np.ndarray:
    """(runs, T, N, C) paths from ignorance towards truth, a different noise for every run."""
    p0, p1 = ignorance_point(len(labels), num_classes), truth_point(labels, num_classes)
    t = np.linspace(0.0, 0.97, checkpoints)
    paths = geodesic(p0, p1, t)[None] * rng.uniform(0.5, 1.5, (runs, 1, len(labels), num_classes))
    paths += 1e-3 * rng.random(paths.shape)
    return paths / paths.sum(-1, keepdims=True)


def make_store(root, rng, runs: int, seed0: int = 0):
    """A run store in the real format (``runs.write_run``) and the specs and labels."""
    labels = {space: rng.integers(0, C, size=n) for space, n in N.items()}
    specs = []
    for r in range(runs):
        spec = RunSpec(arch="fc" if r % 2 else "allcnn", seed=seed0 + r, **FACTORS)
        result = RunResult(spec=spec, iters_per_epoch=4)
        probs = {s: noisy_paths(rng, 1, T, labels[s])[0].astype(np.float32) for s in N}
        for k in range(T):
            result.steps.append(k)
            result.epochs.append(k / 4)
            for s in N:
                result.probs[s].append(probs[s][k])
                result.loss[s].append(float(1 - k / T))
                result.error[s].append(float(1 - k / T))
        write_run(root, result, "fingerprint")
        specs.append(spec)
    return specs, labels


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(5)
    specs, labels = make_store(root / "runs", rng, 7)
    memory = build_analysis_set(root / "runs", specs, labels, C, geodesic_points=6)
    streamed = write_analysis_set(root / "runs", specs, labels, C, 6, root / "predictions",
                                  max_block_bytes=2_000)  # a few checkpoints per shard
    Grid = namedtuple("Grid", "root specs labels memory streamed")
    return Grid(root, specs, labels, memory, streamed)


def test_streamed_predictions_equal_the_in_memory_set(grid, tmp_path):
    assert grid.streamed.index.equals(grid.memory.index)
    for space in N:
        assert isinstance(grid.streamed.probs[space], np.memmap)
        assert np.array_equal(grid.streamed.probs[space], grid.memory.probs[space])
    save_analysis_set(grid.memory, tmp_path / "saved")
    for name in ("train.npy", "test.npy"):  # the same bytes as np.save of the stacked array
        assert (tmp_path / "saved" / name).read_bytes() == \
            (grid.root / "predictions" / name).read_bytes()


def test_streamed_distances_equal_the_in_memory_matrix(grid, tmp_path):
    p = grid.streamed.probs["train"]
    labels = unit_labels(grid.streamed.index)
    full = bhattacharyya(np.asarray(p), sample_step=2, method="fused")
    settings = DistanceSettings(sample_step=2, max_block_bytes=TINY)
    sums, stats = write_bhattacharyya(p, labels, None, tmp_path / "d.npy", settings=settings)
    written = np.load(tmp_path / "d.npy", allow_pickle=False)
    assert np.array_equal(written, full)  # bitwise: every tile in place, exactly once
    expected = eigen.streaming_stats(full)
    got = eigen.stats_from_arrays(sums)
    assert got.frobenius_sq == pytest.approx(expected.frobenius_sq, rel=1e-12)
    np.testing.assert_allclose(got.row_means, expected.row_means, rtol=1e-13)
    assert got.grand_mean == pytest.approx(expected.grand_mean, rel=1e-13)
    np.testing.assert_allclose(sums["row_sums"], full.sum(axis=1), rtol=1e-12)
    assert float(sums["sum_sq"]) == pytest.approx(float((full**2).sum()), rel=1e-12)
    assert stats.pairs_computed == len(p) * (len(p) + 1) // 2
    # float32 storage: the rounded matrix, and the sums of what is stored
    sums32, _ = write_bhattacharyya(p, labels, None, tmp_path / "d32.npy", dtype="float32",
                                    settings=settings)
    stored = np.load(tmp_path / "d32.npy", allow_pickle=False)
    assert stored.dtype == np.float32 and np.array_equal(stored, full.astype(np.float32))
    assert eigen.stats_from_arrays(sums32).frobenius_sq == pytest.approx(
        eigen.streaming_stats(stored).frobenius_sq, rel=1e-12)


def test_streamed_distances_with_the_block_cache(tmp_path):
    rng = np.random.default_rng(6)
    specs, labels = make_store(tmp_path / "runs", rng, 5)
    more, _ = make_store(tmp_path / "more", np.random.default_rng(7), 2, seed0=100)
    for spec in more:  # two new runs join the store
        shutil.copytree(tmp_path / "more" / spec.run_id, tmp_path / "runs" / spec.run_id)
    cache = BlockCache(tmp_path / "cache")
    for kind, chosen in (("cold", specs), ("grown", specs[:2] + more + specs[2:]),
                         ("warm", specs[:2] + more + specs[2:])):
        analysis = write_analysis_set(tmp_path / "runs", chosen, labels, C, 4,
                                      tmp_path / f"pred_{kind}")
        p, units = analysis.probs["train"], unit_labels(analysis.index)
        sums, stats = write_bhattacharyya(p, units, cache, tmp_path / f"{kind}.npy",
                                          settings=DistanceSettings(sample_step=2,
                                                                    max_block_bytes=TINY))
        full = bhattacharyya(np.asarray(p), sample_step=2, method="fused")
        assert np.array_equal(np.load(tmp_path / f"{kind}.npy"), full), kind
        assert eigen.stats_from_arrays(sums).frobenius_sq == pytest.approx(
            eigen.streaming_stats(full).frobenius_sq, rel=1e-12)
        in_memory, memory_stats = cached_bhattacharyya(p, units, None,
                                                       settings=DistanceSettings(sample_step=2))
        assert np.array_equal(in_memory, full)
        if kind == "grown":  # 10 units: 5 old runs, 2 new, ignorance, truth, geodesic
            assert (stats.blocks, stats.cached) == (55, 8 * 9 // 2)  # old x old from the cache
            assert stats.computed == 2 * 8 + 3  # new x old, new x new
        if kind == "warm":
            assert stats.computed == 0 and stats.pairs_computed == 0


def test_stage_writes_matrices_sums_and_reference(grid, tmp_path):
    index = grid.streamed.index
    probs = {space: open_probs(grid.root / "predictions", space) for space in N}  # NpyFile
    reference = reference_distances(probs, index, bc_floor=1e-8)
    done = write_distances(probs, unit_labels(index), BlockCache(tmp_path / "cache"),
                           tmp_path / "distances", reference,
                           settings=DistanceSettings(sample_step=2, max_block_bytes=TINY))
    assert set(done) == set(N)
    names = sorted(f.name for f in (tmp_path / "distances").iterdir())
    assert names == ["reference.parquet", "test.npy", "test_centring.npz", "train.npy",
                     "train_centring.npz"]
    for space in N:
        d = load_distance_matrix(tmp_path / "distances", space)
        assert np.array_equal(d, bhattacharyya(np.asarray(probs[space]), sample_step=2))
        stats = eigen.stats_from_arrays(load_centring_sums(tmp_path / "distances", space))
        assert stats.frobenius_sq == pytest.approx(eigen.streaming_stats(d).frobenius_sq,
                                                   rel=1e-12)
    assert load_centring_sums(tmp_path, "train") is None  # absent: the embedding makes its own pass


def test_streamed_embedding_equals_the_in_memory_one(grid, tmp_path):
    index, probs = grid.streamed.index, grid.streamed.probs
    reference = reference_distances(probs, index, bc_floor=1e-8)
    write_distances(probs, unit_labels(index), None, tmp_path, reference,
                    settings=DistanceSettings(sample_step=2, max_block_bytes=TINY))
    for space in N:
        d = np.load(tmp_path / f"{space}.npy")
        dense = inpca(d, 5, solver="dense")
        mapped = open_distance_matrix(tmp_path, space)
        stats = eigen.stats_from_arrays(load_centring_sums(tmp_path, space))
        for solver in ("randomized", "lanczos"):
            emb = inpca(mapped, 5, solver=solver, n_eigenvalues=8, stats=stats,
                        block_bytes=4_000)  # slabs of a few rows
            np.testing.assert_allclose(emb.eigenvalues, dense.eigenvalues[:8], rtol=1e-9,
                                       atol=1e-12)
            assert emb.frobenius_sq == pytest.approx(dense.frobenius_sq, rel=1e-10)
            np.testing.assert_allclose(emb.explained_stress, dense.explained_stress[:8],
                                       atol=1e-9)
            sign = np.sign((emb.coords * dense.coords).sum(axis=0))
            np.testing.assert_allclose(emb.coords, dense.coords * sign, atol=1e-6)
            np.testing.assert_allclose(emb.column_means, dense.column_means, rtol=1e-12)
        # the same as from the in-memory matrix with its own streaming pass
        again = inpca(d, 5, solver="randomized", n_eigenvalues=8)
        np.testing.assert_allclose(again.eigenvalues, emb.eigenvalues, rtol=1e-9)
        # dense on the file is the dense of the array
        assert np.array_equal(inpca(mapped, 5, solver="dense").eigenvalues, dense.eigenvalues)


def test_torch_products_equal_numpy_products(grid):
    d = bhattacharyya(np.asarray(grid.streamed.probs["train"]), sample_step=2)
    stats = eigen.streaming_stats(d)
    x = np.random.default_rng(0).standard_normal((len(d), 3))
    host = eigen.centred_product(d, x, stats, block_bytes=4_000)
    torch_cpu = eigen.centred_product(eigen.DeviceMatrix(d, "cpu", 4_000), x, stats, 4_000)
    np.testing.assert_allclose(torch_cpu, host, rtol=1e-12, atol=1e-12)
    a = inpca(d, 4, solver="randomized", n_eigenvalues=6)
    b = inpca(d, 4, solver="randomized", n_eigenvalues=6, device="cpu")  # cpu: the numpy path
    assert np.array_equal(a.eigenvalues, b.eigenvalues)
    lam, _ = eigen.top_eigenpairs(d, 6, stats, device="cpu")  # torch on the CPU
    np.testing.assert_allclose(lam, a.eigenvalues, rtol=1e-9)


def test_cuda_products_need_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        d = np.abs(np.random.default_rng(1).standard_normal((50, 50)))
        d = d + d.T
        np.fill_diagonal(d, 0.0)
        a = inpca(d, 3, solver="randomized", n_eigenvalues=5)
        b = inpca(d, 3, solver="randomized", n_eigenvalues=5, device="cuda")
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-9)
    else:
        with pytest.raises(ValueError, match="CUDA is not available: use device='cpu'"):
            eigen.DeviceMatrix(np.zeros((3, 3)), "cuda")


# ---- landmarks -------------------------------------------------------------------------------


def sq_dists(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - x[None, :, :]) ** 2 * signs).sum(-1)


def test_landmarks_recover_an_exact_low_rank_embedding(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3)) * np.array([3.0, 1.5, 1.0])
    signs = np.array([1.0, -1.0, 1.0])  # a Minkowski configuration: one time-like axis
    d = sq_dists(x, signs)
    np.save(tmp_path / "d.npy", d)
    emb = inpca(NpyFile(tmp_path / "d.npy"), 3, landmarks=40, block_bytes=20_000)
    assert emb.coords.shape == (300, 3) and emb.eigenvectors.shape == (40, 3)
    np.testing.assert_array_equal(emb.landmarks, landmark_rows(300, 40))
    assert emb.landmarks[0] == 0 and emb.landmarks[-1] == 299
    # every pairwise distance is recovered, landmark or not
    np.testing.assert_allclose(minkowski_sq_distances(emb.coords, emb.signs), d, atol=1e-8)
    # landmark points keep their own coordinates; projecting a point from all M distances works
    np.testing.assert_allclose(project(d[7], emb), emb.coords[7], atol=1e-8)
    np.testing.assert_allclose(project(d[emb.landmarks[3]][emb.landmarks], emb),
                               emb.coords[emb.landmarks[3]], atol=1e-8)
    full = inpca(d, 3)
    assert sorted(np.sign(full.eigenvalues[:3])) == sorted(emb.signs)
    # as many landmarks as points: the ordinary embedding
    same = inpca(d, 3, landmarks=300)
    assert same.landmarks.size == 0 and np.array_equal(same.coords, full.coords)


def test_landmark_embedding_round_trips(tmp_path):
    from lowdim.store.products import load_embedding, save_embeddings

    rng = np.random.default_rng(4)
    d = sq_dists(rng.normal(size=(60, 2)), np.ones(2))
    emb = inpca(d, 2, landmarks=10)
    save_embeddings({"train": emb}, tmp_path)
    back = load_embedding(tmp_path, "train")
    assert np.array_equal(back.landmarks, emb.landmarks)
    assert np.array_equal(back.coords, emb.coords)


def test_landmark_bad_input():
    d = np.zeros((5, 5))
    with pytest.raises(ValueError, match=r"landmarks must be at least 2 points, got 1"):
        inpca(d, 2, landmarks=1)
    with pytest.raises(ValueError, match=r"sorted, unique row indices in \[0, 4\]"):
        inpca(d, 2, landmarks=np.array([3, 1]))


# ---- memory and disk stated up front ---------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def test_plans_state_disk_and_memory(grid):
    plan = plan_analysis_set(grid.root / "runs", grid.specs, grid.labels, C, 6)
    m = 7 * T + 2 + 6
    assert plan.points == m and plan.runs == 7
    assert plan.disk_bytes >= m * (48 + 20) * C * 4
    assert "M = 71 points, train N = 48, test N = 20, C = 10" in plan.describe()
    dplan = plan_distances(150_000, {"train": 2_500}, 10, dtype="float32", cache=False)
    assert dplan.matrix_bytes >= 150_000**2 * 4
    assert dplan.ram_bytes < 2**30  # one tile and O(M), whatever M is
    assert "150000 x 150000 float32" in dplan.describe()


def test_stages_stop_when_the_disk_is_too_small(grid, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 5000, 5000))
    plan = plan_analysis_set(grid.root / "runs", grid.specs, grid.labels, C, 6)
    with pytest.raises(OSError, match=rf"the predictions stage \(71 points x 48 \+ 20 samples x "
                                      rf"10 classes, float32\) needs {plan.disk_bytes} bytes .* "
                                      rf"which has 5000 bytes \(4.9 KiB\) available. Free space "
                                      rf"there, or stack fewer numbers: evaluate fewer samples"):
        check_predictions_disk(plan, tmp_path / "predictions")
    dplan = plan_distances(150_000, {"train": 2_500, "test": 500}, 10, dtype="float64")
    with pytest.raises(OSError, match=rf"the distances stage \(150000 x 150000 float64 matrices "
                                      rf"for 2 spaces\) needs {dplan.matrix_bytes} bytes "
                                      rf"\(335.3 GiB\) on the filesystem of .* which has 5000 "
                                      rf"bytes .*\(distances.dtype: float32 halves them\)"):
        check_distances_disk(dplan, tmp_path / "distances", tmp_path / "cache")


def test_the_cache_is_dropped_when_only_the_matrices_fit(tmp_path, monkeypatch, caplog):
    plan = plan_distances(10_000, {"train": 100}, 10, cache=True)
    free = plan.matrix_bytes + plan.cache_bytes // 2
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**13, 0, free))
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distance_blocks"):
        assert check_distances_disk(plan, tmp_path, tmp_path / "cache") is False
    assert "computing without it" in caplog.text
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**13, 0, 10**13))
    assert check_distances_disk(plan, tmp_path, tmp_path / "cache") is True


# ---- trajectories ----------------------------------------------------------------------------


def trajectory_set(rng: np.random.Generator, runs: int = 6):
    """An analysis-set index and probabilities of noisy runs, with ignorance and truth rows."""
    labels = rng.integers(0, C, size=30)
    paths = noisy_paths(rng, runs, T, labels).astype(np.float32)
    rows = []
    for r in range(runs):
        for k in range(T):
            error = 1.0 - k / (T - 1) if k < T - 1 else 0.05 * (r % 4)  # run 3: untrained
            rows.append({"kind": "run", "run_id": f"run{r}", "arch": ("fc", "allcnn", "vit")[r % 3],
                         "seed": r, "checkpoint": k, **FACTORS, "train_error": error,
                         "test_error": error, "train_loss": error, "test_loss": error})
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    probs = np.concatenate([paths.reshape(-1, 30, C), ignorance_point(30, C)[None],
                            truth_point(labels, C)[None]]).astype(np.float32)
    return index, probs


@pytest.mark.parametrize("by", ["accuracy", "progress"])
def test_streamed_trajectory_tensor_equals_the_stacked_one(by, tmp_path):
    index, probs = trajectory_set(np.random.default_rng(11))
    runs = run_table(index, max_error=0.1)
    grid = progress_grid(12)
    values = reindex_index(index, checkpoint_progress(index, probs), by)
    table, stacked = build_trajectory_set(index, probs, runs, values, grid)
    expected = trajectory_distance_tensor(stacked)
    per_point = len(table) * 30 * C * 4
    for budget in (per_point, 5 * per_point, 10**9):  # 1, 5 and all grid points per chunk
        streamed_table, tensor = trajectory_tensor(index, probs, runs, values, grid,
                                                   max_block_bytes=budget)
        assert streamed_table.equals(table)
        np.testing.assert_allclose(tensor, expected, rtol=0, atol=1e-12)
    _, reduced = analyse_space(index, probs, runs, values, grid, bc_floor=1e-8,
                               importance_repeats=2, seed=0, max_block_bytes=per_point,
                               tensor_path=tmp_path / "tensor.npy")
    np.testing.assert_allclose(np.load(tmp_path / "tensor.npy"), expected, rtol=0, atol=1e-12)
    assert reduced.shape == expected.shape


# ---- the GPU path's tile pipeline, run by Triton's CPU interpreter -----------------------------

_PIPELINE = """
import numpy as np, torch
from lowdim.geometry import distances as ds
from lowdim.store.arrays import NpyFile
from test_distance_kernels import hard_probabilities
p = hard_probabilities(np.random.default_rng(9), 70, 23, 3)
out = NpyFile.create("{path}", (70, 70), np.float64)  # tiles go to disk as they finish
calls = []
for ri, rj, blk in ds._blocks(p, p, None, None, symmetric=True, engine=ds.FUSED_TRITON,
                              sample_step=1, bc_floor=1e-8, block_rows=32, sample_chunk=9,
                              max_block_bytes=2**24, device=torch.device("cpu"), progress=False):
    calls.append((ri.start, rj.start))
    out.write(ri, rj, blk)
    out.write(rj, ri, blk.T)
print(len(calls), np.abs(np.asarray(out) - ds.bhattacharyya_reference(p)).max())
"""


def test_triton_tiles_stream_to_disk_in_the_interpreter(tmp_path):
    """The Triton engine's deferred tiles (``finish_async``) flow through the block pipeline."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    from conftest import ROOT

    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    code = _PIPELINE.format(path=tmp_path / "d.npy")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tiles, error = done.stdout.split()
    assert int(tiles) == 6 and float(error) < 1e-6  # 3 x 3 row blocks, upper triangle
