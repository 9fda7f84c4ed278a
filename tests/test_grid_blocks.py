"""A grid of blocks: one mapping as before (same run ids), or a list of blocks whose runs are the
union of their products, with absolute learning rates, per-block epochs and precision, and
exclusions; every mistake named by its key. The authors' profile transcribes their 58 optimizer
files (docs/study.md B3, B6); fp16-mixed runs need CUDA."""

from __future__ import annotations

import copy
import itertools
from collections import Counter

import pytest
import torch
import yaml

from lowdim.config import grid as grid_config
from lowdim.config.grid import GridConfig
from lowdim.config.load import ConfigError, from_dict
from lowdim.config.profile import load_profile
from lowdim.config.train import TrainConfig
from lowdim.store.records import DEFAULT_PRECISION, RunSpec
from lowdim.training import local, precision
from lowdim.training.grid import expand_grid
from lowdim.training.local import launch_local
from lowdim.training.packed import PackTrainer
from lowdim.training.run import DeviceData, train_run

SEEDS = list(range(42, 52))


def _grid(blocks: dict | list) -> GridConfig:
    return from_dict({"grid": blocks}, GridConfig)


def _block(**keys) -> dict:
    block = {"arch": ["fc"], "optimizer": ["sgd"], "batch_size": [200], "lr": {"sgd": [0.1]},
             "seed": [42]}
    block.update(keys)
    return {k: v for k, v in block.items() if v is not None}


def _ids(grid: GridConfig, reference: int = 200) -> list[str]:
    return [s.run_id for s in expand_grid(grid, {}, reference)]


# --------------------------------------------------------------------------- one mapping as before


def test_one_mapping_gives_the_run_ids_it_always_gave(root):
    raw = yaml.safe_load((root / "profiles" / "quick.yaml").read_text())
    g, ref = raw["grid"], raw["train"]["lr_reference_batch_size"]
    # the rule before blocks existed: the product of the axes, then base lr and seed
    by_hand = [
        f"{arch}_{opt}_bs{bs}_lr{base * bs / ref:g}_wd{wd:g}_aug-{aug}_init-{init}_ep{ep}_s{seed}"
        for arch, opt, bs, wd, aug, init, ep in itertools.product(
            g["arch"], g["optimizer"], g["batch_size"], g["weight_decay"], g["augment"],
            g["init"], g["epochs"])
        for base, seed in itertools.product(g["base_lr"][opt], g["seed"])]
    specs = expand_grid(load_profile(root / "profiles" / "quick.yaml").grid, {}, ref)
    assert [s.run_id for s in specs] == by_hand
    assert all("precision" not in s.to_dict() for s in specs)  # meta.json as it always was
    assert load_profile(root / "profiles" / "quick.yaml").grid == _grid(g)


def test_a_mapping_and_a_list_of_that_one_mapping_are_the_same_grid():
    block = _block(batch_size=[100, 200], weight_decay=[0.0, 1e-3], seed=[1, 2])
    assert _grid(block) == _grid([block])
    assert _grid(block) == GridConfig(**vars(_grid(block).blocks[0]))  # one block by its axes


# --------------------------------------------------------------------------- blocks


def test_the_runs_are_the_union_of_the_blocks_in_block_order():
    grid = _grid([_block(arch=["fc", "vit"], seed=[42, 43]),
                  _block(arch=["allcnn"], optimizer=["adam"], lr={"adam": [0.001]}, seed=[7])])
    assert _ids(grid) == [
        "fc_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_s42",
        "fc_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_s43",
        "vit_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_s42",
        "vit_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_s43",
        "allcnn_adam_bs200_lr0.001_wd0_aug-none_init-default_ep200_s7"]
    # what the studies check against: every value of any block, in first-seen order
    assert grid.arch == ("fc", "vit", "allcnn")
    assert grid.optimizer == ("sgd", "adam")
    assert grid.seed == (42, 43, 7)
    assert grid.lr == {"sgd": (0.1,), "adam": (0.001,)} and grid.base_lr is None


def test_absolute_lr_is_not_scaled_and_base_lr_is():
    grid = _grid([_block(batch_size=[500], lr={"sgd": [0.1]}),
                  _block(batch_size=[500], lr=None, base_lr={"sgd": [0.1]}, seed=[43])])
    absolute, scaled = expand_grid(grid, {}, 200)
    assert absolute.lr == 0.1 and absolute.base_lr == pytest.approx(0.04)  # 0.1 * 200 / 500
    assert scaled.lr == pytest.approx(0.25) and scaled.base_lr == 0.1
    assert absolute.run_id.startswith("fc_sgd_bs500_lr0.1_")
    assert scaled.run_id.startswith("fc_sgd_bs500_lr0.25_")


