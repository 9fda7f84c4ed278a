"""params.yaml to typed, frozen objects, validated before any compute.

Every key is checked: an unknown key, a wrong type or an impossible value raises `ConfigError`
with a message that names the key (e.g. ``grid.base_lr.sgd[0]``) and says what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

OPTIMIZERS = ("sgd", "sgdn", "adam")
AUGMENTATIONS = ("none", "simple")
DEVICES = ("auto", "cpu", "cuda")
FIGURE_FORMATS = ("pdf", "png", "svg")


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how it is split, and the evaluation subsets that define prediction spaces."""

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    test_fraction: float = 0.25
    split_seed: int = 2
    eval_train_size: int | None = None
    eval_test_size: int | None = None
    eval_seed: int = 0


@dataclass(frozen=True)
class GridConfig:
    """The training grid: the Cartesian product of every axis (base_lr is per optimizer)."""

    arch: tuple[str, ...]
    optimizer: tuple[str, ...]
    base_lr: dict[str, tuple[float, ...]]
    batch_size: tuple[int, ...]
    weight_decay: tuple[float, ...] = (0.0,)
    augment: tuple[str, ...] = ("none",)
    init: tuple[str, ...] = ("default",)
    epochs: tuple[int, ...] = (200,)
    seed: tuple[int, ...] = (42,)


@dataclass(frozen=True)
class TrainConfig:
    """How each run trains: learning-rate scaling, device, evaluation batch size, packing and
    the GPU speed options (README "Fast training on a GPU")."""

    lr_reference_batch_size: int = 200
    eval_batch_size: int = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment_padding: int | None = None
    threads: int | None = None
    # Runs trained together in one step; auto = 1 on a CPU, sized to free memory on CUDA.
    pack_size: Literal["auto"] | int = "auto"
    channels_last: bool = False  # speed only: NHWC convolutions
    compile: bool = False        # speed only: torch.compile the packed step
    tf32: bool = False           # CUDA only: TF32 tensor cores (10-bit mantissa products)
    bf16: bool = False           # CUDA only, opt-in: bfloat16 autocast, changes the maths


@dataclass(frozen=True)
class PredictionsConfig:
    """The analysis set: reference points added to the stacked predictions."""

    geodesic_points: int = 100


@dataclass(frozen=True)
class DistancesConfig:
    """Bhattacharyya distance settings (PAPER.md A1-A2)."""

    sample_step: int = 2
    bc_floor: float = 1e-8
    max_block_mib: int = 256


@dataclass(frozen=True)
class EmbeddingConfig:
    """InPCA settings (PAPER.md A4-A5)."""

    n_components: int = 50
    stress_dims: tuple[int, ...] = (1, 2, 3, 10, 50)


@dataclass(frozen=True)
class FiguresConfig:
    """Rendering settings shared by every figure notebook."""

    formats: tuple[str, ...] = ("pdf", "png")
    dpi: int = 150


