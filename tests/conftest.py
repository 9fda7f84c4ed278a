"""Shared fixtures: the repository root and small prepared data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def single_thread():
    """torch and numba on one thread for the test, restored after it."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


@pytest.fixture(scope="session")
def tiny_prepared():
    """Digits with small evaluation subsets: enough to train a few steps."""
    from lowdim.data import load_source, prepare

    return prepare(load_source("digits", test_fraction=0.25, split_seed=2), 60, 40, 0)


# Fields of meta.json that legitimately differ between two trainings of the same run.
TIMING_FIELDS = ("seconds",)


def store_contents(store: Path) -> dict[str, object]:
    """Every file of every store entry (leftovers of interrupted writes included): .npy bytes,
    meta.json content without its timing fields."""
    contents: dict[str, object] = {}
    for path in sorted(store.glob("*/*")):
        key = f"{path.parent.name}/{path.name}"
        if path.name == "meta.json":
            meta = json.loads(path.read_text())
            contents[key] = {k: v for k, v in meta.items() if k not in TIMING_FIELDS}
        else:
            contents[key] = path.read_bytes()
    return contents


def run_command(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the project environment's tools first on PATH; fail with its log."""
    done = subprocess.run(cmd, cwd=cwd, env=_project_env(), capture_output=True, text=True)
    if check:
        log = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{log}"
    return done


def copy_repository(root: Path, dest: Path, profile: str = "tiny") -> Path:
    """A git repository holding the tracked files of `root`, with `profile` as params.yaml."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    shutil.copy2(root / "profiles" / f"{profile}.yaml", dest / "params.yaml")
    (dest / "dvc.lock").unlink(missing_ok=True)
    git_commit(dest, "copy", init=True)
    return dest


PARAMS_LOG = "params_read.jsonl"  # the keys the tiny pipeline's stages read, beside its repo


@dataclass(frozen=True)
class TinyPipeline:
    """A committed repository copy after one tiny-profile `dvc repro`, and what it printed."""

    repo: Path
    output: str

    @property
    def params_log(self) -> Path:
        """Every key each stage read (JSON lines, `LOWDIM_PARAMS_LOG`), beside the repository."""
        return self.repo.parent / PARAMS_LOG


def _needs_pipeline(item: pytest.Item) -> bool:
    return "tiny_pipeline" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the shared tiny pipeline run last (in their files' order), so that every other
    test runs while `_tiny_pipeline_build` builds it in the background."""
    items[:] = ([i for i in items if not _needs_pipeline(i)]
                + [i for i in items if _needs_pipeline(i)])


def _project_env() -> dict[str, str]:
    """The environment of commands run by the tests: the project's tools first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "MPLBACKEND": "Agg"}


@pytest.fixture(scope="session", autouse=True)
def _tiny_pipeline_build(request, root, tmp_path_factory):
    """Start the tiny profile's `dvc repro` at the session's first test when any selected test
    needs it; it runs in its own process beside the other tests (the suite's longest chain of
    work, on one core while the tests use the other). Stopped if the session ends first."""
    if not any(_needs_pipeline(i) for i in request.session.items):
        yield None
        return
    repo = copy_repository(root, tmp_path_factory.mktemp("tiny_pipeline") / "repo")
    log = repo.parent / "repro.log"
    # every stage logs the parameter keys it reads (lowdim.config.load), for test_pipeline
    env = {**_project_env(), "LOWDIM_PARAMS_LOG": str(repo.parent / PARAMS_LOG)}
    with log.open("w") as out:
        # its own process group, so that stopping it also stops papermill and the kernels
        proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield repo, log, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.fixture(scope="session")
def tiny_pipeline(_tiny_pipeline_build) -> TinyPipeline:
    """The tiny profile's whole pipeline, run once per session and shared by the notebook,
    pipeline and remote tests. Treat it as read-only: a test that changes files works on
    `copy_pipeline(...)`."""
    repo, log, proc = _tiny_pipeline_build
    returncode = proc.wait()
    output = log.read_text()
    assert returncode == 0, f"dvc repro of the tiny profile failed:\n{output[-6000:]}"
    git_commit(repo, "results")
    return TinyPipeline(repo, output)


def copy_pipeline(pipeline: TinyPipeline, dest: Path) -> Path:
    """A private copy of the shared pipeline: git history, DVC cache and every product."""
    shutil.copytree(pipeline.repo, dest, symlinks=True)
    return dest


def git_commit(repo: Path, message: str, init: bool = False) -> None:
    """Commit everything in `repo` (initialising it first when asked)."""
    if init:
        run_command(["git", "init", "-q"], repo)
    run_command(["git", "add", "-A"], repo)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
                repo)


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` printed as running (with `--dry`: the stages it would run)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def stages_reading(dvc_yaml: Path, section: str) -> set[str]:
    """Stages of dvc.yaml whose params list the section or key `section`, a key inside it, or the
    section that holds it (so a change to it reruns them)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name for name, stage in stages.items()
            if any(isinstance(p, str) and (p == section or p.startswith(f"{section}.")
                                           or section.startswith(f"{p}."))
                   for p in stage.get("params", []))}
