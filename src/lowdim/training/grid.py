"""Expand the `grid` section into run specifications with stable, readable run ids."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lowdim.config import GridConfig


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training run."""

    arch: str
    optimizer: str
    batch_size: int
    base_lr: float
    lr: float
    weight_decay: float
    augment: str
    init: str
    epochs: int
    seed: int
    model_size: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """A readable id that changes whenever a grid factor changes."""
        return (
            f"{self.arch}_{self.optimizer}_bs{self.batch_size}_lr{self.lr:g}"
            f"_wd{self.weight_decay:g}_aug-{self.augment}_init-{self.init}"
            f"_ep{self.epochs}_s{self.seed}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (model sizes as lists), the form stored in meta.json."""
        d = asdict(self)
        d["model_size"] = {k: list(v) if isinstance(v, tuple | list) else v
                           for k, v in self.model_size.items()}
        return d


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
