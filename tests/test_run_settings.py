"""A run is complete only with the effective training settings the launch would use (issue 22):
what changes a run's bytes (measured here on a CPU), what is recorded in meta.json, what is
retrained when a setting changes, and how a store mixing devices is reported."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from lowdim.config.train import RayConfig, TrainConfig
from lowdim.store.records import RunSpec
from lowdim.store.runs import mixed_provenance, read_meta, store_provenance
from lowdim.training.ledger import data_fingerprint, pending
from lowdim.training.local import launch_local, local_settings
from lowdim.training.packed import SpeedOptions
from lowdim.training.ray_backend import ray_settings, task_device_type, task_threads
from lowdim.training.run import DeviceData, epoch_order, init_model, train_run
from lowdim.training.settings import tf32_state

CPU = torch.device("cpu")
SIZES = {"fc": {"widths": (16, 8)}, "allcnn": {"channels": (4, 6)},
         "vit": {"patch_size": 4, "dim": 8, "depth": 1, "heads": 2, "dim_head": 4, "mlp_dim": 8}}
HEIGHT = 8  # the digits' images: default crop padding 1


def _spec(arch: str = "fc", seed: int = 1, **kw) -> RunSpec:
    base = dict(arch=arch, optimizer="sgdn", batch_size=256, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                model_size=SIZES[arch])
    return RunSpec(**{**base, **kw})


GRID = [_spec(seed=1), _spec(seed=2, augment="simple"), _spec("allcnn", 3, augment="simple")]


@pytest.fixture(scope="module")
def data(tiny_prepared):
    """The first 640 training images: 10 steps per epoch at batch 64."""
    full = DeviceData.from_prepared(tiny_prepared, CPU)
    return replace(full, train_images=full.train_images[:640],
                   train_labels=full.train_labels[:640])


def _with_threads(threads: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _product(result) -> tuple[bytes, dict]:
    """What the store keeps of a run's predictions: their bytes and losses."""
    return result.stacked("train").tobytes() + result.stacked("test").tobytes(), result.loss


# --------------------------------------------------------------------------- measurements


def test_threads_change_the_bytes(data):
    # Measured: 1 and 2 torch threads give gradients that differ in the last bits on every
    # architecture tried (fc 1e-6, allcnn 4e-7, vit 3e-8), and after 20 steps stored float16
    # predictions 1.5e-5 to 6e-5 apart: threads belong to a CPU run's settings.
    def differ(arch: str) -> bool:
        spec = _spec(arch, batch_size=64, epochs=2, augment="simple", lr=0.05)
        one, two = (_with_threads(n, lambda: train_run(spec, data)) for n in (1, 2))
        return _product(one) != _product(two)

    assert any(differ(arch) for arch in ("fc", "allcnn")), \
        "1 and 2 threads gave the same bytes: threads could leave the settings"


def test_eval_batch_size_changes_the_bytes(data):
    # Measured: one image at a time against 1000 changes float32 probabilities by 3e-8 to 6e-8
    # and, through the stored loss or float16 predictions, the run's products.
    def differ(arch: str) -> bool:
        spec = _spec(arch, batch_size=64)
        runs = [_with_threads(1, lambda b=b: train_run(spec, data, eval_batch_size=b))
                for b in (1000, 1)]
        return _product(runs[0]) != _product(runs[1])

    assert any(differ(arch) for arch in ("fc", "allcnn")), \
        "evaluation batch sizes 1 and 1000 gave the same bytes"


