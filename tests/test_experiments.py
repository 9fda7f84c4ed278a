"""DVC experiments on the tiny pipeline (a private copy of the session's shared run): a parameter
change plans exactly the stages that declare it (which test_pipeline checks are the stages that
read it), `dvc exp run -S` reruns those and what depends on their outputs, and `dvc exp show`,
`dvc params diff` and `dvc metrics diff` show the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import copy_pipeline, run_command, stages_reading, stages_run

from lowdim.tools.stage_deps import linked_stages, load_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tiny_pipeline, tmp_path_factory) -> Path:
    """A private copy of the session's tiny pipeline: a git repository with its results
    committed, which is all `dvc exp run` needs (in the workspace, no --temp or --queue)."""
    return copy_pipeline(tiny_pipeline, tmp_path_factory.mktemp("experiments") / "repo")


def _output(cmd: list[str], repo: Path) -> str:
    done = run_command(cmd, repo)
    return done.stdout + done.stderr


def downstream(repo: Path, names: set[str]) -> set[str]:
    """The stages that read, directly or not, an output of the stages `names` (not those)."""
    return linked_stages(load_stages(repo), names, upstream=False) - names


@pytest.mark.parametrize("key, value", [("figures.dpi", 90), ("embedding.n_components", 5)])
def test_a_parameter_plans_the_stages_that_declare_it(repo, key, value):
    # what `dvc exp run -S key=value` would run first: the stages whose params hold the key
    # (`dvc exp run --dry` runs in a temporary copy without the workspace's data, so the plan is
    # `dvc repro --dry`'s on the same edit); the stages downstream rerun when an output changes
    params = yaml.safe_load((repo / "params.yaml").read_text())
    section, name = key.rsplit(".", 1)
    params[section][name] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        planned = stages_run(_output(["dvc", "repro", "--dry"], repo))
    finally:
        run_command(["git", "checkout", "--", "params.yaml"], repo)
    assert planned == stages_reading(repo / "dvc.yaml", key)
    if key == "figures.dpi":
        assert all(s.startswith("fig") for s in planned) and not downstream(repo, planned)
    else:
        # intervals re-embeds each resample with the embedding settings
        assert planned == {"embedding", "corners", "synthetic", "averaging", "joint_embedding",
                           "intervals"}
        assert {"fig02_embedding", "figS01_spectrum", "fig06_joint_embedding",
                "figS05_averaging"} <= downstream(repo, planned)


def test_exp_run_reruns_the_readers_and_shows_the_change(repo):
    # one real, cheap experiment: the tangent study (two stages, about 30 s on 2 cores)
    key, old, new = "studies.tangents.width", 0.05, 0.1
    ran = stages_run(_output(["dvc", "exp", "run", "-S", f"{key}={new}"], repo))
    readers = stages_reading(repo / "dvc.yaml", key)
    assert readers == {"tangents"}
    assert ran == readers | downstream(repo, readers) == {"tangents", "fig10_tangent_basis",
                                                         "results"}
    assert "Data and pipelines are up to date" in _output(["dvc", "status"], repo)

    params = json.loads(run_command(["dvc", "params", "diff", "--json"], repo).stdout)
    assert list(params) == ["params.yaml"] and list(params["params.yaml"]) == [key]
    assert (params["params.yaml"][key]["old"], params["params.yaml"][key]["new"]) == (old, new)
    metrics = json.loads(run_command(["dvc", "metrics", "diff", "--json"], repo).stdout)
    assert set(metrics) == {"metrics/tangents.json"}  # no other stage's metrics moved
    moved = metrics["metrics/tangents.json"]["train.direction_cosine"]
    assert moved["old"] != moved["new"]

    rows = json.loads(run_command(["dvc", "exp", "show", "--json"], repo).stdout)
    baseline = next(row for row in rows if row["rev"] != "workspace")
    (experiment,) = baseline["experiments"]
    data = experiment["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["studies"]["tangents"]["width"] == new
    shown = data["metrics"]["metrics/tangents.json"]["data"]["train"]["direction_cosine"]
    assert shown == moved["new"]