def test_epochs_per_block():
    grid = _grid([_block(epochs=[200]), _block(epochs=[300, 20], weight_decay=[1e-3])])
    assert [s.epochs for s in expand_grid(grid, {}, 200)] == [200, 300, 20]


def test_precision_enters_the_run_id_only_when_fp16_mixed():
    fp32, mixed = expand_grid(_grid([_block(), _block(precision=["fp16-mixed"])]), {}, 200)
    assert fp32.run_id == "fc_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_s42"
    assert mixed.run_id == "fc_sgd_bs200_lr0.1_wd0_aug-none_init-default_ep200_fp16-mixed_s42"
    assert fp32.precision == DEFAULT_PRECISION == "fp32" == grid_config.PRECISIONS[0]
    assert "precision" not in fp32.to_dict() and mixed.to_dict()["precision"] == "fp16-mixed"
    # a RunSpec written without a precision is an fp32 run with the id it always had
    old = RunSpec("fc", "sgd", 200, 0.1, 0.1, 0.0, "none", "default", 200, 42)
    assert old.precision == "fp32" and old.run_id == fp32.run_id


def test_exclusions_drop_the_runs_they_match():
    block = _block(batch_size=[200, 500], weight_decay=[0.0, 1e-5], epochs=[200, 300],
                   exclude=[{"epochs": 300, "weight_decay": 1e-5}, {"batch_size": 500, "lr": 0.1,
                                                                     "epochs": 200}])
    kept = {(s.batch_size, s.weight_decay, s.epochs) for s in expand_grid(_grid(block), {}, 200)}
    assert kept == {(200, 0.0, 200), (200, 1e-5, 200), (200, 0.0, 300), (500, 0.0, 300)}


# --------------------------------------------------------------------------- mistakes, by key


def test_a_run_given_by_two_blocks_is_refused_naming_both_and_the_run():
    grid = _grid([_block(seed=[41, 42]), _block(weight_decay=[1e-3]), _block(seed=[42, 43])])
    with pytest.raises(ConfigError, match=r"^grid\[0\] and grid\[2\] both give run "
                                          r"fc_sgd_bs200_lr0\.1_wd0_aug-none_init-default_ep200_s42"
                                          r": each run belongs to one block"):
        expand_grid(grid, {}, 200)
    # also when one block scales a base lr to another block's absolute lr
    grid = _grid([_block(batch_size=[400], lr={"sgd": [0.2]}),
                  _block(batch_size=[400], lr=None, base_lr={"sgd": [0.1]})])
    with pytest.raises(ConfigError,
                       match=r"grid\[0\] and grid\[1\] both give run fc_sgd_bs400_lr0\.2_"):
        expand_grid(grid, {}, 200)


