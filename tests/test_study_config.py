"""The corners and synthetic parameter sections: every bad value names its key."""

from __future__ import annotations

import pytest
import yaml

from lowdim.config import ConfigError, config_from_dict


def _quick(root) -> dict:
    return yaml.safe_load((root / "profiles" / "quick.yaml").read_text())


@pytest.mark.parametrize("section, key, value, message", [
    ("corners", "arch", "vit-large", r"corners\.arch = 'vit-large' is not in grid\.arch"),
    ("corners", "kinds", ["uniform", "corner"], r"corners\.kinds\[1\] = 'corner' is not known"),
    ("corners", "kinds", ["uniform", "uniform"], r"corners\.kinds = .* repeats a value"),
    ("corners", "optimizer", "rmsprop", r"corners\.optimizer = 'rmsprop' is not known"),
    ("corners", "iseeds", [-1], r"corners\.iseeds\[0\] = -1: an iseed must be in \[0, 2\*\*32\)"),
    ("corners", "subsample_size", 205,
     r"corners\.subsample_size = 205: a balanced subset needs a multiple of the 10 classes"),
    ("corners", "phase1_epochs", 0, r"corners\.phase1_epochs = 0: must be positive"),
    ("corners", "base_lr", -0.1, r"corners\.base_lr = -0\.1: must be positive"),
    ("corners", "seeds", 42, r"corners\.seeds = 42: must be a list"),
    ("synthetic", "c", [0.5, -0.1], r"synthetic\.c\[1\] = -0\.1: the decay rate must be >= 0"),
    ("synthetic", "c", [0.5, 0.5], r"synthetic\.c = \[0\.5, 0\.5\] repeats a value"),
    ("synthetic", "num_classes", 1, r"synthetic\.num_classes = 1: must be at least 2"),
    ("synthetic", "teacher", "cnn", r"synthetic\.teacher = 'cnn' is not known"),
    ("synthetic", "student_widths", [64, 0], r"synthetic\.student_widths\[1\] = 0: must be "
                                              r"positive"),
    ("synthetic", "optimizers", ["sgd"], r"synthetic\.lr has no entry for optimizer 'sgd'"),
    ("synthetic", "lr", {"sgdn": 0.05, "adam": 0.0}, r"synthetic\.lr\.adam = 0\.0: a learning "
                                                      r"rate must be positive"),
    ("synthetic", "ncorners", -1, r"synthetic\.ncorners = -1: must be >= 0"),
    ("synthetic", "d", 0, r"synthetic\.d = 0: must be positive"),
])
def test_bad_study_values_are_named(root, section, key, value, message):
    raw = _quick(root)
    raw[section][key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_unknown_study_key_is_named_with_a_suggestion(root):
    raw = _quick(root)
    raw["corners"]["iseed"] = [0]
    with pytest.raises(ConfigError, match=r"unknown parameter key corners\.iseed "
                                          r"\(did you mean 'iseeds'\?\)"):
        config_from_dict(raw)
