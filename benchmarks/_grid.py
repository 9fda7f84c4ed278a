"""What the training benchmarks share: a profile's grid with some axes replaced, and its data."""

from __future__ import annotations

import dataclasses

from lowdim.config.grid import GridConfig
from lowdim.config.profile import Config
from lowdim.data import Prepared, load_source, prepare
from lowdim.store.records import RunSpec
from lowdim.training.grid import expand_grid


def prepared_data(cfg: Config) -> Prepared:
    """The profile's dataset, split and evaluation subsets, as the data stage prepares them."""
    d = cfg.data
    return prepare(load_source(d.dataset, d.root, d.download, d.test_fraction, d.split_seed),
                   d.eval_train_size, d.eval_test_size, d.eval_seed)


def profile_runs(cfg: Config, **axes: tuple | None) -> list[RunSpec]:
    """The runs of the profile's grid with the given axes (arch=..., seed=...) replaced in each
    of its blocks; an axis given as None keeps the profile's values."""
    given = {k: v for k, v in axes.items() if v is not None}
    grid = GridConfig(blocks=[dataclasses.replace(block, **given) for block in cfg.grid.blocks])
    return expand_grid(grid, cfg.models, cfg.train.lr_reference_batch_size)
