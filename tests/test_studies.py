"""The special studies' glue (lowdim.studies): row selection, joint matrices, union distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.distances import bhattacharyya, ignorance_point, truth_point
from lowdim.euclidean import euclidean_distances
from lowdim.inpca import inpca, project
from lowdim.studies import (
    averaged_trajectories,
    configuration_runs,
    explained_distance_curve,
    joint_distance_matrix,
    sample_weighted_distances,
    samples_used,
    stack_runs,
    tangent_rows,
    true_class_probability,
)


def _probs(rng, *shape):
    x = rng.random(shape) + 0.05
    return x / x.sum(-1, keepdims=True)


def _index(specs, checkpoints=3):
    """An analysis-set index: one row per (run, checkpoint), then ignorance and truth."""
    rows = []
    for run_id, arch, opt, seed in specs:
        for c in range(checkpoints):
            rows.append({"kind": "run", "run_id": run_id, "arch": arch, "optimizer": opt,
                         "batch_size": 64, "lr": 0.1, "weight_decay": 0.0, "augment": "none",
                         "init": "default", "epochs": 2, "seed": seed, "checkpoint": c,
                         "train_loss": 5.0 - 2 * c})
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    return index


SPECS = [("fc_a_s1", "fc", "adam", 1), ("fc_s_s1", "fc", "sgd", 1), ("fc_s_s2", "fc", "sgd", 2),
         ("cnn_a_s1", "cnn", "adam", 1), ("cnn_a_s2", "cnn", "adam", 2)]


def test_configuration_runs_picks_a_configuration_with_two_seeds():
    index = _index(SPECS)
    assert configuration_runs(index, "fc", "sgd") == ["fc_s_s1", "fc_s_s2"]
    # The first configuration by key with >= 2 runs: "cnn|adam|..." sorts before "fc|sgd|...".
    assert configuration_runs(index) == ["cnn_a_s1", "cnn_a_s2"]
    with pytest.raises(ValueError, match=r"no configuration \(arch 'fc', optimizer 'adam'\) has "
                                         r"two or more runs"):
        configuration_runs(index, "fc", "adam")


def test_stack_runs_aligns_checkpoints_and_refuses_ragged_runs():
    rng = np.random.default_rng(0)
    index = _index(SPECS)
    probs = _probs(rng, len(index), 4, 3)
    stacked = stack_runs(index, probs, ["fc_s_s1", "fc_s_s2"])
    assert stacked.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(stacked[1, 2], probs[index.query("run_id == 'fc_s_s2'")
                                                       .query("checkpoint == 2")["row"].item()])
    ragged = index.drop(index.index[(index["run_id"] == "fc_s_s2") & (index["checkpoint"] == 2)])
    with pytest.raises(ValueError, match=r"same number of checkpoints .* got \[2, 3\]"):
        stack_runs(ragged, probs, ["fc_s_s1", "fc_s_s2"])


def test_averages_of_identical_seeds_are_the_seed():
    rng = np.random.default_rng(1)
    one = _probs(rng, 3, 5, 4)
    averages = averaged_trajectories(np.stack([one, one]), bhattacharyya_iterations=5)
    assert len(averages) == 6
    for method, avg in averages.items():
        np.testing.assert_allclose(avg, one, atol=1e-6, err_msg=method)


def test_joint_matrix_places_the_blocks_and_projection_of_base_rows_is_exact():
    rng = np.random.default_rng(2)
    p = _probs(rng, 7, 20, 3)
    full = bhattacharyya(p)
    joint = joint_distance_matrix(full[:5, :5], bhattacharyya(p[5:], p[:5]), full[5:, 5:])
    np.testing.assert_allclose(joint, full, atol=1e-6)
    with pytest.raises(ValueError, match=r"need d_base \(M, M\), cross \(R, M\), d_new \(R, R\)"):
        joint_distance_matrix(full[:5, :5], full[5:, :4], full[5:, 5:])
    emb = inpca(joint, 7)
    np.testing.assert_allclose(project(joint[:2], emb), emb.coords[:2], atol=1e-8)


def test_true_class_probability_of_truth_and_ignorance():
    labels = np.array([0, 2, 1, 2])
    truth, ignorance = truth_point(labels, 3), ignorance_point(4, 3)
    np.testing.assert_allclose(true_class_probability(np.stack([truth, ignorance]), truth),
                               [1.0, 1.0 / 3.0])
    with pytest.raises(ValueError, match=r"truth must have shape \(N, C\) = \(4, 3\)"):
        true_class_probability(truth[None], truth[:3])


def test_samples_used_counts_every_step_th_sample():
    assert samples_used(600, 2) == 300
    assert samples_used(45, 2) == 23
    assert samples_used(5, 1) == 5
    with pytest.raises(ValueError, match="need num_samples >= 1 and sample_step >= 1"):
        samples_used(10, 0)


@pytest.mark.parametrize("distance", [bhattacharyya, euclidean_distances])
def test_sample_weighted_mean_is_the_distance_on_the_union_of_samples(distance):
    rng = np.random.default_rng(3)
    train, test = _probs(rng, 6, 11, 4), _probs(rng, 6, 7, 4)
    used = {"train": samples_used(11, 2), "test": samples_used(7, 2)}
    weighted = sample_weighted_distances(
        {"train": distance(train, sample_step=2), "test": distance(test, sample_step=2)}, used)
    union = np.concatenate([train[:, ::2], test[:, ::2]], axis=1)
    np.testing.assert_allclose(weighted, distance(union), rtol=1e-5, atol=1e-7)


def test_sample_weighted_distances_refuses_mismatched_inputs():
    d = np.zeros((3, 3))
    with pytest.raises(ValueError, match="must name the same spaces"):
        sample_weighted_distances({"train": d}, {"test": 3})
    with pytest.raises(ValueError, match="must share one shape"):
        sample_weighted_distances({"train": d, "test": np.zeros((2, 2))}, {"train": 1, "test": 1})


def test_tangent_rows_keep_run_checkpoints_below_the_loss_cut():
    index = _index(SPECS[:1])  # losses 5, 3, 1 and two reference rows
    np.testing.assert_array_equal(tangent_rows(index, 4.0), [1, 2])
    with pytest.raises(ValueError, match=r"only 1 run checkpoints have train loss < 2: raise "
                                         r"studies.tangents.outlier_loss"):
        tangent_rows(index, 2.0)


def test_explained_distance_curve_reaches_one_with_every_axis_of_a_euclidean_set():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 3)) * [3.0, 1.0, 0.3]
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    emb = inpca(d, 5)
    curve = explained_distance_curve(d, emb.coords, emb.signs, 5)
    assert curve.shape == (5,)
    assert np.all(np.diff(curve) >= -1e-12)
    assert curve[0] < 0.99 and curve[2] == pytest.approx(1.0, abs=1e-9)
