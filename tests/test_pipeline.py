"""The pipeline: `dvc repro` of the tiny profile in a temporary copy of the repository (the
session's shared run), then a clean `dvc status` and a second `dvc repro` that runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, copy_pipeline, run_command, stages_reading, stages_run

from lowdim.tools.stage_deps import declared_params, load_stages, params_read, params_read_mismatch

pytestmark = pytest.mark.slow

# Read without a params entry on purpose: how the runs train, never what they write (the same
# bytes either way; docs/parameters.md, `train`), so changing them reruns nothing.
EXECUTION_ONLY = ("train.backend", "train.workers", "train.ray")


def _run(cmd: list[str], cwd: Path) -> str:
    done = run_command(cmd, cwd)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo(tiny_pipeline, tmp_path_factory) -> Path:
    """A private copy of the session's tiny pipeline, committed after its first `dvc repro`."""
    return copy_pipeline(tiny_pipeline, tmp_path_factory.mktemp("pipeline") / "repo")


def test_repro_then_clean_status_then_noop(tiny_pipeline, repo):
    first = tiny_pipeline.output
    for stage in ("data", "train", "predictions", "distances", "embedding", "trajectories",
                  "larger", "intervals", "fig02_embedding", "figS01_spectrum",
                  "fig16_larger_networks"):
        assert f"Running stage '{stage}'" in first
    for product in ("figures/fig02_embedding.pdf", "figures/figS01_spectrum.png",
                    "metrics/embedding.json", "metrics/trajectories.json", "metrics/intervals.json",
                    "data/predictions/index.parquet", "data/trajectories/train_tensor.npy"):
        assert (repo / product).is_file(), product

    status = _run(["dvc", "status"], repo)
    assert "Data and pipelines are up to date" in status

    second = _run(["dvc", "repro"], repo)
    assert "Running stage" not in second
    assert "didn't change, skipping" in second

    assert "train.explained_stress_1" in _run(["dvc", "metrics", "show"], repo)


def test_declared_params_are_the_keys_read(tiny_pipeline):
    # every key each stage read in the session's `dvc repro` (LOWDIM_PARAMS_LOG) against the
    # stage's params in dvc.yaml: each entry read, each key read inside an entry
    read = params_read(tiny_pipeline.params_log)
    stages = load_stages(tiny_pipeline.repo)
    # every stage that declares params read some (`results` declares none and reads none)
    assert set(read) == {name for name, stage in stages.items() if declared_params(stage)}
    problems = {name: params_read_mismatch(declared_params(stage), read.get(name, set()),
                                           EXECUTION_ONLY)
                for name, stage in stages.items()}
    assert not {name: found for name, found in problems.items() if found}


def test_plots_declare_the_figure_images(repo):
    plots = json.loads(run_command(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    for stem in ("fig02_embedding", "figS01_spectrum", "figS02_distance_to_truth"):
        assert plots[f"figures/{stem}.png"][0]["type"] == "image"


def test_figure_parameter_reruns_only_figures(repo):
    params = (repo / "params.yaml").read_text().replace("dpi: 150", "dpi: 90")
    (repo / "params.yaml").write_text(params)
    # DVC's plan (`--dry` decides exactly as a real repro does) is every figure stage and
    # nothing else; test_remote re-renders them all for real from a partial pull.
    planned = stages_run(_run(["dvc", "repro", "--dry"], repo))
    figures = stages_reading(ROOT / "dvc.yaml", "figures")
    assert len(figures) >= 16 and all(name.startswith("fig") for name in figures)
    assert planned == figures
    before = (repo / "figures" / "fig02_embedding.png").read_bytes()
    assert stages_run(_run(["dvc", "repro", "fig02_embedding"], repo)) == {"fig02_embedding"}
    assert (repo / "figures" / "fig02_embedding.png").read_bytes() != before
    # `dvc plots diff` puts the committed and the re-rendered figure side by side.
    diff = json.loads(run_command(["dvc", "plots", "diff", "HEAD", "--json"], repo).stdout)
    revisions = {r for entry in diff["data"]["figures/fig02_embedding.png"]
                 for r in entry["revisions"]}
    assert revisions == {"HEAD", "workspace"}
