"""The joint train+test embedding and the Euclidean comparison (docs/study.md D8, D20;
lowdim.studies.joint): union-of-samples distances and the whole study."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from study_data import analysis_set

from lowdim.config.profile import load_profile
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.euclidean import euclidean_distances
from lowdim.geometry.inpca import inpca
from lowdim.store import arrays
from lowdim.studies import joint
from lowdim.studies.joint import run_joint, sample_weighted_distances, samples_used


def _probs(rng, *shape):
    x = rng.random(shape) + 0.05
    return x / x.sum(-1, keepdims=True)


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


def _inputs(data):
    stored = {s: inpca(d, 10) for s, d in data.distances.items()}
    return data.probs, data.distances, stored


def test_run_joint_embeds_the_union_of_samples(root):
    data = analysis_set(samples={"train": 14, "test": 9})
    cfg = load_profile(root / "profiles" / "tiny.yaml", {"embedding": {"n_components": 10}})
    result = run_joint(cfg.studies.joint, cfg.distances, cfg.embedding, *_inputs(data))
    assert result.metrics["samples"] == {"train": 7, "test": 5}  # every 2nd of 14 and of 9
    union = np.concatenate([p[:, ::2] for p in data.probs.values()], axis=1)
    expected = inpca(bhattacharyya(union), 10)
    joint = result.products["bhattacharyya_joint"]
    np.testing.assert_allclose(joint.eigenvalues[:10], expected.eigenvalues[:10], atol=1e-6)
    np.testing.assert_allclose(np.abs(joint.coords), np.abs(expected.coords), atol=1e-5)
    euclid = result.products["euclidean_train"]
    np.testing.assert_allclose(
        euclid.eigenvalues, inpca(euclidean_distances(data.probs["train"], sample_step=2),
                                  10).eigenvalues, atol=1e-12)
    assert set(result.metrics["explained_stress"]) == {
        "bhattacharyya_train", "bhattacharyya_test", "bhattacharyya_joint", "euclidean_train",
        "euclidean_test", "euclidean_joint"}
    for name, chi in result.metrics["explained_stress"].items():
        assert 0 < chi["explained_stress_1"] <= chi["explained_stress_10"] <= 1, name
    assert list(result.summary.index) == list(result.metrics["explained_stress"])


def test_the_configured_solver_is_used(root):
    data = analysis_set()
    m = len(data.index)
    for solver, eigenvalues in (("dense", m), ("lanczos", 10)):  # dense keeps every eigenvalue
        cfg = load_profile(root / "profiles" / "tiny.yaml", {
            "embedding": {"n_components": 5, "stress_dims": [1, 10], "solver": solver}})
        result = run_joint(cfg.studies.joint, cfg.distances, cfg.embedding, *_inputs(data))
        for emb in result.products.values():
            assert len(emb.eigenvalues) == eigenvalues and emb.coords.shape == (m, 5)


def test_a_disabled_study_computes_and_reads_nothing(root):
    cfg = load_profile(root / "profiles" / "tiny.yaml", {"studies": {"joint": {"enabled": False}}})
    result = run_joint(cfg.studies.joint, cfg.distances, cfg.embedding, {}, {}, {})
    assert result.products == {} and result.metrics == {"enabled": False}


def test_a_scratch_disk_too_small_stops_before_any_euclidean_matrix(root, tmp_path, monkeypatch):
    data = analysis_set()
    m = len(data.index)
    cfg = load_profile(root / "profiles" / "tiny.yaml")
    computed = []
    monkeypatch.setattr(joint, "euclidean_distances",
                        lambda *a, **k: computed.append(1))  # must not be reached
    free = 2 * 8 * m * m - 1  # one byte short of both spaces' matrices
    monkeypatch.setattr(arrays.shutil, "disk_usage", lambda _: SimpleNamespace(free=free))
    with pytest.raises(OSError, match=rf"needs {2 * 8 * m * m} bytes .* {tmp_path}.*TMPDIR"):
        run_joint(cfg.studies.joint, cfg.distances, cfg.embedding, *_inputs(data),
                  scratch=tmp_path)
    assert computed == [] and list(tmp_path.iterdir()) == []
