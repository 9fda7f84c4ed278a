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
# lowdim.models.INIT_SCHEMES, repeated here (tested equal) so that config never imports torch.
INIT_SCHEMES = ("default", "kaiming", "std_normal")
DEVICES = ("auto", "cpu", "cuda")
REINDEX_BY = ("accuracy", "progress")
FIGURE_FORMATS = ("pdf", "png", "svg")
CORNER_KINDS = ("uniform", "subsample")
TEACHERS = ("fc", "random")


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
class RayConfig:
    """The Ray backend: which cluster, resources per task, runs per task, retries, failures."""

    address: str | None = "auto"   # "auto": the running cluster (RAY_ADDRESS); None: start one
    num_cpus: float = 1.0
    num_gpus: float = 0.0          # fractions let several small networks share one GPU
    runs_per_task: int = 1
    max_retries: int = 2           # resubmissions of a run after a failed attempt
    max_failed_fraction: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """How each run trains: learning-rate scaling, device, evaluation batch size, backend,
    packing and the GPU speed options (README "Fast training on a GPU")."""

    lr_reference_batch_size: int = 200
    eval_batch_size: int = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment_padding: int | None = None
    threads: int | None = None
    # Local CPU runs trained at once, each in its own process; auto = one per available core.
    workers: Literal["auto"] | int = "auto"
    backend: Literal["local", "ray"] = "local"
    ray: RayConfig = field(default_factory=RayConfig)
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
    """Bhattacharyya distance settings (docs/study.md A1-A2)."""

    sample_step: int = 2
    bc_floor: float = 1e-8
    max_block_mib: int = 256
    method: Literal["auto", "reference", "fused"] = "auto"  # see lowdim.geometry.distances
    # reuse cached blocks of unchanged run pairs (lowdim.geometry.distance_blocks)
    cache: bool = True
    dtype: Literal["float64", "float32"] = "float64"  # stored matrices; float32 halves the disk


@dataclass(frozen=True)
class EmbeddingConfig:
    """InPCA settings (docs/study.md A4-A5)."""

    n_components: int = 50
    stress_dims: tuple[int, ...] = (1, 2, 3, 10, 50)
    solver: Literal["auto", "dense", "lanczos", "randomized"] = "auto"
    landmarks: int | None = None  # embed this many evenly spaced points, project the rest
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # where the eigensolver's products with D run


@dataclass(frozen=True)
class TrajectoriesConfig:
    """Trajectory analyses (docs/study.md A7-A13, A15): reindexing, filters, the size comparison."""

    reindex_by: Literal["accuracy", "progress"] = "accuracy"  # A7: the authors' production index
    grid_points: int = 100
    trained_max_error: float = 0.10     # analyses keep runs with final train error <= this
    outlier_loss: float = 4.0           # A15: train cross-entropy >= this is an outlier
    importance_repeats: int = 10        # permutation repeats of the feature importance (A13)
    size_pair: tuple[str, ...] | None = None  # (smaller, larger) architecture of one family (D15)
    seed: int = 0


@dataclass(frozen=True)
class CornersConfig:
    """Initialization corners (docs/study.md B7, D16): phase 1 reaches a far corner (random
    labels, or a small balanced subset), phase 2 continues on the true labels."""

    arch: str = "fc"                    # must be in grid.arch: its normal runs are the baseline
    optimizer: str = "sgdn"
    base_lr: float = 0.1                # scaled by batch_size / train.lr_reference_batch_size
    batch_size: int = 64
    kinds: tuple[str, ...] = CORNER_KINDS
    iseeds: tuple[int, ...] = (0, 1, 2)  # one corner per iseed and kind
    subsample_size: int = 200           # balanced: the same count of every class
    phase1_epochs: int = 16
    phase2_epochs: int = 16
    seeds: tuple[int, ...] = (42,)
    geodesic_points: int = 20           # points of each ignorance -> corner geodesic
    grid_points: int = 50               # equal-progress grid of the convergence analysis


@dataclass(frozen=True)
class SyntheticConfig:
    """Sloppy synthetic data (docs/study.md B8, D17): fc students on Gaussian inputs whose
    covariance eigenvalues decay at rate c, labelled by a random teacher."""

    c: tuple[float, ...] = (0.0, 0.001, 0.5)
    d: int = 200
    n_train: int = 500
    n_test: int = 200
    num_classes: int = 5
    teacher: str = "fc"                 # fc (argmax of a random tanh network) | random labels
    teacher_widths: tuple[int, ...] = (50,)
    data_seed: int = 5                  # the authors' synthetic-data seed
    student_widths: tuple[int, ...] = (64, 32)
    optimizers: tuple[str, ...] = ("sgdn", "adam")
    lr: dict[str, float] = field(default_factory=lambda: {"sgdn": 0.05, "adam": 0.001})
    batch_size: int = 50
    epochs: int = 10
    seeds: tuple[int, ...] = (42, 43)
    ncorners: int = 2                   # perturbed-init iseeds 0..ncorners-1; 0 skips them
    geodesic_points: int = 20


