"""The `studies.corners` section: initialization corners (docs/study.md B7, D16).

The corner runs are given either by the flat keys (`arch`, `kinds`, `subsample_size`: every kind
on one architecture), or by `setups`, a list of (architecture, kind, subset size) triples: the
authors paired AllCNN with a 200-image subset, FC with a 2,000-image subset and WRN-10-4-8 with
random labels. Each setup is compared with the normal runs of its own architecture: all of them,
or with `normal` (a `lowdim.config.studies.runs.RunSelection`) only those it selects; the authors
compared each corner setup with the normal runs of its own training settings (SGD-Nesterov, batch
200, lr 0.1, wd 0, no augmentation).
"""

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
from lowdim.config.studies.runs import RunSelection, check_selection, grid_runs, selected

if TYPE_CHECKING:  # only annotations: the modules run only in stages that load those sections
    from lowdim.config.data import DataConfig
    from lowdim.config.grid import GridConfig

CORNER_KINDS = ("uniform", "subsample")
Iseed = Check(lambda v: 0 <= v < 2**32, "an iseed must be in [0, 2**32)")
# The flat keys that `setups` replaces, and their defaults (a profile with `setups` leaves them).
FLAT_KEYS = ("arch", "kinds", "subsample_size")


@dataclass(frozen=True)
class CornerSetup:
    """One entry of `studies.corners.setups`: an architecture and the corner its runs reach."""

    arch: str  # must be in grid.arch: its normal runs are this setup's comparison
    kind: Annotated[str, OneOf(CORNER_KINDS)]
    # the balanced subset's size: for kind subsample only, a multiple of the class count
    subsample_size: Annotated[int, Positive] | None = None

    def check(self, where: str) -> None:
        """A subsample setup gives its subset size; a uniform one has none."""
        if self.kind == "subsample" and self.subsample_size is None:
            raise ConfigError(f"{where} is a subsample corner without subsample_size: give the "
                              "size of its balanced subset, e.g. subsample_size: 200")
        if self.kind != "subsample" and self.subsample_size is not None:
            raise ConfigError(f"{where}.subsample_size = {self.subsample_size}: only a subsample "
                              f"corner has a subset; drop the key from this {self.kind} setup")

    @property
    def name(self) -> str:
        """The setup's label in corner names: 'uniform' or 'subsample-<size>'."""
        return self.kind if self.subsample_size is None else f"{self.kind}-{self.subsample_size}"


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
    # (arch, kind, subsample_size) per setup, in place of arch, kinds and subsample_size
    setups: tuple[CornerSetup, ...] | None = None
    # the normal runs each architecture's corners are compared with: select / exclude per grid
    # axis (null: every normal run of the architecture)
    normal: RunSelection | None = None

    def check(self) -> None:
        """`setups` replaces the flat keys, so they keep their defaults beside it; no setup is
        listed twice."""
        if self.setups is None:
            return
        changed = [key for key in FLAT_KEYS
                   if getattr(self, key) != CornersConfig.__dataclass_fields__[key].default]
        if changed:
            raise ConfigError(
                f"studies.corners sets both setups and {', '.join(changed)}: with setups, each "
                "setup names its own arch, kind and subsample_size; drop "
                f"studies.corners.{' and '.join(changed)} (or drop setups)")
        seen: dict[CornerSetup, int] = {}
        for i, setup in enumerate(self.setups):
            if setup in seen:
                raise ConfigError(
                    f"studies.corners.setups[{i}] repeats setups[{seen[setup]}] ({setup.arch}, "
                    f"{setup.name}): list each setup once")
            seen[setup] = i

    def named_setups(self) -> tuple[tuple[str, CornerSetup], ...]:
        """(name, setup) of every setup, in training order. With `setups`: as listed, each named
        'uniform' or 'subsample-<size>'. Without: one per kind of `kinds` on `arch`, named by the
        kind alone (the corner names of the flat keys: 'uniform-0', 'subsample-0')."""
        if self.setups is not None:
            return tuple((s.name, s) for s in self.setups)
        return tuple((kind, CornerSetup(self.arch, kind,
                                        self.subsample_size if kind == "subsample" else None))
                     for kind in self.kinds)

    @property
    def archs(self) -> tuple[str, ...]:
        """The architectures of the setups, in first-listed order: one joint embedding each."""
        return tuple(dict.fromkeys(setup.arch for _, setup in self.named_setups()))


def check_with(corners: CornersConfig, grid: GridConfig, data: DataConfig,
               reference_batch_size: int) -> None:
    """The corner runs are compared with the grid's runs of their architecture (those of
    `normal` when given: its values on the grid, at least one run kept per architecture), and
    each balanced subset holds the same count of each of the dataset's classes."""
    check_setups(corners, grid, data)
    if corners.normal is None:
        return
    runs = grid_runs(grid, reference_batch_size)
    check_selection(runs, corners.normal, "studies.corners.normal", "the grid")
    for arch in corners.archs:
        if not any(selected(run, corners.normal) for run in runs if run["arch"] == arch):
            raise ConfigError(f"studies.corners.normal keeps none of the grid's {arch} runs, so "
                              f"the {arch} corners would have no normal runs to be compared "
                              "with: widen its select or narrow its exclude")


def check_setups(corners: CornersConfig, grid: GridConfig, data: DataConfig) -> None:
    """Each setup's architecture is on the grid and each balanced subset holds the same count of
    each of the dataset's classes."""
    if corners.setups is None:
        check_in_grid(corners.arch, grid.arch, "studies.corners.arch", "grid.arch",
                      "the corner runs are compared with the normal runs of that architecture, "
                      "so add it there")
        if corners.subsample_size % data.num_classes:
            raise ConfigError(f"studies.corners.subsample_size = {corners.subsample_size}: a "
                              f"balanced subset needs a multiple of the {data.num_classes} "
                              "classes")
        return
    for i, setup in enumerate(corners.setups):
        where = f"studies.corners.setups[{i}]"
        check_in_grid(setup.arch, grid.arch, f"{where}.arch", "grid.arch",
                      "each setup is compared with the normal runs of its architecture, so add "
                      "it there or pick one of those")
        if setup.subsample_size is not None and setup.subsample_size % data.num_classes:
            raise ConfigError(f"{where}.subsample_size = {setup.subsample_size}: a balanced "
                              f"subset needs a multiple of the {data.num_classes} classes")
