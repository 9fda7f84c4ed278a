"""The `grid` section: the training runs, written as one block (a mapping) or a list of blocks.

Every combination of a block's axes is one run, less the runs its `exclude` entries match; the grid
is the union of its blocks (docs/study.md B3-B6). A block gives its learning rates per optimizer
either as `base_lr` (scaled by batch_size / train.lr_reference_batch_size, B3) or as `lr`
(absolute, as the authors' configuration files give them). `schedule` and `label_smoothing`
default to the paper's cosine schedule and plain cross-entropy; the authors' related ImageNet
pipeline (docs/study.md B1) uses `triangular-2` and 0.1.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from lowdim.config.load import OPTIMIZERS, Check, ConfigError, OneOf, OneOrList, Positive, Unique

AUGMENTATIONS = ("none", "simple")
# The initialization schemes lowdim.models applies (it imports them from here).
INIT_SCHEMES = ("default", "kaiming", "std_normal")
# fp32 first: the default, left out of run ids (lowdim.store.records.RunSpec). fp16-mixed: float16
# autocast of the forward pass with a dynamic loss scale, as the authors' configs with autocast.
PRECISIONS = ("fp32", "fp16-mixed")
# Learning-rate schedules, each a factor of the run's lr at every optimizer step, stepped per
# iteration: `cosine` anneals to 0 over the run, no warm-up (the paper's, B3; the default, left out
# of run ids); `triangular-<k>` rises linearly from 1e-4 to 1 over the first k epochs, then falls
# linearly to 0 at the end (the "cyclic" schedule of the authors' ImageNet pipeline, k = 2: B1).
TRIANGULAR = re.compile(r"triangular-([1-9][0-9]*)")
# A block's axes in the order its runs are listed (architecture-major); then the learning
# rate, then the seed, which vary fastest. The axes added after precision come last, so that
# blocks that leave them at their one default list their runs as before.
AXES = ("arch", "optimizer", "batch_size", "weight_decay", "augment", "init", "epochs",
        "precision", "schedule", "label_smoothing")


def triangular_peak(schedule: str) -> int | None:
    """The peak epoch k of `triangular-<k>`; None for cosine; ValueError for anything else."""
    if schedule == "cosine":
        return None
    match = TRIANGULAR.fullmatch(schedule)
    if match is None:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: use cosine or "
                         "triangular-<peak epoch> (e.g. triangular-2)")
    return int(match.group(1))


def _known_schedule(value: str) -> bool:
    try:
        triangular_peak(value)
    except ValueError:
        return False
    return True


Schedule = Check(_known_schedule, "use cosine, or triangular-<peak epoch> with a positive whole "
                 "number of epochs (e.g. triangular-2)")
LabelSmoothing = Check(lambda v: 0 <= v < 1, "label smoothing must be in [0, 1) (0: plain "
                       "cross-entropy; the authors' ImageNet pipeline: 0.1)")

LearningRate = Check(lambda v: v > 0, "a learning rate must be positive")
WeightDecay = Check(lambda v: v >= 0, "weight decay cannot be negative")
Rates = dict[Annotated[str, OneOf(OPTIMIZERS)], tuple[Annotated[float, LearningRate], ...]]


@dataclass(frozen=True)
class GridBlock:
    """One block: the Cartesian product of its axes (learning rates per optimizer), less the runs
    an `exclude` entry matches (an entry matches a run when every key it names has that value)."""

    arch: Annotated[tuple[str, ...], Unique()]
    optimizer: Annotated[tuple[Annotated[str, OneOf(OPTIMIZERS)], ...], Unique()]
    batch_size: Annotated[tuple[Annotated[int, Positive], ...], Unique()]
    base_lr: Rates | None = None  # scaled by batch size; or
    lr: Rates | None = None       # absolute: exactly one of the two
    weight_decay: Annotated[tuple[Annotated[float, WeightDecay], ...], Unique()] = (0.0,)
    augment: Annotated[tuple[Annotated[str, OneOf(AUGMENTATIONS)], ...], Unique()] = ("none",)
    init: Annotated[tuple[Annotated[str, OneOf(INIT_SCHEMES)], ...], Unique()] = ("default",)
    epochs: Annotated[tuple[Annotated[int, Positive], ...], Unique()] = (200,)
    precision: Annotated[tuple[Annotated[str, OneOf(PRECISIONS)], ...], Unique()] = ("fp32",)
    schedule: Annotated[tuple[Annotated[str, Schedule], ...], Unique()] = ("cosine",)
    label_smoothing: Annotated[tuple[Annotated[float, LabelSmoothing], ...], Unique()] = (0.0,)
    seed: Annotated[tuple[int, ...], Unique()] = (42,)
    exclude: tuple[dict[str, Any], ...] | None = None

    @property
    def rate_key(self) -> str:
        """`base_lr` or `lr`: how this block gives its learning rates."""
        return "lr" if self.lr is not None else "base_lr"

    def check(self, where: str = "grid") -> None:
        """One kind of learning rate, one entry for each optimizer, exclusions that name the
        block's keys and match some of its runs; `where` is the block's key (`grid[2]`)."""
        if (self.base_lr is None) == (self.lr is None):
            given = "both" if self.lr is not None else "neither"
            raise ConfigError(f"{where} sets {given} of base_lr and lr: give exactly one, base_lr "
                              "(scaled by batch_size / train.lr_reference_batch_size) or lr "
                              "(absolute)")
        rates = getattr(self, self.rate_key)
        for opt in self.optimizer:
            if opt not in rates:
                raise ConfigError(f"{where}.{self.rate_key} has no entry for optimizer {opt!r}: "
                                  f"add {opt}: [lr]")
        for schedule in self.schedule:
            peak = triangular_peak(schedule)
            if peak is not None and peak >= min(self.epochs):
                raise ConfigError(f"{where}.schedule = {list(self.schedule)}: {schedule} peaks "
                                  f"at epoch {peak}, but a run of {min(self.epochs)} epochs ends "
                                  "first; lower the peak below every value of "
                                  f"{where}.epochs ({', '.join(map(str, self.epochs))})")
        for i, entry in enumerate(self.exclude or ()):
            self._check_exclusion(entry, f"{where}.exclude[{i}]", where)

    def _check_exclusion(self, entry: Mapping[str, Any], key: str, where: str) -> None:
        keys = (*AXES, self.rate_key, "seed")
        if not entry:
            raise ConfigError(f"{key} is empty: name the values of the runs to drop, e.g. "
                              "{optimizer: adam, weight_decay: 1.0e-3}")
        for name in entry:
            if name not in keys:
                close = difflib.get_close_matches(name, keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {key}.{name}{hint}: an exclusion names values of "
                                  f"the block's keys: {', '.join(keys)}")
        combinations = list(self.combinations())
        if any(matches(entry, run) for run in combinations):
            return
        for name, value in entry.items():
            values = list(dict.fromkeys(run[name] for run in combinations))
            if value not in values:
                raise ConfigError(f"{key}.{name} = {value!r} is not among the {name} values of "
                                  f"{where} ({', '.join(map(str, values))}), so the exclusion "
                                  "matches no run: a typo? Fix the value or drop the entry")
        raise ConfigError(f"{key} = {dict(entry)} matches no run of {where}: no run combines "
                          "these values; fix the entry or drop it")

    def combinations(self) -> Iterator[dict[str, Any]]:
        """Every combination of the block's axes, exclusions aside: key -> value, the learning
        rate under `rate_key`, in grid order (architecture-major, seeds last)."""
        rates = getattr(self, self.rate_key)
        for values in itertools.product(*(getattr(self, axis) for axis in AXES)):
            run = dict(zip(AXES, values, strict=True))
            for rate, seed in itertools.product(rates[run["optimizer"]], self.seed):
                yield {**run, self.rate_key: rate, "seed": seed}

    def runs(self) -> list[dict[str, Any]]:
        """The block's runs: every combination that no `exclude` entry matches."""
        return [run for run in self.combinations()
                if not any(matches(entry, run) for entry in self.exclude or ())]