@dataclass(frozen=True)
class Config:
    """A whole profile: one section per stage, plus the grid and model sizes."""

    profile: str
    data: DataConfig
    grid: GridConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: PredictionsConfig = field(default_factory=PredictionsConfig)
    distances: DistancesConfig = field(default_factory=DistancesConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a parameter file, apply nested `overrides`, validate everything, return a Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist: pass params.yaml or a profile")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return config_from_dict(deep_merge(raw, overrides or {}))


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a nested mapping (as read from YAML) into a Config."""
    config = _build(Config, raw, "")
    _check_values(config)
    return config


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `overrides` merged in, recursively for nested mappings."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def as_dict(section: Any) -> Any:
    """A plain (YAML/JSON-ready) version of a config object."""
    if dataclasses.is_dataclass(section):
        return {f.name: as_dict(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, dict):
        return {k: as_dict(v) for k, v in section.items()}
    if isinstance(section, tuple | list):
        return [as_dict(v) for v in section]
    return section


# --------------------------------------------------------------------------- structure


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from mapping `raw`, checking keys and types recursively."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'the parameter file'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key_message(_join(where, key), key, fields))
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in raw:
            values[name] = _coerce(hints[name], raw[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {key}: every profile must set it (see profiles/)")
    return cls(**values)


def _unknown_key_message(key: str, name: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter key {key}{hint}: valid keys here are {', '.join(fields)}"


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against type `hint`; convert lists to tuples and ints to floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, key)
        for alternative in inner:  # the first alternative that accepts the value
            try:
                return _coerce(alternative, value, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} = {value!r}: must be {' or '.join(map(_describe, inner))}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {value!r}: must be a list, e.g. [{value!r}]")
        if not value:
            raise ConfigError(f"{key} is an empty list: give at least one value")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} = {value!r}: must be a mapping")
        return {str(k): _coerce(args[1], v, _join(key, k)) for k, v in value.items()}
    return _scalar(hint, value, key)


def _describe(hint: Any) -> str:
    """What a value of type `hint` looks like, for messages: 'auto', 'a whole number'."""
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {int: "a whole number", float: "a number", str: "a string",
            bool: "true or false"}.get(hint, str(hint))


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} = {value!r}: must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: must be a string")
        return value
    raise TypeError(f"unsupported type {hint} for {key}")  # a bug in this module, not in params


# --------------------------------------------------------------------------- values


def _check_values(config: Config) -> None:
    _check_data(config.data)
    _check_grid(config.grid)
    _check_models(config)
    _check_train(config.train)
    _positive(config.predictions.geodesic_points, "predictions.geodesic_points")
    _positive(config.distances.sample_step, "distances.sample_step")
    _positive(config.distances.max_block_mib, "distances.max_block_mib")
    if not 0.0 < config.distances.bc_floor < 1.0:
        raise ConfigError(f"distances.bc_floor = {config.distances.bc_floor}: must be in (0, 1)")
    _positive(config.embedding.n_components, "embedding.n_components")
    for i, k in enumerate(config.embedding.stress_dims):
        _positive(k, f"embedding.stress_dims[{i}]")
    for i, fmt in enumerate(config.figures.formats):
        _one_of(fmt, FIGURE_FORMATS, f"figures.formats[{i}]")
    _positive(config.figures.dpi, "figures.dpi")


def _check_data(data: DataConfig) -> None:
    from lowdim.data import DATASETS

    _one_of(data.dataset, DATASETS, "data.dataset")
    if not 0.0 < data.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction = {data.test_fraction}: must be in (0, 1)")
    for name in ("eval_train_size", "eval_test_size"):
        size = getattr(data, name)
        if size is not None:
            _positive(size, f"data.{name}")
    if data.root is not None and not Path(data.root).is_dir() and not data.download:
        raise ConfigError(
            f"data.root = {data.root!r}: this dataset directory does not exist; create it with "
            "the dataset's files, point data.root at the right place, or set data.download: true"
        )


def _check_grid(grid: GridConfig) -> None:
    from lowdim.models import INIT_SCHEMES

    for i, opt in enumerate(grid.optimizer):
        _one_of(opt, OPTIMIZERS, f"grid.optimizer[{i}]")
        if opt not in grid.base_lr:
            raise ConfigError(f"grid.base_lr has no entry for optimizer {opt!r}: add {opt}: [lr]")
    for opt, lrs in grid.base_lr.items():
        _one_of(opt, OPTIMIZERS, f"grid.base_lr.{opt}")
        for i, lr in enumerate(lrs):
            if not lr > 0:
                raise ConfigError(
                    f"grid.base_lr.{opt}[{i}] = {lr}: a learning rate must be positive"
                )
    for i, bs in enumerate(grid.batch_size):
        _positive(bs, f"grid.batch_size[{i}]")
    for i, wd in enumerate(grid.weight_decay):
        if wd < 0:
            raise ConfigError(f"grid.weight_decay[{i}] = {wd}: weight decay cannot be negative")
    for i, aug in enumerate(grid.augment):
        _one_of(aug, AUGMENTATIONS, f"grid.augment[{i}]")
    for i, init in enumerate(grid.init):
        _one_of(init, INIT_SCHEMES, f"grid.init[{i}]")
    for i, epochs in enumerate(grid.epochs):
        _positive(epochs, f"grid.epochs[{i}]")
    for axis in ("arch", "optimizer", "batch_size", "weight_decay", "augment", "init", "epochs",
                 "seed"):
        values = getattr(grid, axis)
        if len(set(values)) != len(values):
            raise ConfigError(f"grid.{axis} = {list(values)} repeats a value: list each once")


# Input shape and class count of each dataset, so models are checked before any data is read.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}


def check_architecture(name: str, size: Mapping[str, Any], dataset: str, key: str) -> None:
    """Raise ConfigError naming `key` unless the registry builds `name` at `size` for `dataset`."""
    from lowdim.models import build_model

    input_shape, num_classes = DATASET_SHAPES[dataset]
    try:
        build_model(name, input_shape, num_classes, **size)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key} = {name!r}: {err}") from None


def _check_models(config: Config) -> None:
    for name, size in config.models.items():
        check_architecture(name, size, config.data.dataset, f"models.{name}")
    for i, name in enumerate(config.grid.arch):
        if name not in config.models:
            check_architecture(name, {}, config.data.dataset, f"grid.arch[{i}]")


def _check_train(train: TrainConfig) -> None:
    _positive(train.lr_reference_batch_size, "train.lr_reference_batch_size")
    _positive(train.eval_batch_size, "train.eval_batch_size")
    if train.augment_padding is not None and train.augment_padding < 0:
        raise ConfigError(f"train.augment_padding = {train.augment_padding}: must be >= 0")
    if train.threads is not None:
        _positive(train.threads, "train.threads")
    if train.pack_size != "auto":
        _positive(train.pack_size, "train.pack_size")


def _positive(value: int | float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"{key} = {value}: must be positive")


def _one_of(value: Any, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key} = {value!r} is not known{hint}: use one of {', '.join(allowed)}")
