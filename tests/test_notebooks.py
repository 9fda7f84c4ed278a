"""Every notebook runs top to bottom with papermill on the tiny profile, in pipeline order: the
stage notebooks through the session's shared `dvc repro` (conftest.tiny_pipeline), then the
tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml

from lowdim.data import load_prepared

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def pipeline_notebooks(dvc_yaml: Path) -> list[tuple[str, dict[str, str]]]:
    """(notebook, path parameters relative to the work directory) of every dvc.yaml stage, in
    the file's order (pipeline order), so a new stage is tested without editing this file."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    found = []
    for stage in stages.values():
        words = stage["cmd"].split()
        notebook = next((w for w in words if w.startswith("notebooks/") and w.endswith(".ipynb")),
                        None)
        if notebook is None:  # a stage that runs a module (`results`), not a notebook
            continue
        paths = {words[i + 1]: words[i + 2] for i, w in enumerate(words)
                 if w == "-p" and words[i + 1] != "params_file"}
        name = notebook.removeprefix("notebooks/").removesuffix(".ipynb")
        found.append((name, {k: v.removeprefix("data/") for k, v in paths.items()}))
    return found


# Every stage's notebook, in pipeline order; the session's tiny pipeline executes them all.
STAGES = pipeline_notebooks(ROOT / "dvc.yaml")
# The notebooks that are not stages: the index (no parameters), and the user tool that reads the
# stages' outputs and writes nothing.
TOOLS = [("00_index", {}),
         ("90_place_a_model", {"prepared_dir": "prepared", "predictions_dir": "predictions",
                               "distances_dir": "distances", "embedding_dir": "embedding"})]


@pytest.fixture(scope="module")
def executed(root, tiny_pipeline, tmp_path_factory) -> Path:
    """A work directory laid out as the stages' path parameters name it (data/ products, figures/
    and metrics/ side by side), linked to the session's tiny pipeline, with the two tool
    notebooks executed on it."""
    work = tmp_path_factory.mktemp("notebooks")
    repo = tiny_pipeline.repo
    for entry in (repo / "data").iterdir():
        if entry.name not in ("executed", ".gitkeep"):
            (work / entry.name).symlink_to(entry)
    for name in ("figures", "metrics"):
        (work / name).symlink_to(repo / name)
    (work / "executed").mkdir()
    for notebook in (repo / "data" / "executed").iterdir():
        (work / "executed" / notebook.name).symlink_to(notebook)
    for name, paths in TOOLS:
        parameters = {k: str(work / v) for k, v in paths.items()}
        if paths:
            parameters["params_file"] = str(root / "profiles" / "tiny.yaml")
        pm.execute_notebook(root / "notebooks" / f"{name}.ipynb",
                            work / "executed" / f"{name}.ipynb",
                            parameters=parameters, cwd=str(root), progress_bar=False,
                            kernel_name="python3")
    return work


def test_every_stage_notebook_was_executed(executed):
    for name, _ in STAGES:
        assert (executed / "executed" / f"{Path(name).name}.ipynb").is_file(), name


