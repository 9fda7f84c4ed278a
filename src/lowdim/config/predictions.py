"""The `predictions` section: the reference points of the analysis set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from lowdim.config.load import Positive


@dataclass(frozen=True)
class PredictionsConfig:
    """The analysis set: reference points added to the stacked predictions."""

    SECTION = "predictions"

    geodesic_points: Annotated[int, Positive] = 100