@pytest.mark.parametrize("arch, size", [("fc", {}), ("allcnn", {}), ("vit", SIZES["vit"])])
def test_the_cpu_share_of_a_cuda_run_ignores_threads(arch, size):
    # A CUDA run computes on the CPU only its initial weights and its data order (both drawn
    # from CPU generators), so its settings leave threads out; paper sizes for fc and allcnn.
    spec = replace(_spec(arch, init="kaiming"), model_size=size)
    weights = [_with_threads(n, lambda: init_model(spec, (3, 32, 32), 10, CPU).state_dict())
               for n in (1, 2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    orders = [_with_threads(n, lambda: epoch_order(50_000, torch.Generator().manual_seed(4), CPU))
              for n in (1, 2)]
    assert torch.equal(*orders)


# --------------------------------------------------------------------------- completeness


def _settings(**change):
    """The planned settings of a CPU launch of one run at a time with one thread, changed."""
    args = dict(threads=1, eval_batch_size=1000, augment_padding=None, pack_size=None,
                speed=SpeedOptions())
    return local_settings(CPU, HEIGHT, **{**args, **change})


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """GRID trained one at a time with one thread; returns the store."""
    store = tmp_path_factory.mktemp("store")
    _with_threads(1, lambda: launch_local(GRID, tiny_prepared, store, CPU, progress=False,
                                          workers=1))
    return store


def test_unchanged_settings_skip_every_run(trained, tiny_prepared):
    fingerprint = data_fingerprint(tiny_prepared)
    assert pending(GRID, trained, fingerprint, _settings()) == []
    again = _with_threads(1, lambda: launch_local(GRID, tiny_prepared, trained, CPU,
                                                  progress=False, workers=1))
    assert again.trained == [] and again.skipped == [s.run_id for s in GRID]


@pytest.mark.parametrize("change, affected", [
    ({"augment_padding": 2}, [1, 2]),  # the runs without augmentation use no padding
    ({"augment_padding": 1}, []),      # the default for 8-pixel images: what they used
    ({"eval_batch_size": 500}, [0, 1, 2]),
    ({"threads": 2}, [0, 1, 2]),
    ({"pack_size": 2}, [0, 1, 2]),
    ({"pack_size": 2, "speed": SpeedOptions(channels_last=True)}, [0, 1, 2]),
])
def test_a_changed_setting_makes_exactly_the_affected_runs_pending(trained, tiny_prepared,
                                                                   change, affected):
    todo = pending(GRID, trained, data_fingerprint(tiny_prepared), _settings(**change))
    assert todo == [GRID[i] for i in affected]


def test_a_changed_setting_retrains_exactly_the_affected_runs(trained, tiny_prepared, tmp_path):
    store = tmp_path / "runs"
    for spec in GRID:
        (store / spec.run_id).mkdir(parents=True)
        for path in (trained / spec.run_id).iterdir():
            (store / spec.run_id / path.name).write_bytes(path.read_bytes())
    summary = _with_threads(1, lambda: launch_local(GRID, tiny_prepared, store, CPU,
                                                    progress=False, workers=1,
                                                    augment_padding=2))
    assert summary.trained == [GRID[1].run_id, GRID[2].run_id]
    assert summary.skipped == [GRID[0].run_id]
    assert read_meta(store, GRID[1].run_id)["settings"]["augment_padding"] == 2
    assert read_meta(store, GRID[0].run_id)["settings"]["augment_padding"] is None


def test_a_run_written_without_settings_retrains_once(trained, tiny_prepared, tmp_path):
    spec = GRID[0]
    (tmp_path / spec.run_id).mkdir()
    for path in (trained / spec.run_id).iterdir():
        (tmp_path / spec.run_id / path.name).write_bytes(path.read_bytes())
    meta_path = tmp_path / spec.run_id / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["settings"], meta["provenance"]  # as written before runs recorded them
    meta_path.write_text(json.dumps(meta))
    fingerprint = data_fingerprint(tiny_prepared)
    assert pending([spec], tmp_path, fingerprint, _settings()) == [spec]
    first = _with_threads(1, lambda: launch_local([spec], tiny_prepared, tmp_path, CPU,
                                                  progress=False, workers=1))
    assert first.trained == [spec.run_id]
    # Retrained with the same settings: the same bytes as before.
    for name in ("train.npy", "test.npy"):
        assert ((tmp_path / spec.run_id / name).read_bytes()
                == (trained / spec.run_id / name).read_bytes())
    assert pending([spec], tmp_path, fingerprint, _settings()) == []


def test_meta_records_settings_and_provenance(trained):
    meta = read_meta(trained, GRID[1].run_id)
    assert meta["settings"] == {
        "device": "cpu", "threads": 1, "eval_batch_size": 1000, "augment_padding": 1,
        "pack_size": None, "channels_last": False, "compile": False, "tf32": None, "bf16": None,
        "cpu_kernels": "native"}
    prov = meta["provenance"]
    assert prov["device"]["type"] == "cpu" and prov["device"]["name"]
    assert prov["precision"] == {"float32_matmul_precision": torch.get_float32_matmul_precision(),
                                 "tf32_matmul": None, "tf32_cudnn": None, "bf16_autocast": False}
    assert prov["threads"] == 1 and prov["pack_runs"] == 1
    versions = prov["versions"]
    assert versions["torch"] == torch.__version__ and versions["cuda"] is None
    assert versions["lowdim"] and versions["python"] and versions["numpy"] == np.__version__


def test_packed_runs_record_the_pack_size_setting(tiny_prepared, tmp_path):
    specs = [_spec(seed=s) for s in (1, 2, 3)]
    _with_threads(1, lambda: launch_local(specs, tiny_prepared, tmp_path, CPU, progress=False,
                                          pack_size=2))
    metas = [read_meta(tmp_path, s.run_id) for s in specs]
    assert [m["settings"]["pack_size"] for m in metas] == [2, 2, 2]
    assert [m["provenance"]["pack_runs"] for m in metas] == [2, 2, 1]  # packs of 2 and 1
    fingerprint = data_fingerprint(tiny_prepared)
    assert pending(specs, tmp_path, fingerprint, _settings(pack_size=2)) == []
    assert pending(specs, tmp_path, fingerprint, _settings(pack_size=3)) == specs
    assert pending(specs, tmp_path, fingerprint, _settings()) == specs  # one at a time


def test_thread_share_does_not_depend_on_how_many_runs_are_pending(tiny_prepared, tmp_path):
    # threads: null shares this process's threads among the workers asked for, whether the
    # runs then train in worker processes or (one pending run) in this process.
    spec = _spec(seed=5)
    _with_threads(2, lambda: launch_local([spec], tiny_prepared, tmp_path, CPU, progress=False,
                                          workers=2))
    assert read_meta(tmp_path, spec.run_id)["settings"]["threads"] == 1


def test_cuda_settings_leave_threads_out_and_keep_the_precision_keys():
    planned = local_settings(torch.device("cuda"), HEIGHT, threads=4, eval_batch_size=1000,
                             augment_padding=None, pack_size="auto",
                             speed=SpeedOptions(tf32=True))(GRID[0])
    assert planned["device"] == "cuda" and planned["threads"] is None
    assert (planned["tf32"], planned["bf16"], planned["pack_size"]) == (True, False, "auto")
    assert tf32_state(CPU) is False


# --------------------------------------------------------------------------- Ray


def test_ray_tasks_record_the_settings_of_the_local_backend():
    train = TrainConfig(device="cpu", threads=1, backend="ray", cpu_kernels="native")
    for spec in GRID:
        assert ray_settings(train, HEIGHT)(spec) == _settings()(spec)
    assert task_threads(TrainConfig(backend="ray", ray=RayConfig(num_cpus=3))) == 3
    assert task_threads(TrainConfig(backend="ray", ray=RayConfig(num_cpus=0.5))) == 1
    assert task_device_type(TrainConfig(device="auto", ray=RayConfig(num_gpus=0.25))) == "cuda"
    assert task_device_type(TrainConfig(device="auto")) == "cpu"


def test_ray_takes_the_packed_path_and_its_options():
    # Ray tasks train as the local backend does (tests/test_launch_ray.py): nothing is refused
    # by the section itself; what cannot apply on a task's device is refused at launch.
    for key, value in [("bf16", True), ("tf32", True), ("compile", True),
                       ("channels_last", True), ("pack_size", 4)]:
        TrainConfig(backend="ray", **{key: value}).check()


# --------------------------------------------------------------------------- mixed stores


def _fake_run(store, run_id: str, status: str = "ok", device: str | None = "cpu",
              torch_version: str = "2.4.0") -> str:
    meta = {"run_id": run_id, "status": status}
    if device is not None:
        meta["provenance"] = {"device": {"type": device, "name": f"a {device}"},
                              "versions": {"torch": torch_version, "cuda": None}}
    (store / run_id).mkdir()
    (store / run_id / "meta.json").write_text(json.dumps(meta))
    return run_id


def test_a_store_of_two_device_types_is_reported(tmp_path):
    ids = [_fake_run(tmp_path, "a"), _fake_run(tmp_path, "b", status="diverged"),
           _fake_run(tmp_path, "c", device="cuda"), _fake_run(tmp_path, "d", device=None),
           _fake_run(tmp_path, "e", status="failed", device="cuda"), "never-written"]
    summary = store_provenance(tmp_path, ids)
    assert summary["device type"] == {"cpu": 2, "cuda": 1, None: 1}
    assert summary["torch"] == {"2.4.0": 3, None: 1}
    warnings = mixed_provenance(summary)
    assert warnings[0] == ("the runs come from more than one device type: 2 from cpu, "
                           "1 from cuda, 1 from an unrecorded one")
    assert len(warnings) == 3  # device type, device, torch; cuda is None everywhere


def test_a_store_of_one_device_type_is_not_reported(tmp_path):
    ids = [_fake_run(tmp_path, "a"), _fake_run(tmp_path, "b")]
    assert mixed_provenance(store_provenance(tmp_path, ids)) == []
