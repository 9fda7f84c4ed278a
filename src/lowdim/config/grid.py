"""The `grid` section: the training grid, every combination of its axes one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from lowdim.config.load import OPTIMIZERS, Check, ConfigError, OneOf, Positive, Unique

AUGMENTATIONS = ("none", "simple")
# The initialization schemes lowdim.models applies (it imports them from here).
INIT_SCHEMES = ("default", "kaiming", "std_normal")

LearningRate = Check(lambda v: v > 0, "a learning rate must be positive")
WeightDecay = Check(lambda v: v >= 0, "weight decay cannot be negative")


@dataclass(frozen=True)
class GridConfig:
    """The training grid: the Cartesian product of every axis (base_lr is per optimizer)."""

    SECTION = "grid"

    arch: Annotated[tuple[str, ...], Unique()]
    optimizer: Annotated[tuple[Annotated[str, OneOf(OPTIMIZERS)], ...], Unique()]
    base_lr: dict[Annotated[str, OneOf(OPTIMIZERS)], tuple[Annotated[float, LearningRate], ...]]
    batch_size: Annotated[tuple[Annotated[int, Positive], ...], Unique()]
    weight_decay: Annotated[tuple[Annotated[float, WeightDecay], ...], Unique()] = (0.0,)
    augment: Annotated[tuple[Annotated[str, OneOf(AUGMENTATIONS)], ...], Unique()] = ("none",)
    init: Annotated[tuple[Annotated[str, OneOf(INIT_SCHEMES)], ...], Unique()] = ("default",)
    epochs: Annotated[tuple[Annotated[int, Positive], ...], Unique()] = (200,)
    seed: Annotated[tuple[int, ...], Unique()] = (42,)

    def check(self) -> None:
        """Every optimizer of the grid has its learning rates."""
        for opt in self.optimizer:
            if opt not in self.base_lr:
                raise ConfigError(f"grid.base_lr has no entry for optimizer {opt!r}: add "
                                  f"{opt}: [lr]")
