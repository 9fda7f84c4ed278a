"""The `studies.tangents` section: tangent bases (docs/study.md A14, D18).

The basis is built over every run; `subset` adds a second basis over some of the runs, with its
own centres: the authors' table is for AllCNN runs without augmentation at batch 200, wd 0 and
lr other than 0.001, with centres 0.3 and 0.7. A run belongs to the subset when its value on each
axis of `select` is one of the values listed there, and on no axis of `exclude` one of those.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from lowdim.config.load import Check, ConfigError, OneOf, Positive

if TYPE_CHECKING:  # only annotations: the stage itself does not load the grid
    from lowdim.config.grid import GridConfig

Centres = Check(lambda c: len(c) == 2 and 0.0 <= c[0] < c[1] <= 1.0,
                "give two progress values [start, end] with 0 <= start < end <= 1, e.g. [0.2, 0.8]")
# The grid axes a subset can name: the columns every run row of the analysis set holds.
SUBSET_AXES = ("arch", "optimizer", "batch_size", "lr", "base_lr", "weight_decay", "augment",
               "init", "epochs", "seed")
Axis = Annotated[str, OneOf(SUBSET_AXES)]
Values = dict[Axis, tuple[Any, ...]]


@dataclass(frozen=True)
class TangentSubset:
    """A second basis over the runs that `select` keeps and `exclude` does not drop."""

    select: Values  # axis -> the values a run may have on it, e.g. {arch: [allcnn]}
    exclude: Values | None = None  # axis -> values that drop a run, e.g. {lr: [0.001]}
    centres: Annotated[tuple[float, ...], Centres] = (0.3, 0.7)  # the authors' for AllCNN

    def check(self, where: str) -> None:
        """Plain values (numbers, names), each listed once per axis."""
        for part in ("select", "exclude"):
            for axis, values in (getattr(self, part) or {}).items():
                key = f"{where}.{part}.{axis}"
                for value in values:
                    if not isinstance(value, str | numbers.Real) or isinstance(value, bool):
                        raise ConfigError(f"{key} = {list(values)}: list plain values of the "
                                          f"run's {axis}, e.g. [{_example(axis)}]")
                if len(set(values)) != len(values):
                    raise ConfigError(f"{key} = {list(values)} repeats a value: list each once")


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


def _example(axis: str) -> str:
    return {"arch": "allcnn", "optimizer": "sgdn", "augment": "none", "init": "default"}.get(
        axis, "200" if axis in ("batch_size", "epochs", "seed") else "0.1")


def same_value(a: Any, b: Any) -> bool:
    """Whether a run's value `a` is the listed value `b`: numbers within 1e-9 relative (a scaled
    lr is a product of floats), anything else equal."""
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def listed(value: Any, values: Iterable[Any]) -> bool:
    """Whether `value` is one of `values` (`same_value`)."""
    return any(same_value(value, v) for v in values)


def in_subset(run: Mapping[str, Any], subset: TangentSubset) -> bool:
    """Whether a run (axis -> value) has a selected value on every axis of `select` and no
    excluded value on any axis of `exclude`."""
    return (all(listed(run[axis], values) for axis, values in subset.select.items())
            and not any(listed(run[axis], values)
                        for axis, values in (subset.exclude or {}).items()))


def check_subset(runs: list[Mapping[str, Any]], subset: TangentSubset, where: str,
                 source: str) -> list[bool]:
    """Which of `runs` (each axis -> value) the subset keeps; ConfigError when a listed value is
    on none of them (a typo selects or drops nothing) or when the subset keeps no run. `where`:
    the subset's key; `source`: what `runs` are, for the messages ('the grid's runs')."""
    for part in ("select", "exclude"):
        for axis, values in (getattr(subset, part) or {}).items():
            present = list(dict.fromkeys(run[axis] for run in runs))
            for value in values:
                if not listed(value, present):
                    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                      for v in present)
                    raise ConfigError(f"{where}.{part}.{axis} lists {value!r}, which no run of "
                                      f"{source} has ({axis}: {shown}): fix the value or drop it")
    kept = [in_subset(run, subset) for run in runs]
    if not any(kept):
        raise ConfigError(f"{where} keeps none of {source}: no run has all the selected values "
                          "(and none of the excluded ones); widen select or narrow exclude")
    return kept


def grid_runs(grid: GridConfig, reference_batch_size: int) -> list[dict[str, Any]]:
    """Every run of the grid as axis -> value for the `SUBSET_AXES`, with both its lr and its
    base_lr (as lowdim.training.grid gives them)."""
    runs = []
    for block in grid.blocks:
        for run in block.runs():
            size = run["batch_size"]
            if "lr" in run:
                lr, base_lr = run["lr"], run["lr"] * reference_batch_size / size
            else:
                base_lr, lr = run["base_lr"], run["base_lr"] * size / reference_batch_size
            runs.append({**{a: run[a] for a in SUBSET_AXES if a in run}, "lr": lr,
                         "base_lr": base_lr})
    return runs


def check_with(tangents: TangentsConfig, grid: GridConfig, reference_batch_size: int) -> None:
    """The subset's values are on the grid and keep at least one of its runs (the stage checks
    again against the runs that trained: lowdim.studies.tangents)."""
    if tangents.subset is not None:
        check_subset(grid_runs(grid, reference_batch_size), tangents.subset,
                     "studies.tangents.subset", "the grid")
