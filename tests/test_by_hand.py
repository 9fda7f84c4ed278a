"""Notebooks opened by hand are safe: with their defaults they read the active params.yaml and the
pipeline's products, and write only under scratch/ (ignored by git and DVC), so running one top to
bottom never overwrites, deletes or stales a tracked product."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import papermill as pm
import pytest
from conftest import ROOT, copy_pipeline, run_command

from lowdim.tools.stage_deps import (
    PATH_PARAMETER,
    load_stages,
    out_paths,
    stage_module,
    stage_notebook,
)

STAGES = load_stages(ROOT)
# the stages that run a notebook (`results` runs a module and has no notebook to open by hand)
NOTEBOOK_STAGES = sorted(name for name, stage in STAGES.items() if stage_module(stage) is None)
BY_HAND = ("notebooks/20_train.ipynb", "notebooks/40_distances.ipynb",
           "notebooks/figures/fig02_embedding.ipynb")
DEFAULT = re.compile(r'^(\w+) = "([^"]*)"', re.M)


def parameter_defaults(notebook: Path) -> dict[str, str]:
    """The string defaults of a notebook's `parameters` cell."""
    cells = json.loads(notebook.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    return dict(DEFAULT.findall("".join(cell["source"])))


def inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@pytest.mark.parametrize("name", NOTEBOOK_STAGES)
def test_defaults_read_the_active_profile_and_write_only_scratch(name):
    stage = STAGES[name]
    defaults = parameter_defaults(ROOT / stage_notebook(stage))
    passed = dict(PATH_PARAMETER.findall(stage["cmd"]))
    outs = out_paths(stage)
    assert defaults["params_file"] == "params.yaml"
    for key, value in passed.items():
        if inside(value, outs):  # an output: the stage passes it, a run by hand goes to scratch
            assert defaults.get(key) == f"scratch/{value}", (name, key)


def test_scratch_is_ignored_by_git_and_dvc():
    assert "scratch/" in (ROOT / ".gitignore").read_text().split()
    assert "scratch/" in (ROOT / ".dvcignore").read_text().split()


def tracked_bytes(repo: Path) -> dict[str, str]:
    """md5 of every file under data/ (but the block cache), figures/ and metrics/."""
    files = [p for top in ("data", "figures", "metrics") for p in (repo / top).rglob("*")
             if p.is_file() and "cache" not in p.relative_to(repo).parts]
    return {p.relative_to(repo).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in files}


@pytest.mark.slow
def test_notebooks_run_by_hand_leave_every_product_as_it_was(tiny_pipeline, tmp_path_factory):
    repo = copy_pipeline(tiny_pipeline, tmp_path_factory.mktemp("by_hand") / "repo")
    executed = tmp_path_factory.mktemp("by_hand_executed")
    before = tracked_bytes(repo)
    for notebook in BY_HAND:
        pm.execute_notebook(repo / notebook, executed / Path(notebook).name,
                            cwd=str(repo), kernel_name="python3", progress_bar=False)
    assert tracked_bytes(repo) == before
    status = run_command(["dvc", "status"], repo)
    assert "Data and pipelines are up to date" in status.stdout + status.stderr
    # they did their work, in scratch/
    assert sorted(p.name for p in (repo / "scratch" / "data" / "runs").iterdir()) == sorted(
        p.name for p in (repo / "data" / "runs").iterdir())
    assert (repo / "scratch" / "data" / "distances" / "train.npy").is_file()
    assert (repo / "scratch" / "figures" / "fig02_embedding.png").is_file()
