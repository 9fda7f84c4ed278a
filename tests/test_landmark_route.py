"""The landmark route (issue 23 item 3): distances to L landmarks only, the embedding from them,
the stress its coordinates achieve, and the stages that need the whole matrix stopping at once.

Oracles: the whole matrix of the same kernel (bitwise), the existing landmark embedding of the
whole matrix, the closed form chi_k of an exact InPCA, and the exact achieved stress computed
from the whole matrix on trajectory-like predictions (curved noisy runs, not low rank).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig, check_with
from lowdim.config.load import ConfigError, from_dict
from lowdim.geometry.distance_blocks import (
    plan_distances,
    write_distances,
    write_landmark_distances,
)
from lowdim.geometry.distances import DistanceSettings, bhattacharyya
from lowdim.geometry.eigen import streaming_stats
from lowdim.geometry.inpca import (
    achieved_stress,
    check_stored_landmarks,
    holdout_rows,
    inpca,
    landmark_inpca,
    landmark_metrics,
    landmark_rows,
)
from lowdim.store.arrays import NpyFile
from lowdim.store.distance_matrices import (
    load_distance_matrix,
    load_holdout_distances,
    load_landmark_index,
    open_distance_matrix,
    open_landmark_columns,
    require_full_matrix,
)

ROOT = Path(__file__).resolve().parents[1]
# small blocks: many tiles, so tile edges cut through the landmark columns and the runs
SETTINGS = DistanceSettings(sample_step=2, max_block_bytes=1 << 16)


def runs(m: int, samples: int, classes: int = 10, checkpoints: int = 30, seed: int = 0
         ) -> np.ndarray:
    """(m, samples, classes) float32: noisy runs that curve from ignorance towards the labels
    (as benchmarks/inpca.py's generator), so the distance matrix is far from low rank."""
    rng = np.random.default_rng(seed)
    truth = np.eye(classes)[rng.integers(0, classes, samples)]
    bends = rng.normal(size=(3, samples, classes))
    t = np.linspace(0.0, 1.0, checkpoints)[:, None, None] ** 0.7
    out = []
    for _ in range(-(-m // checkpoints)):
        bend = bends[rng.integers(3)] + 0.5 * rng.normal(size=(samples, classes))
        logits = rng.uniform(4, 10) * t * truth + 3 * np.sin(np.pi * t) * bend
        logits = logits + 0.3 * rng.normal(size=logits.shape)
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        out.append(p / p.sum(axis=-1, keepdims=True))
    return np.concatenate(out)[:m].astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same predictions' whole matrices and landmark distances, written by the stage's
    functions (float64, and float32 landmark columns)."""
    root = tmp_path_factory.mktemp("landmarks")
    probs = {"train": runs(240, 40, seed=1), "test": runs(240, 12, seed=2)}
    reference = pd.DataFrame({"train_to_truth": np.zeros(240)})
    rows = landmark_rows(240, 23)
    held = holdout_rows(240, rows, 60)
    write_distances(probs, np.repeat([f"r{i}" for i in range(8)], 30), None, root / "full",
                    reference, settings=SETTINGS)
    done = write_landmark_distances(probs, rows, held, root / "landmarks", reference,
                                    settings=SETTINGS)
    write_landmark_distances(probs, rows, held, root / "float32", reference, settings=SETTINGS,
                             dtype="float32")
    return root, rows, held, done


def test_landmark_columns_are_the_whole_matrix_rows_bitwise(written):
    root, rows, held, done = written
    index = load_landmark_index(root / "landmarks")
    np.testing.assert_array_equal(index["rows"], rows)
    np.testing.assert_array_equal(index["holdout"], held)
    for space in ("train", "test"):
        d = np.load(root / "full" / f"{space}.npy")
        columns = np.load(root / "landmarks" / f"{space}_landmarks.npy")
        assert columns.shape == (240, 23) and columns.dtype == np.float64
        assert columns.tobytes() == np.ascontiguousarray(d[:, rows]).tobytes()
        assert columns.tobytes() == np.ascontiguousarray(d[rows].T).tobytes()  # the rows of D
        held_d = load_holdout_distances(root / "landmarks", space)
        assert held_d.tobytes() == np.ascontiguousarray(d[np.ix_(held, held)]).tobytes()
        stored32 = np.load(root / "float32" / f"{space}_landmarks.npy")
        assert stored32.tobytes() == d[:, rows].astype(np.float32).tobytes()
        assert done[space] == 240 * 23 + 60 * 61 // 2
    assert sorted(p.name for p in (root / "landmarks").iterdir()) == [
        "landmarks.npz", "reference.parquet", "test_holdout.npy", "test_landmarks.npy",
        "train_holdout.npy", "train_landmarks.npy"]  # no M x M matrix


def test_landmark_plan_counts_the_columns_only():
    full = plan_distances(30000, {"train": 1000}, 10, cache=False)
    part = plan_distances(30000, {"train": 1000}, 10, landmarks=300, holdout=1000)
    assert part.pair_samples == (30000 * 300 + 1000 * 1001 // 2) * 1000
    # M / (2 L) = 50, less the held-out block's share
    assert 45 < full.pair_samples / part.pair_samples < 50
    assert part.matrix_bytes < full.matrix_bytes / 40
    assert "30000 x 300 (landmark columns)" in part.describe()


def test_embedding_from_the_columns_is_the_whole_matrix_landmark_embedding(written, tmp_path):
    root, rows, _, _ = written
    d = np.load(root / "full" / "train.npy")
    whole = inpca(d, 12, landmarks=rows)
    columns = open_landmark_columns(root / "landmarks", "train")
    assert isinstance(columns, NpyFile)
    # small slabs: the projection reads the columns in many pieces
    from_columns = landmark_inpca(columns, rows, 12, block_bytes=8 * 23 * 50)
    np.testing.assert_array_equal(from_columns.landmarks, whole.landmarks)
    np.testing.assert_array_equal(from_columns.eigenvalues, whole.eigenvalues)
    np.testing.assert_array_equal(from_columns.coords[rows], whole.coords[rows])
    # the other points: the same arithmetic on other slab shapes (BLAS may round differently)
    np.testing.assert_allclose(from_columns.coords, whole.coords, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(from_columns.explained_stress, whole.explained_stress)


def test_landmark_inpca_rejects_columns_that_do_not_fit_the_rows():
    d = bhattacharyya(runs(40, 8))
    rows = landmark_rows(40, 6)
    with pytest.raises(ValueError, match="landmark rows of the 6 columns"):
        landmark_inpca(d[:, rows], rows[:5], 3)
    with pytest.raises(ValueError, match="zero diagonal"):
        landmark_inpca(d[:, rows], np.array([1, 9, 17, 24, 32, 38]), 3)


def test_achieved_stress_of_an_exact_embedding_is_its_explained_stress():
    d = bhattacharyya(runs(150, 20))
    e = inpca(d, 40, solver="dense")
    chi = achieved_stress(d, e.coords, e.signs, block_bytes=8 * 150 * 7)
    np.testing.assert_allclose(chi, e.explained_stress[:40], rtol=0, atol=1e-10)
    given = achieved_stress(d, e.coords, e.signs, stats=streaming_stats(d))
    np.testing.assert_allclose(given, chi, rtol=0, atol=1e-11)  # other slabs: rounding
    # not a restatement: other coordinates achieve less
    worse = achieved_stress(d, e.coords[:, ::-1], e.signs[::-1])
    assert worse[0] < chi[0] - 0.1


def test_held_out_estimate_matches_the_exact_achieved_stress():
    """Non-low-rank trajectories (chi_50 of the whole matrix below 1): the landmark matrix's
    stress overstates what the coordinates achieve; the held-out estimate does not."""
    m = 1200
    d = bhattacharyya(runs(m, 60, seed=3))
    exact_embedding = inpca(d, 30, solver="dense")
    assert exact_embedding.explained_stress[29] < 0.999  # far from low rank
    rows = landmark_rows(m, 40)
    e = inpca(d, 30, landmarks=rows)
    exact = achieved_stress(d, e.coords, e.signs)
    held = holdout_rows(m, rows, 300)
    assert not np.isin(held, rows).any()
    estimate = achieved_stress(d[np.ix_(held, held)], e.coords[held], e.signs)
    k = np.arange(10)
    np.testing.assert_allclose(estimate[k], exact[k], atol=0.01)
    # the landmark matrix's stress is further off at k = 30 than the estimate
    assert (abs(e.explained_stress[29] - exact[29])
            > 3 * abs(estimate[29] - exact[29]))
    assert (exact <= exact_embedding.explained_stress[:30] + 1e-12).all()


def test_achieved_stress_exposes_outliers_the_landmark_matrix_hides():
    """Two confidently wrong checkpoints (a diverged run's), none a landmark: the landmark
    matrix's stress exceeds even the exact embedding's, which bounds every k-axis embedding's
    (Eckart-Young); the stress the coordinates achieve falls below it (the failure measured
    on the quick profile, docs/performance.md, in a milder form)."""
    p = runs(400, 30, seed=4)
    wrong = np.full((2, 30, 10), 1e-6, dtype=np.float32)
    wrong[:, :, 0] = 1.0
    p = np.concatenate([p[:100], wrong / wrong.sum(-1, keepdims=True), p[100:]])
    d = bhattacharyya(p)
    rows = landmark_rows(len(p), 20)
    assert not np.isin([100, 101], rows).any()
    e = inpca(d, 10, landmarks=rows)
    achieved = achieved_stress(d, e.coords, e.signs)
    exact = inpca(d, 10, solver="dense").explained_stress
    assert e.explained_stress[2] > exact[2] + 0.02 and e.explained_stress[9] > exact[9]
    assert achieved[9] < exact[9] - 0.03


def test_holdout_rows_avoid_the_landmarks():
    rows = landmark_rows(100, 10)
    held = holdout_rows(100, rows, 30)
    assert len(held) == 30 and np.all(np.diff(held) > 0) and not np.isin(held, rows).any()
    np.testing.assert_array_equal(holdout_rows(12, rows[:5], 50),
                                  np.setdiff1d(np.arange(12), rows[:5]))
    with pytest.raises(ValueError, match="at least 2 held-out"):
        holdout_rows(10, landmark_rows(10, 10), 5)


def test_metrics_say_which_stress_they_are():
    d = bhattacharyya(runs(60, 8))
    rows = landmark_rows(60, 12)
    e = inpca(d, 5, landmarks=rows)
    achieved = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    metrics = landmark_metrics(e, achieved, (1, 3, 50), holdout=20)
    assert metrics["explained_stress_1"] == 0.5 and metrics["explained_stress_3"] == 0.7
    assert metrics["landmark_matrix_stress_3"] == round(float(e.explained_stress[2]), 6)
    assert metrics["landmarks"] == 12 and metrics["stress_holdout_points"] == 20
    assert "explained_stress_50" not in metrics


def test_config_landmarks_agree_across_sections():
    distances = from_dict({"distances": {"landmarks": 300}}, DistancesConfig)
    check_with(from_dict({"embedding": {"landmarks": 300}}, EmbeddingConfig), distances)
    check_with(from_dict({}, EmbeddingConfig), from_dict({}, DistancesConfig))
    for other in (None, 200):
        with pytest.raises(ConfigError, match="set embedding.landmarks: 300"):
            check_with(from_dict({"embedding": {"landmarks": other}}, EmbeddingConfig),
                       distances)
    with pytest.raises(ConfigError, match="distances.landmarks"):
        from_dict({"distances": {"landmarks": 1}}, DistancesConfig)
    with pytest.raises(ConfigError, match="Ray tasks compute the whole matrix"):
        from_dict({"distances": {"landmarks": 300, "backend": "ray"}}, DistancesConfig)


def test_profile_check_catches_disagreeing_landmarks():
    from lowdim.config.load import read
    from lowdim.config.profile import profile_from_dict

    raw = read(ROOT / "profiles" / "tiny.yaml")
    raw["distances"] = {**raw.get("distances", {}), "landmarks": 40}
    with pytest.raises(ConfigError, match="embedding.landmarks"):
        profile_from_dict(raw)
    raw["embedding"] = {**raw.get("embedding", {}), "landmarks": 40}
    profile_from_dict(raw)


def test_embedding_checks_the_stored_landmarks():
    check_stored_landmarks(landmark_rows(500, 30), 500, 30)
    with pytest.raises(ValueError, match="set embedding.landmarks: 30"):
        check_stored_landmarks(landmark_rows(500, 30), 500, 40)
    with pytest.raises(ValueError, match="set embedding.landmarks: 30"):
        check_stored_landmarks(landmark_rows(500, 30), 500, None)


def test_readers_of_the_whole_matrix_stop_on_landmark_distances(written):
    root = written[0]
    require_full_matrix(root / "full", "intervals")  # the whole matrix: nothing to say
    for read in (lambda: require_full_matrix(root / "landmarks", "intervals"),
                 lambda: load_distance_matrix(root / "landmarks", "train", mmap=True),
                 lambda: open_distance_matrix(root / "landmarks", "train")):
        with pytest.raises(ValueError, match=r"distances.landmarks = 23.*needs the whole matrix"
                                             r".*distances.landmarks: null"):
            read()


def _papermill(notebook: str, tmp_path: Path, params: dict[str, str], yaml_params: str = ""
               ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(ROOT), notebook,
           str(tmp_path / "executed.ipynb"), "-p", "params_file", "profiles/tiny.yaml"]
    for name, value in params.items():
        cmd += ["-p", name, value]
    if yaml_params:
        cmd += ["-y", yaml_params]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_embedding_stage_runs_on_landmark_distances(written, tmp_path):
    root, rows, held, _ = written
    done = _papermill("notebooks/50_embedding.ipynb", tmp_path, {
        "distances_dir": str(root / "landmarks"), "embedding_dir": str(tmp_path / "emb"),
        "metrics_file": str(tmp_path / "embedding.json")},
        "overrides: {embedding: {landmarks: 23, n_components: 8, stress_dims: [1, 3]}}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    metrics = json.loads((tmp_path / "embedding.json").read_text())
    d = np.load(root / "full" / "train.npy")
    e = inpca(d, 8, landmarks=rows)
    estimate = achieved_stress(d[np.ix_(held, held)], e.coords[held], e.signs)
    train = metrics["train"]
    assert train["landmarks"] == 23 and train["stress_holdout_points"] == 60
    assert train["explained_stress_3"] == pytest.approx(estimate[2], abs=2e-6)
    assert train["landmark_matrix_stress_3"] == pytest.approx(e.explained_stress[2], abs=2e-6)
    # the landmark embedding of the whole matrix reports the exact achieved stress
    done = _papermill("notebooks/50_embedding.ipynb", tmp_path, {
        "distances_dir": str(root / "full"), "embedding_dir": str(tmp_path / "emb2"),
        "metrics_file": str(tmp_path / "embedding2.json")},
        "overrides: {embedding: {landmarks: 23, n_components: 8, stress_dims: [1, 3]}}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    train = json.loads((tmp_path / "embedding2.json").read_text())["train"]
    assert train["stress_holdout_points"] == 0
    exact = achieved_stress(d, e.coords, e.signs)
    assert train["explained_stress_3"] == pytest.approx(exact[2], abs=2e-6)


@pytest.mark.slow
def test_joint_embedding_stage_stops_at_once_on_landmark_distances(written, tmp_path):
    done = _papermill("notebooks/84_joint_embedding.ipynb", tmp_path, {
        "predictions_dir": str(tmp_path / "nothing"), "distances_dir": str(written[0] /
                                                                             "landmarks"),
        "embedding_dir": str(tmp_path / "nothing"), "joint_dir": str(tmp_path / "joint"),
        "metrics_file": str(tmp_path / "joint.json")})
    text = done.stdout + done.stderr
    assert done.returncode != 0
    # stopped in the settings cell (before any input is opened: the others do not exist)
    assert "the joint_embedding stage needs the whole matrix" in text, text[-3000:]
    assert "does not exist" not in text
