"""Placing a model's predictions in an existing embedding (issue 4, item 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lowdim.analysis import placement
from lowdim.analysis.analysis_set import reference_distances
from lowdim.analysis.placement import (
    check_predictions,
    load_predictions_file,
    load_space,
    place,
    predict,
)
from lowdim.geometry.distances import (
    DistanceSettings,
    bhattacharyya,
    ignorance_point,
    truth_point,
)
from lowdim.geometry.geodesic import geodesic
from lowdim.geometry.inpca import inpca
from lowdim.store.analysis_set import AnalysisSet, save_analysis_set
from lowdim.store.arrays import NpyFile
from lowdim.store.distance_matrices import save_distances
from lowdim.store.products import save_embeddings

STEP, FLOOR = 2, 1e-8
SETTINGS = DistanceSettings(sample_step=STEP, bc_floor=FLOOR)


def space_probs(labels: np.ndarray, num_classes: int, seed: int):
    """Index rows and (M, N, C) probabilities: 3 noisy runs of 8 checkpoints, then references."""
    rng = np.random.default_rng(seed)
    p0, p1 = ignorance_point(len(labels), num_classes), truth_point(labels, num_classes)
    rows, probs = [], []
    for run in range(3):
        for k, t in enumerate(np.linspace(0.0, 0.9, 8)):
            q = geodesic(p0, p1, t) * np.exp(0.4 * rng.standard_normal(p0.shape)) + 1e-4
            probs.append(q / q.sum(-1, keepdims=True))
            rows.append({"kind": "run", "run_id": f"run{run}", "arch": "fc", "optimizer": "sgd",
                         "seed": run, "checkpoint": k, "epoch": float(k)})
    t = np.linspace(0.25, 1.0, 4)
    probs += [p0, p1, *geodesic(p0, p1, t)]
    rows += [{"kind": "ignorance"}, {"kind": "truth"}] + [{"kind": "geodesic"}] * len(t)
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    return index, np.stack(probs).astype(np.float32)


@pytest.fixture(scope="module")
def products(tmp_path_factory, tiny_prepared):
    """Predictions, distances and embedding directories as the pipeline writes them."""
    prep = tiny_prepared
    labels = {"train": prep.train_labels[prep.eval_train_index],
              "test": prep.test_labels[prep.eval_test_index]}
    built = {space: space_probs(y, prep.num_classes, i) for i, (space, y) in
             enumerate(labels.items())}
    index = built["train"][0]
    probs = {space: p for space, (_, p) in built.items()}
    root = tmp_path_factory.mktemp("products")
    save_analysis_set(AnalysisSet(index=index, probs=probs), root / "predictions")
    matrices = {s: bhattacharyya(p, sample_step=STEP, bc_floor=FLOOR) for s, p in probs.items()}
    save_distances(matrices, reference_distances(probs, index, bc_floor=FLOOR),
                   root / "distances")
    save_embeddings({s: inpca(d, n_components=5) for s, d in matrices.items()},
                    root / "embedding")
    return root


@pytest.fixture(scope="module")
def space(products):
    return load_space(products / "predictions", products / "embedding", "train",
                      settings=SETTINGS, distances_dir=products / "distances")


def test_in_sample_checkpoints_land_on_their_own_coordinates(space):
    rows = np.flatnonzero(space.index["run_id"].to_numpy() == "run1")
    placed = place(np.asarray(space.probs[rows]), space, k_nearest=3)
    np.testing.assert_allclose(placed.coords, space.embedding.coords[rows], atol=1e-6)
    first = placed.nearest[placed.nearest["rank"] == 1]
    assert first["row"].tolist() == rows.tolist()  # each is its own nearest run checkpoint
    assert first["distance"].max() < 1e-6
    assert len(placed.nearest) == 3 * len(rows)
    assert list(placed.summary()["nearest_run_id"]) == ["run1"] * len(rows)


def test_progress_of_reference_points_is_their_geodesic_parameter(space):
    p0, p1 = space.reference("ignorance"), space.reference("truth")
    placed = place(np.stack([p0, geodesic(p0, p1, 0.5), p1]), space)
    np.testing.assert_allclose(placed.progress, [0.0, 0.5, 1.0], atol=1e-5)
    # and the error of truth itself is 0, of ignorance (argmax of a tie: class 0) is not
    assert placed.error[2] == 0.0 and placed.error[0] > 0.5


def test_a_single_checkpoint_of_shape_n_c_is_accepted(space):
    placed = place(space.reference("truth"), space)
    assert placed.coords.shape == (1, 5)
    truth_row = int(np.flatnonzero(space.index["kind"] == "truth")[0])
    np.testing.assert_allclose(placed.coords[0], space.embedding.coords[truth_row], atol=1e-6)


def test_log_probabilities_are_accepted_with_the_flag(space):
    p = np.asarray(space.probs[:4], dtype=np.float64)
    direct = place(p, space)
    logged = place(np.log(p), space, log_probs=True)
    np.testing.assert_allclose(logged.coords, direct.coords, atol=1e-6)


def test_wrong_sizes_say_which_size_is_expected_and_where_it_comes_from(space):
    p = np.asarray(space.probs[:2])
    n, c = p.shape[1:]
    with pytest.raises(ValueError, match=rf"have N = {n - 1} samples per checkpoint but the "
                                         rf"'train' space expects N = {n}.*eval_train_index"):
        place(p[:, 1:], space)
    q = p[:, :, :-1] / p[:, :, :-1].sum(-1, keepdims=True)
    with pytest.raises(ValueError, match=rf"have C = {c - 1} classes but the 'train' space "
                                         rf"expects C = {c}"):
        place(q, space)
    with pytest.raises(ValueError, match=r"must have shape \(T, "):
        place(p[0, 0], space)


def test_values_that_are_not_probabilities_are_refused_with_a_hint(space):
    p = np.asarray(space.probs[:2], dtype=np.float64)
    with pytest.raises(ValueError, match="pass log_probs=True"):
        check_predictions(np.log(p), space)
    with pytest.raises(ValueError, match="if these are logits, apply a softmax first"):
        check_predictions(p * 3.0, space)
    bad = p.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contain NaN or infinite values"):
        check_predictions(bad, space)


def test_distance_settings_that_do_not_match_the_stored_matrix_fail(products):
    with pytest.raises(ValueError, match="pass the distances settings of the profile"):
        load_space(products / "predictions", products / "embedding", "train",
                   settings=DistanceSettings(sample_step=1, bc_floor=FLOOR),
                   distances_dir=products / "distances")


def test_a_torch_model_is_evaluated_on_the_spaces_samples(space, tiny_prepared):
    # A network whose logits are all 0 predicts ignorance exactly: it lands on P0.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.nn.init.zeros_(model[1].weight)
    torch.nn.init.zeros_(model[1].bias)
    model.train()
    preds = predict(model, tiny_prepared, "train", batch_size=7)
    assert model.training  # mode restored
    assert preds.shape == (space.num_samples, space.num_classes) and preds.dtype == np.float32
    placed = place(preds, space)
    ignorance_row = int(np.flatnonzero(space.index["kind"] == "ignorance")[0])
    np.testing.assert_allclose(placed.coords[0], space.embedding.coords[ignorance_row],
                               atol=1e-6)
    assert placed.progress[0] == 0.0


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"save your model's predictions with numpy.save"):
        load_predictions_file(tmp_path / "mine.npy")
    with pytest.raises(FileNotFoundError, match="run the pipeline first"):
        load_space(tmp_path / "predictions", tmp_path / "embedding", "train",
                   settings=DistanceSettings(sample_step=2))


def test_a_landmark_embedding_is_loaded_and_places_its_own_checkpoints(products, tmp_path):
    # embedding.landmarks: only L points were diagonalized, the others projected; placing a
    # stored checkpoint must still land on its stored coordinates.
    d = np.load(products / "distances" / "train.npy")
    landmark = inpca(d, n_components=5, landmarks=12)
    assert landmark.landmarks.size == 12 < d.shape[0]
    save_embeddings({"train": landmark}, tmp_path / "embedding")
    space = load_space(products / "predictions", tmp_path / "embedding", "train",
                       settings=SETTINGS, distances_dir=products / "distances")
    rows = np.flatnonzero(space.index["run_id"].to_numpy() == "run2")
    placed = place(np.asarray(space.probs[rows]), space)
    np.testing.assert_allclose(placed.coords, landmark.coords[rows], atol=1e-6)
    assert placed.distances.shape == (len(rows), d.shape[0])  # nearest runs search every point


def test_load_space_reads_one_row_of_the_stored_matrix(products, tmp_path, monkeypatch):
    """Of the stored (M, M) matrix only the compared row is read, through a memory map; the
    probabilities are read on demand. Rows full of NaN elsewhere do not matter."""
    d = np.load(products / "distances" / "train.npy")
    index = pd.read_parquet(products / "predictions" / "index.parquet")
    row = int(np.flatnonzero(index["kind"] == "run")[-1])  # the row load_space compares
    garbage = np.full_like(d, np.nan)
    garbage[row] = d[row]
    (tmp_path / "distances").mkdir()
    np.save(tmp_path / "distances" / "train.npy", garbage)
    opened, real = [], placement.load_distance_matrix

    def spy(directory, space, mmap=False):
        opened.append(real(directory, space, mmap=mmap))
        return opened[-1]

    monkeypatch.setattr(placement, "load_distance_matrix", spy)
    space = load_space(products / "predictions", products / "embedding", "train",
                       settings=SETTINGS, distances_dir=tmp_path / "distances")
    monkeypatch.undo()
    assert len(opened) == 1 and isinstance(opened[0], np.memmap)
    assert isinstance(space.probs, NpyFile)
    np.save(tmp_path / "distances" / "train.npy", d[:-1, :-1])  # another run's matrix
    with pytest.raises(ValueError, match=r"has shape \(\d+, \d+\), not \(\d+, \d+\) as the "
                                         "analysis set.*dvc repro"):
        load_space(products / "predictions", products / "embedding", "train",
                   settings=SETTINGS, distances_dir=tmp_path / "distances")
