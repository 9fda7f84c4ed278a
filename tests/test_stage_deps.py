"""Every DVC stage's deps cover exactly the code it runs, so no product can silently go stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lowdim.tools.stage_deps import (
    code_closure,
    dep_paths,
    import_closure,
    linked_stages,
    load_stages,
    loaded_sections,
    minimal_code_deps,
    missing_code_deps,
    needless_code_deps,
    params_mismatch,
    params_read_mismatch,
    rewrite_code_deps,
    stage_module,
    unread_inputs,
)

ROOT = Path(__file__).resolve().parents[1]
STAGES = load_stages(ROOT)
# Passed to the notebook but deliberately not a dep: a cache whose contents never change results.
NOT_INPUTS = {"cache_dir", "archive_dir"}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    """src/lowdim with relative, lazy, dynamic and sub-package imports, and one unused module."""
    pkg = tmp_path / "src" / "lowdim"
    write(pkg / "__init__.py", "")
    write(pkg / "a.py", "from .b import f\n")
    write(pkg / "b.py", "def f():\n    from lowdim import c\n    return c\n")
    write(pkg / "c.py", "import importlib\nK = importlib.import_module('lowdim.sub.k')\n")
    write(pkg / "sub" / "__init__.py", "from . import j\n")
    write(pkg / "sub" / "j.py", "from ..d import x\n")
    write(pkg / "sub" / "k.py", "")
    write(pkg / "d.py", "x = 1\n")
    write(pkg / "unused.py", "import lowdim.a\n")
    return tmp_path


def test_closure_follows_relative_lazy_dynamic_and_package_imports(fake_package: Path):
    files = import_closure("import numpy\nfrom lowdim.a import f\n", fake_package / "src")
    names = {path.relative_to(fake_package / "src" / "lowdim").as_posix() for path in files}
    assert names == {"__init__.py", "a.py", "b.py", "c.py", "sub/__init__.py", "sub/j.py",
                     "sub/k.py", "d.py"}


def test_closure_of_a_notebook_includes_the_notebook_and_drops_magics(fake_package: Path):
    cells = [{"cell_type": "markdown", "source": ["import lowdim.unused"]},
             {"cell_type": "code", "source": ["%matplotlib inline\n", "import lowdim.d\n"]}]
    write(fake_package / "notebooks" / "n.ipynb", json.dumps({"cells": cells}))
    stage = {"cmd": "papermill notebooks/n.ipynb out.ipynb"}
    assert code_closure(stage, fake_package) == {
        "notebooks/n.ipynb", "src/lowdim/__init__.py", "src/lowdim/d.py"}
    assert minimal_code_deps(stage, fake_package) == ["src/lowdim/__init__.py",
                                                      "src/lowdim/d.py"]


def test_closure_of_a_module_stage_is_the_module_and_what_it_imports(fake_package: Path):
    stage = {"cmd": "python -m lowdim.a --out docs/x.md"}  # a stage that runs no notebook
    assert stage_module(stage) == "lowdim.a"
    assert code_closure(stage, fake_package) == {
        "src/lowdim/__init__.py", "src/lowdim/a.py", "src/lowdim/b.py", "src/lowdim/c.py",
        "src/lowdim/d.py", "src/lowdim/sub/__init__.py", "src/lowdim/sub/j.py",
        "src/lowdim/sub/k.py"}
    assert minimal_code_deps(stage, fake_package) == [
        "src/lowdim/__init__.py", "src/lowdim/a.py", "src/lowdim/b.py", "src/lowdim/c.py",
        "src/lowdim/d.py", "src/lowdim/sub"]
    assert params_mismatch(stage, fake_package) == []  # it loads no section, declares none
    assert stage_module({"cmd": "papermill notebooks/n.ipynb out.ipynb"}) is None
    with pytest.raises(ValueError, match="runs no notebook and no `python -m lowdim"):
        code_closure({"cmd": "python other.py"}, fake_package)


def test_imports_under_type_checking_are_not_in_the_closure(fake_package: Path):
    write(fake_package / "src" / "lowdim" / "e.py",
          "from typing import TYPE_CHECKING\nimport typing\nif TYPE_CHECKING:\n"
          "    from lowdim import c\nelse:\n    from lowdim import d\n"
          "if typing.TYPE_CHECKING:\n    import lowdim.unused\n")
    files = import_closure("import lowdim.e\n", fake_package / "src")
    names = {path.name for path in files}
    assert names == {"__init__.py", "e.py", "d.py"}


def test_a_folder_is_listed_only_when_the_closure_holds_all_of_it(fake_package: Path):
    write(fake_package / "src" / "lowdim" / "part" / "__init__.py", "")
    write(fake_package / "src" / "lowdim" / "part" / "used.py", "")
    write(fake_package / "src" / "lowdim" / "part" / "other.py", "")
    cells = [{"cell_type": "code", "source": ["import lowdim.part.used\nimport lowdim.sub.k\n"]}]
    write(fake_package / "notebooks" / "n.ipynb", json.dumps({"cells": cells}))
    stage = {"cmd": "papermill notebooks/n.ipynb out.ipynb"}
    # sub/'s three files all run (and d.py, through j.py); part/other.py never does
    assert minimal_code_deps(stage, fake_package) == [
        "src/lowdim/__init__.py", "src/lowdim/d.py", "src/lowdim/part/__init__.py",
        "src/lowdim/part/used.py", "src/lowdim/sub"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_file_it_runs(name: str):
    missing = missing_code_deps(STAGES[name], ROOT)
    assert not missing, (f"stage {name} runs {missing} without listing them in its deps: "
                         "run `python -m lowdim.tools.stage_deps --write`")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_no_code_it_does_not_run(name: str):
    assert not needless_code_deps(STAGES[name], ROOT), f"stage {name} reruns for code it never runs"


def test_removing_any_one_code_dep_of_any_stage_is_caught():
    uncaught = []
    for name, stage in STAGES.items():
        deps = dep_paths(stage)
        for dep in deps:
            if dep.startswith(("src/", "notebooks/")):
                fewer = [other for other in deps if other != dep]
                if not missing_code_deps(stage, ROOT, fewer):
                    uncaught.append(f"{name}: {dep}")
    assert not uncaught, f"deleting these deps would go unnoticed: {uncaught}"


def test_stage_missing_the_eigensolver_is_reported():
    stage = dict(STAGES["trajectories"])
    stage["deps"] = [dep for dep in dep_paths(stage) if dep != "src/lowdim/geometry/eigen.py"]
    assert "src/lowdim/geometry/eigen.py" in missing_code_deps(stage, ROOT)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_input_path_passed_to_a_notebook_is_a_dep(name: str):
    assert not unread_inputs(STAGES[name], NOT_INPUTS)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_name_exactly_the_sections_its_notebook_loads(name: str):
    assert not params_mismatch(STAGES[name], ROOT), (
        f"stage {name}: {params_mismatch(STAGES[name], ROOT)}")


@pytest.fixture
def fake_config(fake_package: Path) -> Path:
    """A config package with a top-level section and a nested one, and a loader."""
    config = fake_package / "src" / "lowdim" / "config"
    write(config / "__init__.py", "")
    write(config / "load.py", "def load(path, overrides, *sections):\n    pass\n")
    write(config / "figures.py", 'class FiguresConfig:\n    SECTION = "figures"\n')
    write(config / "studies" / "__init__.py", "")
    write(config / "studies" / "joint.py",
          'class JointConfig:\n    SECTION = "studies.joint"\n\n\ndef check_with():\n    pass\n')
    return fake_package


def _stage(root: Path, source: str, params: list) -> dict:
    write(root / "notebooks" / "n.ipynb", json.dumps({"cells": [
        {"cell_type": "code", "source": [source]}]}))
    return {"cmd": "papermill notebooks/n.ipynb out.ipynb", "params": params}


LOADS_BOTH = ("from lowdim.config.figures import FiguresConfig\n"
              "from lowdim.config.load import load\n"
              "from lowdim.config.studies.joint import JointConfig as Joint, check_with\n"
              "figures, joint = load('params.yaml', {}, FiguresConfig, Joint)\n")


def test_the_loaded_sections_are_the_classes_passed_to_load(fake_config: Path):
    src = fake_config / "src"
    assert loaded_sections(LOADS_BOTH, src) == {"figures", "studies.joint"}
    assert loaded_sections("from lowdim.config.figures import FiguresConfig\n", src) == set()
    with pytest.raises(ValueError, match="argument SECTIONS is not a section class"):
        loaded_sections("from lowdim.config.load import load\nload(p, {}, SECTIONS)\n", src)


def test_params_must_cover_each_loaded_section_and_lie_in_one(fake_config: Path):
    exact = _stage(fake_config, LOADS_BOTH, ["figures.dpi", "studies.joint"])
    assert params_mismatch(exact, fake_config) == []
    missing = _stage(fake_config, LOADS_BOTH, ["figures"])
    assert params_mismatch(missing, fake_config) == [
        "loads studies.joint, but its params name nothing of it"]
    extra = _stage(fake_config, LOADS_BOTH, ["figures", "studies", "grid.arch",
                                             {"params.yaml": ["figures.formats"]}])
    assert params_mismatch(extra, fake_config) == [
        "loads studies.joint, but its params name nothing of it",
        "params entry studies lies in no section it loads (figures, studies.joint)",
        "params entry grid.arch lies in no section it loads (figures, studies.joint)"]


def test_the_size_pair_is_read_by_its_two_stages_alone_and_a_dropped_section_is_caught():
    readers = {name for name, stage in STAGES.items()
               if "trajectories.size_pair" in stage.get("params", [])}
    assert readers == {"larger", "fig16_larger_networks"}
    stage = dict(STAGES["fig02_embedding"], params=[])
    assert params_mismatch(stage, ROOT) == ["loads figures, but its params name nothing of it"]


def test_rewrite_is_a_fixed_point_of_the_committed_dvc_yaml():
    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite_code_deps(text, ROOT) == text


def test_params_read_mismatch_finds_unread_and_undeclared_keys():
    declared = ["figures", "trajectories.size_pair"]
    read = {"figures.formats", "figures.dpi", "trajectories.size_pair"}
    assert params_read_mismatch(declared, read) == []
    # a declared key removed: the stage still reads it, and no entry holds it
    assert params_read_mismatch(["figures"], read) == [
        "reads trajectories.size_pair, which no params entry holds"]
    # an undeclared key read
    assert params_read_mismatch(declared, read | {"trajectories.seed", "figures_x.dpi"}) == [
        "reads figures_x.dpi, which no params entry holds",
        "reads trajectories.seed, which no params entry holds"]
    # a declared entry never read
    assert params_read_mismatch([*declared, "trajectories.seed"], read) == [
        "declares trajectories.seed, but reads nothing of it"]
    # whole sections hold nested keys and mapping keys; exempt keys need no entry
    assert params_read_mismatch(["train.ray", "models"], {"train.ray.num_gpus", "models.fc",
                                                          "train.workers"},
                                exempt=["train.workers"]) == []
    # a mapping read whole (iterated) is more than one of its keys
    assert params_read_mismatch(["models.fc"], {"models"}) == [
        "reads models, which no params entry holds"]


def test_linked_stages_follow_outputs_into_folders_both_ways():
    stages = {"data": {"deps": ["raw"], "outs": ["data/prepared"]},
              "train": {"deps": ["data/prepared/meta.json"], "outs": ["data/runs"]},
              "figure": {"deps": ["data/runs"], "outs": ["figures/a.png"],
                         "metrics": [{"metrics/a.json": {"cache": False}}]},
              "page": {"deps": ["metrics"], "outs": ["docs/page.md"]},
              "other": {"deps": ["data/prepared"], "outs": ["data/other"]}}
    assert linked_stages(stages, ["figure"], upstream=True) == {"figure", "train", "data"}
    assert linked_stages(stages, ["train"], upstream=False) == {"train", "figure", "page"}
    assert linked_stages(stages, ["data"], upstream=False) == set(stages)  # a file in a folder
    assert linked_stages(stages, ["page", "other"], upstream=True) == set(stages)
