"""A stage notebook given a missing or damaged input stops with an error that names the file and
says what to do (issue 26): pipeline stages (20-84) and two figures, one per reader that a stage
calls first on its inputs, run with papermill on the tiny profile, its input directories in a
temporary directory. The trajectories, larger, intervals, averaging and tangents notebooks open
their inputs with the distances stage's first reader (`load_index`), the corners notebook with
the train stage's (`load_prepared`): those stages stand for them (each papermill run costs 5-17 s
of the suite).

The stage commands (notebooks and path parameters) are read from dvc.yaml; a parameter whose
path is among the stage's deps is an input. "missing": no input exists; "damaged": each input
directory holds the files its readers open first, as garbage (truncated .npy, empty parquet,
cut JSON, not-a-zip npz).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["train", "predictions", "distances", "embedding", "joint_embedding", "fig02_embedding",
          "fig08_outliers"]
# A damaged file of each kind of input directory (its readers are shared by the other stages;
# each papermill run costs about 4 s of the suite's budget).
DAMAGED_STAGES = ["train", "predictions", "embedding", "fig02_embedding", "fig08_outliers"]
CASES = [(stage, "missing") for stage in STAGES] + [(stage, "damaged") for stage in DAMAGED_STAGES]


def _truncated_npy() -> bytes:
    """A .npy whose header promises more data than the file holds."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 3, 2), np.float32))
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + b"\0" * 10


DAMAGED = {  # per kind of input directory: the files its readers open first
    "prepared_dir": {"meta.json": b'{"format": 1, "data'},
    "runs_dir": {},
    "predictions_dir": {"index.parquet": b"", "train.npy": _truncated_npy(),
                        "test.npy": _truncated_npy()},
    "distances_dir": {"train.npy": _truncated_npy(), "test.npy": _truncated_npy(),
                      "train_centring.npz": b"not a zip", "reference.parquet": b""},
    "embedding_dir": {"train.npz": b"not a zip", "test.npz": b"not a zip"},
    "trajectories_dir": {"progress.parquet": b"", "outliers.parquet": b""},
    "trajectory_metrics": b'{"outliers": {"n_out',  # a file input: the damaged file itself
}


def _stage_parameters(stage: str) -> tuple[str, dict[str, str], list[str]]:
    """The stage's notebook, its path parameters, and which of them are inputs."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    notebook = re.search(r"(notebooks/\S+\.ipynb)", spec["cmd"]).group(1)
    params = dict(re.findall(r"-p\s+(\w+)\s+(\S+)", spec["cmd"]))
    params.pop("params_file", None)
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]}
    inputs = [name for name, path in params.items()
              if any(d == path or d.startswith(path + "/") for d in deps)]
    return notebook, params, inputs


@pytest.mark.parametrize(("stage", "case"), CASES)
def test_bad_inputs_are_named_with_a_remedy(stage, case, tmp_path):
    notebook, params, inputs = _stage_parameters(stage)
    assert inputs, f"{stage}: no input parameter found in dvc.yaml"
    paths = {name: tmp_path / "out" / name for name in params}
    for name in inputs:
        paths[name] = tmp_path / "in" / name
        if case == "damaged" and isinstance(DAMAGED[name], bytes):
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            paths[name].write_bytes(DAMAGED[name])
        elif case == "damaged":
            paths[name].mkdir(parents=True)
            for file, content in DAMAGED[name].items():
                (paths[name] / file).write_bytes(content)
    cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(ROOT), notebook,
           str(tmp_path / "executed.ipynb"), "-p", "params_file", "profiles/tiny.yaml"]
    for name, path in paths.items():
        cmd += ["-p", name, str(path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode != 0, f"{stage} ran on {case} inputs"
    error = text[text.rfind("Exception encountered"):] if "Exception encountered" in text else text
    named = [p for p in (tmp_path / "in").glob("*/**/*") if str(p) in error] + [
        paths[n] for n in inputs if str(paths[n]) in error]
    assert named, f"{stage}: the error names no input path:\n{error[-3000:]}"
    assert "dvc repro" in error, f"{stage}: the error says nothing to do:\n{error[-3000:]}"
    expected = "does not exist" if case == "missing" else "damaged"
    assert expected in error, f"{stage}: not reported as {case}:\n{error[-3000:]}"
