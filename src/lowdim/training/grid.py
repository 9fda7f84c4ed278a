"""Expand the `grid` section into run specifications with stable, readable run ids."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from lowdim.config.grid import GridConfig
from lowdim.store.records import RunSpec


def scaled_lr(base_lr: float, batch_size: int, reference_batch_size: int) -> float:
    """The paper's linear scaling rule: lr = base_lr * batch_size / reference (B3)."""
    return base_lr * batch_size / reference_batch_size


def expand_grid(grid: GridConfig, models: Mapping[str, Mapping[str, Any]],
                reference_batch_size: int) -> list[RunSpec]:
    """All runs of the grid, in a fixed order (architecture-major, seeds last)."""
    specs = []
    for arch, opt, bs, wd, aug, init, epochs in itertools.product(
        grid.arch, grid.optimizer, grid.batch_size, grid.weight_decay, grid.augment, grid.init,
        grid.epochs,
    ):
        for base_lr, seed in itertools.product(grid.base_lr[opt], grid.seed):
            specs.append(RunSpec(
                arch=arch, optimizer=opt, batch_size=bs, base_lr=base_lr,
                lr=scaled_lr(base_lr, bs, reference_batch_size), weight_decay=wd, augment=aug,
                init=init, epochs=epochs, seed=seed, model_size=dict(models.get(arch, {})),
            ))
    ids = [s.run_id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"the grid gives the same run id twice: {duplicates[:3]}; "
                         "two base learning rates scale to the same lr — list each once")
    return specs