def test_every_notebook_has_a_parameters_cell(root):
    for name, _ in STAGES + TOOLS[1:]:  # the index notebook has no parameters
        cells = json.loads((root / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, name
        assert 'params_file = "params.yaml"' in "".join(tagged[0]["source"])
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), name


def test_analysis_set_holds_runs_and_reference_points(executed):
    index = pd.read_parquet(executed / "predictions" / "index.parquet")
    counts = index["kind"].value_counts()
    assert counts["ignorance"] == 1 and counts["truth"] == 1 and counts["geodesic"] == 20
    runs = index[index["kind"] == "run"]
    assert runs["run_id"].nunique() == 16  # tiny grid: 4 archs x 2 optimizers x 2 seeds
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


def figure_outputs(dvc_yaml: Path) -> list[str]:
    """File names of every figure that dvc.yaml's stages write under figures/."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return sorted(Path(o).name for stage in stages.values() for o in stage.get("outs", [])
                  if isinstance(o, str) and o.startswith("figures/"))


def test_figures_are_written(executed):
    expected = figure_outputs(ROOT / "dvc.yaml")
    assert len(expected) >= 2 * 14 + 2  # every figure stage: pdf and png; two html pages
    written = sorted(p.name for p in (executed / "figures").iterdir() if p.name != ".gitkeep")
    assert written == expected
    for name in expected:
        if name.endswith((".pdf", ".png")):
            assert (executed / "figures" / name).stat().st_size > 5_000, name


def test_trajectory_metrics(executed):
    metrics = json.loads((executed / "metrics" / "trajectories.json").read_text())
    assert set(metrics) == {"train", "test", "outliers"}  # outliers: one count for both spaces
    for space in (metrics["train"], metrics["test"]):
        assert space["tube_width_median_at_0.5"] >= 0
        assert space["between_within_arch_ratio"] > 0


def test_trajectory_products(executed):
    directory = executed / "trajectories"
    table = pd.read_parquet(directory / "train_table.parquet")
    tensor = np.load(directory / "train_tensor.npy")
    assert tensor.shape == (100, len(table), len(table))
    np.testing.assert_allclose(tensor, tensor.transpose(0, 2, 1))
    assert list(table["kind"].unique()) == ["run", "average", "geodesic"]
    # Each configuration's average is built from its trained seeds.
    runs = table[table["kind"] == "run"]
    averages = table[table["kind"] == "average"].set_index("config")
    assert (runs.groupby("config").size() == averages["seeds"]).all()
    progress = pd.read_parquet(directory / "progress.parquet")
    index = pd.read_parquet(executed / "predictions" / "index.parquet")
    for kind, expected in (("ignorance", 0.0), ("truth", 1.0)):
        row = index.index[index["kind"] == kind][0]
        assert progress.loc[row, "train_progress"] == expected


def test_index_notebook_shows_the_pipeline(executed):
    nb = json.loads((executed / "executed" / "00_index.ipynb").read_text())
    shown = "".join("".join(o.get("data", {}).get("text/markdown", ""))
                    for c in nb["cells"] for o in c.get("outputs", []))
    assert "flowchart" in shown  # the mermaid DAG from `dvc dag --md`
    for stage in ("data", "train", "predictions", "distances", "embedding", "fig02_embedding"):
        assert f"| {stage} |" in shown
    assert "[notebooks/10_data.ipynb](10_data.ipynb)" in shown


def test_place_a_model_places_a_new_run(executed):
    nb = json.loads((executed / "executed" / "90_place_a_model.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    # the demonstration: the tiny grid's first run (fc, sgdn) with a seed the grid never used
    assert "checkpoints of new run fc, sgdn, seed 1043" in text  # max(grid.seed) + 1000
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.parametrize("space", ["train", "test"])
def test_interactive_page_renders_offline(executed, space):
    from lowdim.tools.browser import find_chromium, render

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


def test_special_study_products(executed):
    from lowdim.geometry.centroids import AVERAGING_METHODS

    index = pd.read_parquet(executed / "predictions" / "index.parquet")
    # Averaging: runs, P0 and P*, then six averages of K checkpoints, embedded together.
    points = pd.read_parquet(executed / "studies" / "averaging" / "points.parquet")
    k = points["checkpoint"][points["kind"] == "average"].max() + 1
    assert len(points) == (index["kind"] != "geodesic").sum() + len(AVERAGING_METHODS) * k
    with np.load(executed / "studies" / "averaging" / "train_embedding.npz") as z:
        assert z["coords"].shape[0] == len(points)
    averaging = json.loads((executed / "metrics" / "averaging.json").read_text())
    assert set(averaging["test"]) == set(AVERAGING_METHODS)
    # Tangents: explained distance of the basis on at most its three axes, true InPCA on more.
    explained = pd.read_parquet(executed / "studies" / "tangents" / "explained.parquet")
    assert explained.groupby(["space", "method"])["k"].max().to_dict() == {
        (s, m): k for s in ("train", "test") for m, k in (("tangent basis", 3), ("true InPCA", 8))}
    assert explained["explained"].between(-1, 1).all()
    # Joint: the union-of-samples embedding keeps one point per row of the index.
    joint = json.loads((executed / "metrics" / "joint.json").read_text())
    assert joint["samples"] == {"train": 60, "test": 45}  # tiny: 120 and 90 samples, step 2
    for name in ("bhattacharyya_joint", "euclidean_train", "euclidean_joint"):
        assert 0 < joint["explained_stress"][name]["explained_stress_1"] <= 1
    with np.load(executed / "studies" / "joint" / "bhattacharyya_joint.npz") as z:
        assert z["coords"].shape[0] == len(index)


def test_figure16_without_a_size_pair_writes_its_outs(root, tmp_path):
    # `trajectories.size_pair: null` skips the comparison; both stages' declared outs still exist
    # (a figure that says no pair was configured, metrics that say it is off) and nothing of the
    # pipeline is read
    missing = str(tmp_path / "missing")
    metrics = tmp_path / "larger.json"
    pm.execute_notebook(root / "notebooks" / "64_larger.ipynb", tmp_path / "larger.ipynb",
                        cwd=str(root), progress_bar=False, kernel_name="python3",
                        parameters={"params_file": str(root / "profiles" / "tiny.yaml"),
                                    "overrides": {"trajectories": {"size_pair": None}},
                                    "predictions_dir": missing, "trajectories_dir": missing,
                                    "metrics_file": str(metrics)})
    assert json.loads(metrics.read_text()) == {"enabled": False}
    pm.execute_notebook(root / "notebooks" / "figures" / "fig16_larger_networks.ipynb",
                        tmp_path / "fig16.ipynb", cwd=str(root), progress_bar=False,
                        kernel_name="python3",
                        parameters={"params_file": str(root / "profiles" / "tiny.yaml"),
                                    "overrides": {"trajectories": {"size_pair": None}},
                                    "predictions_dir": missing, "embedding_dir": missing,
                                    "trajectories_dir": missing, "figures_dir": str(tmp_path)})
    for ext in ("pdf", "png"):
        assert (tmp_path / f"fig16_larger_networks.{ext}").stat().st_size > 1_000
    nb = json.loads((tmp_path / "larger.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "the size comparison is skipped" in text


def test_the_data_stage_trains_on_the_configured_subset(root, tmp_path):
    # data.train_size reaches the data stage: a balanced subset, the "train" space inside it
    pm.execute_notebook(root / "notebooks" / "10_data.ipynb", tmp_path / "10_data.ipynb",
                        cwd=str(root), progress_bar=False, kernel_name="python3",
                        parameters={"params_file": str(root / "profiles" / "tiny.yaml"),
                                    "overrides": {"data": {"train_size": 40}},
                                    "prepared_dir": str(tmp_path / "prepared")})
    prepared = load_prepared(tmp_path / "prepared")
    assert np.bincount(prepared.train_labels).tolist() == [4] * 10
    assert prepared.eval_train_index.max() < 40