@dataclass(frozen=True)
class AveragingConfig:
    """Averaging methods (docs/study.md A9, D19): whose seeds are averaged, and how."""

    arch: str | None = None       # with optimizer: the configuration averaged; null: the first
    optimizer: str | None = None  # configuration (sorted run ids) with at least two runs
    bhattacharyya_iterations: int = 100  # concave-convex iterations of the centroid (authors: 100)


@dataclass(frozen=True)
class TangentsConfig:
    """Tangent bases (docs/study.md A14, D18): kernel averages near the start and the end."""

    width: float = 0.05                    # Gaussian kernel width in progress lambda
    centres: tuple[float, ...] = (0.2, 0.8)  # [start, end] progress centres
    outlier_loss: float = 4.0              # checkpoints with train loss >= this are left out
    dims: int = 8                          # axes of the true InPCA in the comparison


@dataclass(frozen=True)
class JointConfig:
    """Joint train+test embedding (D8) and the Euclidean comparison (D20)."""

    enabled: bool = True


@dataclass(frozen=True)
class StudiesConfig:
    """The paper's special studies beyond the main grid (lowdim.studies, notebooks 70-84)."""

    corners: CornersConfig = field(default_factory=CornersConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    tangents: TangentsConfig = field(default_factory=TangentsConfig)
    joint: JointConfig = field(default_factory=JointConfig)


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
    trajectories: TrajectoriesConfig = field(default_factory=TrajectoriesConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None, *,
                build_models: bool = True) -> Config:
    """Read a parameter file, apply nested `overrides`, validate every key, return a Config.

    `build_models=False` skips the one check that needs torch (building every architecture of
    `models` and `grid.arch` at its size, and comparing the parameter counts of
    `trajectories.size_pair`): stages that never build a network pass it, so they start without
    importing torch. Names, types and ranges are checked either way."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist: pass params.yaml or a profile")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return config_from_dict(deep_merge(raw, overrides or {}), build_models=build_models)


# Sections that moved: a parameter file written before the move names them at the top level.
MOVED_SECTIONS = {"corners": "studies.corners", "synthetic": "studies.synthetic"}


def config_from_dict(raw: Mapping[str, Any], *, build_models: bool = True) -> Config:
    """Validate a nested mapping (as read from YAML) into a Config (`build_models`: see
    `load_config`)."""
    for old, new in MOVED_SECTIONS.items():
        if isinstance(raw, Mapping) and old in raw:
            raise ConfigError(f"the top-level section {old} has moved to {new}: indent it under "
                              "studies (see profiles/)")
    config = _build(Config, raw, "")
    _check_values(config, build_models)
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


def _check_values(config: Config, build_models: bool) -> None:
    _check_data(config.data)
    _check_grid(config.grid)
    if build_models:
        _check_models(config)
    _check_train(config.train)
    _positive(config.predictions.geodesic_points, "predictions.geodesic_points")
    _positive(config.distances.sample_step, "distances.sample_step")
    _positive(config.distances.max_block_mib, "distances.max_block_mib")
    if not 0.0 < config.distances.bc_floor < 1.0:
        raise ConfigError(f"distances.bc_floor = {config.distances.bc_floor}: must be in (0, 1)")
    _positive(config.embedding.n_components, "embedding.n_components")
    if config.embedding.landmarks is not None and config.embedding.landmarks < 2:
        raise ConfigError(f"embedding.landmarks = {config.embedding.landmarks}: must be null "
                          "(embed every point) or at least 2")
    for i, k in enumerate(config.embedding.stress_dims):
        _positive(k, f"embedding.stress_dims[{i}]")
    _check_trajectories(config, build_models)
    _check_corners(config)
    _check_synthetic(config.studies.synthetic)
    _check_studies(config)
    for i, fmt in enumerate(config.figures.formats):
        _one_of(fmt, FIGURE_FORMATS, f"figures.formats[{i}]")
    _positive(config.figures.dpi, "figures.dpi")


def _check_data(data: DataConfig) -> None:
    # The dataset names are DATASET_SHAPES' keys (equal to lowdim.data.DATASETS, tested), so
    # loading a parameter file does not import the data package and, through it, torch.
    _one_of(data.dataset, tuple(DATASET_SHAPES), "data.dataset")
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


def _check_trajectories(config: Config, build_models: bool) -> None:
    traj = config.trajectories
    _one_of(traj.reindex_by, REINDEX_BY, "trajectories.reindex_by")
    _positive(traj.grid_points, "trajectories.grid_points")
    _positive(traj.importance_repeats, "trajectories.importance_repeats")
    _positive(traj.outlier_loss, "trajectories.outlier_loss")
    if not 0.0 < traj.trained_max_error <= 1.0:
        raise ConfigError(
            f"trajectories.trained_max_error = {traj.trained_max_error}: must be in (0, 1]"
        )
    if traj.size_pair is not None:
        _check_size_pair(traj.size_pair, config)
        if build_models:
            _check_size_pair_sizes(traj.size_pair, config)


def _check_studies(config: Config) -> None:
    avg, tan = config.studies.averaging, config.studies.tangents
    for name, axis in (("arch", config.grid.arch), ("optimizer", config.grid.optimizer)):
        value = getattr(avg, name)
        if value is not None and value not in axis:
            raise ConfigError(f"studies.averaging.{name} = {value!r} is not in grid.{name} "
                              f"({', '.join(axis)}): pick one of those, or null")
    if (avg.arch is None) != (avg.optimizer is None):
        raise ConfigError("studies.averaging.arch and studies.averaging.optimizer name one "
                          "configuration together: set both, or both to null")
    _positive(avg.bhattacharyya_iterations, "studies.averaging.bhattacharyya_iterations")
    _positive(tan.width, "studies.tangents.width")
    _positive(tan.outlier_loss, "studies.tangents.outlier_loss")
    _positive(tan.dims, "studies.tangents.dims")
    if len(tan.centres) != 2 or not 0.0 <= tan.centres[0] < tan.centres[1] <= 1.0:
        raise ConfigError(f"studies.tangents.centres = {list(tan.centres)}: give two progress "
                          "values [start, end] with 0 <= start < end <= 1, e.g. [0.2, 0.8]")


def _check_size_pair(pair: tuple[str, ...], config: Config) -> None:
    """The D15 pair: two distinct grid architectures (their sizes: `_check_size_pair_sizes`)."""
    key = "trajectories.size_pair"
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ConfigError(f"{key} = {list(pair)}: give two different architectures, "
                          "[smaller, larger], or null to skip the size comparison")
    for i, name in enumerate(pair):
        if name not in config.grid.arch:
            raise ConfigError(f"{key}[{i}] = {name!r} is not in grid.arch "
                              f"({', '.join(config.grid.arch)}): add it there or change the pair")


def _check_size_pair_sizes(pair: tuple[str, ...], config: Config) -> None:
    """The larger member of the D15 pair has more parameters (builds both: imports torch)."""
    from lowdim.models import build_model, parameter_count

    key = "trajectories.size_pair"
    shape, classes = DATASET_SHAPES[config.data.dataset]
    small, large = (parameter_count(build_model(n, shape, classes, **config.models.get(n, {})))
                    for n in pair)
    if not large > small:
        raise ConfigError(f"{key} = {list(pair)}: {pair[1]} has {large:,} parameters, not more "
                          f"than {pair[0]}'s {small:,}; list the smaller network first")


def _check_corners(config: Config) -> None:
    corners = config.studies.corners
    if corners.arch not in config.grid.arch:
        raise ConfigError(f"studies.corners.arch = {corners.arch!r} is not in grid.arch "
                          f"({', '.join(config.grid.arch)}): the corner runs are compared with "
                          "the normal runs of that architecture, so add it there")
    _one_of(corners.optimizer, OPTIMIZERS, "studies.corners.optimizer")
    for key in ("base_lr", "batch_size", "subsample_size", "phase1_epochs", "phase2_epochs",
                "geodesic_points", "grid_points"):
        _positive(getattr(corners, key), f"studies.corners.{key}")
    for i, kind in enumerate(corners.kinds):
        _one_of(kind, CORNER_KINDS, f"studies.corners.kinds[{i}]")
    for i, iseed in enumerate(corners.iseeds):
        if not 0 <= iseed < 2**32:
            raise ConfigError(f"studies.corners.iseeds[{i}] = {iseed}: an iseed must be in "
                              "[0, 2**32)")
    classes = DATASET_SHAPES[config.data.dataset][1]
    if corners.subsample_size % classes:
        raise ConfigError(f"studies.corners.subsample_size = {corners.subsample_size}: a "
                          f"balanced subset needs a multiple of the {classes} classes")
    _unique(corners, ("kinds", "iseeds", "seeds"), "studies.corners")


def _check_synthetic(syn: SyntheticConfig) -> None:
    for i, c in enumerate(syn.c):
        if not c >= 0:
            raise ConfigError(f"studies.synthetic.c[{i}] = {c}: the decay rate must be >= 0 (0 is "
                              "isotropic)")
    for key in ("d", "n_train", "n_test", "batch_size", "epochs", "geodesic_points"):
        _positive(getattr(syn, key), f"studies.synthetic.{key}")
    if syn.num_classes < 2:
        raise ConfigError(f"studies.synthetic.num_classes = {syn.num_classes}: must be at least 2")
    _one_of(syn.teacher, TEACHERS, "studies.synthetic.teacher")
    for name in ("teacher_widths", "student_widths"):
        for i, width in enumerate(getattr(syn, name)):
            _positive(width, f"studies.synthetic.{name}[{i}]")
    for i, opt in enumerate(syn.optimizers):
        _one_of(opt, OPTIMIZERS, f"studies.synthetic.optimizers[{i}]")
        if opt not in syn.lr:
            raise ConfigError(f"studies.synthetic.lr has no entry for optimizer {opt!r}: add "
                              f"{opt}: lr")
    for opt, lr in syn.lr.items():
        _one_of(opt, OPTIMIZERS, f"studies.synthetic.lr.{opt}")
        if not lr > 0:
            raise ConfigError(f"studies.synthetic.lr.{opt} = {lr}: a learning rate must be "
                              "positive")
    if syn.ncorners < 0:
        raise ConfigError(f"studies.synthetic.ncorners = {syn.ncorners}: must be >= 0 (0 skips the "
                          "perturbed-initialization corners)")
    _unique(syn, ("c", "optimizers", "seeds"), "studies.synthetic")


def _unique(section: Any, keys: tuple[str, ...], name: str) -> None:
    for key in keys:
        values = getattr(section, key)
        if len(set(values)) != len(values):
            raise ConfigError(f"{name}.{key} = {list(values)} repeats a value: list each once")


def _check_train(train: TrainConfig) -> None:
    _positive(train.lr_reference_batch_size, "train.lr_reference_batch_size")
    _positive(train.eval_batch_size, "train.eval_batch_size")
    if train.augment_padding is not None and train.augment_padding < 0:
        raise ConfigError(f"train.augment_padding = {train.augment_padding}: must be >= 0")
    if train.threads is not None:
        _positive(train.threads, "train.threads")
    if train.workers != "auto" and train.workers < 1:
        raise ConfigError(f"train.workers = {train.workers}: must be auto (one process per CPU "
                          "core) or a whole number >= 1 (1: every run in the stage's process)")
    if train.pack_size != "auto":
        _positive(train.pack_size, "train.pack_size")
    _check_ray(train.ray)
    if train.backend == "ray":
        _check_ray_device(train.ray, train.device)


def _check_ray(ray: RayConfig) -> None:
    if ray.address is not None and not ray.address.strip():
        raise ConfigError(f"train.ray.address = {ray.address!r}: use auto (the running "
                          "cluster), host:port, or null (start a local Ray instance)")
    for name in ("num_cpus", "num_gpus"):
        value = getattr(ray, name)
        if value < 0 or (value > 1 and not float(value).is_integer()):
            raise ConfigError(f"train.ray.{name} = {value}: must be a fraction in [0, 1] or a "
                              "whole number (Ray's rule for resource requests)")
    if ray.num_cpus == 0 and ray.num_gpus == 0:
        raise ConfigError("train.ray.num_cpus and train.ray.num_gpus are both 0: a task must "
                          "reserve some CPU or GPU, or Ray would start every run at once")
    _positive(ray.runs_per_task, "train.ray.runs_per_task")
    if ray.max_retries < 0:
        raise ConfigError(f"train.ray.max_retries = {ray.max_retries}: must be >= 0")
    if not 0.0 <= ray.max_failed_fraction < 1.0:
        raise ConfigError(f"train.ray.max_failed_fraction = {ray.max_failed_fraction}: must be "
                          "in [0, 1) (0: any failed run fails the stage)")


def _check_ray_device(ray: RayConfig, device: str) -> None:
    if device == "cpu" and ray.num_gpus > 0:
        raise ConfigError(f"train.ray.num_gpus = {ray.num_gpus} but train.device = 'cpu': "
                          "set num_gpus to 0, or device to auto or cuda")
    if device == "cuda" and ray.num_gpus == 0:
        raise ConfigError("train.device = 'cuda' but train.ray.num_gpus = 0: Ray hides GPUs "
                          "from tasks that reserve none; set num_gpus (e.g. 0.25)")


def _positive(value: int | float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"{key} = {value}: must be positive")


def _one_of(value: Any, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key} = {value!r} is not known{hint}: use one of {', '.join(allowed)}")
