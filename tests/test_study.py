"""`python -m lowdim.tools.study`: another profile's whole pipeline in a private copy, its
products kept in results/<label>/ for the results page. The pure pieces are tested here on
their own; the Fashion-MNIST profile runs end to end on a tiny subset (CI installs Debian's
dataset-fashion-mnist)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, copy_repository, run_command

from lowdim.tools import study
from lowdim.tools.results import default_profiles, read_paper, render_page
from lowdim.tools.stage_deps import linked_stages, load_stages

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY_OVERRIDES = ROOT / "tests" / "studies" / "fashion-mnist-tiny.yaml"


def test_overrides_merge_section_by_section_and_replace_lists():
    profile = {"data": {"dataset": "fashion-mnist", "train_size": None},
               "grid": {"arch": ["fc", "vit"], "seed": [1, 2, 3]}}
    merged = study.study_params(profile, [{"grid": {"arch": ["fc"]}},
                                          study.parse_assignment("data.train_size=600")])
    assert merged == {"data": {"dataset": "fashion-mnist", "train_size": 600},
                      "grid": {"arch": ["fc"], "seed": [1, 2, 3]}}
    assert profile["grid"]["arch"] == ["fc", "vit"]  # the profile itself is untouched


def test_assignments_read_their_values_as_yaml():
    assert study.parse_assignment("grid.seed=[42, 43]") == {"grid": {"seed": [42, 43]}}
    assert study.parse_assignment("trajectories.size_pair=null") == {
        "trajectories": {"size_pair": None}}
    assert study.parse_assignment("a.b.c=0.5") == {"a": {"b": {"c": 0.5}}}


@pytest.mark.parametrize("text", ["train_size", "data..x=1", "=3"])
def test_a_malformed_assignment_says_how_to_write_it(text):
    with pytest.raises(ValueError, match="section.key=value"):
        study.parse_assignment(text)


def test_an_override_that_is_not_a_mapping_is_refused():
    with pytest.raises(ValueError, match="mapping of sections"):
        study.study_params({"data": {}}, [["data"]])


def test_unknown_profiles_and_unsafe_labels_are_refused():
    with pytest.raises(FileNotFoundError, match="known: .*fashion-mnist"):
        study.profile_path(ROOT, "fashion")
    assert study.profile_path(ROOT, "quick") == ROOT / "profiles" / "quick.yaml"
    for label in ("../quick", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="letters, digits"):
            study.check_label(label)


def test_unknown_stages_are_refused_with_the_list_of_stages():
    assert study.check_stages(ROOT, ["embedding", "corners"]) == ["embedding", "corners"]
    with pytest.raises(SystemExit, match=r"--stage embeding: no such stage in dvc.yaml; the "
                                         r"stages are data, train, "):
        study.check_stages(ROOT, ["embedding", "embeding"])


def test_stage_outcomes_separate_run_from_restored_stages():
    output = ("Stage 'data' is cached - skipping run, checking out outputs\n"
              "Running stage 'train':\n> papermill ...\n"
              "Stage 'predictions' didn't change, skipping\n"
              "Running stage 'fig02_embedding':\n")
    assert study.stage_outcomes(output) == {"ran": ["train", "fig02_embedding"],
                                            "cached": ["data"]}


def _fake_workdir(path: Path, metrics: bool = True) -> Path:
    (path / "metrics").mkdir(parents=True)
    (path / "figures").mkdir()
    if metrics:
        (path / "metrics" / "embedding.json").write_text('{"train": {"explained_stress_1": 0.5}}')
    (path / "figures" / "fig02_embedding.png").write_bytes(b"png")
    (path / "figures" / "fig02_embedding.pdf").write_bytes(b"pdf")
    (path / "params.yaml").write_text("profile: x\n")
    return path


def test_collect_replaces_the_results_and_keeps_pngs_metrics_params_and_record(tmp_path):
    dest = tmp_path / "results" / "x"
    (dest / "metrics").mkdir(parents=True)
    (dest / "metrics" / "stale.json").write_text("{}")
    written = study.collect(_fake_workdir(tmp_path / "work"), dest, {"wall_seconds": 1.0})
    assert written == ["figures/fig02_embedding.png", "metrics/embedding.json", "params.yaml",
                       "run.json"]
    assert json.loads((dest / "run.json").read_text()) == {"wall_seconds": 1.0}
    assert not list(tmp_path.joinpath("results").glob(".*partial"))


def test_collect_without_metrics_fails_and_leaves_the_previous_results(tmp_path):
    dest = tmp_path / "results" / "x"
    (dest / "metrics").mkdir(parents=True)
    (dest / "metrics" / "embedding.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no \\*.json"):
        study.collect(_fake_workdir(tmp_path / "work", metrics=False), dest, {})
    assert (dest / "metrics" / "embedding.json").read_text() == "{}"


def test_the_copy_leaves_out_the_active_profiles_metrics_and_figures(tmp_path):
    # a stage the study does not run must not leave the active profile's numbers in its results
    root = tmp_path / "root"
    files = ["metrics/embedding.json", "metrics/tolerances.yaml", "figures/fig02.png",
             "figures/.gitkeep", "src/lowdim/x.py", "dvc.yaml", "dvc.lock"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    run_command(["git", "init", "-q"], root)
    run_command(["git", "add", "-A"], root)
    study.make_workdir(root, tmp_path / "work", {"profile": "x"})
    copied = {p.relative_to(tmp_path / "work").as_posix()
              for p in (tmp_path / "work").rglob("*") if p.is_file() and ".git/" not in str(p)}
    assert copied == {"metrics/tolerances.yaml", "figures/.gitkeep", "src/lowdim/x.py",
                      "dvc.yaml", "params.yaml"}


def test_the_copy_imports_its_own_sources(tmp_path):
    env = study.study_env(tmp_path)
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path / "src")


# The dataset's own path through the pipeline: the data, the grid's training, the embedding, the
# trajectories, the corner study (it trains on the dataset too) and the main figure. The other
# stages read only these stages' products, whatever the dataset; the tiny pipeline runs them all.
FASHION_TARGETS = ["fig02_embedding", "trajectories", "corners"]


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason=f"{DEBIAN_FASHION} is absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_profile_runs_end_to_end_on_a_tiny_subset(tmp_path):
    repo = copy_repository(ROOT, tmp_path / "repo", profile="quick")
    done = run_command(["python", "-m", "lowdim.tools.study", "fashion-mnist", "--label", "fm",
                        "--overrides", str(TINY_OVERRIDES), "--own-cache",
                        *(f"--stage={name}" for name in FASHION_TARGETS)], repo)
    out = repo / "results" / "fm"
    record = json.loads((out / "run.json").read_text())
    # own cache: the targets and everything they read computed, nothing else
    assert set(record["stages"]["ran"]) == linked_stages(load_stages(repo), FASHION_TARGETS,
                                                         upstream=True)
    assert {"data", "train", "distances", "embedding"} <= set(record["stages"]["ran"])
    assert record["targets"] == FASHION_TARGETS
    assert record["wall_seconds"] > 0 and "fashion-mnist" in done.stdout

    # The profile ran, with the overrides: Fashion-MNIST's 28x28 images, a balanced subset.
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params["data"]["dataset"] == "fashion-mnist"
    assert params["grid"]["optimizer"] == ["sgdn", "adam"]  # the profile's factors kept
    assert params["grid"]["arch"] == ["fc", "allcnn"]
    prepared = repo / "scratch" / "studies" / "fm" / "data" / "prepared"
    images = np.load(prepared / "train_images.npy", mmap_mode="r")
    labels = np.load(prepared / "train_labels.npy")
    assert images.shape[1:] in {(28, 28), (1, 28, 28), (28, 28, 1)}
    assert len(labels) == 200 and set(np.bincount(labels)) == {20}

    # The figure and every metrics file of the stages that ran came back.
    assert {p.stem for p in (out / "figures").glob("*.png")} == {"fig02_embedding"}
    kept = {p.name for p in (out / "metrics").glob("*.json")}
    assert kept == {"embedding.json", "trajectories.json", "corners.json"}
    embedding = json.loads((out / "metrics" / "embedding.json").read_text())
    chis = [embedding["train"][f"explained_stress_{k}"] for k in (1, 2, 3, 10)]
    assert chis == sorted(chis) and 0 < chis[0] <= chis[-1] <= 1 + 1e-9

    # The results page puts it beside the active profile's metrics.
    profiles = default_profiles(repo, ["quick=metrics", "fm=results/fm/metrics"])
    page = render_page(profiles, read_paper(repo / "docs" / "paper_values.yaml"))
    assert "## Profile `quick`" in page and "## Profile `fm`" in page
