"""A selection of the grid's runs by their axes, shared by the studies that use some runs only
(`studies.tangents.subset`, `studies.corners.normal`).

A run is selected when its value on each axis of `select` is one of the values listed there, and
on no axis of `exclude` one of those. Numbers match within 1e-9 relative (a scaled lr is a
product of floats). The selection is checked against the grid when the profile loads
(`check_selection` with `grid_runs`) and again by the study against the runs that trained.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from lowdim.config.load import ConfigError, OneOf

if TYPE_CHECKING:  # only annotations: the stages themselves do not load the grid
    from lowdim.config.grid import GridConfig

# The grid axes a selection can name: the columns every run row of the analysis set holds.
SELECTION_AXES = ("arch", "optimizer", "batch_size", "lr", "base_lr", "weight_decay", "augment",
                  "init", "epochs", "seed")
Axis = Annotated[str, OneOf(SELECTION_AXES)]
Values = dict[Axis, tuple[Any, ...]]


@dataclass(frozen=True)
class RunSelection:
    """The runs that `select` keeps and `exclude` does not drop."""

    select: Values  # axis -> the values a run may have on it, e.g. {arch: [allcnn]}
    exclude: Values | None = None  # axis -> values that drop a run, e.g. {lr: [0.001]}

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

    @property
    def axes(self) -> list[str]:
        """The axes `select` and `exclude` name, each once, in order."""
        return list(dict.fromkeys([*self.select, *(self.exclude or {})]))


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


def selected(run: Mapping[str, Any], selection: RunSelection) -> bool:
    """Whether a run (axis -> value) has a selected value on every axis of `select` and no
    excluded value on any axis of `exclude`."""
    return (all(listed(run[axis], values) for axis, values in selection.select.items())
            and not any(listed(run[axis], values)
                        for axis, values in (selection.exclude or {}).items()))


def check_selection(runs: list[Mapping[str, Any]], selection: RunSelection, where: str,
                    source: str) -> list[bool]:
    """Which of `runs` (each axis -> value) the selection keeps; ConfigError when a listed value
    is on none of them (a typo selects or drops nothing) or when it keeps no run. `where`: the
    selection's key; `source`: what `runs` are, for the messages ('the grid's runs')."""
    for part in ("select", "exclude"):
        for axis, values in (getattr(selection, part) or {}).items():
            present = list(dict.fromkeys(run[axis] for run in runs))
            for value in values:
                if not listed(value, present):
                    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                      for v in present)
                    raise ConfigError(f"{where}.{part}.{axis} lists {value!r}, which no run of "
                                      f"{source} has ({axis}: {shown}): fix the value or drop it")
    kept = [selected(run, selection) for run in runs]
    if not any(kept):
        raise ConfigError(f"{where} keeps none of {source}: no run has all the selected values "
                          "(and none of the excluded ones); widen select or narrow exclude")
    return kept


def grid_runs(grid: GridConfig, reference_batch_size: int) -> list[dict[str, Any]]:
    """Every run of the grid as axis -> value for the `SELECTION_AXES`, with both its lr and its
    base_lr (as lowdim.training.grid gives them)."""
    runs = []
    for block in grid.blocks:
        for run in block.runs():
            size = run["batch_size"]
            if "lr" in run:
                lr, base_lr = run["lr"], run["lr"] * reference_batch_size / size
            else:
                base_lr, lr = run["base_lr"], run["base_lr"] * size / reference_batch_size
            runs.append({**{a: run[a] for a in SELECTION_AXES if a in run}, "lr": lr,
                         "base_lr": base_lr})
    return runs
