"""Killed for real: a stage stopped by SIGKILL keeps what it finished, and its rerun reuses that
work and ends with the bytes of an uninterrupted run (issue 26).

Each computation runs in a child process (its own process group, so SIGKILL also stops any
worker processes it started). The child is paced (a sleep after each written run, or after each
distance tile) so that the kill lands midway; the pacing changes no byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import store_contents

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

TRAIN_CHILD = """
import json, sys, time
import lowdim.training.local as local
from lowdim.config.grid import GridConfig
from lowdim.config.load import load
from lowdim.config.models import ModelsConfig
from lowdim.config.train import TrainConfig
from lowdim.data import load_source, prepare
from lowdim.store.runs import park_entries
from lowdim.training.ledger import data_fingerprint
from lowdim.training.grid import expand_grid
from lowdim.training.launch import launch

write_run = local.write_run
PAUSE = [0.0]


def paced(*args, **kwargs):
    out = write_run(*args, **kwargs)
    time.sleep(PAUSE[0])
    return out


def main(store, pause):  # worker processes start by forkserver: a main guard
    PAUSE[0] = pause
    overrides = {"grid": {"arch": ["fc"], "optimizer": ["sgdn", "adam"], "seed": [42, 43, 44]},
                 "train": {"workers": 2, "threads": 1}}
    grid, models, train = load("profiles/tiny.yaml", overrides,
                               GridConfig, ModelsConfig, TrainConfig)
    prepared = prepare(load_source("digits", test_fraction=0.25, split_seed=2), 120, 90, 0)
    specs = expand_grid(grid, models, train.lr_reference_batch_size)
    local.write_run = paced
    # as notebooks/20_train does: interrupted writes removed, other grids' runs set aside
    park_entries(store, specs, data_fingerprint(prepared), store + "-archive")
    summary = launch(specs, prepared, store, train, progress=False)
    print(json.dumps({"trained": summary.trained, "skipped": summary.skipped,
                      "runs": [s.run_id for s in specs]}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
"""

DISTANCES_CHILD = """
import json, sys, time
import numpy as np
import pandas as pd
import lowdim.geometry.distance_blocks as blocks
from lowdim.geometry.distances import DistanceSettings
from lowdim.store.block_cache import BlockCache

data, out, cache_dir, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
p = np.load(f"{data}/train.npy", mmap_mode="r", allow_pickle=False)
labels = np.load(f"{data}/labels.npy", allow_pickle=False)
tiles = blocks.distance_blocks


def paced(*args, **kwargs):
    for tile in tiles(*args, **kwargs):
        yield tile
        time.sleep(pause)


blocks.distance_blocks = paced
cache = BlockCache(cache_dir, flush_seconds=0) if cache_dir != "-" else None
done = blocks.write_distances({"train": p}, labels, cache, out, pd.DataFrame({"kind": ["x"]}),
                              settings=DistanceSettings(max_block_bytes=200_000))  # 15-row tiles
print(json.dumps({space: vars(stats) for space, stats in done.items()}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _start(script: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed:\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    """SIGKILL the child's whole process group as soon as ready() holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the child ended (rc {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _complete_runs(store: Path) -> list[Path]:
    return sorted(p.parent for p in store.glob("[!.]*/meta.json"))


def test_killed_training_resumes_without_retraining_complete_runs(tmp_path):
    script = tmp_path / "train_child.py"
    script.write_text(TRAIN_CHILD)
    reference = _finish(_start(script, tmp_path / "reference", 0))
    runs = reference["runs"]
    assert reference["trained"] == runs and len(runs) == 6
    store = tmp_path / "store"
    killed = _start(script, store, 1.0)  # a pause after each written run: the kill lands there
    _kill_when(killed, lambda: len(_complete_runs(store)) >= 2, "two complete runs")
    complete = _complete_runs(store)
    assert 2 <= len(complete) < len(runs)
    before = {f: (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes())
              for run in complete for f in run.iterdir()}
    resumed = _finish(_start(script, store, 0))
    assert sorted(resumed["skipped"]) == sorted(p.name for p in complete)
    assert sorted(resumed["trained"]) == sorted(set(runs) - {p.name for p in complete})
    for f, (inode, mtime, data) in before.items():  # not retrained: the very same files
        assert (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) == (inode, mtime, data)
    assert sorted(p.name for p in store.iterdir()) == sorted(runs)  # no leftovers
    ours, theirs = store_contents(store), store_contents(tmp_path / "reference")
    assert ours.keys() == theirs.keys() and len(ours) == 3 * len(runs)
    for key, value in theirs.items():
        assert ours[key] == value, f"{key} differs from the uninterrupted run"


def test_killed_distances_resume_from_the_cache_segments(tmp_path):
    rng = np.random.default_rng(3)
    units, checkpoints, n, c = 24, 8, 100, 10
    p = rng.dirichlet(np.full(c, 0.4), size=(units * checkpoints, n)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "train.npy", p)
    np.save(data / "labels.npy", np.repeat([f"run{u:02d}" for u in range(units)], checkpoints))
    script = tmp_path / "distances_child.py"
    script.write_text(DISTANCES_CHILD)
    full = _finish(_start(script, data, tmp_path / "full", "-", 0))["train"]
    blocks = units * (units + 1) // 2
    assert full["computed"] == blocks
    cache = tmp_path / "cache"
    killed = _start(script, data, tmp_path / "killed", cache, 0.05)
    _kill_when(killed, lambda: any(cache.rglob("[!.]*.npz")), "a cache segment")
    segments = list(cache.rglob("[!.]*.npz"))
    assert segments and not (tmp_path / "killed").exists()  # the product is atomic
    stats = _finish(_start(script, data, tmp_path / "killed", cache, 0))["train"]
    assert stats["blocks"] == blocks and 0 < stats["cached"] < blocks  # finished blocks reused
    assert stats["computed"] == blocks - stats["cached"]
    assert stats["pairs_computed"] < full["pairs_computed"]
    ours = (tmp_path / "killed" / "train.npy").read_bytes()
    assert ours == (tmp_path / "full" / "train.npy").read_bytes()
    again = _finish(_start(script, data, tmp_path / "again", cache, 0))["train"]
    assert again["computed"] == 0  # every block is in the cache now
    assert (tmp_path / "again" / "train.npy").read_bytes() == ours
