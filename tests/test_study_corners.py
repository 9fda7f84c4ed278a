"""Initialization corners (docs/study.md B7, lowdim.studies.corners): relabelling, balanced subsets,
the two phases, the corner geodesics, the convergence analysis and the whole study."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lowdim.analysis.analysis_set import reference_points
from lowdim.config.profile import load_profile
from lowdim.config.studies.corners import CornersConfig, CornerSetup
from lowdim.geometry.distances import (
    DistanceSettings,
    bhattacharyya,
    ignorance_point,
    truth_point,
)
from lowdim.geometry.inpca import minkowski_sq_distances
from lowdim.studies.corners import (
    balanced_subset,
    convergence,
    convergence_metrics,
    joint_set,
    phase_data,
    phase_specs,
    reference_block,
    relabel_uniform,
    run_corners,
    train_corner,
)
from lowdim.training.run import DeviceData, train_run

SMALL = CornersConfig(arch="fc", optimizer="sgdn", base_lr=0.1, batch_size=128,
                      subsample_size=50, phase1_epochs=1, phase2_epochs=1)
SIZE = {"widths": (16,)}


@pytest.fixture(scope="module")
def small_prepared(tiny_prepared):
    """The tiny data with only the first 300 training images, so that runs take a moment."""
    keep = tiny_prepared.eval_train_index[tiny_prepared.eval_train_index < 300]
    return dataclasses.replace(tiny_prepared, train_images=tiny_prepared.train_images[:300],
                               train_labels=tiny_prepared.train_labels[:300],
                               eval_train_index=keep)


def test_relabelling_is_deterministic_uniform_and_consistent(tiny_prepared):
    a, b = relabel_uniform(tiny_prepared, 0), relabel_uniform(tiny_prepared, 0)
    other = relabel_uniform(tiny_prepared, 1)
    assert np.array_equal(a.train_labels, b.train_labels)
    assert not np.array_equal(a.train_labels, other.train_labels)
    # The authors' draw: RandomState(iseed) over all training labels.
    n = len(tiny_prepared.train_labels)
    assert np.array_equal(a.train_labels, np.random.RandomState(0).randint(0, 10, n))
    # A random relabelling agrees with the truth about 1 time in 10.
    assert np.mean(a.train_labels == tiny_prepared.train_labels) < 0.2
    # The train evaluation subset reads the training relabelling at its positions.
    assert np.array_equal(a.eval_labels["train"],
                          a.train_labels[tiny_prepared.eval_train_index])
    assert a.eval_labels["test"].shape == tiny_prepared.eval_test_index.shape


def test_balanced_subset_holds_every_class_equally(tiny_prepared):
    labels = tiny_prepared.train_labels
    picked = balanced_subset(labels, 50, iseed=3)
    assert len(np.unique(picked)) == 50
    assert np.array_equal(np.bincount(labels[picked], minlength=10), np.full(10, 5))
    assert np.array_equal(picked, balanced_subset(labels, 50, iseed=3))
    assert not np.array_equal(picked, balanced_subset(labels, 50, iseed=4))
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        balanced_subset(labels, 55, iseed=0)
    with pytest.raises(ValueError, match="fewer than the 1000"):
        balanced_subset(labels, 10_000, iseed=0)


def test_phase_data_relabels_training_and_evaluation_together(tiny_prepared):
    data = DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))
    relabel = relabel_uniform(tiny_prepared, 2)
    uniform = phase_data(data, tiny_prepared, "uniform", 2, 50)
    assert np.array_equal(uniform.train_labels.numpy(), relabel.train_labels)
    for space in ("train", "test"):
        assert np.array_equal(uniform.eval_labels[space].numpy(), relabel.eval_labels[space])
    sub = phase_data(data, tiny_prepared, "subsample", 2, 50)
    assert sub.train_images.shape[0] == 50
    assert np.array_equal(sub.eval_labels["train"].numpy(), data.eval_labels["train"].numpy())
    with pytest.raises(ValueError, match="unknown corner kind 'random'"):
        phase_data(data, tiny_prepared, "random", 0, 50)


def test_phase_two_starts_where_phase_one_ended(small_prepared):
    data = DeviceData.from_prepared(small_prepared, torch.device("cpu"))
    phase1, phase2 = train_corner(data, small_prepared, SMALL, CornerSetup("fc", "uniform"), 0,
                                  42, model_size=SIZE, reference_batch_size=200)
    for space in ("train", "test"):
        assert np.array_equal(phase2.stacked(space)[0], phase1.stacked(space)[-1])
    # Without the phase-1 weights the same spec starts elsewhere (fresh default init).
    fresh = train_run(phase_specs(SMALL, "fc", 42, SIZE, 200)[1], data)
    assert fresh.final_state is None  # the default keeps no weights
    assert not np.array_equal(fresh.stacked("train")[0], phase2.stacked("train")[0])


def test_corner_geodesic_ends_at_the_relabelled_truth(tiny_prepared):
    labels = relabel_uniform(tiny_prepared, 0).eval_labels["train"]
    p0 = ignorance_point(len(labels), 10)
    rows, probs = reference_block(p0, labels, 10, 5, truth_kind="corner_truth",
                                  geodesic_kind="corner_geodesic", corner="uniform-0")
    assert list(rows["kind"]) == ["corner_truth"] + ["corner_geodesic"] * 5
    assert np.array_equal(probs[0], truth_point(labels, 10))
    np.testing.assert_allclose(probs[-1], probs[0], atol=1e-6)  # t = 1 is the corner
    # d_B(P0, corner) = 1/2 ln C, and the geodesic at t = 1/5 is a fifth of the way in angle.
    d = bhattacharyya(np.stack([p0, probs[0]]))
    assert d[0, 1] == pytest.approx(0.5 * np.log(10), rel=1e-6)


def _fake_main(rng: np.random.Generator, n: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """A main analysis set with two fc runs, one allcnn run and the references."""
    kinds = ["run"] * 9 + ["ignorance", "truth", "geodesic", "geodesic"]
    index = pd.DataFrame({
        "row": np.arange(13), "kind": kinds,
        "run_id": ["fc-a"] * 3 + ["fc-b"] * 3 + ["cnn"] * 3 + [None] * 4,
        "arch": ["fc"] * 6 + ["allcnn"] * 3 + [None] * 4, "optimizer": "sgdn", "seed": 1,
        "checkpoint": [0, 1, 2] * 3 + [None] * 4, "step": 0, "epoch": 0.0,
        "t": [np.nan] * 9 + [0.0, 1.0, 0.5, 1.0], "train_loss": 1.0,
        "train_error": [0.9, 0.5, 0.1] * 3 + [0.9, 0.0, 0.0, 0.0]})
    probs = rng.dirichlet(np.ones(10), size=(13, n)).astype(np.float32)
    probs[9] = ignorance_point(n, 10)
    return index, probs


def test_joint_set_keeps_the_arch_and_adds_corner_references():
    rng = np.random.default_rng(0)
    main_index, main_probs = _fake_main(rng)
    labels = rng.integers(0, 10, 12)
    corner_rows = pd.DataFrame({"kind": "corner_run", "run_id": "c", "corner": "uniform-0",
                                "phase": [1, 1, 2, 2], "checkpoint": [0, 1, 0, 1],
                                "train_error": [0.9, 0.9, 0.9, 0.1], "seed": 42})
    corner_probs = rng.dirichlet(np.ones(10), size=(4, 12)).astype(np.float32)
    index, probs = joint_set([(corner_rows, corner_probs)], main_index, main_probs, "fc",
                             {"uniform-0": labels}, 10, 4)
    counts = index["kind"].value_counts()
    assert counts["run"] == 6 and counts["corner_run"] == 4  # the allcnn run is left out
    assert counts["corner_truth"] == 1 and counts["corner_geodesic"] == 4
    assert probs.shape == (len(index), 12, 10)
    assert np.array_equal(index["row"], np.arange(len(index)))
    truth = index.index[index["kind"] == "corner_truth"][0]
    assert np.array_equal(probs[truth].argmax(1), labels)
    with pytest.raises(ValueError, match="no run of 'vit'"):
        joint_set([], main_index, main_probs, "vit", {}, 10, 4)


def test_a_corner_run_equal_to_a_normal_run_sits_at_half_the_spread():
    # Normal runs A and B; the corner's phase 2 is a copy of A: at every s its distances to the
    # normal runs are 0 and d(A, B), whose median is half the normal spread d(A, B).
    rng = np.random.default_rng(1)
    main_index, main_probs = _fake_main(rng)
    rows = pd.DataFrame({"kind": "corner_run", "run_id": ["p1"] * 3 + ["p2"] * 3,
                         "corner": "uniform-0", "phase": [1] * 3 + [2] * 3,
                         "checkpoint": [0, 1, 2] * 2, "seed": 42,
                         "train_error": [0.9, 0.8, 0.7, 0.9, 0.5, 0.1]})
    copy = np.concatenate([rng.dirichlet(np.ones(10), size=(3, 12)), main_probs[:3]])
    index, probs = joint_set([(rows, copy.astype(np.float32))], main_index, main_probs, "fc",
                             {}, 10, 4)
    table = convergence(index, probs, np.linspace(0.1, 1.0, 10), DistanceSettings(bc_floor=1e-8))
    assert set(table["run_id"]) == {"p2"}
    np.testing.assert_allclose(table["to_normal"], table["normal_spread"] / 2, rtol=1e-6)
    assert (table["normal_spread"] > 0).all()


def test_accuracies_below_a_corner_runs_start_are_not_compared():
    rng = np.random.default_rng(2)
    main_index, main_probs = _fake_main(rng)
    rows = pd.DataFrame({"kind": "corner_run", "run_id": "p2", "corner": "subsample-0",
                         "phase": 2, "checkpoint": [0, 1, 2], "seed": 42,
                         "train_error": [0.4, 0.3, 0.1]})
    probs = rng.dirichlet(np.ones(10), size=(3, 12)).astype(np.float32)
    index, joint = joint_set([(rows, probs)], main_index, main_probs, "fc", {}, 10, 4)
    grid = np.linspace(0.1, 1.0, 10)
    table = convergence(index, joint, grid, DistanceSettings(bc_floor=1e-8))
    assert np.array_equal(np.isnan(table["to_normal"]), grid < 0.6)
    metrics = convergence_metrics(table, index)["subsample-0"]
    assert metrics["to_normal_at_0.5"] is None and metrics["to_normal_at_1"] > 0


def _main_set(prepared, runs: int = 2, checkpoints: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """A main analysis set on the prepared train space: `runs` fc runs whose train error falls
    from 0.9 to 0.05, then ignorance, truth and a 3-point geodesic."""
    rng = np.random.default_rng(5)
    labels = prepared.train_labels[prepared.eval_train_index]
    n = len(labels)
    error = np.linspace(0.9, 0.05, checkpoints)
    rows = pd.DataFrame({
        "kind": "run", "run_id": np.repeat([f"fc-{i}" for i in range(runs)], checkpoints),
        "arch": "fc", "optimizer": "sgdn", "seed": np.repeat(np.arange(runs), checkpoints),
        "checkpoint": np.tile(np.arange(checkpoints), runs), "step": 0, "epoch": 0.0,
        "train_loss": 1.0, "train_error": np.tile(error, runs)})
    probs = rng.dirichlet(np.ones(10), size=(runs * checkpoints, n)).astype(np.float32)
    ref_rows, ref_probs = reference_points({"train": labels}, 10, 3)
    index = pd.concat([rows, ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    return index, np.concatenate([probs, ref_probs["train"]])


def test_run_corners_trains_embeds_and_compares(root, small_prepared):
    cfg = load_profile(root / "profiles" / "tiny.yaml", {
        "models": {"fc": {"widths": [16]}},
        "embedding": {"n_components": 50, "stress_dims": [1, 2, 3]},  # every axis: exact
        "studies": {"corners": {"kinds": ["uniform"], "iseeds": [0], "seeds": [42],
                                "phase1_epochs": 1, "phase2_epochs": 1, "batch_size": 128,
                                "geodesic_points": 4, "grid_points": 5}}})
    main_index, main_probs = _main_set(small_prepared)
    result = run_corners(cfg.studies.corners, cfg.train, cfg.models, cfg.distances, cfg.embedding,
                         small_prepared, main_index, main_probs, distance_device="cpu")
    index, emb = result.products["index"], result.products["embedding"]
    counts = index["kind"].value_counts()
    assert counts["run"] == 8 and counts["corner_truth"] == 1 and counts["corner_geodesic"] == 4
    assert list(result.summary["phase"]) == [1, 2] and (result.summary["status"] == "ok").all()
    assert counts["corner_run"] == result.summary["checkpoints"].sum()
    assert emb.coords.shape == (len(index), len(index))
    # With every axis the embedding reproduces the distances: the corner geodesic ends (t = 1) on
    # the relabelled truth, which lies 1/2 ln C from ignorance, as the main truth does.
    d = minkowski_sq_distances(emb.coords, emb.signs)
    row = {kind: index.index[index["kind"] == kind][0]
           for kind in ("ignorance", "truth", "corner_truth")}
    end = index.index[(index["kind"] == "corner_geodesic") & (index["t"] == 1.0)][0]
    assert abs(d[row["corner_truth"], end]) < 1e-6
    for truth in ("truth", "corner_truth"):
        assert d[row["ignorance"], row[truth]] == pytest.approx(0.5 * np.log(10), rel=1e-6)
    # Phase 2 starts where phase 1 ended: the same point of the embedding.
    runs = index[index["kind"] == "corner_run"]
    last1 = runs[runs["phase"] == 1].sort_values("checkpoint").index[-1]
    first2 = runs[(runs["phase"] == 2) & (runs["checkpoint"] == 0)].index[0]
    assert abs(d[last1, first2]) < 1e-6
    chi = [result.metrics["train"][f"explained_stress_{k}"] for k in (1, 2, 3)]
    assert 0 < chi[0] <= chi[1] <= chi[2] <= 1
    table = result.products["convergence"]
    assert set(table["corner"]) == {"uniform-0"} and len(table) == 5  # one phase-2 run, 5 points
    assert (table["normal_spread"] > 0).all()
    assert set(result.metrics["corners"]) == {"uniform-0"}
