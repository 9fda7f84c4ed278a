"""The package's layering rules (lowdim.tools.layering) hold, and each is enforced: adding a
forbidden import to the real import graph, or to a package on disk, is reported. The torch-free
packages are also imported for real in a fresh interpreter, which must not load torch."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lowdim.tools.layering import (
    TORCH_FREE,
    floor_breaks,
    module_cycles,
    package_cycles,
    private_imports,
    read_package,
    torch_at_import,
    violations,
)

ROOT = Path(__file__).resolve().parents[1]
MODULES = read_package(ROOT / "src")

# Runs in a fresh interpreter: imports the modules and prints, for a first import of torch,
# the lowdim lines that led to it.
PROBE = """
import importlib, sys, traceback

class Tracer:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(" <- ".join(f"{f.filename.rsplit('/src/', 1)[-1]}:{f.lineno}"
                              for f in reversed(traceback.extract_stack()[:-1])
                              if "/lowdim/" in f.filename))
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, Tracer())
for name in sys.argv[1:]:
    importlib.import_module(name)
"""


def with_import(name: str, target: str, *, at_load: bool = True) -> dict:
    """The real graph with one more import in module `name`."""
    module = MODULES[name]
    changed = dataclasses.replace(
        module, imports=module.imports | {target},
        imports_at_load=module.imports_at_load | ({target} if at_load else set()))
    return {**MODULES, name: changed}


def test_the_package_keeps_every_layering_rule():
    assert violations(MODULES) == []


def test_the_reader_sees_the_real_edges():
    assert "lowdim.store.records" in MODULES["lowdim.store.runs"].imports
    assert "lowdim.training.ray_backend" in MODULES["lowdim.training.launch"].imports  # lazy
    assert "lowdim.training.ray_backend" not in MODULES["lowdim.training.launch"].imports_at_load
    assert "torch" not in MODULES["lowdim.analysis.placement"].external_at_load  # in `predict`


@pytest.mark.parametrize(("source", "target", "rule"), [
    ("lowdim.store.records", "lowdim.geometry.inpca", "store/ may import only lowdim.paths"),
    ("lowdim.config", "lowdim.store.records", "config/ may import only lowdim.paths"),
    ("lowdim.figures.theme", "lowdim.geometry.centroids", "figures/ may import only"),
    ("lowdim.geometry.eigen", "lowdim.tools.stage_deps", "nothing outside tools/"),
])
def test_a_forbidden_import_is_reported(source, target, rule):
    added = set(floor_breaks(with_import(source, target))) - set(floor_breaks(MODULES))
    assert [line for line in added if line.startswith(f"{source} imports {target}: {rule}")]


def test_torch_reached_at_import_is_reported_with_its_chain():
    # analysis/ importing the training loop at import time drags torch in
    broken = torch_at_import(with_import("lowdim.analysis.trajectories", "lowdim.training.run"))
    assert broken and "lowdim.analysis.trajectories -> lowdim.training.run" in broken[0]
    assert broken[0].endswith("torch")
    # the same import inside a function is fine
    assert torch_at_import(with_import("lowdim.analysis.trajectories", "lowdim.training.run",
                                       at_load=False)) == []


def test_a_cycle_is_reported_between_packages_and_between_modules():
    graph = with_import("lowdim.geometry.eigen", "lowdim.analysis.trajectories", at_load=False)
    assert any("analysis" in c and "geometry" in c for c in package_cycles(graph))
    # the old launch <-> launch_ray cycle, made of a lazy import, inside one package
    graph = with_import("lowdim.training.ray_backend", "lowdim.training.launch")
    assert module_cycles(graph) == [
        "import cycle: lowdim.training.launch, lowdim.training.ray_backend"]


def test_a_private_name_from_another_module_is_reported(tmp_path):
    pkg = tmp_path / "lowdim"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "b.py").write_text("def _hidden():\n    return 1\n")
    (pkg / "a" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
        "def f():\n    from lowdim.a.b import _hidden\n    return _hidden()\n")
    modules = read_package(tmp_path)
    assert private_imports(modules) == ["lowdim.a.c imports lowdim.a.b._hidden"]
    assert "torch" not in modules["lowdim.a.c"].external_at_load  # TYPE_CHECKING never runs


def test_torch_free_packages_do_not_load_torch_when_imported():
    names = sorted(name for name in MODULES if name.split(".")[1:2]
                   and name.split(".")[1] in TORCH_FREE)
    assert "lowdim.figures.theme" in names and "lowdim.analysis.placement" in names
    done = subprocess.run([sys.executable, "-c", PROBE, *names], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "", f"torch was imported through {done.stdout.strip()}"
