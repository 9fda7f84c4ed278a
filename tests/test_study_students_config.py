"""Several synthetic students (studies.synthetic.students) and the averaged configuration named by
grid axes (studies.averaging.configuration): every bad value is named with what to do, and a
selection must pick out exactly one configuration of the grid."""

from __future__ import annotations

import pytest
import yaml

from lowdim.config.grid import AXES, GridConfig
from lowdim.config.load import ConfigError, from_dict
from lowdim.config.profile import load_profile
from lowdim.config.studies import averaging
from lowdim.config.studies.averaging import (
    CONFIGURATION_AXES,
    AveragingConfig,
    choose_configuration,
    grid_configurations,
)
from lowdim.config.studies.synthetic import SyntheticConfig, student_group
from lowdim.tools.params import validate
from lowdim.training.grid import expand_grid


def _quick(root) -> dict:
    return yaml.safe_load((root / "profiles" / "quick.yaml").read_text())


# --- studies.synthetic: students ---


@pytest.mark.parametrize("students, widths, message", [
    ([[512], [512, 512]], [64], r"studies\.synthetic sets both student_widths \(one student\) "
                                r"and students \(several\): keep students"),
    ([[512], [512, 0]], None, r"studies\.synthetic\.students\[1\]\[1\] = 0: must be positive"),
    ([[512], [512]], None, r"studies\.synthetic\.students = .* repeats a value"),
    ([], None, r"studies\.synthetic\.students is an empty list"),
    ([512, 512], None, r"studies\.synthetic\.students\[0\] = 512: must be a list"),
])
def test_bad_students_are_named(root, students, widths, message):
    raw = _quick(root)
    raw["studies"]["synthetic"].update(students=students, student_widths=widths)
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_students_are_named_by_their_widths_and_one_student_keeps_its_layout():
    several = from_dict({"studies": {"synthetic": {"students": [[512], [512, 512]]}}},
                        SyntheticConfig)
    assert several.student_architectures() == [("fc-512", (512,)), ("fc-512-512", (512, 512))]
    one = from_dict({"studies": {"synthetic": {"student_widths": [16]}}}, SyntheticConfig)
    assert one.student_architectures() == [(None, (16,))]
    assert SyntheticConfig().student_architectures() == [(None, (64, 32))]  # neither key set
    assert student_group(None, "default") == "default"
    assert student_group("fc-512", "corners") == "fc-512_corners"


def test_the_authors_profiles_train_the_authors_two_students(root):
    for name in ("cifar10-authors", "cifar10-paper"):
        raw = yaml.safe_load((root / "profiles" / f"{name}.yaml").read_text())
        study = from_dict(raw, SyntheticConfig)
        assert [w for _, w in study.student_architectures()] == [(512,), (512, 512)], name
        assert study.seeds == tuple(range(42, 92)), name  # the authors' 50 runs per setting


# --- studies.averaging: configuration ---


def test_the_configuration_axes_are_the_grid_axes_and_the_two_learning_rates():
    assert set(CONFIGURATION_AXES) == set(AXES) | {"lr", "base_lr"}


@pytest.mark.parametrize("averaging_section, message", [
    ({"arch": "allcnn", "optimizer": "sgdn", "configuration": {"batch_size": 64}},
     r"studies\.averaging\.configuration and studies\.averaging\.arch/optimizer both name"),
    ({"configuration": {}}, r"studies\.averaging\.configuration is empty: name the "
                            r"configuration by grid axes"),
    ({"configuration": {"wd": 0.0}}, r"studies\.averaging\.configuration\.wd = 'wd' is not known: "
                                     r"use one of arch, optimizer, batch_size, lr, base_lr"),
    ({"configuration": {"arch": ["allcnn", "fc"]}},
     r"studies\.averaging\.configuration\.arch = \['allcnn', 'fc'\]: give one value"),
    ({"configuration": {"arch": "allcnn"}},
     r"matches 3 configurations of the grid, which differ in optimizer: sgd, sgdn, adam; "
     r"lr: 0\.00032, 0\.032; base_lr: 0\.001, 0\.1\. Add those axes"),
    ({"configuration": {"arch": "allcnn", "optimizer": "sgdm"}},
     r"matches no configuration of the grid: with the others as given, optimizer can be sgd, "
     r"sgdn, adam\. Change the value"),
    ({"configuration": {"arch": "allcnn", "optimizer": "sgdn", "lr": 0.1}},
     r"with the others as given, lr can be 0\.032"),  # quick: base_lr 0.1 at batch 64 of 200
])
def test_bad_averaged_configurations_are_named(root, averaging_section, message):
    raw = _quick(root)
    raw["studies"]["averaging"] = {"arch": None, "optimizer": None, **averaging_section}
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_a_configuration_that_names_one_of_the_grid_is_valid(root):
    raw = _quick(root)
    raw["studies"]["averaging"] = {"arch": None, "optimizer": None, "configuration": {
        "arch": "allcnn", "optimizer": "sgdn", "lr": 0.032, "batch_size": 64}}
    assert validate(raw).studies.averaging.configuration["lr"] == 0.032


