"""The `studies.averaging` section: averaging methods (docs/study.md A9, D19).

The averaged configuration is named either by `arch` and `optimizer` (the first configuration of
that pair with two or more runs) or by `configuration`, a mapping of any grid axes to values
(`{arch: allcnn, optimizer: sgdn, batch_size: 200, lr: 0.1}`) that must pick out exactly one
configuration. `choose_configuration` is that rule; this module checks it against the grid, the
averaging stage (`lowdim.studies.averaging`) against the runs it finds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from lowdim.config.load import ConfigError, OneOf, Positive, check_in_grid

if TYPE_CHECKING:  # only annotations: the module runs only in stages that load the grid
    from lowdim.config.grid import GridConfig

# The axes that name a configuration: every axis of a grid block but the seed
# (lowdim.config.grid.AXES), and the learning rate as the block gives it (lr, absolute) or as it
# scales (base_lr). Tested against AXES.
CONFIGURATION_AXES = ("arch", "optimizer", "batch_size", "lr", "base_lr", "weight_decay",
                      "augment", "init", "epochs", "precision", "schedule", "label_smoothing")
RATE_AXES = ("lr", "base_lr")


@dataclass(frozen=True)
class AveragingConfig:
    """Averaging methods (docs/study.md A9, D19): whose seeds are averaged, and how."""

    SECTION = "studies.averaging"

    arch: str | None = None       # with optimizer: the configuration averaged; null: the first
    optimizer: str | None = None  # configuration (sorted run ids) with at least two runs
    # or: grid axis -> value, naming exactly one configuration (instead of arch and optimizer)
    configuration: dict[Annotated[str, OneOf(CONFIGURATION_AXES)], Any] | None = None
    # concave-convex iterations of the centroid (authors: 100)
    bhattacharyya_iterations: Annotated[int, Positive] = 100

    def check(self) -> None:
        """`arch` and `optimizer` name one configuration together; `configuration` replaces
        them, and names at least one axis, each with one plain value."""
        key = f"{self.SECTION}.configuration"
        if self.configuration is not None:
            if self.arch is not None or self.optimizer is not None:
                raise ConfigError(f"{key} and {self.SECTION}.arch/optimizer both name the "
                                  "configuration to average: set configuration (with arch and "
                                  "optimizer inside it) and arch and optimizer to null")
            if not self.configuration:
                raise ConfigError(f"{key} is empty: name the configuration by grid axes, e.g. "
                                  "{arch: allcnn, optimizer: sgdn, batch_size: 200}, or set it "
                                  "to null")
            for axis, value in self.configuration.items():
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    raise ConfigError(f"{key}.{axis} = {value!r}: give one value (a name or a "
                                      "number), as on the grid")
            return
        if (self.arch is None) != (self.optimizer is None):
            raise ConfigError("studies.averaging.arch and studies.averaging.optimizer name one "
                              "configuration together: set both, or both to null")


def same_value(a: Any, b: Any) -> bool:
    """Equal values of an axis: numbers to 1e-9 relative (a learning rate scaled by the batch
    size is not exactly the number written), anything else exactly."""
    numbers = (int, float)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def shown(value: Any) -> str:
    """A value as run ids print it: numbers with :g, names as they are."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _values(configurations: Sequence[Mapping[str, Any]], axis: str) -> list[str]:
    """The distinct values of `axis` among `configurations`, as shown: numbers ascending, names
    in first-seen order."""
    values = [c[axis] for c in configurations if axis in c]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        values = sorted(values)
    return list(dict.fromkeys(shown(v) for v in values))


def _matching(selection: Mapping[str, Any], configurations: Sequence[Mapping[str, Any]]
              ) -> list[int]:
    return [i for i, conf in enumerate(configurations)
            if all(axis in conf and same_value(conf[axis], value)
                   for axis, value in selection.items())]


