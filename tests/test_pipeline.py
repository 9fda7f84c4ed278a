"""The pipeline: `dvc repro` of the tiny profile in a temporary copy of the repository, then a
clean `dvc status` and a second `dvc repro` that runs nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    log = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{log}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo(root, tmp_path_factory) -> Path:
    """A copy of the tracked files with the tiny profile active, as its own git repository."""
    copy = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (root / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, copy / name)
    shutil.copy2(root / "profiles" / "tiny.yaml", copy / "params.yaml")
    (copy / "dvc.lock").unlink(missing_ok=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, copy)
    return copy


def test_repro_then_clean_status_then_noop(repo):
    first = _run(["dvc", "repro"], repo)
    for stage in ("data", "train", "predictions", "distances", "embedding", "fig02_embedding",
                  "figS01_spectrum", "figS02_distance_to_truth"):
        assert f"Running stage '{stage}'" in first
    for product in ("figures/fig02_embedding.pdf", "figures/figS01_spectrum.png",
                    "metrics/embedding.json", "data/predictions/index.parquet"):
        assert (repo / product).is_file(), product

    status = _run(["dvc", "status"], repo)
    assert "Data and pipelines are up to date" in status

    second = _run(["dvc", "repro"], repo)
    assert "Running stage" not in second
    assert "didn't change, skipping" in second


def test_figure_parameter_reruns_only_figures(repo):
    params = (repo / "params.yaml").read_text().replace("dpi: 150", "dpi: 90")
    (repo / "params.yaml").write_text(params)
    out = _run(["dvc", "repro"], repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"fig02_embedding", "figS01_spectrum", "figS02_distance_to_truth"}
