"""The analysis set: runs stacked in index order, reference rows, diverged runs left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lowdim.analysis.analysis_set import build_analysis_set, reference_distances
from lowdim.store.analysis_set import load_index, load_probs, save_analysis_set
from lowdim.store.records import RunSpec
from lowdim.store.runs import write_run
from lowdim.training.run import DeviceData, train_run


def _spec(seed: int, lr: float) -> RunSpec:
    return RunSpec(arch="fc", optimizer="sgd", batch_size=256, base_lr=lr, lr=lr,
                   weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                   model_size={"widths": [8]})


@pytest.fixture(scope="module")
def analysis(tiny_prepared, tmp_path_factory):
    store = tmp_path_factory.mktemp("runs")
    data = DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))
    specs = [_spec(1, 0.1), _spec(2, 1e30), _spec(3, 0.1)]
    for spec in specs:
        write_run(store, train_run(spec, data), "fp")
    labels = {"train": tiny_prepared.train_labels[tiny_prepared.eval_train_index],
              "test": tiny_prepared.test_labels[tiny_prepared.eval_test_index]}
    return specs, labels, build_analysis_set(store, specs, labels, 10, geodesic_points=10)


def test_diverged_runs_are_left_out_and_named(analysis):
    specs, _, result = analysis
    assert result.excluded == (specs[1].run_id,)
    runs = result.index[result.index["kind"] == "run"]
    assert list(runs["run_id"].unique()) == [specs[0].run_id, specs[2].run_id]
    assert runs["checkpoint"].tolist() == list(range(len(runs) // 2)) * 2


def test_reference_rows_follow_the_runs(analysis):
    _, labels, result = analysis
    index, probs = result.index, result.probs
    assert index["row"].tolist() == list(range(len(index)))
    assert index["kind"].tolist()[-12:] == ["ignorance", "truth"] + ["geodesic"] * 10
    for space, y in labels.items():
        p = probs[space]
        assert p.shape == (len(index), len(y), 10) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
        truth = p[index.index[index["kind"] == "truth"][0]]
        assert np.array_equal(truth.argmax(1), y) and truth.max() == 1.0
        assert np.allclose(p[index.index[index["kind"] == "ignorance"][0]], 0.1)
        # The last geodesic point is the truth.
        np.testing.assert_allclose(p[-1], truth, atol=1e-6)
    assert index.loc[index["kind"] == "truth", "train_loss"].item() == pytest.approx(0.0)
    assert index.loc[index["kind"] == "ignorance", "train_loss"].item() == pytest.approx(np.log(10))


def test_reference_distances_are_half_the_cross_entropy(analysis):
    _, _, result = analysis
    table = reference_distances(result.probs, result.index, bc_floor=1e-8)
    runs = result.index["kind"] == "run"
    np.testing.assert_allclose(table.loc[runs, "train_to_truth"],
                               0.5 * result.index.loc[runs, "train_loss"], rtol=2e-3)
    ignorance = result.index["kind"] == "ignorance"
    assert table.loc[ignorance, "test_to_truth"].item() == pytest.approx(0.5 * np.log(10))
    assert table.loc[ignorance, "test_to_ignorance"].item() == pytest.approx(0.0, abs=1e-7)


def test_round_trip(analysis, tmp_path):
    _, _, result = analysis
    save_analysis_set(result, tmp_path / "predictions")
    assert load_index(tmp_path / "predictions").equals(result.index)
    assert np.array_equal(load_probs(tmp_path / "predictions", "test"), result.probs["test"])


def test_missing_run_names_the_stage_to_run(tiny_prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run fc_sgd.* is missing .*dvc repro train"):
        build_analysis_set(tmp_path, [_spec(9, 0.1)], {"train": np.zeros(3, int)}, 10, 5)


def test_reference_distances_use_the_stage_clamp():
    # A confidently wrong row: every sample's coefficient with the truth is exactly 0.
    index = pd.DataFrame({"row": [0, 1, 2], "kind": ["run", "ignorance", "truth"]})
    wrong, uniform, truth = np.eye(3)[[1, 2]], np.full((2, 3), 1 / 3), np.eye(3)[[0, 1]]
    probs = {"train": np.stack([wrong, uniform, truth]).astype(np.float32)}
    for floor in (1e-8, 1e-3):
        table = reference_distances(probs, index, bc_floor=floor)
        assert table.loc[0, "train_to_truth"] == pytest.approx(-np.log(floor))