@pytest.mark.parametrize("blocks, message", [
    ([_block(), _block(lrr={"sgd": [0.1]})],
     r"unknown parameter key grid\[1\]\.lrr \(did you mean 'lr'\?\): valid keys here are arch, "),
    ([_block(), _block(seed=[])], r"grid\[1\]\.seed is an empty list: give at least one value"),
    ([], r"grid is an empty list: give at least one value"),
    ([_block(), _block(exclude=[])], r"grid\[1\]\.exclude is an empty list"),
    ([_block(), _block(), _block(), _block(optimizer=["adam"], lr={"adam": [-0.1]})],
     r"grid\[3\]\.lr\.adam\[0\] = -0\.1: a learning rate must be positive"),
    ([_block(base_lr={"sgd": [0.1]})],
     r"grid\[0\] sets both of base_lr and lr: give exactly one, base_lr \(scaled by batch_size "
     r"/ train\.lr_reference_batch_size\) or lr \(absolute\)"),
    ([_block(), _block(lr=None)], r"grid\[1\] sets neither of base_lr and lr: give exactly one"),
    ([_block(optimizer=["sgd", "adam"])],
     r"grid\[0\]\.lr has no entry for optimizer 'adam': add adam: \[lr\]"),
    ([_block(), _block(precision=["fp16_mixed"])],
     r"grid\[1\]\.precision\[0\] = 'fp16_mixed' is not known \(did you mean 'fp16-mixed'\?\): "
     r"use one of fp32, fp16-mixed"),
    ([_block(exclude=[{"optimiser": "sgd"}])],
     r"unknown key grid\[0\]\.exclude\[0\]\.optimiser \(did you mean 'optimizer'\?\): an "
     r"exclusion names values of the block's keys: arch, optimizer, batch_size, weight_decay, "
     r"augment, init, epochs, precision, schedule, label_smoothing, lr, seed"),
    ([_block(exclude=[{"base_lr": 0.1}])], r"unknown key grid\[0\]\.exclude\[0\]\.base_lr"),
    ([_block(weight_decay=[0.0, 1e-3], exclude=[{"weight_decay": 1e-5}])],
     r"grid\[0\]\.exclude\[0\]\.weight_decay = 1e-05 is not among the weight_decay values of "
     r"grid\[0\] \(0\.0, 0\.001\), so the exclusion matches no run: a typo\?"),
    ([_block(optimizer=["sgd", "adam"], lr={"sgd": [0.1], "adam": [0.001]},
             exclude=[{"optimizer": "sgd", "lr": 0.001}])],
     r"grid\[0\]\.exclude\[0\] = \{'optimizer': 'sgd', 'lr': 0\.001\} matches no run of "
     r"grid\[0\]: no run combines these values"),
    ([_block(exclude=[{}])], r"grid\[0\]\.exclude\[0\] is empty: name the values of the runs"),
])
def test_each_mistake_is_named_by_its_key(blocks, message):
    with pytest.raises(ConfigError, match=message):
        _grid(copy.deepcopy(blocks))


def test_one_mapping_keeps_its_keys_in_messages():
    with pytest.raises(ConfigError, match=r"^grid\.exclude\[0\]\.batch_size = 64 is not among "):
        _grid(_block(exclude=[{"batch_size": 64}]))
    with pytest.raises(ConfigError, match=r"^grid sets neither of base_lr and lr"):
        _grid(_block(lr=None))


# --------------------------------------------------------------------------- the authors' profile

