"""The `studies.tangents` section: tangent bases (docs/study.md A14, D18).

The basis is built over every run; `subset` adds a second basis over some of the runs, with its
own centres: the authors' table is for AllCNN runs without augmentation at batch 200, wd 0 and
lr other than 0.001, with centres 0.3 and 0.7. A run belongs to the subset when its value on each
axis of `select` is one of the values listed there, and on no axis of `exclude` one of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from lowdim.config.load import Check, Positive
from lowdim.config.studies.runs import (  # noqa: F401 - listed, same_value: re-exported
    SELECTION_AXES,
    RunSelection,
    check_selection,
    grid_runs,
    listed,
    same_value,
    selected,
)

if TYPE_CHECKING:  # only annotations: the stage itself does not load the grid
    from lowdim.config.grid import GridConfig

Centres = Check(lambda c: len(c) == 2 and 0.0 <= c[0] < c[1] <= 1.0,
                "give two progress values [start, end] with 0 <= start < end <= 1, e.g. [0.2, 0.8]")
SUBSET_AXES = SELECTION_AXES  # the grid axes a subset can name (lowdim.config.studies.runs)


@dataclass(frozen=True)
class TangentSubset(RunSelection):
    """A second basis over the runs that `select` keeps and `exclude` does not drop
    (`lowdim.config.studies.runs.RunSelection`), at its own centres."""

    centres: Annotated[tuple[float, ...], Centres] = (0.3, 0.7)  # the authors' for AllCNN


@dataclass(frozen=True)
class TangentsConfig:
    """Tangent bases (docs/study.md A14, D18): kernel averages near the start and the end."""

    SECTION = "studies.tangents"

    width: Annotated[float, Positive] = 0.05  # Gaussian kernel width in progress lambda
    centres: Annotated[tuple[float, ...], Centres] = (0.2, 0.8)  # [start, end] progress centres
    # checkpoints with train loss >= this are left out
    outlier_loss: Annotated[float, Positive] = 4.0
    dims: Annotated[int, Positive] = 8  # axes of the true InPCA in the comparison
    # a second basis over a subset of the runs, with its own centres (null: none)
    subset: TangentSubset | None = None


# the subset's membership and its check, under the names the tangents study uses
in_subset = selected
check_subset = check_selection


def check_with(tangents: TangentsConfig, grid: GridConfig, reference_batch_size: int) -> None:
    """The subset's values are on the grid and keep at least one of its runs (the stage checks
    again against the runs that trained: lowdim.studies.tangents)."""
    if tangents.subset is not None:
        check_subset(grid_runs(grid, reference_batch_size), tangents.subset,
                     "studies.tangents.subset", "the grid")
