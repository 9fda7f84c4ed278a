"""Local training in worker processes (`train.workers`): the bytes of one run at a time, resumable,
and a failed run stops the launch as it does in the stage's process."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import store_contents

import lowdim.training.local
from lowdim.config.load import ConfigError, from_dict
from lowdim.config.train import TrainConfig
from lowdim.store.records import RunSpec
from lowdim.store.runs import read_meta
from lowdim.training.local import available_cores, launch_local, worker_count, worker_threads

SIZES = {"fc": {"widths": (16, 8)}, "allcnn": {"channels": (4, 6)}}


def _spec(arch: str = "fc", seed: int = 42, **kw) -> RunSpec:
    base = dict(arch=arch, optimizer="sgdn", batch_size=256, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=2, seed=seed,
                model_size=SIZES.get(arch, {}))
    base.update(kw)
    return RunSpec(**base)


GRID = [_spec("fc", 1), _spec("allcnn", 2, augment="simple"),
        _spec("fc", 3, optimizer="adam", lr=1e-3), _spec("fc", 4, optimizer="sgd", lr=1e30)]


def test_workers_give_the_bytes_of_one_run_at_a_time(tmp_path, tiny_prepared, single_thread):
    cpu = torch.device("cpu")
    alone = launch_local(GRID, tiny_prepared, tmp_path / "one", cpu, progress=False, workers=1)
    done = GRID[0].run_id  # complete before the launch: skipped
    shutil.copytree(tmp_path / "one" / done, tmp_path / "two" / done)
    parallel = launch_local(GRID, tiny_prepared, tmp_path / "two", cpu, progress=False,
                            workers=2, threads=1)
    assert parallel.skipped == [done] and parallel.trained == [s.run_id for s in GRID[1:]]
    assert parallel.diverged == alone.diverged == [GRID[3].run_id]
    ours, reference = store_contents(tmp_path / "two"), store_contents(tmp_path / "one")
    assert len(reference) == 3 * len(GRID) and ours.keys() == reference.keys()
    for key, value in reference.items():
        assert ours[key] == value, f"{key} differs"


def test_a_failed_run_stops_the_launch_after_the_running_ones(tmp_path, tiny_prepared, caplog):
    bad, started, queued = _spec("nonet", 1), _spec("fc", 2), _spec("fc", 3)
    with pytest.raises(ValueError, match="nonet"):
        launch_local([bad, started, queued], tiny_prepared, tmp_path, torch.device("cpu"),
                     progress=False, workers=2, threads=1)
    assert f"run {bad.run_id} failed in a worker process (ValueError" in caplog.text
    assert read_meta(tmp_path, bad.run_id) is None  # as in the stage's process: no record
    assert read_meta(tmp_path, started.run_id)["status"] == "ok"  # already running: written
    assert read_meta(tmp_path, queued.run_id) is None  # never started


def test_one_worker_packing_and_single_runs_stay_in_this_process(tmp_path, tiny_prepared,
                                                                  monkeypatch, single_thread):
    def no_workers(*args, **kwargs):
        raise AssertionError("trained in worker processes")

    monkeypatch.setattr(lowdim.training.local, "in_workers", no_workers)
    cpu = torch.device("cpu")
    runs = [_spec("fc", 1, epochs=1), _spec("fc", 2, epochs=1)]
    launch_local(runs, tiny_prepared, tmp_path / "a", cpu, progress=False, workers=1)
    launch_local(runs, tiny_prepared, tmp_path / "b", cpu, progress=False, workers=2,
                 pack_size=2)
    launch_local(runs[:1], tiny_prepared, tmp_path / "c", cpu, progress=False, workers="auto")
    for store in ("a", "b"):
        assert [read_meta(tmp_path / store, s.run_id)["status"] for s in runs] == ["ok", "ok"]


def test_worker_count_and_threads(monkeypatch):
    assert worker_count("auto", 1000) == available_cores() >= 1
    assert worker_count(4, 2) == 2 and worker_count(3, 0) == 1 and worker_count(1, 9) == 1
    assert worker_threads(3, 2) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert worker_threads(None, 3) == 2 and worker_threads(None, 16) == 1


def _train_section(root, **train) -> dict:
    import yaml

    raw = yaml.safe_load((root / "profiles" / "tiny.yaml").read_text())
    raw["train"].update(train)
    return raw


@pytest.mark.parametrize("value", ["auto", 1, 3])
def test_workers_accept_auto_and_whole_numbers(root, value):
    assert from_dict(_train_section(root, workers=value), TrainConfig).workers == value


@pytest.mark.parametrize("value, message", [
    (0, r"train\.workers = 0: must be auto \(one process per CPU core\) or a whole number >= 1"),
    (-2, r"train\.workers = -2: must be auto"),
    ("many", r"train\.workers = 'many': must be auto or a whole number"),
    (1.5, r"train\.workers = 1\.5: must be auto or a whole number"),
])
def test_bad_workers_are_named(root, value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(_train_section(root, workers=value), TrainConfig)
