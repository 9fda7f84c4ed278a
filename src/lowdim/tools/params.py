"""Validate whole parameter files: every section, every rule across sections, and every network
built at its size. A stage validates only the sections it reads, so this runs before
`dvc repro` (`make repro`), in pre-commit and in the tests:

    python -m lowdim.tools.params params.yaml profiles/*.yaml   # exit status 1 on an error

It is a tool, not part of `lowdim.config`: building networks needs `lowdim.models` (and torch),
which the config package never imports.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lowdim.config.data import DATASET_SHAPES
from lowdim.config.load import ConfigError, read
from lowdim.config.models import ModelsConfig
from lowdim.config.profile import Config, build_profile, check_across
from lowdim.config.trajectories import TrajectoriesConfig
from lowdim.models import build_model, check_sizes, parameter_count


def validate_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """A parameter file (nested `overrides` merged in) as a Config, every rule checked."""
    return validate(read(path, overrides))


def validate(raw: Mapping[str, Any]) -> Config:
    """A nested mapping (as read from YAML) as a Config: the sections, the networks, the rules
    across sections, then the size pair's parameter counts (which needs both networks built)."""
    config = build_profile(raw)
    check_sizes(config.models, config.grid.arch, config.data.dataset, config.data.input_shape)
    check_across(config)
    check_size_pair(config.trajectories, config.models, config.data.dataset,
                    config.data.input_shape)
    return config


def check_size_pair(traj: TrajectoriesConfig, models: ModelsConfig, dataset: str,
                    input_shape: tuple[int, int, int] | None = None) -> None:
    """The larger member of the D15 pair has more parameters. Not a stage's check: the train
    stage would have to declare the pair, and naming another pair would retrain."""
    if traj.size_pair is None:
        return
    pair = traj.size_pair
    shape, classes = DATASET_SHAPES[dataset]
    shape = shape if input_shape is None else input_shape
    small, large = (parameter_count(build_model(n, shape, classes, **models.get(n, {})))
                    for n in pair)
    if not large > small:
        raise ConfigError(f"trajectories.size_pair = {list(pair)}: {pair[1]} has {large:,} "
                          f"parameters, not more than {pair[0]}'s {small:,}; list the smaller "
                          "network first")


def main(paths: list[str]) -> int:
    """Validate each file; one line per file, exit status 1 when any is invalid."""
    if not paths:
        print("usage: python -m lowdim.tools.params params.yaml [profiles/*.yaml]",
              file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            validate_file(path)
        except ConfigError as err:
            print(f"{path}: {err}", file=sys.stderr)
            status = 1
        else:
            print(f"{path}: valid")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
