"""The `studies.averaging` section: averaging methods (docs/study.md A9, D19)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from lowdim.config.load import ConfigError, Positive, check_in_grid

if TYPE_CHECKING:  # only annotations: the module runs only in stages that load the grid
    from lowdim.config.grid import GridConfig


@dataclass(frozen=True)
class AveragingConfig:
    """Averaging methods (docs/study.md A9, D19): whose seeds are averaged, and how."""

    SECTION = "studies.averaging"

    arch: str | None = None       # with optimizer: the configuration averaged; null: the first
    optimizer: str | None = None  # configuration (sorted run ids) with at least two runs
    # concave-convex iterations of the centroid (authors: 100)
    bhattacharyya_iterations: Annotated[int, Positive] = 100

    def check(self) -> None:
        """`arch` and `optimizer` name one configuration together."""
        if (self.arch is None) != (self.optimizer is None):
            raise ConfigError("studies.averaging.arch and studies.averaging.optimizer name one "
                              "configuration together: set both, or both to null")


def check_with(averaging: AveragingConfig, grid: GridConfig) -> None:
    """The averaged configuration was trained: its arch and optimizer are on the grid."""
    for name, axis in (("arch", grid.arch), ("optimizer", grid.optimizer)):
        value = getattr(averaging, name)
        if value is not None:
            check_in_grid(value, axis, f"studies.averaging.{name}", f"grid.{name}",
                          "pick one of those, or null")
