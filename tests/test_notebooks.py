"""Every notebook runs top to bottom with papermill on the tiny profile, in pipeline order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

pytestmark = pytest.mark.slow

STAGES = [  # notebook, its path parameters (relative to the work directory)
    ("00_index", {}),
    ("10_data", {"prepared_dir": "prepared"}),
    ("20_train", {"prepared_dir": "prepared", "runs_dir": "runs"}),
    ("30_predictions", {"prepared_dir": "prepared", "runs_dir": "runs",
                        "predictions_dir": "predictions"}),
    ("40_distances", {"predictions_dir": "predictions", "distances_dir": "distances"}),
    ("50_embedding", {"distances_dir": "distances", "embedding_dir": "embedding",
                      "metrics_file": "metrics/embedding.json"}),
    ("figures/fig02_embedding", {"predictions_dir": "predictions", "embedding_dir": "embedding",
                                 "figures_dir": "figures"}),
    ("figures/figS01_spectrum", {"embedding_dir": "embedding", "figures_dir": "figures"}),
    ("figures/figS02_distance_to_truth", {"predictions_dir": "predictions",
                                          "distances_dir": "distances", "figures_dir": "figures"}),
    # a user tool, not a DVC stage: it reads the stages' outputs and writes nothing
    ("60_place_a_model", {"prepared_dir": "prepared", "predictions_dir": "predictions",
                          "distances_dir": "distances", "embedding_dir": "embedding"}),
]


@pytest.fixture(scope="module")
def executed(root, tmp_path_factory) -> Path:
    """Run all notebooks once on the tiny profile; return the work directory."""
    work = tmp_path_factory.mktemp("notebooks")
    (work / "executed").mkdir()
    for name, paths in STAGES:
        parameters = {k: str(work / v) for k, v in paths.items()}
        if paths:
            parameters["params_file"] = str(root / "profiles" / "tiny.yaml")
        pm.execute_notebook(root / "notebooks" / f"{name}.ipynb",
                            work / "executed" / f"{Path(name).name}.ipynb",
                            parameters=parameters, cwd=str(root), progress_bar=False,
                            kernel_name="python3")
    return work


def test_every_notebook_has_a_parameters_cell(root):
    for name, _ in STAGES[1:]:  # the index notebook has no parameters
        cells = json.loads((root / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, name
        assert 'params_file = "profiles/tiny.yaml"' in "".join(tagged[0]["source"])
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), name


def test_analysis_set_holds_runs_and_reference_points(executed):
    index = pd.read_parquet(executed / "predictions" / "index.parquet")
    counts = index["kind"].value_counts()
    assert counts["ignorance"] == 1 and counts["truth"] == 1 and counts["geodesic"] == 20
    runs = index[index["kind"] == "run"]
    assert runs["run_id"].nunique() == 4  # tiny grid: 2 archs x 2 optimizers x 1 seed
    train = np.load(executed / "predictions" / "train.npy")
    assert train.shape == (len(index), 120, 10)
    np.testing.assert_allclose(train.sum(-1), 1.0, atol=1e-5)


def test_distances_match_closed_forms(executed):
    index = pd.read_parquet(executed / "predictions" / "index.parquet")
    reference = pd.read_parquet(executed / "distances" / "reference.parquet")
    truth_row = index.index[index["kind"] == "truth"][0]
    # d(ignorance, truth) = 1/2 ln C; d(P, truth) = half the mean cross-entropy.
    ignorance_row = index.index[index["kind"] == "ignorance"][0]
    assert reference.loc[ignorance_row, "train_to_truth"] == pytest.approx(0.5 * np.log(10),
                                                                            rel=1e-6)
    runs = index["kind"] == "run"
    np.testing.assert_allclose(reference.loc[runs, "train_to_truth"],
                               0.5 * index.loc[runs, "train_loss"], rtol=2e-3, atol=1e-3)
    d = np.load(executed / "distances" / "train.npy")
    assert d.shape == (len(index), len(index))
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert d[truth_row, ignorance_row] == pytest.approx(0.5 * np.log(10), rel=1e-6)


def test_embedding_and_metrics(executed):
    metrics = json.loads((executed / "metrics" / "embedding.json").read_text())
    assert set(metrics) == {"train", "test"}
    for space in metrics.values():
        chi = [space[f"explained_stress_{k}"] for k in (1, 2, 3, 10)]
        assert all(0 < a <= b <= 1 for a, b in zip(chi, chi[1:], strict=False))
    with np.load(executed / "embedding" / "train.npz", allow_pickle=False) as z:
        lam = z["eigenvalues"]
        assert np.all(np.diff(np.abs(lam)) <= 1e-12)
        assert z["coords"].shape[1] == 10


def test_figures_are_written(executed):
    for stem in ("fig02_embedding", "figS01_spectrum", "figS02_distance_to_truth"):
        for ext in ("pdf", "png"):
            path = executed / "figures" / f"{stem}.{ext}"
            assert path.stat().st_size > 5_000, path
    pages = ["fig02_embedding_train.html", "fig02_embedding_test.html"]
    assert sorted(p.name for p in (executed / "figures").iterdir()) == sorted(pages + [
        f"{s}.{e}" for s in ("fig02_embedding", "figS01_spectrum", "figS02_distance_to_truth")
        for e in ("pdf", "png")])


def test_index_notebook_shows_the_pipeline(executed):
    nb = json.loads((executed / "executed" / "00_index.ipynb").read_text())
    shown = "".join("".join(o.get("data", {}).get("text/markdown", ""))
                    for c in nb["cells"] for o in c.get("outputs", []))
    assert "flowchart" in shown  # the mermaid DAG from `dvc dag --md`
    for stage in ("data", "train", "predictions", "distances", "embedding", "fig02_embedding"):
        assert f"| {stage} |" in shown
    assert "[notebooks/10_data.ipynb](10_data.ipynb)" in shown


def test_place_a_model_places_a_new_run(executed):
    nb = json.loads((executed / "executed" / "60_place_a_model.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    # the demonstration: the tiny grid's first run (fc, sgdn, seed 42) with a new seed
    assert "checkpoints of new run fc, sgdn, seed 1042" in text
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.parametrize("space", ["train", "test"])
def test_interactive_page_renders_offline(executed, space):
    from lowdim.browser import find_chromium, render

    if find_chromium() is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    report = render(executed / "figures" / f"fig02_embedding_{space}.html")
    assert report.canvases >= 1
    assert report.distinct_colours() > 50  # a blank page has a handful
    for arch in ("fc", "allcnn"):  # the tiny profile's architectures, as legend groups
        assert arch in report.legend
    assert {"geodesic", "P₀ (ignorance)", "P* (truth)"} <= set(report.legend)
    assert report.external_requests == ()
