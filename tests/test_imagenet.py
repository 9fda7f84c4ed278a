"""ImageNet (issue 25, item 6): torchvision's folder layout, torchvision's ResNets, the authors'
ImageNet schedule and label smoothing, and the pipeline end to end on a generated 12-class folder
dataset in that layout."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml
from conftest import ROOT, copy_repository, run_command
from PIL import Image

import lowdim.training.packed
import lowdim.training.run
from lowdim.config.data import DataConfig
from lowdim.config.grid import GridConfig
from lowdim.config.load import ConfigError, from_dict
from lowdim.data import load_source, normalize
from lowdim.data.imagenet import CROP_RATIO, centre_crop_box, load_imagenet
from lowdim.models import build_model, check_sizes, parameter_count
from lowdim.store.records import RunSpec
from lowdim.tools.params import validate
from lowdim.training.grid import expand_grid
from lowdim.training.packed import train_pack
from lowdim.training.run import (
    SPACES,
    DeviceData,
    lr_factor,
    train_run,
    training_loss,
    triangular_factor,
)

# One torch thread: the ResNets' first forward passes crawl on an oversubscribed CPU otherwise.
pytestmark = pytest.mark.usefixtures("single_thread")

# --------------------------------------------------------------------------- a generated dataset


def class_colour(label: int) -> np.ndarray:
    """A distinct RGB colour per class, so a small network can learn the classes."""
    rng = np.random.default_rng(1000 + label)
    return rng.integers(30, 226, size=3)


def write_folder_dataset(root: Path, classes: int, train: int, val: int, *,
                         suffix: str = ".JPEG", seed: int = 0) -> list[str]:
    """root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG as torchvision's ImageNet lays them
    out: noisy images of one colour per class, of varied sizes (portrait and landscape)."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{10_000_000 + 7 * k:08d}" for k in range(classes)]
    for split, count in (("train", train), ("val", val)):
        for label, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = (int(v) for v in rng.integers(18, 30, size=2))
                pixels = class_colour(label) + rng.normal(0, 20, size=(height, width, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                image.save(folder / f"{wnid}_{split}_{i:03d}{suffix}")
    return wnids


def bordered_png(path: Path, size: int, border: int, inside: tuple, outside: tuple) -> None:
    """A size x size PNG of colour `outside` with a centred square of colour `inside`."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = outside
    pixels[border:size - border, border:size - border] = inside
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


# --------------------------------------------------------------------------- the folder layout


def test_classes_are_the_sorted_wnid_folders_and_labels_follow_them(tmp_path):
    wnids = write_folder_dataset(tmp_path, classes=3, train=4, val=2)
    # torchvision's class order is the sorted folder names, whatever order they were made in
    raw = load_source("imagenet", root=tmp_path, image_size=8)
    assert raw.classes == tuple(sorted(wnids))
    assert raw.train_images.shape == (12, 3, 8, 8) and raw.test_images.shape == (6, 3, 8, 8)
    assert raw.train_images.dtype == np.uint8
    np.testing.assert_array_equal(raw.train_labels, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(raw.test_labels, np.repeat([0, 1, 2], 2))
    # the same labels as torchvision's ImageFolder gives the same folders
    folder = torchvision.datasets.ImageFolder(str(tmp_path / "train"))
    assert folder.classes == list(raw.classes)
    np.testing.assert_array_equal(folder.targets, raw.train_labels)
    # each image keeps its class's colour (JPEG and the resize blur the noise, not the mean)
    for label in range(3):
        mean = raw.train_images[raw.train_labels == label].mean(axis=(0, 2, 3))
        assert np.abs(mean - class_colour(label)).max() < 12


def test_val_takes_the_training_labels_of_its_folder_names(tmp_path):
    for wnid in ("n02", "n01", "n03"):
        bordered_png(tmp_path / "train" / wnid / "a.png", 16, 0, (9, 9, 9), (9, 9, 9))
    bordered_png(tmp_path / "val" / "n03" / "b.png", 16, 0, (1, 2, 3), (1, 2, 3))
    raw = load_imagenet(tmp_path, image_size=4)
    assert raw.classes == ("n01", "n02", "n03")
    assert raw.test_labels.tolist() == [2]  # n03 is class 2 of train, not class 0 of val
    assert raw.test_images[0, :, 0, 0].tolist() == [1, 2, 3]


def test_centre_crop_keeps_224_of_256_and_resizes_it(tmp_path):
    # 256 x 256 with a 16-pixel frame: the crop (224 of 256 around the centre) drops the frame
    # exactly, so every pixel of the resized image has the inside colour (a lossless PNG)
    assert centre_crop_box(256, 256) == (16, 16, 240, 240)
    assert centre_crop_box(300, 200) == (62, 12, 237, 187)
    for split in ("train", "val"):
        bordered_png(tmp_path / split / "n01" / "x.png", 256, 16, (200, 40, 90), (0, 0, 0))
    raw = load_imagenet(tmp_path, image_size=8)
    assert (raw.train_images[0].transpose(1, 2, 0) == (200, 40, 90)).all()
    assert CROP_RATIO == 224 / 256


def test_meta_bin_names_the_classes_without_changing_labels(tmp_path):
    wnids = write_folder_dataset(tmp_path, classes=2, train=1, val=1, suffix=".png")
    meta = {wnids[0]: ("tench", "Tinca tinca"), "n99999999": ("unused",)}
    torch.save((meta, [wnids[0]]), tmp_path / "meta.bin")
    raw = load_imagenet(tmp_path, image_size=4)
    assert raw.classes == ("tench, Tinca tinca", wnids[1])  # an unnamed wnid keeps its wnid
    assert raw.train_labels.tolist() == [0, 1]


def test_grayscale_and_cmyk_images_become_rgb(tmp_path):
    Image.new("L", (20, 20), 77).save(_make(tmp_path / "train" / "n1") / "g.jpg")
    Image.new("CMYK", (20, 20), (0, 0, 0, 0)).save(_make(tmp_path / "val" / "n1") / "c.JPEG")
    raw = load_imagenet(tmp_path, image_size=4)
    assert raw.train_images.shape == (1, 3, 4, 4)
    assert np.abs(raw.train_images.astype(int) - 77).max() <= 2
    assert raw.test_images.min() >= 250  # CMYK (0, 0, 0, 0) is white


def _make(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("layout, message", [
    ("no-root", r"data\.root is not set: point it at the folder holding root/train/<wnid>"),
    ("no-val", r"val does not exist: put ImageNet under data\.root as root/train/<wnid>.*cannot "
               r"be downloaded"),
    ("loose-val", r"val \(test split\) has no class folders; its images lie loose: sort them "
                  r"into one folder per class"),
    ("unknown-val-class", r"has class folders the training split lacks \(n09\)"),
    ("empty-train-class", r"training class folder\(s\) n02 .* hold no image files"),
    ("not-an-image", r"bad\.JPEG cannot be read as an image"),
])
def test_bad_layouts_say_what_to_do(tmp_path, layout, message):
    bordered_png(tmp_path / "train" / "n01" / "a.png", 8, 0, (1, 1, 1), (1, 1, 1))
    if layout != "no-val":
        val = _make(tmp_path / "val")
        if layout == "loose-val":
            bordered_png(val / "ILSVRC2012_val_00000001.png", 8, 0, (1, 1, 1), (1, 1, 1))
        else:
            bordered_png(val / "n01" / "b.png", 8, 0, (1, 1, 1), (1, 1, 1))
    if layout == "unknown-val-class":
        bordered_png(tmp_path / "val" / "n09" / "c.png", 8, 0, (1, 1, 1), (1, 1, 1))
    if layout == "empty-train-class":
        _make(tmp_path / "train" / "n02")
    if layout == "not-an-image":
        (tmp_path / "train" / "n01" / "bad.JPEG").write_bytes(b"not a jpeg")
    root = None if layout == "no-root" else tmp_path
    error = ValueError if layout in ("no-root", "unknown-val-class", "not-an-image") \
        else FileNotFoundError
    with pytest.raises(error, match=message):
        load_imagenet(root, image_size=4)


def test_imagenet_cannot_be_downloaded(tmp_path):
    with pytest.raises(ValueError, match=r"ImageNet cannot be downloaded.*data\.download: false"):
        load_imagenet(tmp_path, download=True)
    with pytest.raises(ConfigError, match=r"ImageNet cannot be downloaded"):
        from_dict({"data": {"dataset": "imagenet", "download": True}}, DataConfig)


def test_image_size_is_an_imagenet_key():
    data = from_dict({"data": {"dataset": "imagenet", "image_size": 32}}, DataConfig)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 1000
    assert from_dict({"data": {"dataset": "imagenet"}}, DataConfig).input_shape == (3, 64, 64)
    assert from_dict({"data": {"dataset": "cifar10"}}, DataConfig).input_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match=r"data\.image_size = 32 but data\.dataset = 'cifar10': "
                                          r"only imagenet is resized"):
        from_dict({"data": {"dataset": "cifar10", "image_size": 32}}, DataConfig)
    with pytest.raises(ValueError, match=r"only imagenet is resized"):
        load_source("digits", image_size=8)


# --------------------------------------------------------------------------- torchvision's ResNets


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_are_torchvisions_at_the_default_sizes(name):
    torch.manual_seed(5)
    ours = build_model(name, (3, 64, 64), 1000)
    torch.manual_seed(5)
    theirs = getattr(torchvision.models, name)(num_classes=1000)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # the same modules, names and order
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same initialisation, draw by draw
    assert parameter_count(ours) == {"resnet18": 11_689_512, "resnet50": 25_557_032}[name]
    x = torch.randn(2, 3, 32, 32)
    ours.eval()
    theirs.eval()
    assert torch.equal(ours(x), theirs(x))


def test_resnet_sizes_are_overridable_and_checked():
    small = build_model("resnet18", (1, 8, 8), 12, width=4, layers=[1, 1])
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 12)
    assert small.fc.in_features == 8  # width 4, doubled once
    assert build_model("resnet50", (3, 16, 16), 5, width=2, layers=[1]).fc.in_features == 8
    with pytest.raises(ConfigError, match=r"models\.resnet18 = 'resnet18': unknown size "
                                          r"keyword\(s\) depth for 'resnet18': valid ones are "
                                          r"layers, width"):
        check_sizes({"resnet18": {"depth": 3}}, ["resnet18"], "imagenet")
    with pytest.raises(ConfigError, match=r"resnet34 size layers=\[\] is invalid"):
        check_sizes({"resnet34": {"layers": []}}, ["resnet34"], "imagenet", (3, 16, 16))


# --------------------------------------------------------------------------- schedule and loss


def test_triangular_schedule_closed_form():
    # 5 epochs of 4 steps, peak at epoch 2: 1e-4 at step 0, 1 at step 8, 0 at step 20
    values = [triangular_factor(s, 4, 2, 5) for s in range(21)]
    assert values[0] == 1e-4 and values[8] == 1.0 and values[20] == 0.0
    assert values[4] == pytest.approx((1e-4 + 1) / 2, abs=1e-15)  # epoch 1: half-way up
    assert values[14] == pytest.approx(0.5, abs=1e-15)             # epoch 3.5: half-way down
    assert all(a < b for a, b in zip(values[:8], values[1:9], strict=True))
    assert all(a > b for a, b in zip(values[8:20], values[9:21], strict=True))
    spec = RunSpec("fc", "sgdn", 10, 0.1, 0.1, 0.0, "none", "default", 5, 0,
                   schedule="triangular-2")
    assert [lr_factor(spec, 4)(s) for s in range(21)] == values
    cosine = lr_factor(replace(spec, schedule="cosine"), 4)
    assert cosine(0) == 1.0 and cosine(10) == pytest.approx(0.5) and cosine(20) == 0.0
    with pytest.raises(ValueError, match=r"peak epoch \(5\) must lie strictly between 0 and"):
        triangular_factor(0, 4, 5, 5)


def test_label_smoothing_closed_form():
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(6) * 100
    log_p = F.log_softmax(logits, dim=1)
    s = 0.1
    expected = ((1 - s) * -log_p[torch.arange(6), labels] - s * log_p.mean(dim=1)).mean()
    assert training_loss(logits, labels, s).item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.equal(training_loss(logits, labels), F.cross_entropy(logits, labels))


def test_grid_axes_schedule_and_label_smoothing():
    grid = from_dict({"grid": {"arch": ["fc"], "optimizer": ["sgdn"], "lr": {"sgdn": [0.1]},
                               "batch_size": [10], "epochs": [4],
                               "schedule": ["cosine", "triangular-2"],
                               "label_smoothing": [0.0, 0.1], "seed": [1]}}, GridConfig)
    ids = [s.run_id for s in expand_grid(grid, {}, 200)]
    assert ids == ["fc_sgdn_bs10_lr0.1_wd0_aug-none_init-default_ep4_s1",
                   "fc_sgdn_bs10_lr0.1_wd0_aug-none_init-default_ep4_ls0.1_s1",
                   "fc_sgdn_bs10_lr0.1_wd0_aug-none_init-default_ep4_triangular-2_s1",
                   "fc_sgdn_bs10_lr0.1_wd0_aug-none_init-default_ep4_triangular-2_ls0.1_s1"]
    specs = expand_grid(grid, {}, 200)
    assert "schedule" not in specs[0].to_dict() and "label_smoothing" not in specs[0].to_dict()
    assert specs[3].to_dict()["schedule"] == "triangular-2"
    assert specs[3].to_dict()["label_smoothing"] == 0.1
    block = {"arch": ["fc"], "optimizer": ["sgd"], "base_lr": {"sgd": [0.1]},
             "batch_size": [10], "epochs": [2, 4]}
    for extra, message in (
            ({"schedule": ["triangular-2"]}, r"grid\.schedule = \['triangular-2'\]: "
                                             r"triangular-2 peaks at epoch 2, but a run of 2 "
                                             r"epochs ends first"),
            ({"schedule": ["linear"]}, r"grid\.schedule\[0\] = 'linear': use cosine, or "
                                       r"triangular-<peak epoch>"),
            ({"schedule": ["triangular-0"]}, r"triangular-<peak epoch> with a positive"),
            ({"label_smoothing": [1.0]}, r"grid\.label_smoothing\[0\] = 1\.0: label smoothing "
                                         r"must be in \[0, 1\)")):
        with pytest.raises(ConfigError, match=message):
            from_dict({"grid": {**block, **extra}}, GridConfig)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def digits(tiny_prepared):
    """Digits (8 x 8, one channel): a ResNet stem takes them to 2 x 2, enough to train."""
    full = DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))
    return replace(full, train_images=full.train_images[:600],
                   train_labels=full.train_labels[:600])


def _resnet_spec(k: int, **kw) -> RunSpec:
    base = dict(arch="resnet18", optimizer="sgdn", batch_size=256, base_lr=0.05,
                lr=0.05 * (1 + k / 2), weight_decay=(0.0, 1e-3)[k % 2],
                augment=("simple", "none")[k % 2], init="default", epochs=2, seed=40 + k,
                model_size={"width": 4, "layers": (1, 1)}, schedule="triangular-1",
                label_smoothing=0.1)
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture
def float64(monkeypatch):
    """Both paths in float64, as tests/test_packed.py does: the same algorithm to 1e-5."""
    def normalize64(images, mean, std):
        return normalize(images, mean, std).double()

    monkeypatch.setattr(lowdim.training.run, "normalize", normalize64)
    monkeypatch.setattr(lowdim.training.packed, "normalize", normalize64)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_resnet_packs_follow_their_single_runs(digits, float64):
    """A ResNet trains in a pack (torch.func) as alone, with the triangular schedule and label
    smoothing applied per pack as train_run applies them per run."""
    specs = [_resnet_spec(k) for k in range(2)]
    packed = train_pack(specs, digits)
    for spec, result in zip(specs, packed, strict=True):
        single = train_run(spec, digits)
        assert result.steps == single.steps and single.status == "ok"
        for space in SPACES:
            a, b = single.stacked(space).astype(float), result.stacked(space).astype(float)
            ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(float)
            assert np.all(np.abs(a - b) <= 1e-5 + ulp)
            np.testing.assert_allclose(result.loss[space], single.loss[space], atol=1e-5)


def test_schedule_and_label_smoothing_change_the_run(digits):
    runs = {(sched, ls): train_run(_resnet_spec(0, schedule=sched, label_smoothing=ls,
                                                epochs=2), digits)
            for sched, ls in (("cosine", 0.0), ("triangular-1", 0.0), ("cosine", 0.1))}
    final = {key: run.stacked("train")[-1] for key, run in runs.items()}
    assert not np.array_equal(final["cosine", 0.0], final["triangular-1", 0.0])
    assert not np.array_equal(final["cosine", 0.0], final["cosine", 0.1])
    # the first step moves the weights 1e-4 times as far with the triangular schedule
    first = {key: run.stacked("train")[1] - run.stacked("train")[0] for key, run in runs.items()}
    assert np.abs(first["triangular-1", 0.0]).max() < np.abs(first["cosine", 0.0]).max()


# --------------------------------------------------------------------------- the profile


def test_imagenet_profile_is_valid_and_the_authors_recipe():
    config = validate(yaml.safe_load((ROOT / "profiles" / "imagenet.yaml").read_text()))
    assert config.data.dataset == "imagenet" and config.data.num_classes == 1000
    specs = expand_grid(config.grid, config.models, config.train.lr_reference_batch_size)
    assert len(specs) == 10
    assert {s.arch for s in specs} == {"resnet18", "resnet50"}
    assert {(s.lr, s.batch_size, s.epochs, s.schedule, s.label_smoothing, s.weight_decay,
             s.precision) for s in specs} == {(1.7, 1680, 40, "triangular-2", 0.1, 1e-4,
                                                "fp16-mixed")}
    assert sorted({s.seed for s in specs}) == [0, 10, 100, 1000, 10000]


# --------------------------------------------------------------------------- end to end

E2E_CLASSES, E2E_TRAIN, E2E_VAL = 12, 20, 3
E2E_STAGES = ("data", "train", "predictions", "distances", "embedding", "fig02_embedding")


def e2e_profile(root: Path) -> dict:
    """The tiny profile on the generated folder dataset: two small ResNet runs, 16 x 16 images,
    the authors' ImageNet schedule and label smoothing."""
    profile = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    profile["profile"] = "imagenet-tiny"
    profile["data"].update(dataset="imagenet", root=str(root), image_size=16,
                           eval_train_size=48, eval_test_size=None)
    profile["grid"] = {"arch": ["resnet18"], "optimizer": ["sgdn"], "lr": {"sgdn": [0.05]},
                       "batch_size": [60], "weight_decay": [1.0e-4], "augment": ["simple"],
                       "epochs": [2], "schedule": ["triangular-1"], "label_smoothing": [0.1],
                       "seed": [0, 10]}
    profile["models"] = {"resnet18": {"width": 4, "layers": [1, 1]}}
    profile["train"].update(workers=1, threads=1)
    profile["trajectories"]["size_pair"] = None
    profile["studies"]["corners"].update(arch="resnet18", subsample_size=1000, batch_size=60)
    profile["studies"]["averaging"].update(arch=None, optimizer=None)
    return profile


@pytest.mark.slow
def test_imagenet_folder_pipeline_end_to_end(tmp_path):
    """data -> train -> predictions -> distances -> embedding -> Figure 2 with `dvc repro` on a
    12-class, 20-image-per-class dataset in torchvision's ImageNet layout, on the CPU."""
    dataset = tmp_path / "imagenet"
    wnids = write_folder_dataset(dataset, E2E_CLASSES, E2E_TRAIN, E2E_VAL)
    repo = copy_repository(ROOT, tmp_path / "repo")
    profile = e2e_profile(dataset)
    validate(profile)  # the whole profile is valid, networks built
    (repo / "params.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    done = run_command(["dvc", "repro", E2E_STAGES[-1]], repo)
    ran = {line.split("'")[1] for line in done.stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == set(E2E_STAGES)

    meta = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta["dataset"] == "imagenet" and meta["classes"] == sorted(wnids)
    images = np.load(repo / "data" / "prepared" / "train_images.npy")
    assert images.shape == (E2E_CLASSES * E2E_TRAIN, 3, 16, 16)

    runs = sorted(p.name for p in (repo / "data" / "runs").iterdir())
    assert runs == [f"resnet18_sgdn_bs60_lr0.05_wd0.0001_aug-simple_init-default_ep2"
                    f"_triangular-1_ls0.1_s{seed}" for seed in (0, 10)]
    run_meta = json.loads((repo / "data" / "runs" / runs[0] / "meta.json").read_text())
    assert run_meta["spec"]["schedule"] == "triangular-1"
    assert run_meta["spec"]["label_smoothing"] == 0.1

    probs = np.load(repo / "data" / "predictions" / "test.npy", mmap_mode="r")
    assert probs.shape[1:] == (E2E_CLASSES * E2E_VAL, E2E_CLASSES)  # the whole val split
    index = pd.read_parquet(repo / "data" / "predictions" / "index.parquet")
    ignorance = int(np.flatnonzero(index["kind"] == "ignorance")[0])
    np.testing.assert_allclose(probs[ignorance], 1 / E2E_CLASSES, rtol=1e-6)
    distances = np.load(repo / "data" / "distances" / "test.npy")
    truth = int(np.flatnonzero(index["kind"] == "truth")[0])
    assert distances[ignorance, truth] == pytest.approx(0.5 * math.log(E2E_CLASSES), abs=1e-6)
    embedding = json.loads((repo / "metrics" / "embedding.json").read_text())
    assert 0 < embedding["test"]["explained_stress_1"] <= 1
    assert (repo / "figures" / "fig02_embedding.png").stat().st_size > 10_000
