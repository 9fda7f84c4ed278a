"""The Ray backend's plan, without a cluster (issue 25, item 3): every `train` key is read by
both backends or belongs to one, the tasks are the packs a local launch would train, each task
reserves its architecture's GPUs, and a setting that cannot apply where a task trains is refused
before any task is submitted. The same bytes through a real cluster: tests/test_launch_ray.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lowdim.config.load import ConfigError
from lowdim.config.profile import load_profile
from lowdim.config.train import RayConfig, TrainConfig
from lowdim.store.records import RunSpec
from lowdim.training.kernels import PINNED_ENVIRONMENT
from lowdim.training.local import (
    GRID_KEYS,
    PLACEMENT_KEYS,
    TRAINING_KEYS,
    local_settings,
    training_options,
)
from lowdim.training.packed import SpeedOptions, plan_packs
from lowdim.training.ray_backend import (
    check_ray_options,
    launch_ray,
    plan_bundles,
    ray_settings,
    task_device_type,
    task_environment,
    task_resources,
    warn_if_unschedulable,
)

PER_ARCH = {"default": 0.25, "wr-16-4-64": 1.0, "fc": 0.0}
FC_ON_CPU = {"default": 0.25, "fc": 0.0}


def _spec(arch: str = "fc", seed: int = 1, **kw) -> RunSpec:
    base = dict(arch=arch, optimizer="sgdn", batch_size=128, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                model_size={})
    return RunSpec(**{**base, **kw})


# --------------------------------------------------------------------------- every key is read


def test_every_train_key_is_read_by_both_backends_or_belongs_to_one():
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(fields) == sorted(TRAINING_KEYS + PLACEMENT_KEYS + GRID_KEYS), (
        "a train key was added: read it in lowdim.training.local.training_options (both "
        "backends train with it) and list it in TRAINING_KEYS, or list it where it belongs")
    base = training_options(TrainConfig())
    changed = {"eval_batch_size": 7, "augment_padding": 3, "pack_size": 4,
               "channels_last": True, "compile": True, "tf32": True, "bf16": True}
    assert sorted(changed) == sorted(TRAINING_KEYS)
    for key, value in changed.items():  # each key reaches the options both backends train with
        assert training_options(TrainConfig(**{key: value})) != base, key
    assert training_options(TrainConfig(tf32=True, bf16=True))["speed"] == SpeedOptions(
        tf32=True, bf16=True)


# --------------------------------------------------------------------------- resources


def test_each_task_reserves_its_architectures_gpus():
    per_arch = RayConfig(num_cpus=2, num_gpus=PER_ARCH)
    assert task_resources(per_arch, "wr-16-4-64") == {"num_cpus": 2, "num_gpus": 1.0}
    assert task_resources(per_arch, "fc") == {"num_cpus": 2, "num_gpus": 0.0}
    assert task_resources(per_arch, "vit") == {"num_cpus": 2, "num_gpus": 0.25}  # the default
    assert task_resources(RayConfig(num_gpus=0.5), "vit") == {"num_cpus": 1.0, "num_gpus": 0.5}
    train = TrainConfig(device="auto", backend="ray", ray=per_arch)
    assert [task_device_type(train, a) for a in ("fc", "vit")] == ["cpu", "cuda"]
    no_default = RayConfig(num_gpus={"vit": 0.5})
    with pytest.raises(ConfigError, match=r"train\.ray\.num_gpus names no amount for "
                                          r"architecture 'fc' and has no default: add fc: "):
        task_resources(no_default, "fc")


def test_unschedulable_architectures_are_named(caplog):
    gpu_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 0.5}}
    per_arch = RayConfig(num_cpus=2, num_gpus=PER_ARCH)
    assert not warn_if_unschedulable(per_arch, [gpu_node], ["fc", "vit"])
    assert warn_if_unschedulable(per_arch, [gpu_node], ["fc", "wr-16-4-64"])
    assert "offers 2 CPUs and 1 GPUs per task for wr-16-4-64" in caplog.text


@pytest.mark.parametrize("num_gpus, message", [
    ({"vitt": 0.5, "default": 0}, r"train\.ray\.num_gpus\.vitt: the grid trains no architecture "
     r"'vitt' \(did you mean 'vit'\?\); its architectures are fc, allcnn, wr-10-1-4, "
     r"wr-16-1-4, vit: name one of them, or default"),
    ({"vit": 0.5}, r"train\.ray\.num_gpus names no amount for architecture 'fc' and has no "
     r"default"),
    ({}, r"train\.ray\.num_gpus is an empty mapping: give a number"),
    ({"vit": 1.5, "default": 0}, r"train\.ray\.num_gpus\.vit = 1\.5: must be a fraction in "
     r"\[0, 1\] or a whole number"),
    ({"vit": "half"}, r"train\.ray\.num_gpus = \{'vit': 'half'\}: must be a number or "
     r"dict\[str, float\]"),
])
def test_bad_gpus_per_architecture_are_named(root, num_gpus, message):
    overrides = {"grid": {"arch": ["fc", "allcnn", "wr-10-1-4", "wr-16-1-4", "vit"]},
                 "train": {"backend": "ray", "ray": {"num_gpus": num_gpus}}}
    with pytest.raises(ConfigError, match=message):
        load_profile(root / "profiles" / "tiny.yaml", overrides)


@pytest.mark.parametrize("device, num_gpus, message", [
    ("cpu", {"vit": 0.5, "default": 0}, r"train\.ray\.num_gpus\.vit = 0\.5 but train\.device = "
     r"'cpu': set it to 0, or device to auto or cuda"),
    ("cuda", {"vit": 0.5, "default": 0}, r"train\.device = 'cuda' but train\.ray\.num_gpus\."
     r"default = 0: Ray hides GPUs from tasks that reserve none"),
])
def test_gpus_per_architecture_agree_with_the_device(device, num_gpus, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(device=device, backend="ray", ray=RayConfig(num_gpus=num_gpus)).check()
    with pytest.raises(ConfigError, match=r"train\.ray\.num_cpus = 0 and train\.ray\.num_gpus\."
                                          r"default = 0: a task must reserve some CPU or GPU"):
        RayConfig(num_cpus=0, num_gpus={"vit": 1, "default": 0}).check()


# --------------------------------------------------------------------------- the plan


def test_ray_tasks_are_the_packs_of_a_local_launch():
    specs = [_spec("fc", s) for s in range(5)] + [_spec("vit", s) for s in range(3)]
    specs.insert(2, _spec("fc", 9, precision="fp16-mixed"))  # trains alone, even in a pack
    train = TrainConfig(device="cuda", backend="ray", pack_size=2,
                        ray=RayConfig(num_gpus=0.5, runs_per_task=3))
    planned = plan_bundles(specs, train)
    packed = [b.units[0] for b in planned if b.specs[0].precision == "fp32"]
    local = plan_packs([s for s in specs if s.precision == "fp32"], None, 2)  # int: no data read
    assert [list(p) for p in packed] == local  # the same runs, in the same order
    assert [len(p) for p in local] == [2, 2, 1, 2, 1]  # fc 5 runs -> 3 packs, vit 3 -> 2
    alone = [b for b in planned if b.specs[0].precision == "fp16-mixed"]
    assert len(alone) == 1 and alone[0].units == ((specs[2],),)
    assert sorted(s.run_id for b in planned for s in b.specs) == sorted(s.run_id for s in specs)
    # One at a time (pack_size 1): runs_per_task runs of one architecture per task.
    single = plan_bundles(specs, dataclasses.replace(train, pack_size=1))
    assert [[s.arch for s in b.specs] for b in single] == [["fc"] * 3, ["fc"] * 3, ["vit"] * 3]
    assert all(len(unit) == 1 for b in single for unit in b.units)
    # auto on a CPU task: packs of one, as packed.auto_pack_size gives there (an option on)
    cpu_auto = TrainConfig(device="cpu", backend="ray", pack_size="auto", channels_last=True)
    assert [len(b.units[0]) for b in plan_bundles(specs[:2], cpu_auto)] == [1, 1]


def test_ray_records_the_settings_of_a_local_launch_on_its_device():
    train = TrainConfig(device="auto", backend="ray", threads=2, pack_size=2, tf32=True,
                        ray=RayConfig(num_gpus={"fc": 0, "default": 0.5}))
    packs_cuda = local_settings(torch.device("cuda"), 8, threads=2, eval_batch_size=1000,
                                augment_padding=None, pack_size=2,
                                speed=SpeedOptions(tf32=True))
    assert ray_settings(train, 8)(_spec("vit")) == packs_cuda(_spec("vit"))
    assert ray_settings(train, 8)(_spec("vit"))["tf32"] is True
    for kernels in ("native", "pinned"):  # pinned runs may pack: the worker starts pinned
        cpu = TrainConfig(device="cpu", backend="ray", threads=2, pack_size=2,
                          cpu_kernels=kernels)
        packs_cpu = local_settings(torch.device("cpu"), 8, threads=2, eval_batch_size=1000,
                                   augment_padding=None, pack_size=2, speed=SpeedOptions(),
                                   cpu_kernels=kernels)
        assert ray_settings(cpu, 8)(_spec("fc")) == packs_cpu(_spec("fc"))
        assert ray_settings(cpu, 8)(_spec("fc"))["pack_size"] == 2
        assert task_environment(cpu, "cpu") == (PINNED_ENVIRONMENT if kernels == "pinned"
                                                else {})
        assert task_environment(cpu, "cuda") == {}  # CUDA runs: the setting is about CPUs
    assert ray_settings(train, 8)(_spec("vit"))["cpu_kernels"] is None


# --------------------------------------------------------------------------- refused, not dropped


@pytest.mark.parametrize("key", ["tf32", "bf16"])
def test_cuda_only_settings_are_refused_on_cpu_tasks_before_any_task(key, tmp_path):
    on_cpu = TrainConfig(device="cpu", backend="ray", **{key: True})
    with pytest.raises(ValueError, match=rf"the Ray tasks train on a CPU \(train\.device = "
                                         rf"'cpu'\): train\.{key} = true, but training runs on "
                                         rf"cpu: .* set train\.{key}: false"):
        launch_ray([_spec()], None, tmp_path, on_cpu, progress=False)  # no data, no cluster
    assert list(tmp_path.iterdir()) == []
    some_cpu = TrainConfig(device="auto", backend="ray", ray=RayConfig(num_gpus=FC_ON_CPU),
                           **{key: True})
    gpus = dataclasses.replace(some_cpu, ray=RayConfig(num_gpus={"default": 0.25}))
    check_ray_options([_spec("vit"), _spec("allcnn")], gpus)  # both reserve a GPU
    with pytest.raises(ValueError, match=r"the Ray tasks of fc reserve no GPU \(train\.ray\."
                                         r"num_gpus is 0 for them\), so they train on a CPU: "
                                         rf"train\.{key} = true.*; or reserve GPUs for them in "
                                         r"train\.ray\.num_gpus"):
        check_ray_options([_spec("vit"), _spec("fc")], some_cpu)


def test_fp16_mixed_is_refused_on_an_architecture_without_a_gpu():
    train = TrainConfig(device="auto", backend="ray", ray=RayConfig(num_gpus=FC_ON_CPU))
    check_ray_options([_spec("vit", precision="fp16-mixed"), _spec("fc")], train)
    with pytest.raises(ValueError, match=r"the Ray tasks of fc reserve no GPU .* run "
                                         r"fc_sgdn_bs128_lr0\.1_wd0_aug-none_init-default_ep1_"
                                         r"fp16-mixed_s1 has precision fp16-mixed, which needs "
                                         r"CUDA"):
        check_ray_options([_spec("vit"), _spec("fc", precision="fp16-mixed")], train)
    with pytest.raises(ConfigError, match=r"train\.ray\.num_gpus\.wr-16-4-64: the grid trains "
                                          r"no architecture 'wr-16-4-64'"):
        check_ray_options([_spec("vit"), _spec("fc")], dataclasses.replace(
            train, ray=RayConfig(num_gpus={"vit": 1, "wr-16-4-64": 1, "fc": 0})))
