"""The `studies.corners` section: initialization corners (docs/study.md B7, D16)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from lowdim.config.load import (
    OPTIMIZERS,
    Check,
    ConfigError,
    OneOf,
    Positive,
    Unique,
    check_in_grid,
)

if TYPE_CHECKING:  # only annotations: the modules run only in stages that load those sections
    from lowdim.config.data import DataConfig
    from lowdim.config.grid import GridConfig

CORNER_KINDS = ("uniform", "subsample")
Iseed = Check(lambda v: 0 <= v < 2**32, "an iseed must be in [0, 2**32)")


@dataclass(frozen=True)
class CornersConfig:
    """Initialization corners (docs/study.md B7, D16): phase 1 reaches a far corner (random
    labels, or a small balanced subset), phase 2 continues on the true labels."""

    SECTION = "studies.corners"

    arch: str = "fc"  # must be in grid.arch: its normal runs are the baseline
    optimizer: Annotated[str, OneOf(OPTIMIZERS)] = "sgdn"
    # scaled by batch_size / train.lr_reference_batch_size
    base_lr: Annotated[float, Positive] = 0.1
    batch_size: Annotated[int, Positive] = 64
    kinds: Annotated[tuple[Annotated[str, OneOf(CORNER_KINDS)], ...], Unique()] = CORNER_KINDS
    # one corner per iseed and kind
    iseeds: Annotated[tuple[Annotated[int, Iseed], ...], Unique()] = (0, 1, 2)
    # balanced: the same count of every class
    subsample_size: Annotated[int, Positive] = 200
    phase1_epochs: Annotated[int, Positive] = 16
    phase2_epochs: Annotated[int, Positive] = 16
    seeds: Annotated[tuple[int, ...], Unique()] = (42,)
    # points of each ignorance -> corner geodesic
    geodesic_points: Annotated[int, Positive] = 20
    # equal-progress grid of the convergence analysis
    grid_points: Annotated[int, Positive] = 50


def check_with(corners: CornersConfig, grid: GridConfig, data: DataConfig) -> None:
    """The corner runs are compared with the grid's runs of `arch`, and the balanced subset holds
    the same count of each of the dataset's classes."""
    check_in_grid(corners.arch, grid.arch, "studies.corners.arch", "grid.arch",
                  "the corner runs are compared with the normal runs of that architecture, so "
                  "add it there")
    if corners.subsample_size % data.num_classes:
        raise ConfigError(f"studies.corners.subsample_size = {corners.subsample_size}: a "
                          f"balanced subset needs a multiple of the {data.num_classes} classes")
