"""Expand the `grid` section into run specifications with stable, readable run ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lowdim.config.grid import GridConfig
from lowdim.config.load import ConfigError
from lowdim.store.records import RunSpec


def scaled_lr(base_lr: float, batch_size: int, reference_batch_size: int) -> float:
    """The paper's linear scaling rule: lr = base_lr * batch_size / reference (B3)."""
    return base_lr * batch_size / reference_batch_size


def expand_grid(grid: GridConfig, models: Mapping[str, Mapping[str, Any]],
                reference_batch_size: int) -> list[RunSpec]:
    """All runs of the grid, block after block, each block in a fixed order (architecture-major,
    seeds last). A run id given twice raises ConfigError naming the block(s)."""
    specs: list[RunSpec] = []
    given_by: dict[str, str] = {}
    for index, block in enumerate(grid.blocks):
        where = grid.block_key(index)
        for run in block.runs():
            spec = run_spec(run, models, reference_batch_size)
            if spec.run_id in given_by:
                raise _twice(spec.run_id, given_by[spec.run_id], where)
            given_by[spec.run_id] = where
            specs.append(spec)
    return specs


def run_spec(run: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]],
             reference_batch_size: int) -> RunSpec:
    """The spec of one run of a block (`GridBlock.runs`): an absolute `lr` as given (its
    base_lr the one that would scale to it), or `base_lr` scaled by batch size."""
    batch_size = run["batch_size"]
    if "lr" in run:
        lr, base_lr = run["lr"], run["lr"] * reference_batch_size / batch_size
    else:
        base_lr = run["base_lr"]
        lr = scaled_lr(base_lr, batch_size, reference_batch_size)
    return RunSpec(
        arch=run["arch"], optimizer=run["optimizer"], batch_size=batch_size, base_lr=base_lr,
        lr=lr, weight_decay=run["weight_decay"], augment=run["augment"], init=run["init"],
        epochs=run["epochs"], seed=run["seed"], model_size=dict(models.get(run["arch"], {})),
        precision=run["precision"], schedule=run["schedule"],
        label_smoothing=run["label_smoothing"],
    )


def _twice(run_id: str, first: str, then: str) -> ConfigError:
    if first == then:
        return ConfigError(f"{first}: the grid gives the same run id twice: {run_id}; two of its "
                           "learning rates are equal to the 6 digits a run id prints (or two "
                           "base lrs scale to one lr): list each once")
    return ConfigError(f"{first} and {then} both give run {run_id}: each run belongs to one "
                       f"block; drop it from one of them (e.g. an exclude entry in {then})")
