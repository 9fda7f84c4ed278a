"""The `trajectories` section: reindexing, filters and the size comparison of Figure 16."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from lowdim.config.load import Check, Positive, Range, check_in_grid

if TYPE_CHECKING:  # only annotations: a stage that never loads grid does not run its module
    from lowdim.config.grid import GridConfig

SizePair = Check(lambda p: len(p) == 2 and p[0] != p[1], "give two different architectures, "
                 "[smaller, larger], or null to skip the size comparison")


@dataclass(frozen=True)
class TrajectoriesConfig:
    """Trajectory analyses (docs/study.md A7-A13, A15): reindexing, filters, the size comparison."""

    SECTION = "trajectories"

    reindex_by: Literal["accuracy", "progress"] = "accuracy"  # A7: the authors' production index
    grid_points: Annotated[int, Positive] = 100
    # analyses keep runs with final train error <= this
    trained_max_error: Annotated[float, Range(0, 1, "right")] = 0.10
    outlier_loss: Annotated[float, Positive] = 4.0  # A15: train cross-entropy >= this: outlier
    # permutation repeats of the feature importance (A13)
    importance_repeats: Annotated[int, Positive] = 10
    # (smaller, larger) architecture of one family (D15); their parameter counts are compared by
    # lowdim.config.profile, which builds them
    size_pair: Annotated[tuple[str, ...], SizePair] | None = None
    seed: int = 0


def check_with(trajectories: TrajectoriesConfig, grid: GridConfig) -> None:
    """Both members of the size pair were trained: they are in grid.arch."""
    for i, name in enumerate(trajectories.size_pair or ()):
        check_in_grid(name, grid.arch, f"trajectories.size_pair[{i}]", "grid.arch",
                      "add it there or change the pair")
