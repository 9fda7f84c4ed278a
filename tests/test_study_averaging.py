"""The averaging study (docs/study.md A9, D19; lowdim.studies.averaging): configuration choice,
aligned stacks, the six averages, the joint matrix and the whole study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from study_data import analysis_set

from lowdim.config.profile import load_profile
from lowdim.figures.study_panels import METHOD_LABELS
from lowdim.geometry.centroids import AVERAGING_METHODS, average_trajectory
from lowdim.geometry.distances import bhattacharyya, ignorance_point, truth_point
from lowdim.geometry.inpca import inpca, minkowski_sq_distances, project
from lowdim.store.records import RunSpec
from lowdim.studies.averaging import (
    by_method,
    configuration_runs,
    run_averaging,
    run_options,
    select_configuration,
    stack_runs,
    stacked_averages,
    true_class_probability,
)
from lowdim.studies.common import joint_distance_matrix


def _probs(rng, *shape):
    x = rng.random(shape) + 0.05
    return x / x.sum(-1, keepdims=True)


def test_the_figures_label_every_averaging_method_in_its_order():
    # figures/ does not import the maths, so the labels repeat the method names
    assert list(METHOD_LABELS) == list(AVERAGING_METHODS)


def test_configuration_runs_picks_a_configuration_with_two_seeds():
    index = analysis_set().index
    assert configuration_runs(index, "fc", "sgdn") == ["fc_s_s1", "fc_s_s2"]
    # The first configuration by key with >= 2 runs: "cnn|adam|..." sorts before "fc|sgdn|...".
    assert configuration_runs(index) == ["cnn_a_s1", "cnn_a_s2"]
    with pytest.raises(ValueError, match=r"no configuration \(arch 'fc', optimizer 'adam'\) has "
                                         r"two or more runs"):
        configuration_runs(index, "fc", "adam")


def _spec(arch="allcnn", batch_size=64, seed=1, **options):
    return RunSpec(arch=arch, optimizer="sgdn", batch_size=batch_size, base_lr=0.1,
                   lr=0.1 * batch_size / 200, weight_decay=0.0, augment="none", init="default",
                   epochs=2, seed=seed, **options)


@pytest.mark.parametrize("options", [
    {}, {"precision": "fp16-mixed"}, {"schedule": "triangular-2"}, {"label_smoothing": 0.1},
    {"precision": "fp16-mixed", "schedule": "triangular-12", "label_smoothing": 1e-5}])
def test_run_options_read_what_the_run_id_names(options):
    spec = _spec(seed=-3, **options)
    assert run_options(spec.run_id) == {"precision": spec.precision, "schedule": spec.schedule,
                                        "label_smoothing": spec.label_smoothing}


def _made_up_index(specs) -> pd.DataFrame:
    """Two checkpoints per run, with the columns of the predictions stage's index."""
    rows = [{"kind": "run", "run_id": s.run_id, "arch": s.arch, "optimizer": s.optimizer,
             "batch_size": s.batch_size, "base_lr": s.base_lr, "lr": s.lr,
             "weight_decay": s.weight_decay, "augment": s.augment, "init": s.init,
             "epochs": s.epochs, "seed": s.seed, "checkpoint": c} for s in specs for c in (0, 1)]
    return pd.DataFrame(rows + [{"kind": "ignorance"}, {"kind": "truth"}])


def test_select_configuration_names_exactly_one_configuration():
    index = _made_up_index([
        _spec(seed=1), _spec(seed=2),                                 # allcnn, batch 64
        _spec(batch_size=128, seed=2), _spec(batch_size=128, seed=1),
        _spec(seed=1, precision="fp16-mixed"), _spec(seed=2, precision="fp16-mixed"),
        _spec(arch="fc", seed=1)])                                    # one run only
    wanted = sorted(_spec(batch_size=128, seed=s).run_id for s in (1, 2))
    assert select_configuration(index, {"arch": "allcnn", "batch_size": 128}) == wanted
    assert select_configuration(index, {"lr": 0.064, "base_lr": 0.1}) == wanted
    assert select_configuration(index, {"batch_size": 64, "precision": "fp16-mixed"}) == sorted(
        _spec(seed=s, precision="fp16-mixed").run_id for s in (1, 2))
    with pytest.raises(ValueError, match=r"configuration = \{arch: allcnn, batch_size: 64\} "
                                         r"matches 2 configurations of the analysis set's runs, "
                                         r"which differ in precision: fp32, fp16-mixed\. Add"):
        select_configuration(index, {"arch": "allcnn", "batch_size": 64})
    with pytest.raises(ValueError, match=r"matches no configuration of the analysis set's runs: "
                                         r"with the others as given, batch_size can be 64, 128"):
        select_configuration(index, {"arch": "allcnn", "batch_size": 200})
    with pytest.raises(ValueError, match=r"a configuration with one run: averaging needs two or "
                                         r"more; add seeds"):
        select_configuration(index, {"arch": "fc"})


def test_stack_runs_aligns_checkpoints_and_refuses_ragged_runs():
    data = analysis_set(checkpoints=3)
    index, probs = data.index, data.probs["train"]
    stacked = stack_runs(index, probs, ["fc_s_s1", "fc_s_s2"])
    assert stacked.shape == (2, 3, 14, 3)
    np.testing.assert_array_equal(stacked[1, 2], probs[index.query("run_id == 'fc_s_s2'")
                                                       .query("checkpoint == 2")["row"].item()])
    ragged = index.drop(index.index[(index["run_id"] == "fc_s_s2") & (index["checkpoint"] == 2)])
    with pytest.raises(ValueError, match=r"same number of checkpoints .* got \[2, 3\]"):
        stack_runs(ragged, probs, ["fc_s_s1", "fc_s_s2"])