# The authors' 58 optimizer files (grasp-lyrl/low-dimensional-deepnets configs/optim at 86e1a18),
# as they set them: file, batch size, lr, weight decay, epochs, autocast. adam-500-0.00125-* set
# batch 200 and sgdn-200-0.05-0.0 sets lr 0.01; the profile transcribes them as written.
AUTHORS_FILES = """
    adam-1000-0.0025-0.0                  1000   0.0025    0.0 200 False
    adam-1000-0.0025-1e-05                1000   0.0025  1e-05 200 False
    adam-1000-0.005-0.0-all               1000    0.005    0.0 200 True
    adam-1000-0.005-0.0-all_long          1000    0.005    0.0 300 True
    adam-1000-0.005-0.001-vit_long        1000    0.005  0.001 300 True
    adam-1000-0.005-1e-05-all             1000    0.005  1e-05 200 True
    adam-1000-0.005-1e-05-all_long        1000    0.005  1e-05 300 True
    adam-200-0.0005-0.0                    200   0.0005    0.0 200 False
    adam-200-0.0005-1e-05                  200   0.0005  1e-05 200 False
    adam-200-0.001-0.0                     200    0.001    0.0 200 True
    adam-200-0.001-0.0_long                200    0.001    0.0 300 True
    adam-200-0.001-1e-05                   200    0.001  1e-05 200 True
    adam-200-0.001-1e-05_long              200    0.001  1e-05 300 True
    adam-500-0.00125-0.0                   200  0.00125    0.0 200 False
    adam-500-0.00125-1e-05                 200  0.00125  1e-05 200 False
    adam-500-0.0025-0.0-all                500   0.0025    0.0 200 True
    adam-500-0.0025-0.0-all_long           500   0.0025    0.0 300 True
    adam-500-0.0025-1e-05-all              500   0.0025  1e-05 200 True
    adam-500-0.0025-1e-05-all_long         500   0.0025  1e-05 300 True
    sgd-100-0.005-0.0                      100    0.005    0.0 200 False
    sgd-100-0.005-1e-05                    100    0.005  1e-05 200 False
    sgd-100-0.05-0.0                       100     0.05    0.0 200 False
    sgd-100-0.05-1e-05                     100     0.05  1e-05 200 False
    sgd-1000-0.5-0.0                      1000      0.5    0.0 200 False
    sgd-1000-0.5-0.001                    1000      0.5  0.001 200 False
    sgd-1000-0.5-0.001_long               1000      0.5  0.001 300 False
    sgd-1000-0.5-0.0_long                 1000      0.5    0.0 300 False
    sgd-200-0.1-0.0                        200      0.1    0.0 200 False
    sgd-200-0.1-0.001                      200      0.1  0.001 200 False
    sgd-200-0.1-0.001_long                 200      0.1  0.001 300 False
    sgd-200-0.1-0.0_long                   200      0.1    0.0 300 False
    sgd-200-0.1-1e-05                      200      0.1  1e-05 200 False
    sgd-50-0.0025-0.0                       50   0.0025    0.0 200 False
    sgd-50-0.0025-1e-05                     50   0.0025  1e-05 200 False
    sgd-500-0.25-0.0                       500     0.25    0.0 200 False
    sgd-500-0.25-0.001                     500     0.25  0.001 200 False
    sgd-500-0.25-0.001_long                500     0.25  0.001 300 False
    sgd-500-0.25-0.0_long                  500     0.25    0.0 300 False
    sgdn-100-0.005-0.0                     100    0.005    0.0 200 False
    sgdn-100-0.005-1e-05                   100    0.005  1e-05 200 False
    sgdn-100-0.05-0.0                      100     0.05    0.0 200 False
    sgdn-100-0.05-1e-05                    100     0.05  1e-05 200 False
    sgdn-1000-0.5-0.0                     1000      0.5    0.0 200 False
    sgdn-1000-0.5-0.001                   1000      0.5  0.001 200 False
    sgdn-1000-0.5-0.001_long              1000      0.5  0.001 300 False
    sgdn-1000-0.5-0.0_long                1000      0.5    0.0 300 False
    sgdn-200-0.05-0.0                      200     0.01    0.0 200 False
    sgdn-200-0.1-0.0                       200      0.1    0.0 200 False
    sgdn-200-0.1-0.001                     200      0.1  0.001 200 False
    sgdn-200-0.1-0.001_long                200      0.1  0.001 300 False
    sgdn-200-0.1-0.0_long                  200      0.1    0.0 300 False
    sgdn-200-0.1-1e-05                     200      0.1  1e-05 200 False
    sgdn-50-0.0025-0.0                      50   0.0025    0.0 200 False
    sgdn-50-0.0025-1e-05                    50   0.0025  1e-05 200 False
    sgdn-500-0.25-0.0                      500     0.25    0.0 200 False
    sgdn-500-0.25-0.001                    500     0.25  0.001 200 False
    sgdn-500-0.25-0.001_long               500     0.25  0.001 300 False
    sgdn-500-0.25-0.0_long                 500     0.25    0.0 300 False
"""
EVERY_ARCH = ("fc", "allcnn", "wr-10-4-8", "wr-16-4-64", "convmixer", "vit")


def authors_configurations() -> Counter:
    """(arch, optimizer, batch, lr, wd, epochs, precision) -> runs, from the files and the rules:
    "-vit_long" files train the ViT only, the others every architecture, but wr-16-4-64 no Adam;
    each configuration with augmentation none and simple, seeds 42-51."""
    expected = Counter()
    for line in AUTHORS_FILES.split("\n"):
        if not line.strip():
            continue
        name, bs, lr, wd, epochs, autocast = line.split()
        optimizer = name.split("-")[0]
        archs = ("vit",) if name.endswith("-vit_long") else EVERY_ARCH
        for arch in archs:
            if not (arch == "wr-16-4-64" and optimizer == "adam"):
                expected[(arch, optimizer, int(bs), float(lr), float(wd), int(epochs),
                          "fp16-mixed" if autocast == "True" else "fp32")] += 2 * len(SEEDS)
    return expected


