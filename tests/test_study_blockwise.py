"""The special studies in bounded memory (issue 23 item 1): the lazy matrices and row views of
`lowdim.studies.common` read stored matrices and probabilities block by block, and everything
computed from them is bitwise equal to the same computation on the in-memory arrays, with block
budgets small enough to force many blocks. Also the corners' normal-run selection
(`studies.corners.normal`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from lowdim.config.load import ConfigError
from lowdim.config.profile import load_profile
from lowdim.config.studies.corners import CornersConfig
from lowdim.config.studies.runs import RunSelection
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.eigen import streaming_stats
from lowdim.geometry.euclidean import euclidean_distances
from lowdim.geometry.inpca import inpca
from lowdim.geometry.tangent_basis import explained_distance_l1, kernel_average
from lowdim.store.arrays import NpyFile
from lowdim.store.lazy import Submatrix
from lowdim.studies.common import JointMatrix, Rows, WeightedSum, joint_distance_matrix
from lowdim.studies.corners import joint_set
from lowdim.tools.params import validate


def _probs(rng, m: int, n: int = 9, c: int = 4) -> np.ndarray:
    return rng.dirichlet(np.ones(c), size=(m, n)).astype(np.float32)


def _stored(tmp_path, name: str, array: np.ndarray) -> NpyFile:
    np.save(tmp_path / f"{name}.npy", array)
    return NpyFile(tmp_path / f"{name}.npy")


def _same_embedding(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert np.array_equal(np.asarray(x), np.asarray(y)), field.name


@pytest.fixture(scope="module")
def spaces():
    """Two spaces' distances of 40 models (symmetric, zero diagonal) and their probabilities."""
    rng = np.random.default_rng(11)
    probs = {"train": _probs(rng, 40, 11), "test": _probs(rng, 40, 7)}
    return probs, {s: bhattacharyya(p) for s, p in probs.items()}


def test_lazy_matrices_hold_the_in_memory_values(tmp_path, spaces):
    _, d = spaces
    stored = {s: _stored(tmp_path, s, m) for s, m in d.items()}
    rows = np.array([0, 1, 2, 5, 6, 7, 8, 20, 21, 39])
    assert np.array_equal(np.asarray(Submatrix(stored["train"], rows)),
                          d["train"][np.ix_(rows, rows)])
    counts = {"train": 11, "test": 7}
    weighted = sum(d[s] * (counts[s] / 18) for s in d)
    assert np.array_equal(np.asarray(WeightedSum(stored, counts)), weighted)
    cross, new = np.arange(30.0).reshape(3, 10), np.eye(3)
    lazy = JointMatrix(Submatrix(stored["test"], rows), cross, new)
    whole = joint_distance_matrix(d["test"][np.ix_(rows, rows)], cross, new)
    assert np.array_equal(np.asarray(lazy), whole)
    for r, c in [(slice(2, 11), slice(4, 13)), (slice(10, 13), slice(0, 13)),
                 (slice(0, 5), slice(11, 12))]:  # base only, new rows, across the border
        assert np.array_equal(lazy[r, c], whole[r, c])
    with pytest.raises(TypeError, match="read by slices"):
        lazy[[0, 1]]


@pytest.mark.parametrize("side", [37, 150, 300])
def test_the_solver_reads_a_lazy_matrix_to_the_in_memory_bytes(tmp_path, side):
    # Tiles of 37 and 150 points (many), or one tile: the centring sums and the eigenpairs are the
    # bytes of the in-memory matrix. At 150 the layout of a tile decides numpy's summation order
    # (a contiguous copy of the first tile has another mean in the last bit than the view).
    rng = np.random.default_rng(7)
    d = {}
    for s in ("train", "test"):
        x = rng.random((300, 300))
        d[s] = x + x.T
        np.fill_diagonal(d[s], 0.0)
    block_bytes = 6 * 8 * side**2  # lowdim.geometry.eigen's tiles of `side` points
    stored = {s: _stored(tmp_path, s, m) for s, m in d.items()}
    counts = {"train": 11, "test": 7}
    weighted = sum(d[s] * (counts[s] / 18) for s in d)
    lazy = WeightedSum(stored, counts)
    a, b = streaming_stats(weighted, block_bytes), streaming_stats(lazy, block_bytes)
    assert a.frobenius_sq == b.frobenius_sq and np.array_equal(a.row_means, b.row_means)
    _same_embedding(inpca(weighted, 5, solver="randomized", block_bytes=block_bytes),
                    inpca(lazy, 5, solver="randomized", block_bytes=block_bytes))
    _same_embedding(inpca(d["train"], 5, solver="lanczos", block_bytes=block_bytes),
                    inpca(Submatrix(stored["train"]), 5, solver="lanczos",
                          block_bytes=block_bytes))


def test_the_dense_solver_forms_a_lazy_matrix_whole(tmp_path, spaces):
    _, d = spaces
    lazy = Submatrix(_stored(tmp_path, "train", d["train"]), np.arange(3, 40))
    _same_embedding(inpca(d["train"][3:, 3:], 5, solver="dense"), inpca(lazy, 5, solver="dense"))


def test_euclidean_distances_written_block_by_block_to_disk(tmp_path, spaces):
    probs, _ = spaces
    whole = euclidean_distances(probs["train"], sample_step=2, max_block_bytes=2**11)
    out = NpyFile.create(tmp_path / "e.npy", whole.shape, np.float64)
    assert euclidean_distances(probs["train"], sample_step=2, max_block_bytes=2**11,
                               out=out) is out
    assert np.array_equal(np.load(tmp_path / "e.npy"), whole)
    with pytest.raises(ValueError, match=r"out must be \(40, 40\) float64"):
        euclidean_distances(probs["train"], out=np.empty((40, 39)))