def test_averages_of_identical_seeds_are_the_seed():
    rng = np.random.default_rng(1)
    one = _probs(rng, 3, 5, 4)
    averages = by_method(stacked_averages(np.stack([one, one]), bhattacharyya_iterations=5))
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


def _config(root, **studies):
    return load_profile(root / "profiles" / "tiny.yaml", {
        "embedding": {"n_components": 60},  # every axis: the embedding reproduces distances
        "studies": {"averaging": {"arch": None, "optimizer": None, "bhattacharyya_iterations": 20,
                                  **studies}}})


def _run(cfg, *data, **options):
    """run_averaging with the sections it reads from a whole profile."""
    return run_averaging(cfg.studies.averaging, cfg.distances, cfg.embedding, *data, **options)


def test_averaging_identical_seeds_returns_their_trajectory(root):
    data = analysis_set(identical=("fc_s_s1", "fc_s_s2"))
    cfg = _config(root, arch="fc", optimizer="sgdn")
    result = _run(cfg, data.index, data.probs, data.distances, distance_device="cpu")
    assert result.metrics["averaged_runs"] == 2
    assert list(result.products["runs"]["run_id"]) == ["fc_s_s1", "fc_s_s2"]
    points = result.products["points"]
    k = 4
    assert len(points) == len(data.index) + len(AVERAGING_METHODS) * k
    run_rows = data.index.index[data.index["run_id"] == "fc_s_s1"].to_numpy()
    for space in ("train", "test"):
        curves = result.products["curves"].query("space == @space")
        run = curves[curves["run_id"] == "fc_s_s1"]
        emb = result.products[f"{space}_embedding"]
        d = minkowski_sq_distances(emb.coords, emb.signs)
        for method in AVERAGING_METHODS:
            mine = curves[curves["method"] == method]
            np.testing.assert_allclose(mine["progress"], run["progress"], atol=1e-5)
            np.testing.assert_allclose(mine["accuracy"], run["accuracy"], atol=1e-6)
            final = result.metrics[space][method]
            assert final["final_progress"] == pytest.approx(run["progress"].iloc[-1], abs=1e-5)
            # Each average sits on the run's checkpoint in the joint embedding.
            at = points.index[(points["kind"] == "average") & (points["method"] == method)]
            assert np.abs(d[at, run_rows]).max() < 1e-5
    assert list(result.summary.index) == list(AVERAGING_METHODS)


def test_the_configured_distance_method_is_used(root):
    data = analysis_set()
    # The fused kernel refuses a floor below its range; the reference accepts it.
    cfg = load_profile(root / "profiles" / "tiny.yaml", {
        "distances": {"method": "fused", "bc_floor": 1e-310}})
    with pytest.raises(ValueError, match=r"method='fused' cannot run on cpu"):
        _run(cfg, data.index, data.probs, data.distances, distance_device="cpu")
    cfg = load_profile(root / "profiles" / "tiny.yaml", {
        "distances": {"method": "reference", "bc_floor": 1e-310}})
    result = _run(cfg, data.index, data.probs, data.distances, distance_device="cpu")
    assert isinstance(result.products["curves"], pd.DataFrame)


def test_every_space_is_needed(root):
    data = analysis_set()
    with pytest.raises(ValueError, match=r"distances must hold one entry per prediction space "
                                         r"\(train, test\), got \['train'\]"):
        _run(_config(root), data.index, data.probs, {"train": data.distances["train"]})


def test_the_metrics_record_every_axis_of_the_averaged_configuration(root):
    data = analysis_set()
    expected = {"arch": "fc", "optimizer": "sgdn", "batch_size": "64", "lr": "0.1",
                "weight_decay": "0", "augment": "none", "init": "default", "epochs": "2",
                "precision": "fp32", "schedule": "cosine", "label_smoothing": "0"}
    for named in ({"arch": "fc", "optimizer": "sgdn"},
                  {"configuration": {"arch": "fc", "optimizer": "sgdn", "augment": "none"}}):
        cfg = _config(root, **{"arch": None, "optimizer": None, **named})
        result = _run(cfg, data.index, data.probs, data.distances, distance_device="cpu")
        assert list(result.products["runs"]["run_id"]) == ["fc_s_s1", "fc_s_s2"]
        assert result.metrics["configuration"] == expected
    cfg = _config(root, configuration={"arch": "fc", "optimizer": "adam"})
    with pytest.raises(ValueError, match=r"\['fc_a_s1'\], a configuration with one run"):
        _run(cfg, data.index, data.probs, data.distances, distance_device="cpu")


def test_stacked_averages_are_each_method_in_order_held_once():
    rng = np.random.default_rng(3)
    trajectories = np.stack([_probs(rng, 4, 6, 3) for _ in range(3)]).astype(np.float64)
    stacked = stacked_averages(trajectories, bhattacharyya_iterations=5)
    assert stacked.shape == (6 * 4, 6, 3)
    views = by_method(stacked)
    assert list(views) == list(AVERAGING_METHODS)
    for i, (method, view) in enumerate(views.items()):
        assert np.shares_memory(view, stacked), method  # views, not copies
        assert np.array_equal(view, average_trajectory(
            trajectories, method, **({"max_iter": 5} if method == "bhattacharyya" else {})))
        assert np.array_equal(stacked[4 * i:4 * (i + 1)], view)