def test_the_authors_profile_transcribes_their_files(root):
    cfg = load_profile(root / "profiles" / "cifar10-authors.yaml")
    specs = expand_grid(cfg.grid, cfg.models, cfg.train.lr_reference_batch_size)
    expected = authors_configurations()
    assert len(AUTHORS_FILES.split()) == 58 * 6
    assert sum(expected.values()) == len(specs) == 6500
    found = Counter((s.arch, s.optimizer, s.batch_size, s.lr, s.weight_decay, s.epochs,
                     s.precision) for s in specs)
    assert found == expected
    assert Counter((s.augment, s.seed) for s in specs) == {
        (aug, seed): 325 for aug in ("none", "simple") for seed in SEEDS}

    def per(field: str) -> dict:
        return dict(Counter(getattr(s, field) for s in specs))

    def expected_per(i: int) -> dict:
        totals = Counter()
        for config, runs in expected.items():
            totals[config[i]] += runs
        return dict(totals)

    # the composition the profile's header states, and the same from the files
    assert per("optimizer") == expected_per(1) == {"sgd": 2280, "sgdn": 2400, "adam": 1820}
    assert per("batch_size") == expected_per(2) == {50: 480, 100: 960, 200: 2120, 500: 1360,
                                                    1000: 1580}
    assert per("epochs") == expected_per(5) == {200: 4440, 300: 2060}
    assert per("precision") == expected_per(6) == {"fp32": 5280, "fp16-mixed": 1220}
    assert per("arch") == expected_per(0) == {"fc": 1140, "allcnn": 1140, "wr-10-4-8": 1140,
                                              "wr-16-4-64": 780, "convmixer": 1140, "vit": 1160}
    assert cfg.grid.arch == EVERY_ARCH and cfg.grid.seed == tuple(SEEDS)


# --------------------------------------------------------------------------- training honours it


def _mixed(seed: int = 42, precision_: str = "fp16-mixed") -> RunSpec:
    return RunSpec(arch="fc", optimizer="sgdn", batch_size=128, base_lr=0.1, lr=0.1,
                   weight_decay=0.0, augment="none", init="default", epochs=2, seed=seed,
                   model_size={"widths": (16,)}, precision=precision_)


@pytest.fixture(scope="module")
def data(tiny_prepared):
    return DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))


def test_fp16_mixed_is_refused_on_a_cpu_before_any_training(data, tiny_prepared, tmp_path):
    needs_cuda = (r"run fc_sgdn_bs128_lr0\.1_wd0_aug-none_init-default_ep2_fp16-mixed_s42 has "
                  r"precision fp16-mixed, which needs CUDA \(float16 autocast with a gradient "
                  r"scaler\), but training runs on cpu: set precision: \[fp32\] in that grid "
                  r"block, or train on a GPU")
    with pytest.raises(ValueError, match=needs_cuda):
        train_run(_mixed(), data)
    store = tmp_path / "runs"
    with pytest.raises(ValueError, match=needs_cuda):  # the fp32 run first is not trained either
        launch_local([_mixed(precision_="fp32"), _mixed()], tiny_prepared, store,
                     torch.device("cpu"), progress=False)
    assert not store.exists() or not any(store.iterdir())
    with pytest.raises(ValueError, match="packs train fp32 only"):
        PackTrainer([_mixed(precision_="fp32"), _mixed(43)], data)
    pytest.importorskip("ray")
    from lowdim.training.ray_backend import launch_ray

    with pytest.raises(ValueError, match=needs_cuda):  # before connecting to any cluster
        launch_ray([_mixed()], tiny_prepared, store, TrainConfig(device="cpu", backend="ray"),
                   progress=False)


def test_fp16_mixed_trains_alone_with_a_loss_scale(tiny_prepared, tmp_path, monkeypatch):
    # CUDA is not at hand: lift the device check so the same code runs CPU float16 autocast and
    # torch.amp.GradScaler("cpu"). The fp16-mixed run trains alone while the fp32 ones pack,
    # records no pack, and the second launch finds every run complete.
    monkeypatch.setattr(precision, "check_precision", lambda specs, device_type: None)
    monkeypatch.setattr(local, "check_precision", lambda specs, device_type: None)
    specs = [_mixed(42, "fp32"), _mixed(43, "fp32"), _mixed(42)]
    store = tmp_path / "runs"
    first = launch_local(specs, tiny_prepared, store, torch.device("cpu"), pack_size=2,
                         progress=False)
    assert sorted(first.trained) == sorted(s.run_id for s in specs) and not first.diverged
    again = launch_local(specs, tiny_prepared, store, torch.device("cpu"), pack_size=2,
                         progress=False)
    assert again.trained == [] and sorted(again.skipped) == sorted(s.run_id for s in specs)
    data = DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))
    mixed, plain = train_run(_mixed(42), data), train_run(_mixed(42, "fp32"), data)
    assert mixed.status == plain.status == "ok"
    assert mixed.steps == plain.steps and mixed.stacked("train")[0].tolist() == plain.stacked(
        "train")[0].tolist()  # same start: evaluation stays in float32
    assert mixed.stacked("train")[-1].tolist() != plain.stacked("train")[-1].tolist()