def test_without_the_reference_batch_size_the_stage_matches_the_learning_rate(root):
    raw = _quick(root)
    raw["studies"]["averaging"] = {"arch": None, "optimizer": None, "configuration": {
        "arch": "allcnn", "optimizer": "sgdn", "lr": 0.5}}
    study, grid = from_dict(raw, AveragingConfig, GridConfig)
    averaging.check_with(study, grid)  # the stage has no train section: lr is left to the runs
    with pytest.raises(ConfigError, match=r"lr can be 0\.032"):
        averaging.check_with(study, grid, 200)
    raw["studies"]["averaging"]["configuration"]["arch"] = "resnet"
    study = from_dict(raw, AveragingConfig)
    with pytest.raises(ConfigError, match=r"with the others as given, arch can be fc, allcnn"):
        averaging.check_with(study, grid)  # the other axes are still checked


def test_grid_configurations_have_the_runs_learning_rates(root):
    raw = yaml.safe_load((root / "profiles" / "cifar10-authors.yaml").read_text())
    grid = from_dict(raw, GridConfig)
    configurations = grid_configurations(grid, 200)
    specs = expand_grid(grid, {}, 200)
    assert len(configurations) == len({s.run_id.rsplit("_s", 1)[0] for s in specs}) == 650
    by_id = {(s.arch, s.optimizer, s.batch_size, f"{s.lr:g}", s.weight_decay, s.augment,
              s.epochs, s.precision): s for s in specs}
    for conf in configurations:
        spec = by_id[(conf["arch"], conf["optimizer"], conf["batch_size"], f"{conf['lr']:g}",
                      conf["weight_decay"], conf["augment"], conf["epochs"], conf["precision"])]
        assert conf["lr"] == pytest.approx(spec.lr, rel=1e-12)
        assert conf["base_lr"] == pytest.approx(spec.base_lr, rel=1e-12)


def test_the_authors_profiles_average_one_allcnn_configuration(root):
    for name in ("cifar10-authors", "cifar10-paper"):
        cfg = load_profile(root / "profiles" / f"{name}.yaml")  # check_across passes
        selection = cfg.studies.averaging.configuration
        configurations = grid_configurations(cfg.grid, cfg.train.lr_reference_batch_size)
        chosen = configurations[choose_configuration(selection, configurations, "key", "grid")]
        assert (chosen["arch"], chosen["optimizer"], chosen["batch_size"], chosen["lr"],
                chosen["weight_decay"], chosen["augment"], chosen["epochs"],
                chosen["precision"]) == ("allcnn", "sgdn", 200, 0.1, 0.0, "none", 200, "fp32")


def test_choosing_among_made_up_configurations():
    confs = [{"arch": "fc", "lr": 0.1, "augment": "none"},
             {"arch": "fc", "lr": 0.1 * 3 / 3, "augment": "simple"},
             {"arch": "cnn", "lr": 0.3, "augment": "none"}]
    assert choose_configuration({"arch": "cnn"}, confs, "k", "them") == 2
    assert choose_configuration({"lr": 0.1, "augment": "simple"}, confs, "k", "them") == 1
    with pytest.raises(ConfigError, match=r"k = \{arch: fc\} matches 2 configurations of them, "
                                          r"which differ in augment: none, simple"):
        choose_configuration({"arch": "fc"}, confs, "k", "them")
    with pytest.raises(ConfigError, match=r"k = \{arch: vit, lr: 0\.5\} matches no configuration "
                                          r"of them: arch can be fc, cnn; lr can be 0\.1, 0\.3"):
        choose_configuration({"arch": "vit", "lr": 0.5}, confs, "k", "them")
    with pytest.raises(ConfigError, match=r"names unknown axes \['size'\]"):
        choose_configuration({"size": 1}, confs, "k", "them")
