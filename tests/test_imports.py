"""Figure and analysis stages never load torch: importing what their notebooks import costs
matplotlib, pandas and scipy only, not torch's seconds on every stage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

# What the notebooks under notebooks/figures/ and notebooks 50 and 60 import from lowdim
# (test_the_list_covers_the_notebooks keeps it in step), plus lowdim.geometry.geodesic.
TORCH_FREE = ("lowdim.analysis.trajectory_analyses", "lowdim.store.atomic", "lowdim.config",
              "lowdim.figures", "lowdim.figures.embedding_panels", "lowdim.geometry.geodesic",
              "lowdim.geometry.inpca", "lowdim.figures.interactive", "lowdim.paths",
              "lowdim.figures.theme", "lowdim.analysis.analysis_set", "lowdim.store.records",
              "lowdim.store.products", "lowdim.figures.study_panels",
              "lowdim.analysis.trajectories", "lowdim.figures.trajectory_panels")
# Imported by a figure notebook, but trains networks itself (figS04 reads only a file name).
NEEDS_TORCH = ("lowdim.studies.synthetic",)
NOTEBOOKS = ("figures/*.ipynb", "50_*.ipynb", "60_*.ipynb")

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


def notebook_imports(root) -> set[str]:
    """The lowdim modules that the code cells of the figure notebooks and 50/60 import."""
    found = set()
    for pattern in NOTEBOOKS:
        for path in (root / "notebooks").glob(pattern):
            cells = json.loads(path.read_text())["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            for module, names in re.findall(r"^\s*from (lowdim\S*) import \(?([\w, ]*)", code,
                                            re.M):
                # `from lowdim.pkg import module`: the names may be modules of a package
                names = {n.split(" as ")[0].strip() for n in names.split(",") if n.strip()}
                found |= {f"{module}.{n}" for n in names
                          if (root / "src" / module.replace(".", "/") / f"{n}.py").is_file()}
                found.add(module)
            found |= set(re.findall(r"^\s*import (lowdim\.\w+)", code, re.M))
    return found


def test_the_list_covers_the_notebooks(root):
    imported = notebook_imports(root)
    # the parser works
    assert "lowdim.figures.embedding_panels" in imported and "lowdim.figures.theme" in imported
    assert imported - set(NEEDS_TORCH) <= set(TORCH_FREE)


def test_figure_and_analysis_modules_do_not_import_torch(root):
    done = subprocess.run([sys.executable, "-c", PROBE, *TORCH_FREE], cwd=root, text=True,
                          capture_output=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "", f"torch was imported through {done.stdout.strip()}"