def matches(entry: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
    """Whether `run` has every value `entry` names."""
    return all(run.get(name) == value for name, value in entry.items())


def _union(axis: str) -> property:
    def values(self: GridConfig) -> tuple[Any, ...]:
        return tuple(dict.fromkeys(v for block in self.blocks for v in getattr(block, axis)))

    return property(values, doc=f"Every {axis} of any block, in first-seen order.")


def _rates_union(key: str) -> property:
    def rates(self: GridConfig) -> dict[str, tuple[float, ...]] | None:
        merged: dict[str, dict[float, None]] = {}
        for block in self.blocks:
            for opt, values in (getattr(block, key) or {}).items():
                merged.setdefault(opt, {}).update(dict.fromkeys(values))
        return {opt: tuple(values) for opt, values in merged.items()} if merged else None

    return property(rates, doc=f"The {key} values of every block per optimizer (None: unused).")


@dataclass(frozen=True, init=False)
class GridConfig:
    """The training grid: its blocks, one when the section is a mapping. `GridConfig(arch=...,
    ...)` is the one-block grid. The axis properties (`arch`, `optimizer`, `seed`, ...) hold
    the values used in any block, in first-seen order: what the studies check against."""

    SECTION = "grid"
    ITEMS = "blocks"  # the section is these blocks: a mapping is one, a list several

    blocks: Annotated[tuple[GridBlock, ...], OneOrList()]

    def __init__(self, blocks: Sequence[GridBlock] = (), **axes: Any) -> None:
        if blocks and axes:
            raise TypeError("give the blocks or one block's axes, not both")
        object.__setattr__(self, "blocks", tuple(blocks) if blocks else (GridBlock(**axes),))

    def block_key(self, index: int) -> str:
        """The key of block `index` in the parameter file: `grid` alone, else `grid[index]`."""
        return self.SECTION if len(self.blocks) == 1 else f"{self.SECTION}[{index}]"

    arch = _union("arch")
    optimizer = _union("optimizer")
    batch_size = _union("batch_size")
    weight_decay = _union("weight_decay")
    augment = _union("augment")
    init = _union("init")
    epochs = _union("epochs")
    precision = _union("precision")
    schedule = _union("schedule")
    label_smoothing = _union("label_smoothing")
    seed = _union("seed")
    base_lr = _rates_union("base_lr")
    lr = _rates_union("lr")
