"""The tangents study (docs/study.md A14, D18; lowdim.studies.tangents): kept rows, explained
distance curves and the whole study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from study_data import analysis_set

from lowdim.config.profile import load_profile
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import inpca, minkowski_sq_distances
from lowdim.geometry.tangent_basis import kernel_average
from lowdim.studies.tangents import explained_distance_curve, run_tangents, tangent_rows


def test_tangent_rows_keep_run_checkpoints_below_the_loss_cut():
    index = analysis_set(checkpoints=3).index  # losses 5, 4, 3 per run
    np.testing.assert_array_equal(tangent_rows(index.iloc[:3], 4.5), [1, 2])
    with pytest.raises(ValueError, match=r"only 1 run checkpoints have train loss < 3\.5: raise "
                                         r"studies.tangents.outlier_loss"):
        tangent_rows(index.iloc[:3], 3.5)


def test_explained_distance_curve_reaches_one_with_every_axis_of_a_euclidean_set():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 3)) * [3.0, 1.0, 0.3]
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    emb = inpca(d, 5)
    curve = explained_distance_curve(d, emb.coords, emb.signs, 5)
    assert curve.shape == (5,)
    assert np.all(np.diff(curve) >= -1e-12)
    assert curve[0] < 0.99 and curve[2] == pytest.approx(1.0, abs=1e-9)


def _config(root, **overrides):
    return load_profile(root / "profiles" / "tiny.yaml", {
        "studies": {"tangents": {"centres": [0.2, 0.5], "width": 0.1, "outlier_loss": 4.5,
                                 "dims": 4}}, **overrides})


def test_run_tangents_builds_the_basis_and_projects_every_run(root):
    data = analysis_set()
    cfg = _config(root)
    result = run_tangents(cfg.studies.tangents, cfg.distances, cfg.embedding, data.index,
                          data.probs, data.distances, data.progress, distance_device="cpu")
    runs = data.index.index[data.index["kind"] == "run"].to_numpy()
    np.testing.assert_array_equal(result.products["rows"], runs)
    kept = result.products["kept"]
    assert kept.sum() == result.metrics["checkpoints"] == 3 * 5  # losses 4, 3, 2 of 5 runs
    step = cfg.distances.sample_step
    for space in ("train", "test"):
        basis = result.products[f"{space}_basis"]
        # Full InPCA of four points: its three axes reproduce the basis' own distances.
        lam = data.progress.loc[runs[kept], f"{space}_progress"].to_numpy()
        probs = data.probs[space]
        points = np.stack([probs[-2], probs[-1],
                           *(kernel_average(probs[runs[kept]], lam, c, 0.1) for c in (0.2, 0.5))])
        np.testing.assert_allclose(minkowski_sq_distances(basis.coords, basis.signs),
                                   bhattacharyya(points, sample_step=step), atol=1e-9)
        coords = result.products[f"{space}_coords"]
        assert coords.shape == (len(runs), 3)
        curves = result.products["explained"].query("space == @space")
        assert curves.groupby("method")["k"].max().to_dict() == {"tangent basis": 3,
                                                                  "true InPCA": 4}
        metrics = result.metrics[space]
        assert -1 <= metrics["direction_cosine"] <= 1
        assert metrics["basis_time_like_axes"] == int((basis.signs < 0).sum())
        assert metrics["true_inpca_explained_1"] == pytest.approx(
            curves.query("method == 'true InPCA' and k == 1")["explained"].item(), abs=1e-6)
    assert isinstance(result.summary, pd.DataFrame) and len(result.summary) == 2 * 4


def test_an_in_sample_checkpoint_projects_onto_its_basis_point(root):
    data = analysis_set()
    data.probs = {s: p.copy() for s, p in data.probs.items()}
    for p in data.probs.values():
        p[0] = p[-2]  # the first checkpoint of the first run is ignorance itself
    cfg = _config(root)
    result = run_tangents(cfg.studies.tangents, cfg.distances, cfg.embedding, data.index,
                          data.probs, data.distances, data.progress, distance_device="cpu")
    for space in ("train", "test"):
        basis = result.products[f"{space}_basis"]
        # within the float32 kernel's ~1e-7 error on the distances (lowdim.geometry.distances)
        np.testing.assert_allclose(result.products[f"{space}_coords"][0], basis.coords[0],
                                   atol=1e-5)
