"""The special studies' parameter sections (studies.corners, studies.synthetic): every bad value
names its key, and a stage loading a study checks it against the sections it refers to."""

from __future__ import annotations

import pytest
import yaml

from lowdim.config.data import DataConfig
from lowdim.config.grid import GridConfig
from lowdim.config.load import ConfigError, from_dict
from lowdim.config.profile import load_profile
from lowdim.config.studies import corners
from lowdim.config.studies.corners import CornersConfig
from lowdim.tools.params import validate


def _quick(root) -> dict:
    return yaml.safe_load((root / "profiles" / "quick.yaml").read_text())


@pytest.mark.parametrize("section, key, value, message", [
    ("corners", "arch", "vit-large", r"studies\.corners\.arch = 'vit-large' is not in grid\.arch"),
    ("corners", "kinds", ["uniform", "corner"],
     r"studies\.corners\.kinds\[1\] = 'corner' is not known"),
    ("corners", "kinds", ["uniform", "uniform"], r"studies\.corners\.kinds = .* repeats a value"),
    ("corners", "optimizer", "rmsprop", r"studies\.corners\.optimizer = 'rmsprop' is not known"),
    ("corners", "iseeds", [-1],
     r"studies\.corners\.iseeds\[0\] = -1: an iseed must be in \[0, 2\*\*32\)"),
    ("corners", "subsample_size", 205, r"studies\.corners\.subsample_size = 205: a balanced "
                                       r"subset needs a multiple of the 10 classes"),
    ("corners", "phase1_epochs", 0, r"studies\.corners\.phase1_epochs = 0: must be positive"),
    ("corners", "base_lr", -0.1, r"studies\.corners\.base_lr = -0\.1: must be positive"),
    ("corners", "seeds", 42, r"studies\.corners\.seeds = 42: must be a list"),
    ("synthetic", "c", [0.5, -0.1],
     r"studies\.synthetic\.c\[1\] = -0\.1: the decay rate must be >= 0"),
    ("synthetic", "c", [0.5, 0.5], r"studies\.synthetic\.c = \[0\.5, 0\.5\] repeats a value"),
    ("synthetic", "num_classes", 1, r"studies\.synthetic\.num_classes = 1: must be at least 2"),
    ("synthetic", "teacher", "cnn", r"studies\.synthetic\.teacher = 'cnn' is not known"),
    ("synthetic", "student_widths", [64, 0],
     r"studies\.synthetic\.student_widths\[1\] = 0: must be positive"),
    ("synthetic", "optimizers", ["sgd"],
     r"studies\.synthetic\.lr has no entry for optimizer 'sgd'"),
    ("synthetic", "lr", {"sgdn": 0.05, "adam": 0.0},
     r"studies\.synthetic\.lr\.adam = 0\.0: a learning rate must be positive"),
    ("synthetic", "ncorners", -1, r"studies\.synthetic\.ncorners = -1: must be >= 0"),
    ("synthetic", "d", 0, r"studies\.synthetic\.d = 0: must be positive"),
])
def test_bad_study_values_are_named(root, section, key, value, message):
    raw = _quick(root)
    raw["studies"][section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_unknown_study_key_is_named_with_a_suggestion(root):
    raw = _quick(root)
    raw["studies"]["corners"]["iseed"] = [0]
    with pytest.raises(ConfigError, match=r"unknown parameter key studies\.corners\.iseed "
                                          r"\(did you mean 'iseeds'\?\)"):
        validate(raw)


@pytest.mark.parametrize("section", ["corners", "synthetic"])
def test_a_top_level_study_section_is_an_unknown_key(root, section):
    raw = _quick(root)
    raw[section] = raw["studies"].pop(section)  # the layout before the studies moved
    with pytest.raises(ConfigError, match=rf"unknown parameter key {section}: valid keys"):
        validate(raw)


def test_the_corners_stage_checks_its_section_against_the_grid_and_the_data(root):
    raw = _quick(root)
    raw["studies"]["corners"]["subsample_size"] = 205
    study, grid, data = from_dict(raw, CornersConfig, GridConfig, DataConfig)  # each on its own
    with pytest.raises(ConfigError, match=r"studies\.corners\.subsample_size = 205: a "
                                          r"balanced subset needs a multiple of the 10 classes"):
        corners.check_with(study, grid, data, 200)


@pytest.mark.parametrize("profile", ["quick", "tiny", "fashion-mnist", "cifar10-paper"])
def test_every_profile_sets_the_five_studies_under_studies(root, profile):
    raw = yaml.safe_load((root / "profiles" / f"{profile}.yaml").read_text())
    assert not {"corners", "synthetic"} & set(raw)
    assert set(raw["studies"]) == {"corners", "synthetic", "averaging", "tangents", "joint"}
    cfg = load_profile(root / "profiles" / f"{profile}.yaml")
    assert cfg.studies.corners.arch in cfg.grid.arch
    assert cfg.studies.synthetic.c == tuple(raw["studies"]["synthetic"]["c"])
