"""A whole parameter file: every section, and every rule across sections. No stage imports this
module (a stage loads only the sections it reads, `lowdim.config.load.load`).

The command that validates whole files, networks built included, is `lowdim.tools.params`
(`make repro` runs it before `dvc repro`; pre-commit and the tests too); config never imports
the models, so that command lives with the tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lowdim.config import trajectories
from lowdim.config.data import DataConfig
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.embedding import check_with as check_embedding_with
from lowdim.config.figures import FiguresConfig
from lowdim.config.grid import GridConfig
from lowdim.config.intervals import IntervalsConfig
from lowdim.config.load import build, read
from lowdim.config.models import ModelsConfig
from lowdim.config.predictions import PredictionsConfig
from lowdim.config.studies import averaging, corners, tangents
from lowdim.config.studies.averaging import AveragingConfig
from lowdim.config.studies.corners import CornersConfig
from lowdim.config.studies.joint import JointConfig
from lowdim.config.studies.synthetic import SyntheticConfig
from lowdim.config.studies.tangents import TangentsConfig
from lowdim.config.train import TrainConfig
from lowdim.config.train import check_with as check_train_with
from lowdim.config.trajectories import TrajectoriesConfig


@dataclass(frozen=True)
class StudiesConfig:
    """The paper's special studies beyond the main grid (lowdim.studies, notebooks 70-84)."""

    corners: CornersConfig = field(default_factory=CornersConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    tangents: TangentsConfig = field(default_factory=TangentsConfig)
    joint: JointConfig = field(default_factory=JointConfig)


@dataclass(frozen=True)
class Config:
    """A whole profile: one section per stage, plus the grid and model sizes."""

    profile: str
    data: DataConfig
    grid: GridConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    predictions: PredictionsConfig = field(default_factory=PredictionsConfig)
    distances: DistancesConfig = field(default_factory=DistancesConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    trajectories: TrajectoriesConfig = field(default_factory=TrajectoriesConfig)
    intervals: IntervalsConfig = field(default_factory=IntervalsConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)


def load_profile(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """A parameter file with nested `overrides` merged in: every section and every rule across
    sections checked (the networks are not built: `lowdim.tools.params` does that too)."""
    return profile_from_dict(read(path, overrides))


def profile_from_dict(raw: Mapping[str, Any]) -> Config:
    """A nested mapping (as read from YAML) as a Config, checked as `load_profile` checks."""
    config = build_profile(raw)
    check_across(config)
    return config


def build_profile(raw: Mapping[str, Any]) -> Config:
    """A nested mapping (as read from YAML) as a Config, each section with its own rules."""
    return build(Config, raw)


def check_across(config: Config) -> None:
    """Every rule across two sections (each in the module of the section that refers to the
    other); a stage that loads both sections runs the same check."""
    trajectories.check_with(config.trajectories, config.grid)
    check_train_with(config.train, config.grid)
    check_embedding_with(config.embedding, config.distances)
    corners.check_with(config.studies.corners, config.grid, config.data,
                       config.train.lr_reference_batch_size)
    averaging.check_with(config.studies.averaging, config.grid,
                         config.train.lr_reference_batch_size)
    tangents.check_with(config.studies.tangents, config.grid,
                        config.train.lr_reference_batch_size)