def choose_configuration(selection: Mapping[str, Any],
                         configurations: Sequence[Mapping[str, Any]], key: str,
                         among: str) -> int:
    """The position of the one configuration (axis -> value) that has every value of
    `selection`; ConfigError otherwise, naming the values to choose from. `key` is the
    parameter's key and `among` what the configurations are ("the grid"), for the messages."""
    unknown = [axis for axis in selection if axis not in CONFIGURATION_AXES]
    if unknown:
        raise ConfigError(f"{key} names unknown axes {unknown}: use "
                          f"{', '.join(CONFIGURATION_AXES)}")
    found = _matching(selection, configurations)
    named = "{" + ", ".join(f"{a}: {shown(v)}" for a, v in selection.items()) + "}"
    if len(found) == 1:
        return found[0]
    if not found:
        hints = []
        for axis in selection:
            others = {a: v for a, v in selection.items() if a != axis}
            rest = [configurations[i] for i in _matching(others, configurations)]
            if rest:  # every other value fits: this one is the problem
                hints.append(f"with the others as given, {axis} can be "
                             f"{', '.join(_values(rest, axis))}")
        if not hints:  # several values are off
            hints = [f"{axis} can be {', '.join(_values(configurations, axis)) or 'nothing'}"
                     for axis in selection]
        raise ConfigError(f"{key} = {named} matches no configuration of {among}: "
                          f"{'; '.join(hints)}. Change the value(s) to one of those")
    chosen = [configurations[i] for i in found]
    differ = [axis for axis in CONFIGURATION_AXES
              if axis not in selection and len(_values(chosen, axis)) > 1]
    listed = "; ".join(f"{axis}: {', '.join(_values(chosen, axis))}" for axis in differ)
    raise ConfigError(f"{key} = {named} matches {len(found)} configurations of {among}, which "
                      f"differ in {listed or 'no axis recorded here'}. Add those axes to {key} "
                      "to name one")


def grid_configurations(grid: GridConfig, reference_batch_size: int | None = None
                        ) -> list[dict[str, Any]]:
    """Every configuration of the grid (its runs less the seed), each once, in grid order. The
    learning rate under the key its block gives (lr or base_lr), and under the other one too
    when `reference_batch_size` (train.lr_reference_batch_size) is given, as the runs'
    specs have it (lowdim.training.grid.run_spec: lr = base_lr * batch_size / reference)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for block in grid.blocks:
        for run in block.runs():
            conf = {axis: value for axis, value in run.items() if axis != "seed"}
            if reference_batch_size is not None and "lr" in conf:
                conf["base_lr"] = conf["lr"] * reference_batch_size / conf["batch_size"]
            elif reference_batch_size is not None:
                conf["lr"] = conf["base_lr"] * conf["batch_size"] / reference_batch_size
            seen.setdefault(tuple(sorted(conf.items())), conf)
    return list(seen.values())


def check_with(averaging: AveragingConfig, grid: GridConfig,
               reference_batch_size: int | None = None) -> None:
    """The averaged configuration was trained: its arch and optimizer are on the grid, or its
    `configuration` names exactly one configuration of the grid. Without
    `reference_batch_size` (train.lr_reference_batch_size), a learning rate named otherwise than
    a block gives it (lr for a base_lr block) is left to the stage, which matches it against the
    runs it finds."""
    for name, axis in (("arch", grid.arch), ("optimizer", grid.optimizer)):
        value = getattr(averaging, name)
        if value is not None:
            check_in_grid(value, axis, f"studies.averaging.{name}", f"grid.{name}",
                          "pick one of those, or null")
    if averaging.configuration is None:
        return
    selection = averaging.configuration
    configurations = grid_configurations(grid, reference_batch_size)
    key = f"{AveragingConfig.SECTION}.configuration"
    rates = [axis for axis in RATE_AXES if axis in selection]
    if any(axis not in conf for conf in configurations for axis in rates):
        # some block gives its rates the other way: the stage matches the learning rate
        others = {a: v for a, v in selection.items() if a not in RATE_AXES}
        if not _matching(others, configurations):
            choose_configuration(others, configurations, key, "the grid")  # raises
        return
    choose_configuration(selection, configurations, key, "the grid")