def test_rows_of_stored_probabilities_give_the_in_memory_results(tmp_path, spaces):
    probs, d = spaces
    stored = _stored(tmp_path, "probs", probs["train"])
    rows = np.array([1, 2, 3, 4, 9, 10, 30, 31, 32])
    view = Rows(stored, rows)
    assert view.shape == (9, 11, 4) and np.array_equal(np.asarray(view), probs["train"][rows])
    assert np.array_equal(view[2], probs["train"][3])
    points = _probs(np.random.default_rng(2), 5, 11)
    for budget in (2**9, 2**28):  # many blocks, one block
        assert np.array_equal(bhattacharyya(points, view, max_block_bytes=budget),
                              bhattacharyya(points, probs["train"][rows], max_block_bytes=budget))
    progress = np.linspace(0, 1, len(rows))
    assert np.array_equal(kernel_average(view, progress, 0.3),
                          kernel_average(probs["train"][rows], progress, 0.3))
    sub = Submatrix(_stored(tmp_path, "d", d["train"]), rows)
    coords = np.random.default_rng(3).normal(size=(len(rows), 3))
    signs = np.array([1.0, -1.0, 1.0])
    for k in (1, 3):
        assert (explained_distance_l1(sub, coords, signs, k)
                == explained_distance_l1(d["train"][np.ix_(rows, rows)], coords, signs, k))


# --- studies.corners.normal -------------------------------------------------------------------

AUTHORS_NORMAL = {"select": {"optimizer": ["sgdn"], "batch_size": [64], "lr": [0.032],
                             "weight_decay": [0.0], "augment": ["none"]}}


def _quick(root, **corners) -> dict:
    raw = yaml.safe_load((root / "profiles" / "quick.yaml").read_text())
    raw["studies"]["corners"].update(corners)
    return raw


def test_the_normal_selection_is_checked_against_the_grid(root):
    # quick: sgdn at batch 64 has lr 0.1 * 64 / 200 = 0.032
    cfg = validate(_quick(root, normal=AUTHORS_NORMAL)).studies.corners
    assert cfg.normal == RunSelection(select={k: tuple(v)
                                              for k, v in AUTHORS_NORMAL["select"].items()})
    assert validate(_quick(root)).studies.corners.normal is None  # default: every normal run
    with pytest.raises(ConfigError, match=r"studies\.corners\.normal\.select\.batch_size lists "
                                          r"200, which no run of the grid has"):
        validate(_quick(root, normal={"select": {"batch_size": [200]}}))
    with pytest.raises(ConfigError, match=r"studies\.corners\.normal keeps none of the grid's fc "
                                          r"runs"):
        validate(_quick(root, normal={"select": {"arch": ["allcnn"]}}))
    with pytest.raises(ConfigError, match=r"studies\.corners\.normal\.select\.colour"):
        validate(_quick(root, normal={"select": {"colour": ["red"]}}))


@pytest.mark.parametrize("profile", ["cifar10-authors", "cifar10-paper"])
def test_the_cifar10_profiles_compare_corners_with_the_authors_settings(root, profile):
    normal = load_profile(root / "profiles" / f"{profile}.yaml").studies.corners.normal
    assert normal.select == {"optimizer": ("sgdn",), "batch_size": (200,), "lr": (0.1,),
                             "weight_decay": (0.0,), "augment": ("none",)}


def test_the_joint_set_keeps_only_the_selected_normal_runs():
    n = 6
    rng = np.random.default_rng(4)
    index = pd.DataFrame({
        "row": np.arange(10), "kind": ["run"] * 6 + ["ignorance", "truth", "geodesic", "geodesic"],
        "run_id": ["a", "a", "b", "b", "c", "c"] + [None] * 4,
        "arch": ["fc"] * 4 + ["allcnn"] * 2 + [None] * 4,
        "optimizer": ["sgdn", "sgdn", "adam", "adam", "sgdn", "sgdn"] + [None] * 4,
        "seed": 1, "checkpoint": [0, 1] * 3 + [None] * 4, "step": 0, "epoch": 0.0,
        "t": [np.nan] * 6 + [0.0, 1.0, 0.5, 1.0], "train_loss": 1.0, "train_error": 0.5})
    probs = rng.dirichlet(np.ones(10), size=(10, n)).astype(np.float32)
    every, _ = joint_set([], index, probs, "fc", {}, 10, 2)
    assert sorted(every["run_id"].dropna().unique()) == ["a", "b"]
    chosen, chosen_probs = joint_set([], index, probs, "fc", {}, 10, 2,
                                     RunSelection(select={"optimizer": ("sgdn",)}))
    assert list(chosen["run_id"].dropna()) == ["a", "a"]
    assert np.array_equal(chosen_probs[:2], probs[:2])
    with pytest.raises(ValueError, match="studies.corners.normal keeps no run of 'fc'"):
        joint_set([], index, probs, "fc", {}, 10, 2, RunSelection(select={"arch": ("allcnn",)}))
    with pytest.raises(ConfigError, match=r"normal\.select\.optimizer lists 'sgd'"):
        joint_set([], index, probs, "fc", {}, 10, 2, RunSelection(select={"optimizer": ("sgd",)}))


def test_the_flat_default_has_no_selection():
    assert CornersConfig().normal is None
