"""The run store and the local launcher: atomic runs, resume without redoing work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lowdim.store.records import RunSpec
from lowdim.store.runs import (
    PREDICTIONS,
    is_complete,
    load_predictions,
    park_entries,
    read_meta,
    unpark_entries,
    write_run,
)
from lowdim.training.ledger import data_fingerprint, pending
from lowdim.training.local import launch_local
from lowdim.training.run import DeviceData, train_run


def _spec(seed: int, **kw) -> RunSpec:
    base = dict(arch="fc", optimizer="sgdn", batch_size=256, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                model_size={"widths": [8]})
    base.update(kw)
    return RunSpec(**base)


def test_write_and_read_a_run(tmp_path, tiny_prepared):
    result = train_run(_spec(42), DeviceData.from_prepared(tiny_prepared, torch.device("cpu")))
    write_run(tmp_path, result, "abc")
    meta = read_meta(tmp_path, result.spec.run_id)
    assert meta["status"] == "ok" and meta["steps"] == result.steps
    assert meta["spec"] == result.spec.to_dict()
    stored = load_predictions(tmp_path, result.spec.run_id, "train")
    assert stored.dtype == np.float32 and meta["predictions"] == PREDICTIONS
    assert np.array_equal(stored, result.stacked("train"))
    assert is_complete(tmp_path, result.spec, "abc")
    assert not is_complete(tmp_path, result.spec, "other data")
    assert not is_complete(tmp_path, _spec(42, model_size={"widths": [9]}), "abc")
    # With settings given, the recorded ones must be equal (tests/test_run_settings.py).
    assert meta["settings"] == result.settings and meta["provenance"] == result.provenance
    assert is_complete(tmp_path, result.spec, "abc", result.settings)
    assert not is_complete(tmp_path, result.spec, "abc", {**result.settings, "threads": 99})
    # Nothing but the run directory is left behind: no temporary names.
    assert [p.name for p in tmp_path.iterdir()] == [result.spec.run_id]


def test_launcher_resumes_without_retraining(tmp_path, tiny_prepared, monkeypatch):
    specs = [_spec(1), _spec(2), _spec(3)]
    fingerprint = data_fingerprint(tiny_prepared)
    first = launch_local(specs[:2], tiny_prepared, tmp_path, torch.device("cpu"), progress=False)
    assert first.trained == [s.run_id for s in specs[:2]]
    before = (tmp_path / specs[0].run_id / "meta.json").stat().st_mtime_ns
    assert pending(specs, tmp_path, fingerprint) == [specs[2]]

    second = launch_local(specs, tiny_prepared, tmp_path, torch.device("cpu"), progress=False)
    assert second.trained == [specs[2].run_id]
    assert second.skipped == [s.run_id for s in specs[:2]]
    assert (tmp_path / specs[0].run_id / "meta.json").stat().st_mtime_ns == before


def test_interrupted_write_leaves_no_complete_looking_run(tmp_path, tiny_prepared, monkeypatch):
    result = train_run(_spec(5), DeviceData.from_prepared(tiny_prepared, torch.device("cpu")))

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path, result, "abc")
    assert list(tmp_path.iterdir()) == []
    assert read_meta(tmp_path, result.spec.run_id) is None



def _fake_run(store, spec: RunSpec, fingerprint: str, status: str = "ok",
              predictions: str | None = PREDICTIONS) -> None:
    """A run entry as the store reads it: meta.json only (enough for park/unpark); predictions
    None: a run of the old float16 format, which recorded none."""
    (store / spec.run_id).mkdir(parents=True)
    meta = {"run_id": spec.run_id, "spec": spec.to_dict(), "data_fingerprint": fingerprint,
            "status": status} | ({} if predictions is None else {"predictions": predictions})
    (store / spec.run_id / "meta.json").write_text(json.dumps(meta))


def test_switching_grids_and_back_parks_and_restores_runs(tmp_path):
    store, archive = tmp_path / "runs", tmp_path / "archive"
    first, second = [_spec(1), _spec(2)], [_spec(2), _spec(3)]
    for spec in first:
        _fake_run(store, spec, "digits")
    (store / ".fc.tmp-123").mkdir()  # an interrupted write: deleted, never parked
    # to the second grid: run 1 is parked, run 2 (in both grids) stays, nothing deleted
    assert park_entries(store, second, "digits", archive) == [first[0].run_id]
    assert sorted(p.name for p in store.iterdir()) == [first[1].run_id]
    assert unpark_entries(store, second, "digits", archive) == []
    _fake_run(store, second[1], "digits")
    # back to the first grid: run 3 is parked, run 1 comes back as it was
    assert park_entries(store, first, "digits", archive) == [second[1].run_id]
    assert unpark_entries(store, first, "digits", archive) == [first[0].run_id]
    assert sorted(p.name for p in store.iterdir()) == sorted(s.run_id for s in first)
    assert is_complete(store, first[0], "digits")
    assert len(list(archive.glob(f"*/{second[1].run_id}"))) == 1  # parked, kept


def test_a_run_of_another_dataset_with_the_same_id_is_parked_not_overwritten(tmp_path):
    store, archive = tmp_path / "runs", tmp_path / "archive"
    spec = _spec(1)
    _fake_run(store, spec, "fashion")
    assert park_entries(store, [spec], "digits", archive) == [spec.run_id]
    assert not (store / spec.run_id).exists()  # the launcher trains it for these data
    assert unpark_entries(store, [spec], "digits", archive) == []  # the parked one is not these
    _fake_run(store, spec, "digits")
    park_entries(store, [spec], "fashion", archive)
    assert unpark_entries(store, [spec], "fashion", archive) == [spec.run_id]
    assert read_meta(store, spec.run_id)["data_fingerprint"] == "fashion"


def test_a_run_of_the_old_float16_format_is_parked_and_retrained(tmp_path):
    # Same spec and data, but float16 probabilities (docs/study.md, "Stored precision"): kept in
    # the archive, never moved back, and pending for the launcher.
    store, archive = tmp_path / "runs", tmp_path / "archive"
    spec = _spec(1)
    _fake_run(store, spec, "digits", predictions=None)
    assert not is_complete(store, spec, "digits")
    assert park_entries(store, [spec], "digits", archive) == [spec.run_id]
    assert unpark_entries(store, [spec], "digits", archive) == []
    assert pending([spec], store, "digits") == [spec]
    assert len(list(archive.glob(f"*/{spec.run_id}"))) == 1
