"""The special studies share one shape: a `run_<study>` each, thin notebooks (no code cell over 15
lines), products under data/studies/<study>/, metrics/<study>.json, the `studies.<study>` section,
and the configured distance and InPCA settings (lowdim.studies.common)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import yaml

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.load import load
from lowdim.geometry.distances import DistanceSettings
from lowdim.studies.common import distance_options, embed

# study -> (notebook, its dvc stage, the notebook parameter naming its products directory)
STUDIES = {
    "corners": ("70_corners", "corners", "corners_dir"),
    "synthetic": ("75_synthetic", "synthetic", "synthetic_dir"),
    "averaging": ("80_averaging", "averaging", "averaging_dir"),
    "tangents": ("82_tangents", "tangents", "tangents_dir"),
    "joint": ("84_joint_embedding", "joint_embedding", "joint_dir"),
}
MAX_CELL_LINES = 15


def _cells(root, notebook):
    return json.loads((root / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]


@pytest.mark.parametrize("study", STUDIES)
def test_notebook_is_thin_and_calls_its_run_function(root, study):
    notebook, _, directory = STUDIES[study]
    cells = _cells(root, notebook)
    code = [c for c in cells if c["cell_type"] == "code"]
    long = {i: len("".join(c["source"]).splitlines()) for i, c in enumerate(code)
            if len("".join(c["source"]).splitlines()) > MAX_CELL_LINES}
    assert not long, f"{notebook}: code cells longer than {MAX_CELL_LINES} lines: {long}"
    assert cells[0]["cell_type"] == "markdown" and cells[0]["source"][0].startswith("# ")
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert 'params_file = "params.yaml"' in source  # the active profile (test_by_hand.py)
    assert f'{directory} = "scratch/data/studies/{study}"' in source
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    text = "".join("".join(c["source"]) for c in code)
    assert f"from lowdim.studies.{study} import" in text and f"run_{study}(study" in text
    assert callable(getattr(importlib.import_module(f"lowdim.studies.{study}"), f"run_{study}"))


@pytest.mark.parametrize("study", STUDIES)
def test_stage_writes_under_data_studies_and_lists_the_keys_it_reads(root, study):
    _, stage_name, directory = STUDIES[study]
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage_name]
    assert f"-p {directory} data/studies/{study} " in stage["cmd"] + " "
    assert f"data/studies/{study}" in stage["outs"]
    assert [next(iter(m)) for m in stage["metrics"]] == [f"metrics/{study}.json"]
    params = stage["params"]
    assert f"studies.{study}" in params
    # Settings sections are listed key by key: a whole section would rerun the study for keys
    # it never reads (distances.cache, embedding settings it does not use, train.backend ...).
    assert not {"distances", "embedding", "train", "studies"} & set(params)
    if study != "joint":  # joint computes no Bhattacharyya distance (it reads the stored ones)
        assert {"distances.sample_step", "distances.bc_floor", "distances.method",
                "distances.max_block_mib"} <= set(params)
    assert "embedding.solver" in params


def test_no_stage_reads_the_old_study_paths(root):
    text = (root / "dvc.yaml").read_text()
    for old in ("data/corners", "data/synthetic", "src/lowdim/corners.py",
                "src/lowdim/synthetic_study.py", "src/lowdim/studies.py"):
        assert old not in text


def test_distance_options_follow_the_distances_section(root):
    distances = load(root / "profiles" / "tiny.yaml", {
        "distances": {"method": "reference", "bc_floor": 1e-6, "sample_step": 3,
                      "max_block_mib": 7}}, DistancesConfig)
    assert distance_options(distances, "cpu") == DistanceSettings(
        sample_step=3, bc_floor=1e-6, method="reference", max_block_bytes=7 * 2**20,
        device="cpu")
    assert distance_options(distances, "cpu", all_samples=True) == DistanceSettings(
        sample_step=1, bc_floor=1e-6, method="reference", max_block_bytes=7 * 2**20,
        device="cpu")


def test_embed_follows_the_embedding_section(root):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    dense = load(root / "profiles" / "tiny.yaml", {
        "embedding": {"n_components": 3, "stress_dims": [1, 6], "solver": "dense"}},
                 EmbeddingConfig)
    lanczos = load(root / "profiles" / "tiny.yaml", {
        "embedding": {"n_components": 3, "stress_dims": [1, 6], "solver": "lanczos"}},
                   EmbeddingConfig)
    a, b = embed(d, dense), embed(d, lanczos)
    assert len(a.eigenvalues) == 40 and len(b.eigenvalues) == 6  # max(n_components, stress_dims)
    np.testing.assert_allclose(b.explained_stress[:6], a.explained_stress[:6], atol=1e-8)
    assert embed(d, lanczos, n_components=2).coords.shape == (40, 2)
